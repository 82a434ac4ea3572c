#include "http_util.h"

#include <cstdio>
#include <cctype>
#include <cstring>
#include <ctime>

#include "platform/system.h"
#include "url_path.h"

namespace isapi_host {

std::string HttpDateNow() {
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local time_t cached_at = 0;
  thread_local char cached[40];
  time_t now = time(nullptr);
  if (now != cached_at) {
    struct tm tm;
    UtcTime(now, &tm);
    snprintf(cached, sizeof cached, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
             kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
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
    case 201: return "Created";
    case 206: return "Partial Content";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
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

std::string StatusLineText(int status) { return std::to_string(status) + " " + ReasonPhrase(status); }

std::string ErrorBody(int status) {
  std::string code = StatusLineText(status);
  return "<!DOCTYPE html><html><head><title>" + code + "</title></head><body><h1>" + code + "</h1></body></html>\n";
}

std::string BuildErrorResponse(int status, bool keep_alive, bool http10, bool head_only,
                               const std::string& extra_headers) {
  std::string code = StatusLineText(status);
  std::string body = ErrorBody(status);
  std::string r = "HTTP/1.1 " + code + "\r\nServer: " + kServerHeader + "\r\nDate: " + HttpDateNow() +
                  "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n" + extra_headers;
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

namespace {
// The next line of header text from *pos (LF or CRLF ended; the last may lack one). False at
// the end of the text.
bool NextHeaderLine(const char* text, size_t len, size_t* pos, std::string* line, bool* had_newline) {
  if (*pos >= len) return false;
  const char* nl = static_cast<const char*>(memchr(text + *pos, '\n', len - *pos));
  size_t line_end = nl ? static_cast<size_t>(nl - text) : len;
  line->assign(text + *pos, line_end - *pos);
  if (!line->empty() && line->back() == '\r') line->pop_back();
  *pos = nl ? line_end + 1 : len;
  *had_newline = nl != nullptr;
  return true;
}
}  // namespace

size_t ParseHeaderLines(const char* text, size_t len, std::vector<HttpHeader>* out, bool* ended) {
  size_t i = 0;
  *ended = false;
  std::string line;
  bool had_newline = false;
  while (NextHeaderLine(text, len, &i, &line, &had_newline)) {
    if (line.empty()) {
      *ended = had_newline;
      return i;
    }
    size_t colon = line.find(':');
    HttpHeader h;
    h.name = colon == std::string::npos ? line : line.substr(0, colon);
    while (!h.name.empty() && (h.name.back() == ' ' || h.name.back() == '\t')) h.name.pop_back();
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    size_t vb = value.find_first_not_of(" \t");
    h.value = vb == std::string::npos ? "" : value.substr(vb);
    out->push_back(std::move(h));
  }
  return len;
}

namespace {
bool IsTokenChar(unsigned char c) {
  if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool IsToken(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!IsTokenChar(c)) return false;
  return true;
}
// field-value characters (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
bool IsFieldValue(const std::string& s) {
  for (unsigned char c : s)
    if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
  return true;
}
std::string Printable(const std::string& s) {
  std::string r;
  for (unsigned char c : s.substr(0, 60)) {
    if (c >= 0x20 && c < 0x7f) r += static_cast<char>(c);
    else {
      char b[8];
      snprintf(b, sizeof b, "\\x%02x", c);
      r += b;
    }
  }
  return r;
}
}  // namespace

size_t ParseResponseHeaderLines(const char* text, size_t len, std::vector<HttpHeader>* out, bool* ended,
                                std::string* error) {
  size_t i = 0;
  *ended = false;
  error->clear();
  std::string line;
  bool had_newline = false;
  while (NextHeaderLine(text, len, &i, &line, &had_newline)) {
    if (line.empty()) {
      *ended = had_newline;
      return i;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      if (error->empty()) *error = "a header line without ':' (" + Printable(line) + ")";
      continue;
    }
    HttpHeader h;
    h.name = line.substr(0, colon);
    while (!h.name.empty() && (h.name.back() == ' ' || h.name.back() == '\t')) h.name.pop_back();
    std::string value = line.substr(colon + 1);
    size_t vb = value.find_first_not_of(" \t");
    size_t ve = value.find_last_not_of(" \t");
    h.value = vb == std::string::npos ? "" : value.substr(vb, ve - vb + 1);
    if (error->empty() && !IsToken(h.name)) *error = "header name '" + Printable(h.name) + "' is not a token";
    else if (error->empty() && !IsFieldValue(h.value))
      *error = "header '" + Printable(h.name) + "' has a control character (CR, NUL...) in its value";
    out->push_back(std::move(h));
  }
  return len;
}

std::string CheckResponseHeaderList(const std::vector<HttpHeader>& headers) {
  int64_t length = -1;
  bool te = false;
  for (const HttpHeader& h : headers) {
    if (!IsToken(h.name)) return "header name '" + Printable(h.name) + "' is not a token";
    if (!IsFieldValue(h.value))
      return "header '" + Printable(h.name) + "' has a control character (CR, LF, NUL...) in its value";
    if (IEquals(h.name, "Content-Length")) {
      if (h.value.empty() || h.value.size() > 18 || h.value.find_first_not_of("0123456789") != std::string::npos)
        return "Content-Length '" + Printable(h.value) + "' is not a number of at most 18 digits";
      int64_t n = std::stoll(h.value);
      if (length >= 0 && n != length) return "two different Content-Length headers";
      length = n;
    } else if (IEquals(h.name, "Transfer-Encoding")) {
      te = true;
    }
  }
  if (te && length >= 0) return "both Content-Length and Transfer-Encoding";
  return "";
}

bool IsValidStatusText(const std::string& st) {
  if (st.size() < 3 || !isdigit(static_cast<unsigned char>(st[0])) || !isdigit(static_cast<unsigned char>(st[1])) ||
      !isdigit(static_cast<unsigned char>(st[2])))
    return false;
  if (st.size() > 3 && st[3] != ' ') return false;
  for (unsigned char c : st)
    if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
  return true;
}

std::string ComposeResponseHead(const std::string& status, const std::vector<HttpHeader>& headers, bool keep_alive,
                                bool http10) {
  bool has_server = false, has_date = false;
  for (const HttpHeader& h : headers) {
    if (IEquals(h.name, "Server")) has_server = true;
    else if (IEquals(h.name, "Date")) has_date = true;
  }
  std::string out;
  out.reserve(160 + headers.size() * 40);
  out += "HTTP/1.1 ";
  out += status;
  out += "\r\n";
  if (!has_server) {
    out += "Server: ";
    out += kServerHeader;
    out += "\r\n";
  }
  if (!has_date) {
    out += "Date: ";
    out += HttpDateNow();
    out += "\r\n";
  }
  for (const HttpHeader& h : headers) {
    if (IEquals(h.name, "Connection")) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!keep_alive) out += "Connection: close\r\n";
  else if (http10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  return out;
}

ResponseFraming FramingOf(const std::vector<HttpHeader>& headers) {
  ResponseFraming f;
  for (const HttpHeader& h : headers) {
    if (IEquals(h.name, "Content-Length")) {
      // At most 18 digits: 10^18 - 1 fits an int64_t, so the sum cannot overflow (UB).
      int64_t n = 0;
      bool ok = !h.value.empty();
      int digits = 0;
      for (char ch : h.value) {
        if (ch == ' ' || ch == '\t') break;
        if (ch < '0' || ch > '9' || ++digits > 18) {
          ok = false;
          break;
        }
        n = n * 10 + (ch - '0');
      }
      if (ok) f.content_length = n;
    } else if (IEquals(h.name, "Transfer-Encoding") || IEquals(h.name, "Connection")) {
      std::string lower = h.value;
      for (char& ch : lower) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
      if (IEquals(h.name, "Connection")) {
        if (lower.find("close") != std::string::npos) f.close = true;
      } else if (lower.find("chunked") != std::string::npos) {
        f.chunked = true;
      }
    }
  }
  return f;
}

bool NormalizeUrl(const std::string& in, std::string* out) {
  size_t q = in.find('?');
  std::string path;
  if (CanonicalUrlPath(in.substr(0, q), UrlForm::kEncoded, &path) != 0) return false;
  *out = q == std::string::npos ? path : path + in.substr(q);
  return true;
}

}  // namespace isapi_host
