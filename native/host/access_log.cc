#include "access_log.h"

#include <cerrno>
#include <cstring>
#include <ctime>

#include "platform/system.h"

namespace isapi_host {

namespace {
// W3C fields cannot contain spaces: IIS writes '+'; an empty field is '-'.
std::string Field(const std::string& s) {
  if (s.empty()) return "-";
  std::string r = s;
  for (char& c : r) {
    if (c == ' ') c = '+';
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return r;
}
}  // namespace

AccessLog::~AccessLog() {
  if (f_) fclose(f_);
}

bool AccessLog::Open(const std::string& path, std::string* err) {
  f_ = OpenFileUtf8(path, "a");
  if (!f_) {
    *err = "cannot open access log " + path + ": " + strerror(errno);
    return false;
  }
  fputs("#Software: isapi-host 0.1\n#Version: 1.0\n", f_);
  time_t now = time(nullptr);
  struct tm tm;
  UtcTime(now, &tm);
  fprintf(f_, "#Date: %04d-%02d-%02d %02d:%02d:%02d\n", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
          tm.tm_min, tm.tm_sec);
  fputs(
      "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
      "cs(User-Agent) sc-status sc-substatus sc-win32-status sc-bytes cs-bytes time-taken\n",
      f_);
  fflush(f_);
  return true;
}

void AccessLog::Write(const AccessLogEntry& e) {
  if (!f_) return;
  time_t now = time(nullptr);
  struct tm tm;
  UtcTime(now, &tm);
  char stamp[64];
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string line = stamp;
  line += ' ' + Field(e.server_ip) + ' ' + Field(e.method) + ' ' + Field(e.uri_stem) + ' ' + Field(e.uri_query) + ' ' +
          std::to_string(e.server_port) + ' ' + Field(e.username) + ' ' + Field(e.client_ip) + ' ' +
          Field(e.user_agent) + ' ' + std::to_string(e.status) + ' ' + std::to_string(e.substatus) + ' ' +
          std::to_string(e.win32_status) + ' ' + std::to_string(e.bytes_sent) + ' ' + std::to_string(e.bytes_received) +
          ' ' + std::to_string(e.time_taken_ms) + '\n';
  std::lock_guard<std::mutex> lock(mu_);
  fwrite(line.data(), 1, line.size(), f_);
  fflush(f_);
}

void AccessLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (f_) fflush(f_);
}

}  // namespace isapi_host
