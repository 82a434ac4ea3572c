// install / install.exe: a small native program that runs the worker executable beside it in
// installer mode. The worker (one Node SEA) carries both programs, the worker runtime and the
// installer; this launcher is what keeps the folder at one copy of Node.
#pragma once

#include <string>

namespace isapi::launcher {

// The worker's first argument that selects the installer program (the SEA's main script,
// packer/entry_points.ts, reads it). The bridge starts workers with no argument at all
// (platform/process_*.cc), so a worker it spawns can never become an installer.
inline constexpr char kInstallerFlag[] = "--isapi-installer";

// "<name>.manifest.json" → "<name>" (the worker is <name> / <name>.exe, packer/pack.ts);
// empty for any other file name.
std::string app_name_from_manifest(const std::string& file);

// Prints "install: <message>" on stderr; returns the installer's "refused" exit code (1).
int fail(const std::string& message);

// Runs the worker beside this executable in installer mode with exactly this process's
// arguments, the same console and standard handles, and returns its exit code. POSIX replaces
// this process with the worker (returns only if that fails); Windows waits for it.
int run_worker_as_installer(int argc, char** argv);

}  // namespace isapi::launcher
