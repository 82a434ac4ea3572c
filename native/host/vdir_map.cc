#include "vdir_map.h"

#include <algorithm>

namespace isapi_host {

namespace {
bool IPrefix(const std::string& s, const std::string& prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++) {
    char a = s[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a += 32;
    if (b >= 'A' && b <= 'Z') b += 32;
    if (a != b) return false;
  }
  return true;
}
}  // namespace

bool VdirMap::Add(const std::string& url_prefix, const std::string& library, std::string* err) {
  if (url_prefix.empty() || url_prefix[0] != '/') {
    *err = "virtual directory '" + url_prefix + "' must start with '/' (e.g. --vdir /hello=ext.so)";
    return false;
  }
  std::string p = url_prefix;
  while (!p.empty() && p.back() == '/') p.pop_back();
  for (const Vdir& v : entries_) {
    if (v.prefix.size() == p.size() && IPrefix(v.prefix, p)) {
      *err = "virtual directory '" + url_prefix + "' is mapped twice";
      return false;
    }
  }
  Vdir v;
  v.prefix = p;
  v.library = library;
  entries_.push_back(v);
  std::stable_sort(entries_.begin(), entries_.end(),
                   [](const Vdir& a, const Vdir& b) { return a.prefix.size() > b.prefix.size(); });
  return true;
}

const Vdir* VdirMap::Match(const std::string& path) const {
  for (const Vdir& v : entries_) {
    if (v.prefix.empty()) return &v;
    if (IPrefix(path, v.prefix) && (path.size() == v.prefix.size() || path[v.prefix.size()] == '/')) return &v;
  }
  return nullptr;
}

}  // namespace isapi_host
