// libFuzzer target: the host's request-head scanner and parser, then the URL rule every parsed
// path goes through (native/host/url_path.cc). Invariants are checked, not just crashes: a
// canonical path never holds a dot segment, a backslash or "//", and a joined physical path
// stays under its base.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http_parser.h"
#include "url_path.h"

using namespace isapi_host;

static void Check(bool ok) {
  if (!ok) abort();
}

static void CheckCanonical(const std::string& p) {
  Check(!p.empty() && p[0] == '/');
  Check(p.find('\\') == std::string::npos && p.find("//") == std::string::npos);
  Check(p.find("/../") == std::string::npos && p.find("/./") == std::string::npos);
  Check(p.size() < 3 || p.compare(p.size() - 3, 3, "/..") != 0);
  Check(p.size() < 2 || p.compare(p.size() - 2, 2, "/.") != 0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  HeadScan scan = ScanRequestHead(p, size, 8192, 16384);
  if (scan.kind == HeadScan::kComplete) {
    Check(scan.head_len <= size);
    HttpRequestHead head;
    if (ParseRequestHead(p, scan.head_len, &head) == 0 && head.path != "*") {
      std::string canon;
      if (CanonicalUrlPath(head.path, UrlForm::kDecoded, &canon) == 0) {
        CheckCanonical(canon);
        std::string joined;
        if (JoinUnderRoot("/srv/root/", canon.substr(1), &joined) == 0)
          Check(joined.compare(0, 10, "/srv/root/") == 0 && joined.find("/../") == std::string::npos);
      }
    }
  }
  // The raw bytes as an extension's MAP_URL_TO_PATH argument (encoded form).
  std::string url(p, size);
  std::string canon;
  if (CanonicalUrlPath(url, UrlForm::kEncoded, &canon) == 0) CheckCanonical(canon);
  return 0;
}
