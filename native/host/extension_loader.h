// An ISAPI extension library, loaded the way IIS loads it: once per process, GetExtensionVersion
// once, HttpExtensionProc concurrently, TerminateExtension at unload.
#pragma once
#include <string>

#include "isapi.h"

namespace isapi_host {

class IsapiExtension {
 public:
  // path must be absolute; handle is the library, opened once by the server (a library that is
  // also a filter shares it). On failure *err says what happened.
  bool Load(const std::string& path, void* handle, std::string* err);
  DWORD HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) { return proc_(ecb); }
  // TerminateExtension(HSE_TERM_ADVISORY_UNLOAD), then MUST_UNLOAD if the first returned FALSE.
  void Terminate();
  void Unload() { handle_ = nullptr; }  // the server closes the library

  const std::string& path() const { return path_; }
  const std::string& directory() const { return dir_; }  // with a trailing separator
  const std::string& description() const { return description_; }

 private:
  typedef BOOL(WINAPI* GetVersionFn)(HSE_VERSION_INFO*);
  typedef DWORD(WINAPI* ProcFn)(EXTENSION_CONTROL_BLOCK*);
  typedef BOOL(WINAPI* TerminateFn)(DWORD);
  void* Symbol(const char* name, const char* decorated);

  std::string path_;
  std::string dir_;
  std::string description_;
  void* handle_ = nullptr;
  ProcFn proc_ = nullptr;
  TerminateFn terminate_ = nullptr;
  bool terminated_ = false;
};

}  // namespace isapi_host
