/* both_ext_filter: one library that is both an ISAPI extension and a filter (as the project's
 * bridge is). The filter adds "X-Both-Filter: <n>" (n = its PREPROC count); the extension answers
 * "filter_version_calls=F extension_version_calls=E filter_seen=N" from the same static state,
 * which proves the host loaded the library once and called both version entry points.
 */
#include <stdio.h>
#include <string.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))

static int filter_version_calls, extension_version_calls, filter_seen;

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  filter_version_calls++;
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "both_ext_filter");
  ver->dwFlags = SF_NOTIFY_PREPROC_HEADERS;
  return TRUE;
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  char line[64];
  (void)data;
  if (type == SF_NOTIFY_PREPROC_HEADERS) {
    snprintf(line, sizeof line, "X-Both-Filter: %d\r\n", ++filter_seen);
    pfc->AddResponseHeaders(pfc, line, 0);
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}

EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* ver) {
  extension_version_calls++;
  ver->dwExtensionVersion = MAKELONG(0, 8);
  strcpy(ver->lpszExtensionDesc, "both_ext_filter");
  return TRUE;
}

EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  char body[128], headers[128];
  DWORD n;
  snprintf(body, sizeof body, "filter_version_calls=%d extension_version_calls=%d filter_seen=%d\n",
           filter_version_calls, extension_version_calls, filter_seen);
  snprintf(headers, sizeof headers, "Content-Type: text/plain\r\nContent-Length: %lu\r\n\r\n",
           (unsigned long)strlen(body));
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID) "200 OK", NULL, (LPDWORD)headers);
  n = (DWORD)strlen(body);
  ecb->WriteClient(ecb->ConnID, body, &n, HSE_IO_SYNC);
  return HSE_STATUS_SUCCESS;
}
