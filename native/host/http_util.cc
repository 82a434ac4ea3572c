#include "http_util.h"

#include <cstdio>
#include <ctime>

#include "platform/system.h"

namespace isapi_host {

std::string HttpDateNow() {
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local time_t cached_at = 0;
  thread_local char cached[40];
  time_t now = time(nullptr);
  if (now != cached_at) {
    struct tm tm;
    UtcTime(now, &tm);
    snprintf(cached, sizeof cached, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
             tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_at = now;
  }
  return cached;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string BuildErrorResponse(int status, bool keep_alive, bool http10, bool head_only,
                               const std::string& extra_headers) {
  std::string code = std::to_string(status) + " " + ReasonPhrase(status);
  std::string body = "<!DOCTYPE html><html><head><title>" + code + "</title></head><body><h1>" +
                     code + "</h1></body></html>\n";
  std::string r = "HTTP/1.1 " + code + "\r\nServer: " + kServerHeader + "\r\nDate: " +
                  HttpDateNow() + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n" + extra_headers;
  if (!keep_alive) r += "Connection: close\r\n";
  else if (http10) r += "Connection: keep-alive\r\n";
  r += "\r\n";
  if (!head_only) r += body;
  return r;
}

bool IEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

}  // namespace isapi_host
