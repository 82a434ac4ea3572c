// The bridge's own check of what a worker asks it to send, before anything reaches the web
// server: the runtime already refuses CR, LF and NUL in header names and values, but the worker
// runs user code and any Node module, so the web server process does not take its word for it.
// A response that could be split (or a header text a server would cut at a NUL) becomes a 500.
#pragma once
#include <string>
#include <string_view>

#include "isapi.h"
#include "wire.h"

namespace isapi::bridge {

// Each returns "" when the text is safe to hand to the web server, otherwise what is wrong,
// naming the header.
std::string status_problem(std::string_view status);
// "Name: value" lines ending in CRLF (as the runtime writes them; a bare LF is refused) up to
// the first blank line; what follows it is body and is not checked. Names must be RFC 9110
// tokens; values must not hold CR, NUL or other controls but HTAB. A CRLF inside a value cannot
// be told from a line end here: the runtime refuses that one, where names and values are apart.
std::string header_block_problem(std::string_view text);
// One change of a filter's reply (SetHeader, AddResponseHeaders, SendResponseHeader…).
std::string filter_change_problem(channel::FilterChange op, std::string_view a, std::string_view b);

// For a worker's ResponseHeaders message: when the status or the header block is unsafe, logs
// why, answers the request with a 500 through the ECB and returns true (the caller then ends
// the request). False: send it as it is.
bool refuse_unsafe_response(EXTENSION_CONTROL_BLOCK* ecb, std::string_view status, std::string_view headers);

}  // namespace isapi::bridge
