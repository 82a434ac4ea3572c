// Node-API on Windows. node_api.def names NODE.EXE as the DLL that exports napi_*; the bridge
// imports them through a delay-load import library generated from that file at build time
// (native/bridge/CMakeLists.txt), so
//   - nothing is resolved when the web server (IIS w3wp.exe, isapi-host) loads the bridge: a
//     process without Node never calls a napi_* function, and the DLL loads fine;
//   - in the worker, the first napi_* call asks this hook for "node.exe", and gets the module
//     of the running executable, whatever its file name (a SEA is `hello.exe`, not node.exe).
// Same idea as node-gyp's win_delay_load_hook.cc, for mingw-w64's delay-load helper.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <delayimp.h>

namespace {

FARPROC WINAPI node_api_delay_hook(unsigned event, PDelayLoadInfo info) {
  if (event == dliNotePreLoadLibrary && info && info->szDll && lstrcmpiA(info->szDll, "node.exe") == 0)
    return reinterpret_cast<FARPROC>(GetModuleHandleW(nullptr));
  return nullptr;
}

}  // namespace

// Replaces mingw-w64's default (null) hook; __delayLoadHelper2 reads it on every delay load.
extern "C" {
PfnDliHook __pfnDliNotifyHook2 = node_api_delay_hook;
}
