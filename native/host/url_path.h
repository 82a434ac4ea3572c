// The one URL → physical path rule of the host. Request URLs, PATH_TRANSLATED,
// HSE_REQ_MAP_URL_TO_PATH(_EX), EXEC_URL / SEND_URL child requests and static files all go
// through it, so no caller can map a URL in its own (weaker) way.
#pragma once
#include <cstdint>
#include <string>

namespace isapi_host {

// Win32 error for a URL that cannot be mapped (climbs above the root, a NUL, a device name…).
// IIS fails MAP_URL_TO_PATH and EXEC_URL with ERROR_INVALID_PARAMETER for such URLs (inferred:
// the documented contract only names ERROR_INSUFFICIENT_BUFFER).
constexpr uint32_t kUrlRefused = 87;  // ERROR_INVALID_PARAMETER

enum class UrlForm {
  kEncoded,  // as a client or an extension wrote it: %XX escapes are decoded (once)
  kDecoded,  // already decoded once (the parser's path): never decoded again
};

// Canonical URL path, as HTTP.sys gives it to IIS: %XX decoded (kEncoded), '\' read as '/',
// "//" collapsed, "." and ".." segments resolved. Returns 0, or kUrlRefused when the path is
// empty, does not start with '/', holds a NUL or an invalid escape, or climbs above "/".
// A query string is not allowed here (callers split it off first).
uint32_t CanonicalUrlPath(const std::string& url, UrlForm form, std::string* out);

// The physical path for `rest` (a canonical URL path relative to a mapped directory: "" or
// "a/b") under `base` (a directory with a trailing separator). Refuses, with kUrlRefused,
// segments Windows would read as something else than a file in `base`: device names (CON,
// NUL, COM1, LPT1… with any extension), alternate data streams and drive letters (':'), and
// names ending in '.' or ' ' (Windows drops those, so "a.txt." would alias "a.txt"). The same
// rule on every platform: a folder behaves the same under Linux, Wine and IIS.
uint32_t JoinUnderRoot(const std::string& base, const std::string& rest, std::string* out);

}  // namespace isapi_host
