// Server variables (GetServerVariable): the IIS set, computed from the request. Used by the ECB
// (RequestContext) and by filters (FilterSession), which see a request before it has a context.
#pragma once
#include <cstdint>
#include <string>

#include "isapi.h"

namespace isapi_host {

class Connection;
class Server;
struct HttpRequestHead;
struct Vdir;

// Who the request runs as, decided by SF_NOTIFY_AUTHENTICATION filters (empty: anonymous).
struct AuthInfo {
  std::string user;
  std::string password;
  std::string type;  // the Authorization scheme ("Basic"), "" without one
};

// What a variable is computed from.
struct VarSource {
  const Server* server = nullptr;
  const Connection* conn = nullptr;
  const HttpRequestHead* head = nullptr;  // nullptr before the head is parsed (READ_RAW_DATA)
  const Vdir* vdir = nullptr;             // nullptr: a URL no virtual directory maps
  const std::string* path_translated = nullptr;
  const AuthInfo* auth = nullptr;  // nullptr: anonymous
};

// Fills *value with the variable's bytes INCLUDING the terminator (one NUL byte; for UNICODE_*
// variables UTF-16LE with a two-byte NUL). Names are case-insensitive.
// False with *err = ERROR_INVALID_INDEX for an unknown name or an absent HTTP_* / HEADER_* header.
bool LookupServerVariable(const VarSource& r, const char* name, std::string* value, uint32_t* err);

// GetServerVariable with the ISAPI buffer protocol (ECB and filters): *size in/out including the
// NUL; too small (or NULL buffer) → FALSE, ERROR_INSUFFICIENT_BUFFER and the required size.
BOOL CopyServerVariable(const VarSource& r, LPSTR name, LPVOID buffer, LPDWORD size);

}  // namespace isapi_host
