// Windows implementation of platform/dynlib.h.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "dynlib.h"

namespace isapi_host {

void* DynlibOpen(const std::string& path, std::string* err) {
  // LOAD_WITH_ALTERED_SEARCH_PATH: the DLL's own folder is searched for its dependencies, as
  // IIS does for an extension. The bridge's Node-API imports are delay-loaded by the bridge.
  // The path is UTF-8 (Utf8Arguments): load it through the wide API.
  int n = MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), nullptr, 0);
  std::wstring wide(size_t(n > 0 ? n : 0), L'\0');
  if (n > 0) MultiByteToWideChar(CP_UTF8, 0, path.data(), int(path.size()), wide.data(), n);
  HMODULE h = LoadLibraryExW(wide.c_str(), nullptr, LOAD_WITH_ALTERED_SEARCH_PATH);
  if (!h) {
    DWORD code = GetLastError();
    char buf[512] = {0};
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code, 0, buf,
                             sizeof buf, nullptr);
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n')) buf[--n] = 0;
    *err = std::string(buf) + " (error " + std::to_string(code) + ")";
  }
  return reinterpret_cast<void*>(h);
}

void* DynlibSymbol(void* handle, const char* name) {
  return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(handle), name));
}

void DynlibClose(void* handle) {
  if (handle) FreeLibrary(static_cast<HMODULE>(handle));
}

}  // namespace isapi_host
