// Static files for URLs that no virtual directory maps (--root).
#pragma once
#include <cstdint>
#include <string>

namespace isapi_host {

struct StaticFile {
  int status = 0;    // 200, or the error to send (400, 404, 405)
  std::string path;  // file to send (status 200)
  uint64_t size = 0;
  const char* content_type = "application/octet-stream";
};

// root: absolute directory with a trailing separator. url_path: the decoded URL path.
// A directory serves its index.html (or 404). The path is mapped by url_path.h's rule: a path
// that climbs above the root is 400, a device name or aliasing name 404.
// physical: the file the URL maps to when filters (SF_NOTIFY_URL_MAP) decided it; nullptr: root
// + the URL path.
StaticFile ResolveStaticFile(const std::string& root, const std::string& method, const std::string& url_path,
                             const std::string* physical = nullptr);
const char* ContentTypeFor(const std::string& path);

}  // namespace isapi_host
