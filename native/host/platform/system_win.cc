// Windows implementation of platform/system.h.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <shellapi.h>

#include <string>
#include <vector>

#include "system.h"
#include "utf8_win.h"

namespace isapi_host {

namespace {
HANDLE g_stop_event = nullptr;

BOOL WINAPI OnConsoleControl(DWORD type) {
  switch (type) {
    case CTRL_C_EVENT:
    case CTRL_BREAK_EVENT:
    case CTRL_CLOSE_EVENT:
    case CTRL_SHUTDOWN_EVENT: SetEvent(g_stop_event); return TRUE;
    default: return FALSE;
  }
}
}  // namespace

char** Utf8Arguments(int* argc, char** argv) {
  int n = 0;
  LPWSTR* wide = CommandLineToArgvW(GetCommandLineW(), &n);
  if (!wide) return argv;
  // Kept for the life of the process, like argv itself.
  static std::vector<std::string> storage;
  static std::vector<char*> pointers;
  storage.clear();
  for (int i = 0; i < n; i++) {
    int len = WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, nullptr, 0, nullptr, nullptr);
    std::string s(size_t(len > 0 ? len - 1 : 0), '\0');
    if (len > 1) WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, s.data(), len, nullptr, nullptr);
    storage.push_back(std::move(s));
  }
  LocalFree(wide);
  pointers.clear();
  for (auto& s : storage) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  *argc = n;
  return pointers.data();
}

FILE* OpenFileUtf8(const std::string& path, const char* mode) {
  return _wfopen(isapi::win::widen(path).c_str(), isapi::win::widen(mode).c_str());
}

void PrepareProcess() {
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
  g_stop_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  SetConsoleCtrlHandler(OnConsoleControl, TRUE);
}

void WaitForTerminationSignal() { WaitForSingleObject(g_stop_event, INFINITE); }

// A named WINAPI function, not a lambda: on x86 the thread routine must be __stdcall, and a
// lambda converts only to a default (__cdecl) function pointer.
static DWORD WINAPI WatchStdin(LPVOID) {
  HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
  char buf[256];
  DWORD n = 0;
  while (in && in != INVALID_HANDLE_VALUE && ReadFile(in, buf, sizeof buf, &n, nullptr) && n > 0) {
  }
  SetEvent(g_stop_event);
  return 0;
}

void StopWhenStdinCloses() {
  HANDLE thread = CreateThread(nullptr, 0, WatchStdin, nullptr, 0, nullptr);
  if (thread) CloseHandle(thread);
}

void UtcTime(time_t t, struct tm* out) { gmtime_s(out, &t); }

int64_t MonotonicMs() { return static_cast<int64_t>(GetTickCount64()); }

int64_t FileReadAt(void* handle, void* buf, size_t n, uint64_t offset) {
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.Offset = static_cast<DWORD>(offset & 0xFFFFFFFFu);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  DWORD got = 0;
  if (!ReadFile(static_cast<HANDLE>(handle), buf, static_cast<DWORD>(n), &got, &ov)) {
    return GetLastError() == ERROR_HANDLE_EOF ? 0 : -1;
  }
  return static_cast<int64_t>(got);
}

}  // namespace isapi_host
