// The Windows "last error" for non-Windows builds. isapi_posix.h declares SetLastError and
// GetLastError; the host defines them here and exports them from the executable (-rdynamic /
// ENABLE_EXPORTS) so loaded extensions call these after a failed ECB callback.
#include "isapi.h"

extern "C" {

namespace {
thread_local DWORD g_last_error = 0;
}

__attribute__((visibility("default"))) void SetLastError(DWORD err) { g_last_error = err; }
__attribute__((visibility("default"))) DWORD GetLastError(void) { return g_last_error; }
}
