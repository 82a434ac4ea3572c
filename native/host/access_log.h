// W3C extended access log, the IIS field set. One line per request, flushed before the
// connection is reused, so a test can read the file right after its response.
#pragma once
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace isapi_host {

struct AccessLogEntry {
  std::string server_ip;
  std::string method;
  std::string uri_stem;
  std::string uri_query;  // the query string plus the extension's log data
  int server_port = 0;
  std::string username;
  std::string client_ip;
  std::string user_agent;
  int status = 0;
  int substatus = 0;
  uint32_t win32_status = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  int64_t time_taken_ms = 0;
};

class AccessLog {
 public:
  ~AccessLog();
  bool Open(const std::string& path, std::string* err);
  void Write(const AccessLogEntry& e);
  void Flush();

 private:
  std::mutex mu_;
  FILE* f_ = nullptr;
};

}  // namespace isapi_host
