#include "extension_loader.h"

#include <cstring>

#include "platform/dynlib.h"

namespace isapi_host {

void* IsapiExtension::Symbol(const char* name, const char* decorated) {
  void* p = DynlibSymbol(handle_, name);
  // 32-bit mingw builds without a .def file export stdcall-decorated names.
  if (!p && decorated) p = DynlibSymbol(handle_, decorated);
  return p;
}

bool IsapiExtension::Load(const std::string& path, void* handle, std::string* err) {
  path_ = path;
  size_t slash = path.find_last_of("/\\");
  dir_ = slash == std::string::npos ? std::string("./") : path.substr(0, slash + 1);
  handle_ = handle;
  GetVersionFn get_version = reinterpret_cast<GetVersionFn>(Symbol("GetExtensionVersion", "_GetExtensionVersion@4"));
  proc_ = reinterpret_cast<ProcFn>(Symbol("HttpExtensionProc", "_HttpExtensionProc@4"));
  terminate_ = reinterpret_cast<TerminateFn>(Symbol("TerminateExtension", "_TerminateExtension@4"));
  if (!get_version || !proc_) {
    *err = "ISAPI extension " + path + " does not export " +
           (get_version ? "HttpExtensionProc" : "GetExtensionVersion") +
           ": is it an ISAPI extension (a filter-only library is not)?";
    handle_ = nullptr;
    return false;
  }
  HSE_VERSION_INFO info;
  memset(&info, 0, sizeof info);
  if (!get_version(&info)) {
    *err =
        "GetExtensionVersion of " + path + " returned FALSE: the extension refused to start (see its own log for why)";
    handle_ = nullptr;
    return false;
  }
  info.lpszExtensionDesc[sizeof info.lpszExtensionDesc - 1] = 0;
  description_ = info.lpszExtensionDesc;
  return true;
}

void IsapiExtension::Terminate() {
  if (terminated_ || !handle_) return;
  terminated_ = true;
  if (!terminate_) return;
  if (!terminate_(HSE_TERM_ADVISORY_UNLOAD)) terminate_(HSE_TERM_MUST_UNLOAD);
}

}  // namespace isapi_host
