// POSIX implementation of platform/dynlib.h.
#include <dlfcn.h>

#include "dynlib.h"

namespace isapi_host {

void* DynlibOpen(const std::string& path, std::string* err) {
  // RTLD_LAZY: the project's bridge is also a Node addon and imports Node-API symbols that only
  // exist inside node; they must stay unbound in the host. RTLD_LOCAL: extensions do not see
  // each other's symbols (like separate DLLs).
  void* h = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    *err = e ? e : "unknown dlopen error";
  }
  return h;
}

void* DynlibSymbol(void* handle, const char* name) { return dlsym(handle, name); }

void DynlibClose(void* handle) {
  if (handle) dlclose(handle);
}

}  // namespace isapi_host
