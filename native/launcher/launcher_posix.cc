// POSIX: exec the worker in place of this process. Arguments pass through untouched, and the
// pid, terminal, standard descriptors, signals (Ctrl+C reaches Node directly) and exit code are
// the worker's own, with no process in between.
#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "launcher.h"

namespace isapi::launcher {

namespace {

// The folder this executable is in: /proc/self/exe, not argv[0] (which may be a bare name
// found on PATH, or anything the caller chose).
std::string own_folder() {
  std::vector<char> buf(PATH_MAX);
  for (;;) {
    ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size());
    if (n < 0) return {};
    if (size_t(n) < buf.size()) {
      std::string self(buf.data(), size_t(n));
      size_t slash = self.rfind('/');
      return slash == std::string::npos ? std::string(".") : self.substr(0, slash == 0 ? 1 : slash);
    }
    buf.resize(buf.size() * 2);
  }
}

}  // namespace

int run_worker_as_installer(int argc, char** argv) {
  std::string folder = own_folder();
  if (folder.empty())
    return fail(std::string("cannot find this program's folder (/proc/self/exe): ") + std::strerror(errno));
  DIR* dir = opendir(folder.c_str());
  if (!dir) return fail("cannot read " + folder + ": " + std::strerror(errno));
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) {
    std::string name = app_name_from_manifest(e->d_name);
    if (!name.empty()) names.push_back(name);
  }
  closedir(dir);
  if (names.size() != 1) {
    return fail(folder +
                (names.empty() ? " holds no <name>.manifest.json" : " holds more than one <name>.manifest.json") +
                ": the installer works from the folder `isapi pack` wrote, beside the bridge and the worker");
  }
  std::string worker = folder + "/" + names[0];
  std::vector<char*> args;
  args.push_back(const_cast<char*>(worker.c_str()));
  args.push_back(const_cast<char*>(kInstallerFlag));
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(worker.c_str(), args.data());
  return fail("cannot start " + worker + ": " + std::strerror(errno) +
              (errno == ENOENT ? " (the manifest names it: copy the whole folder, or pack it again)" : ""));
}

}  // namespace isapi::launcher
