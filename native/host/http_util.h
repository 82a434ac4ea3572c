// Small HTTP helpers shared by the host: dates, reason phrases, error pages.
#pragma once
#include <string>

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

}  // namespace isapi_host
