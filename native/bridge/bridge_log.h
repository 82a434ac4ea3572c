// The bridge's log, logs/<name>.log beside the bridge: one line per event (worker started,
// exited, restarted, request failed) and every line the workers print, in order, so one file
// tells the whole story (like the ASP.NET Core Module's stdout log).
//
// Opened once. Capped in size: past ISAPI_LOG_MAX_MB (default 10 MiB) the file is renamed
// <name>.1.log (older generations shift up to ISAPI_LOG_FILES - 1, default 5 files in all) and
// a fresh one is started. Only the bridge writes it (workers' output comes through pipes), so
// rotation never races another process. Thread-safe.
#pragma once
#include <string>
#include <string_view>

namespace isapi::bridge {

void log_open(const std::string& path);
void log_line(const std::string& line);
// Complete lines a worker printed (stdout and stderr), written with a "[worker N]" prefix.
void log_worker_output(int slot, std::string_view lines);
// The last `maxBytes` of the current log file, for messages about a worker that failed.
std::string log_tail(size_t maxBytes);
const std::string& log_path();

}  // namespace isapi::bridge
