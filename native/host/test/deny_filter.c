/* deny_filter (priority HIGH): verdicts and denial.
 * PREPROC_HEADERS by URL:
 *   /x/finished        answers itself (SF_REQ_SEND_RESPONSE_HEADER + WriteClient), FINISHED
 *   /x/finished-keep   the same, FINISHED_KEEP_CONN
 *   /x/filter-error    SF_STATUS_REQ_ERROR
 *   /x/handled         HANDLED_NOTIFICATION: lower-priority filters do not see this PREPROC
 * AUTHENTICATION (Basic credentials, pre-decoded by the host):
 *   user "bad"   → SF_REQ_ADD_HEADERS_ON_DENIAL (WWW-Authenticate), SetLastError(ERROR_ACCESS_DENIED),
 *                  SF_STATUS_REQ_ERROR: the host answers 401
 *   user "alice" → replaced by "alice-checked" (the extension sees REMOTE_USER=alice-checked)
 * ACCESS_DENIED: adds "X-Denied-Reason: <dwReason>" on denial; for a URL containing "takeover"
 *   writes its own complete 401 response and returns FINISHED.
 */
#include <stdio.h>
#include <string.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "deny_filter");
  ver->dwFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_AUTHENTICATION | SF_NOTIFY_ACCESS_DENIED | SF_NOTIFY_ORDER_HIGH;
  return TRUE;
}

static DWORD answer(PHTTP_FILTER_CONTEXT pfc, DWORD verdict) {
  static const char body[] = "from the filter";
  DWORD n = sizeof body - 1;
  pfc->ServerSupportFunction(pfc, SF_REQ_SEND_RESPONSE_HEADER, (PVOID) "200 OK",
                             (ULONG_PTR) "Content-Type: text/plain\r\nContent-Length: 15\r\n\r\n", 0);
  pfc->WriteClient(pfc, (LPVOID)body, &n, 0);
  return verdict;
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  if (type == SF_NOTIFY_PREPROC_HEADERS) {
    PHTTP_FILTER_PREPROC_HEADERS ph = (PHTTP_FILTER_PREPROC_HEADERS)data;
    char url[1024];
    DWORD n = sizeof url;
    if (!ph->GetHeader(pfc, (LPSTR) "url", url, &n)) return SF_STATUS_REQ_NEXT_NOTIFICATION;
    if (strcmp(url, "/x/finished") == 0) return answer(pfc, SF_STATUS_REQ_FINISHED);
    if (strcmp(url, "/x/finished-keep") == 0) return answer(pfc, SF_STATUS_REQ_FINISHED_KEEP_CONN);
    if (strcmp(url, "/x/filter-error") == 0) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return SF_STATUS_REQ_ERROR;
    }
    if (strcmp(url, "/x/handled") == 0) return SF_STATUS_REQ_HANDLED_NOTIFICATION;
  } else if (type == SF_NOTIFY_AUTHENTICATION) {
    PHTTP_FILTER_AUTHENT au = (PHTTP_FILTER_AUTHENT)data;
    if (strcmp(au->pszUser, "bad") == 0) {
      pfc->ServerSupportFunction(pfc, SF_REQ_ADD_HEADERS_ON_DENIAL,
                                 (PVOID) "WWW-Authenticate: Basic realm=\"test\"\r\n", 0, 0);
      SetLastError(5 /* ERROR_ACCESS_DENIED */);
      return SF_STATUS_REQ_ERROR;
    }
    if (strcmp(au->pszUser, "alice") == 0) snprintf(au->pszUser, au->cbUserBuff, "alice-checked");
  } else if (type == SF_NOTIFY_ACCESS_DENIED) {
    PHTTP_FILTER_ACCESS_DENIED ad = (PHTTP_FILTER_ACCESS_DENIED)data;
    char line[64];
    if (strstr(ad->pszURL, "takeover")) {
      static const char resp[] = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 8\r\nConnection: close\r\n\r\nfiltered";
      DWORD n = sizeof resp - 1;
      pfc->WriteClient(pfc, (LPVOID)resp, &n, 0);
      return SF_STATUS_REQ_FINISHED;
    }
    snprintf(line, sizeof line, "X-Denied-Reason: %lu\r\n", (unsigned long)ad->dwReason);
    pfc->ServerSupportFunction(pfc, SF_REQ_ADD_HEADERS_ON_DENIAL, line, 0, 0);
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
