// Loading shared libraries (ISAPI extensions). dynlib_posix.cc: dlopen; dynlib_win.cc: LoadLibrary.
#pragma once
#include <string>

namespace isapi_host {

// Opens a library with lazy binding and local symbols (the bridge's Node-API imports must stay
// unresolved until used). Returns nullptr and sets *err (path + system text) on failure.
void* DynlibOpen(const std::string& path, std::string* err);
void* DynlibSymbol(void* handle, const char* name);
void DynlibClose(void* handle);

}  // namespace isapi_host
