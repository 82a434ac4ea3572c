/* raw_filter: raw data in both directions.
 * READ_RAW_DATA: "secret" in request bytes (head or body) becomes "XXXXXX" (in place); a read
 *   that is exactly "PING\r\n" is swallowed (cbInData = 0) with SF_STATUS_REQ_READ_NEXT.
 * SEND_RAW_DATA: for a URL containing "/upper", body chunks (those not starting with "HTTP/") are
 *   replaced by an upper-cased copy in AllocMem memory; for a URL containing "/disable" it calls
 *   SF_REQ_DISABLE_NOTIFICATIONS(SEND_RAW_DATA | READ_RAW_DATA) for the rest of the connection.
 */
#include <ctype.h>
#include <string.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "raw_filter");
  ver->dwFlags = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_SEND_RAW_DATA;
  return TRUE;
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  PHTTP_FILTER_RAW_DATA rd = (PHTTP_FILTER_RAW_DATA)data;
  if (type == SF_NOTIFY_READ_RAW_DATA) {
    char* p = (char*)rd->pvInData;
    DWORD i;
    if (rd->cbInData == 6 && memcmp(p, "PING\r\n", 6) == 0) {
      rd->cbInData = 0;
      return SF_STATUS_REQ_READ_NEXT;
    }
    for (i = 0; i + 6 <= rd->cbInData; i++)
      if (memcmp(p + i, "secret", 6) == 0) memcpy(p + i, "XXXXXX", 6);
  } else if (type == SF_NOTIFY_SEND_RAW_DATA) {
    char url[1024];
    DWORD n = sizeof url;
    if (!pfc->GetServerVariable(pfc, (LPSTR) "URL", url, &n)) return SF_STATUS_REQ_NEXT_NOTIFICATION;
    if (strstr(url, "/disable")) {
      pfc->ServerSupportFunction(pfc, SF_REQ_DISABLE_NOTIFICATIONS, NULL,
                                 SF_NOTIFY_SEND_RAW_DATA | SF_NOTIFY_READ_RAW_DATA, 0);
    } else if (strstr(url, "/upper") && !(rd->cbInData >= 5 && memcmp(rd->pvInData, "HTTP/", 5) == 0)) {
      char* copy = (char*)pfc->AllocMem(pfc, rd->cbInData, 0);
      DWORD i;
      if (!copy) return SF_STATUS_REQ_ERROR;
      for (i = 0; i < rd->cbInData; i++) copy[i] = (char)toupper(((unsigned char*)rd->pvInData)[i]);
      rd->pvInData = copy;
      rd->cbInBuffer = rd->cbInData;
    }
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
