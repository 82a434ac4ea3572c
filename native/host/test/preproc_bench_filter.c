/* preproc_bench_filter: the C side of `npm run bench`'s filter rows. A PREPROC_HEADERS filter
 * that adds one request header (AddHeader("X-Bench-Filter:", "c")) and changes nothing else:
 * the same work as bench/fixtures/preproc-filter.ts, so the two rows compare the cost of the
 * notification itself (in process, against a round trip to a TypeScript worker).
 *
 *   gcc -shared -fPIC -O2 -I native/include -o /tmp/preproc_bench_filter.so native/host/test/preproc_bench_filter.c
 */
#include <string.h>

#include "isapi.h"

#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "preproc_bench_filter");
  ver->dwFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_ORDER_DEFAULT;
  return TRUE;
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  if (type == SF_NOTIFY_PREPROC_HEADERS) {
    PHTTP_FILTER_PREPROC_HEADERS ph = (PHTTP_FILTER_PREPROC_HEADERS)data;
    if (!ph->AddHeader(pfc, (LPSTR) "X-Bench-Filter:", (LPSTR) "c")) return SF_STATUS_REQ_ERROR;
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
