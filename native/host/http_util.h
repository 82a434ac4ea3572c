// Small HTTP helpers shared by the host: dates, reason phrases, error pages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "http_parser.h"

namespace isapi_host {

constexpr const char* kServerHeader = "isapi-host/0.1";

// "Tue, 15 Nov 1994 08:12:31 GMT" for now (cached per second).
std::string HttpDateNow();
const char* ReasonPhrase(int status);
// A complete response with a short text/html body and Content-Length.
// keep_alive adds "Connection: keep-alive" for HTTP/1.0 clients, otherwise "Connection: close".
std::string BuildErrorResponse(int status, bool keep_alive, bool http10, bool head_only,
                               const std::string& extra_headers = "");
bool IEquals(const std::string& a, const std::string& b);

// The short text/html body of an error page.
std::string ErrorBody(int status);
// "404 Not Found" for a bare "404"; the text as given otherwise.
std::string StatusLineText(int status);
// Parses "Name: value" lines (CRLF or LF) up to the first empty line into *out. Returns the offset
// just past the empty line, or text.size() when there was none (*ended = false).
size_t ParseHeaderLines(const char* text, size_t len, std::vector<HttpHeader>* out, bool* ended);
// An extension's (or a filter's) response header text, strictly: each line (CRLF or LF) is a
// token name, ':' and a value without CR, NUL or other controls but HTAB. Parsed by length: a
// NUL is an error, never the end of the text. Returns the offset just past the blank line, or
// len when there was none (*ended = false); *error names the first bad line ("" if none).
size_t ParseResponseHeaderLines(const char* text, size_t len, std::vector<HttpHeader>* out, bool* ended,
                                std::string* error);
// "" when the header list can go to the wire as it is; otherwise why not: a name that is not
// an RFC 9110 token, CR/LF/NUL in a value, a Content-Length that is not 1-18 digits, two
// different Content-Lengths, or Content-Length with Transfer-Encoding. The host owns the
// framing (as IIS does) and refuses such output instead of relaying it.
std::string CheckResponseHeaderList(const std::vector<HttpHeader>& headers);
// The status text of a response ("200 OK"): three digits, then nothing or a space and text
// without controls. False for anything a client could read as a second line.
bool IsValidStatusText(const std::string& status);
// A response head: "HTTP/1.1 <status>", the headers, Server and Date when absent, then
// "Connection: close" (keep_alive false) or "Connection: keep-alive" (HTTP/1.0 client), and the
// blank line. Connection headers in `headers` are dropped: the host decides.
std::string ComposeResponseHead(const std::string& status, const std::vector<HttpHeader>& headers, bool keep_alive,
                                bool http10);
// Framing facts of a header list.
struct ResponseFraming {
  int64_t content_length = -1;
  bool chunked = false;
  bool close = false;  // "Connection: close"
};
ResponseFraming FramingOf(const std::vector<HttpHeader>& headers);
// IIS URL normalization: percent-decodes, turns '\' into '/', collapses "//", resolves "." and
// ".." segments. False if the URL is invalid or climbs above the root.
bool NormalizeUrl(const std::string& in, std::string* out);

}  // namespace isapi_host
