// Virtual directories: URL prefix → ISAPI extension (a wildcard map: every URL under the prefix
// goes to the extension). Longest prefix wins; matching is case-insensitive like IIS.
#pragma once
#include <string>
#include <vector>

namespace isapi_host {

class IsapiExtension;

struct Vdir {
  std::string prefix;   // "/hello" (no trailing slash); "" for the root vdir "/"
  std::string library;  // absolute path of the library
  IsapiExtension* extension = nullptr;
  // Physical path of the vdir: the library's directory, with a trailing separator.
  std::string physical_dir;
};

class VdirMap {
 public:
  // url_prefix as given on the command line ("/hello", "/hello/", "/"). False if invalid/duplicate.
  bool Add(const std::string& url_prefix, const std::string& library, std::string* err);
  const Vdir* Match(const std::string& path) const;
  std::vector<Vdir>& entries() { return entries_; }

 private:
  std::vector<Vdir> entries_;  // sorted longest prefix first
};

}  // namespace isapi_host
