// Windows implementation of platform/system.h.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <time.h>

#include "system.h"

namespace isapi_host {

namespace {
HANDLE g_stop_event = nullptr;

BOOL WINAPI OnConsoleControl(DWORD type) {
  switch (type) {
    case CTRL_C_EVENT:
    case CTRL_BREAK_EVENT:
    case CTRL_CLOSE_EVENT:
    case CTRL_SHUTDOWN_EVENT:
      SetEvent(g_stop_event);
      return TRUE;
    default:
      return FALSE;
  }
}
}  // namespace

void PrepareProcess() {
  _setmode(_fileno(stdout), _O_BINARY);
  _setmode(_fileno(stderr), _O_BINARY);
  g_stop_event = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  SetConsoleCtrlHandler(OnConsoleControl, TRUE);
}

void WaitForTerminationSignal() { WaitForSingleObject(g_stop_event, INFINITE); }

void UtcTime(time_t t, struct tm* out) { gmtime_s(out, &t); }

int64_t MonotonicMs() { return static_cast<int64_t>(GetTickCount64()); }

}  // namespace isapi_host
