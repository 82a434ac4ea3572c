#include "url_path.h"

#include <vector>

#include "http_parser.h"

namespace isapi_host {

namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool IEq(const std::string& a, const char* b) {
  size_t i = 0;
  for (; i < a.size() && b[i]; i++)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return i == a.size() && !b[i];
}

// Win32 reserves these names in every directory, whatever follows the first dot: "con.txt"
// and "nul .html" are the console and the null device, not files.
bool IsDeviceName(const std::string& segment) {
  std::string stem = segment.substr(0, segment.find('.'));
  while (!stem.empty() && stem.back() == ' ') stem.pop_back();
  static const char* kNames[] = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"};
  for (const char* n : kNames)
    if (IEq(stem, n)) return true;
  if (stem.size() == 4 && (IEq(stem.substr(0, 3), "COM") || IEq(stem.substr(0, 3), "LPT")) && stem[3] >= '0' &&
      stem[3] <= '9')
    return true;
  return false;
}

bool IsSafeFileName(const std::string& s) {
  if (s.empty()) return true;
  if (s.back() == '.' || s.back() == ' ') return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == ':' || c == '*' || c == '"' || c == '<' || c == '>' || c == '|') return false;
  return !IsDeviceName(s);
}

}  // namespace

uint32_t CanonicalUrlPath(const std::string& url, UrlForm form, std::string* out) {
  std::string d;
  if (form == UrlForm::kEncoded) {
    if (!PercentDecode(url, &d)) return kUrlRefused;
  } else {
    d = url;
    if (d.find('\0') != std::string::npos) return kUrlRefused;
  }
  for (char& ch : d)
    if (ch == '\\') ch = '/';
  if (d.empty() || d[0] != '/') return kUrlRefused;
  std::vector<std::string> segs;
  bool trailing = false;
  size_t i = 1;
  while (i <= d.size()) {
    size_t j = d.find('/', i);
    if (j == std::string::npos) j = d.size();
    std::string seg = d.substr(i, j - i);
    if (seg == "..") {
      if (segs.empty()) return kUrlRefused;  // above "/"
      segs.pop_back();
      trailing = true;
    } else if (seg == ".") {
      trailing = true;
    } else if (!seg.empty()) {
      segs.push_back(std::move(seg));
      trailing = j < d.size();
    } else {
      trailing = trailing || j >= d.size();
    }
    i = j + 1;
  }
  std::string r;
  for (const std::string& s : segs) r += "/" + s;
  if (r.empty() || trailing) r += "/";
  *out = std::move(r);
  return 0;
}

uint32_t JoinUnderRoot(const std::string& base, const std::string& rest, std::string* out) {
  std::string r = base;
  size_t i = 0;
  while (i <= rest.size()) {
    size_t j = rest.find('/', i);
    if (j == std::string::npos) j = rest.size();
    std::string seg = rest.substr(i, j - i);
    // CanonicalUrlPath resolved dot segments already; one here means a caller skipped it.
    if (seg == "." || seg == ".." || !IsSafeFileName(seg)) return kUrlRefused;
    r += seg;
#ifdef _WIN32
    if (j < rest.size()) r += '\\';
#else
    if (j < rest.size()) r += '/';
#endif
    i = j + 1;
  }
  *out = std::move(r);
  return 0;
}

}  // namespace isapi_host
