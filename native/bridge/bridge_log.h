// The bridge's own log: one line per event (worker started, exited, restarted, request failed),
// in logs/<name>.log beside the bridge. Worker stdout/stderr are appended to the same file, so
// one file tells the whole story in order.
#pragma once
#include <string>

namespace isapi::bridge {

void log_open(const std::string& path);
void log_line(const std::string& line);
// The last `maxBytes` of the log, for error messages about a worker that failed to start.
std::string log_tail(size_t maxBytes);
const std::string& log_path();

}  // namespace isapi::bridge
