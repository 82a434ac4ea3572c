/* log_filter: SF_NOTIFY_LOG. Replaces pszTarget with an AllocMem copy prefixed "/filtered",
 * pszClientUserName with a static "log-user" and pszParameters with "p=1", so the access log
 * shows what the filter decided. Writes "status target op bytesSent" lines to $LOG_FILTER_OUT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "log_filter");
  ver->dwFlags = SF_NOTIFY_LOG;
  return TRUE;
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  if (type == SF_NOTIFY_LOG) {
    PHTTP_FILTER_LOG lg = (PHTTP_FILTER_LOG)data;
    const char* out = getenv("LOG_FILTER_OUT");
    size_t n = strlen(lg->pszTarget) + 16;
    char* target = (char*)pfc->AllocMem(pfc, (DWORD)n, 0);
    if (out) {
      FILE* f = fopen(out, "a");
      if (f) {
        fprintf(f, "%lu %s %s %lu\n", (unsigned long)lg->dwHttpStatus, lg->pszTarget, lg->pszOperation,
                (unsigned long)lg->dwBytesSent);
        fclose(f);
      }
    }
    if (target) {
      snprintf(target, n, "/filtered%s", lg->pszTarget);
      lg->pszTarget = target;
    }
    lg->pszClientUserName = "log-user";
    lg->pszParameters = "p=1";
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
