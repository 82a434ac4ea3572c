// Server variables (GetServerVariable): the IIS set, computed from the request.
#pragma once
#include <cstdint>
#include <string>

namespace isapi_host {

class RequestContext;

// Fills *value with the variable's bytes INCLUDING the terminator (one NUL byte; for UNICODE_*
// variables UTF-16LE with a two-byte NUL). Names are case-insensitive.
// False with *err = ERROR_INVALID_INDEX for an unknown name or an absent HTTP_* / HEADER_* header.
bool LookupServerVariable(const RequestContext& r, const char* name, std::string* value,
                          uint32_t* err);

}  // namespace isapi_host
