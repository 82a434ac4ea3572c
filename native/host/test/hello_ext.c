/* hello_ext: the smallest useful ISAPI extension. Every request gets "Hello from C\n" with a
 * Content-Length, so the connection stays alive. Used by the host's benchmarks.
 *
 *   gcc -shared -fPIC -O2 -I native/include -o /tmp/hello_ext.so native/host/test/hello_ext.c
 */
#include <string.h>

#include "isapi.h"

#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

static const char kBody[] = "Hello from C\n";
static const char kHeaders[] = "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n";

EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* ver) {
  ver->dwExtensionVersion = MAKELONG(0, 8);
  strcpy(ver->lpszExtensionDesc, "hello_ext: Hello from C");
  return TRUE;
}

EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  HSE_SEND_HEADER_EX_INFO info;
  DWORD n = sizeof kBody - 1;
  info.pszStatus = "200 OK";
  info.cchStatus = 6;
  info.pszHeader = kHeaders;
  info.cchHeader = sizeof kHeaders - 1;
  info.fKeepConn = TRUE;
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL, NULL))
    return HSE_STATUS_ERROR;
  if (!ecb->WriteClient(ecb->ConnID, (LPVOID)kBody, &n, HSE_IO_SYNC)) return HSE_STATUS_ERROR;
  return HSE_STATUS_SUCCESS;
}

EXPORT BOOL WINAPI TerminateExtension(DWORD flags) {
  (void)flags;
  return TRUE;
}
