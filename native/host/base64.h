// Base64 decoding, for the Basic credentials of SF_NOTIFY_AUTHENTICATION.
#pragma once
#include <string>

namespace isapi_host {

// Decodes standard Base64 (RFC 4648 §4); characters outside the alphabet (padding, spaces)
// are skipped, as the Authorization header allows no other reading.
std::string Base64Decode(const std::string& in);

}  // namespace isapi_host
