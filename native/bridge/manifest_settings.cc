#include "manifest_settings.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#endif

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

// The path is UTF-8 (this_module_path()). On Windows a narrow fopen/ifstream would read it in
// the ANSI code page, so a folder such as C:\inetpub\fü\ would not open: use the wide API.
FILE* open_utf8(const std::string& path) {
#ifdef _WIN32
  int n = MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), nullptr, 0);
  std::wstring w(size_t(n > 0 ? n : 0), L'\0');
  if (n > 0) MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), w.data(), n);
  return _wfopen(w.c_str(), L"rb");
#else
  return std::fopen(path.c_str(), "rb");
#endif
}

}  // namespace

ManifestSettings read_manifest_settings(const std::string& manifestPath) {
  ManifestSettings s;
  FILE* f = open_utf8(manifestPath);
  if (!f) return s;
  std::string json;
  char buf[8192];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) json.append(buf, n);
  std::fclose(f);
  s.found = true;
  s.filterFlags = uint32_t(std::strtoul(scalar(json, "filterFlags").c_str(), nullptr, 10));
  s.filterFailClosed = scalar(json, "filterFailurePolicy") != "pass-through";
  int timeout = std::atoi(scalar(json, "filterTimeoutMs").c_str());
  if (timeout > 0) s.filterTimeoutMs = timeout;
  return s;
}

}  // namespace isapi::bridge
