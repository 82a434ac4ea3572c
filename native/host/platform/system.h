// Process-level OS services: termination signals, time conversion. system_posix.cc / system_win.cc.
#pragma once
#include <cstdint>
#include <ctime>

namespace isapi_host {

// Must be called before any thread starts: termination signals are then only seen by
// WaitForTerminationSignal(); SIGPIPE is ignored; stdout/stderr write "\n" as is (no CRLF
// translation on Windows), so the "listening" line is byte-identical on every platform.
void PrepareProcess();
// Blocks until SIGINT or SIGTERM (Ctrl+C / console close on Windows).
void WaitForTerminationSignal();
void UtcTime(time_t t, struct tm* out);
// Monotonic milliseconds.
int64_t MonotonicMs();

}  // namespace isapi_host
