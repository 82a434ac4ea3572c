#include "manifest_settings.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace isapi::bridge {

namespace {

// The raw text of a top-level scalar value for "key", or "" when absent.
std::string scalar(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return {};
  at = json.find(':', at + key.size() + 2);
  if (at == std::string::npos) return {};
  ++at;
  while (at < json.size() && (json[at] == ' ' || json[at] == '\n' || json[at] == '\r' || json[at] == '\t')) ++at;
  if (at < json.size() && json[at] == '"') {
    size_t end = json.find('"', at + 1);
    return end == std::string::npos ? std::string() : json.substr(at + 1, end - at - 1);
  }
  size_t end = json.find_first_of(",}\n", at);
  return json.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

ManifestSettings read_manifest_settings(const std::string& manifestPath) {
  ManifestSettings s;
  std::ifstream in(manifestPath, std::ios::binary);
  if (!in) return s;
  std::stringstream buf;
  buf << in.rdbuf();
  std::string json = buf.str();
  s.found = true;
  s.filterFlags = uint32_t(std::strtoul(scalar(json, "filterFlags").c_str(), nullptr, 10));
  s.filterFailClosed = scalar(json, "filterFailurePolicy") != "pass-through";
  int timeout = std::atoi(scalar(json, "filterTimeoutMs").c_str());
  if (timeout > 0) s.filterTimeoutMs = timeout;
  return s;
}

}  // namespace isapi::bridge
