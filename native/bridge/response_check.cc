#include "response_check.h"

#include <cstring>

#include "bridge_log.h"

namespace isapi::bridge {

namespace {

bool is_token_char(unsigned char c) {
  if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_control(unsigned char c) { return c != '\t' && (c < 0x20 || c == 0x7f); }

// What the log and the message show of a header name: printable, short.
std::string shown(std::string_view s) {
  std::string r;
  for (unsigned char c : s.substr(0, 60)) {
    if (c >= 0x20 && c < 0x7f) {
      r += char(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "an empty header name";
  for (unsigned char c : name)
    if (!is_token_char(c)) return "header name '" + shown(name) + "' is not a token";
  return "";
}

std::string value_problem(std::string_view name, std::string_view value) {
  for (unsigned char c : value)
    if (is_control(c)) return "header '" + shown(name) + "' has a CR, LF, NUL or other control character in its value";
  return "";
}

// SetHeader/AddHeader names: "Name:" (the colon is ISAPI's), or the pseudo names a PREPROC
// filter may set: "url", "method", "version".
std::string filter_header_problem(std::string_view name, std::string_view value) {
  std::string_view bare = !name.empty() && name.back() == ':' ? name.substr(0, name.size() - 1) : name;
  std::string p = name_problem(bare);
  return p.empty() ? value_problem(bare, value) : p;
}

}  // namespace

std::string status_problem(std::string_view s) {
  if (s.empty()) return "";  // "200 OK"
  bool ok = s.size() >= 3 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
            (s.size() == 3 || s[3] == ' ');
  if (!ok) return "status '" + shown(s) + "' is not '<3 digits> <reason>'";
  for (unsigned char c : s)
    if (is_control(c)) return "status '" + shown(s) + "' has a CR, LF, NUL or other control character";
  return "";
}

std::string header_block_problem(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(i, end - i);
    // The runtime ends every line with CRLF: a bare LF can only come from a value that carried
    // one (what a client reads as a line break, a server may not, and the other way round).
    if (nl != std::string_view::npos && (line.empty() || line.back() != '\r'))
      return "a header line ending in a bare LF (after '" + shown(line) + "')";
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return "";  // the blank line: the rest is body
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return "a header line without ':' ('" + shown(line) + "')";
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    std::string p = name_problem(name);
    if (p.empty()) p = value_problem(name, line.substr(colon + 1));
    if (!p.empty()) return p;
    i = end + 1;
  }
  return "";
}

std::string filter_change_problem(channel::FilterChange op, std::string_view a, std::string_view b) {
  using channel::FilterChange;
  switch (op) {
    case FilterChange::SetHeader:
    case FilterChange::AddHeader: return filter_header_problem(a, b);
    case FilterChange::AddResponseHeaders:
    case FilterChange::AddHeadersOnDenial: return header_block_problem(a);
    case FilterChange::SendResponseHeader: {
      std::string p = status_problem(a);
      return p.empty() ? header_block_problem(b) : p;
    }
    case FilterChange::SetPhysicalPath:
    case FilterChange::SetUser:
    case FilterChange::SetPassword:
    case FilterChange::SetLogField:
      // Carried as C strings: a NUL would cut them short without anyone noticing.
      if (a.find('\0') != std::string_view::npos || b.find('\0') != std::string_view::npos)
        return "a NUL in a filter's string";
      return "";
    default: return "";
  }
}

bool refuse_unsafe_response(EXTENSION_CONTROL_BLOCK* ecb, std::string_view status, std::string_view headers) {
  std::string problem = status_problem(status);
  if (problem.empty()) problem = header_block_problem(headers);
  if (problem.empty()) return false;
  log_line("refused a response (500 sent instead; it could split the response): " + problem);
  static const char kBody[] =
      "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
      "<h1>500 Internal Server Error</h1><p>The application sent a response header that is not "
      "allowed; see the application log.</p></body></html>\n";
  std::string head = "Content-Type: text/html; charset=utf-8\r\nContent-Length: " + std::to_string(sizeof kBody - 1) +
                     "\r\n\r\n" + kBody;
  HSE_SEND_HEADER_EX_INFO info{};
  info.pszStatus = "500 Internal Server Error";
  info.cchStatus = DWORD(std::strlen(info.pszStatus));
  info.pszHeader = head.c_str();
  info.cchHeader = DWORD(head.size());
  info.fKeepConn = FALSE;
  ecb->dwHttpStatusCode = 500;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr);
  return true;
}

}  // namespace isapi::bridge
