#include "static_files.h"

#include <filesystem>
#include <system_error>

#include "http_parser.h"
#include "http_util.h"
#include "url_path.h"

namespace fs = std::filesystem;

namespace isapi_host {

const char* ContentTypeFor(const std::string& path) {
  static const struct {
    const char* ext;
    const char* type;
  } kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".xml", "application/xml"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".ico", "image/x-icon"},
      {".wasm", "application/wasm"},
      {".pdf", "application/pdf"},
      {".zip", "application/zip"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".map", "application/json"},
      {".csv", "text/csv"},
  };
  size_t dot = path.find_last_of('.');
  size_t slash = path.find_last_of("/\\");
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "application/octet-stream";
  std::string ext = path.substr(dot);
  for (const auto& t : kTypes)
    if (IEquals(ext, t.ext)) return t.type;
  return "application/octet-stream";
}

StaticFile ResolveStaticFile(const std::string& root, const std::string& method, const std::string& url_path,
                             const std::string* physical) {
  StaticFile r;
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    return r;
  }
  std::string canon;
  if (CanonicalUrlPath(url_path, UrlForm::kDecoded, &canon) != 0) {
    r.status = 400;
    return r;
  }
  std::string p;
  if (physical) p = *physical;
  else if (JoinUnderRoot(root, canon.substr(1), &p) != 0) {
    r.status = 404;  // a device name or an alias of another file: nothing to serve
    return r;
  }
  std::error_code ec;
  // p is UTF-8: u8path, as a narrow fs::path would be the ANSI code page on Windows.
  fs::file_status st = fs::status(fs::u8path(p), ec);
  if (!ec && fs::is_directory(st)) {
    if (!p.empty() && p.back() != '/') p += '/';
    p += "index.html";
    st = fs::status(fs::u8path(p), ec);
  }
  if (ec || !fs::is_regular_file(st)) {
    r.status = 404;
    return r;
  }
  r.size = fs::file_size(fs::u8path(p), ec);
  if (ec) {
    r.status = 404;
    return r;
  }
  r.status = 200;
  r.path = p;
  r.content_type = ContentTypeFor(p);
  return r;
}

}  // namespace isapi_host
