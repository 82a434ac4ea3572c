/* order_filter: records every notification it sees, with its data, one line per notification,
 * appended to the file named by $ORDER_FILTER_LOG:  "<NAME> <NOTIFICATION> <details>".
 * Subscribes to every notification. Compile-time options:
 *   -DNAME='"A"'                  the name in the log lines and in its response header
 *   -DORDER=SF_NOTIFY_ORDER_HIGH  priority bit (default: none, i.e. LOW)
 *   -DSECURE_ONLY                 only SF_NOTIFY_SECURE_PORT (must then see nothing on this host)
 *   -DFAIL_VERSION                GetFilterVersion returns FALSE
 * In PREPROC_HEADERS it counts the connection's requests in pFilterContext and adds
 * "X-Order-<NAME>: <count>" with AddResponseHeaders; END_OF_NET_SESSION frees the counter.
 *
 *   gcc -shared -fPIC -I native/include -DNAME='"A"' -o /tmp/a.so native/host/test/order_filter.c
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))
#ifndef NAME
#define NAME "F"
#endif
#ifndef ORDER
#define ORDER 0
#endif

static char log_path[1024];

static void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void log_line(const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  int n, fd;
  if (!log_path[0]) return;
  n = snprintf(buf, sizeof buf, "%s ", NAME);
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
    close(fd);
  }
}

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  const char* p = getenv("ORDER_FILTER_LOG");
  if (p) snprintf(log_path, sizeof log_path, "%s", p);
  log_line("GetFilterVersion server=0x%08lx", (unsigned long)ver->dwServerFilterVersion);
#ifdef FAIL_VERSION
  return FALSE;
#endif
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  snprintf(ver->lpszFilterDesc, sizeof ver->lpszFilterDesc, "order_filter %s", NAME);
  ver->dwFlags = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_URL_MAP | SF_NOTIFY_AUTHENTICATION |
                 SF_NOTIFY_AUTH_COMPLETE | SF_NOTIFY_ACCESS_DENIED | SF_NOTIFY_SEND_RESPONSE | SF_NOTIFY_SEND_RAW_DATA |
                 SF_NOTIFY_END_OF_REQUEST | SF_NOTIFY_LOG | SF_NOTIFY_END_OF_NET_SESSION | ORDER;
#ifdef SECURE_ONLY
  ver->dwFlags |= SF_NOTIFY_SECURE_PORT;
#endif
  return TRUE;
}

static void get_header(PHTTP_FILTER_PREPROC_HEADERS ph, PHTTP_FILTER_CONTEXT pfc, const char* name, char* out,
                       DWORD cap) {
  DWORD n = cap;
  if (!ph->GetHeader(pfc, (LPSTR)name, out, &n)) snprintf(out, cap, "(err=%lu)", (unsigned long)GetLastError());
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  char a[1024], b[1024];
  switch (type) {
    case SF_NOTIFY_READ_RAW_DATA: {
      PHTTP_FILTER_RAW_DATA rd = (PHTTP_FILTER_RAW_DATA)data;
      log_line("READ_RAW_DATA n=%lu", (unsigned long)rd->cbInData);
      break;
    }
    case SF_NOTIFY_PREPROC_HEADERS: {
      PHTTP_FILTER_PREPROC_HEADERS ph = (PHTTP_FILTER_PREPROC_HEADERS)data;
      char hdr[128];
      int* count = (int*)pfc->pFilterContext;
      if (!count) {
        count = (int*)calloc(1, sizeof *count);
        pfc->pFilterContext = count;
      }
      ++*count;
      get_header(ph, pfc, "url", a, sizeof a);
      get_header(ph, pfc, "method", b, sizeof b);
      log_line("PREPROC_HEADERS url=%s method=%s", a, b);
      snprintf(hdr, sizeof hdr, "X-Order-%s: %d\r\n", NAME, *count);
      pfc->AddResponseHeaders(pfc, hdr, 0);
      break;
    }
    case SF_NOTIFY_URL_MAP: {
      PHTTP_FILTER_URL_MAP um = (PHTTP_FILTER_URL_MAP)data;
      log_line("URL_MAP url=%s path=%s cb=%lu", um->pszURL, um->pszPhysicalPath, (unsigned long)um->cbPathBuff);
      break;
    }
    case SF_NOTIFY_AUTHENTICATION: {
      PHTTP_FILTER_AUTHENT au = (PHTTP_FILTER_AUTHENT)data;
      log_line("AUTHENTICATION user=%s password=%s cbUser=%lu cbPassword=%lu", au->pszUser, au->pszPassword,
               (unsigned long)au->cbUserBuff, (unsigned long)au->cbPasswordBuff);
      break;
    }
    case SF_NOTIFY_AUTH_COMPLETE: {
      PHTTP_FILTER_AUTH_COMPLETE_INFO ac = (PHTTP_FILTER_AUTH_COMPLETE_INFO)data;
      DWORD n = sizeof a;
      if (!ac->GetHeader(pfc, (LPSTR) "url", a, &n)) strcpy(a, "?");
      n = sizeof b;
      if (!pfc->GetServerVariable(pfc, (LPSTR) "REMOTE_USER", b, &n)) strcpy(b, "?");
      log_line("AUTH_COMPLETE url=%s user=%s", a, b);
      break;
    }
    case SF_NOTIFY_ACCESS_DENIED: {
      PHTTP_FILTER_ACCESS_DENIED ad = (PHTTP_FILTER_ACCESS_DENIED)data;
      log_line("ACCESS_DENIED url=%s reason=0x%lx", ad->pszURL, (unsigned long)ad->dwReason);
      break;
    }
    case SF_NOTIFY_SEND_RESPONSE: {
      PHTTP_FILTER_SEND_RESPONSE sr = (PHTTP_FILTER_SEND_RESPONSE)data;
      log_line("SEND_RESPONSE status=%lu", (unsigned long)sr->HttpStatus);
      break;
    }
    case SF_NOTIFY_SEND_RAW_DATA: {
      PHTTP_FILTER_RAW_DATA rd = (PHTTP_FILTER_RAW_DATA)data;
      log_line("SEND_RAW_DATA n=%lu", (unsigned long)rd->cbInData);
      break;
    }
    case SF_NOTIFY_END_OF_REQUEST: log_line("END_OF_REQUEST"); break;
    case SF_NOTIFY_LOG: {
      PHTTP_FILTER_LOG lg = (PHTTP_FILTER_LOG)data;
      log_line("LOG status=%lu target=%s op=%s", (unsigned long)lg->dwHttpStatus, lg->pszTarget, lg->pszOperation);
      break;
    }
    case SF_NOTIFY_END_OF_NET_SESSION:
      log_line("END_OF_NET_SESSION requests=%d", pfc->pFilterContext ? *(int*)pfc->pFilterContext : 0);
      free(pfc->pFilterContext);
      pfc->pFilterContext = NULL;
      break;
    default: log_line("UNKNOWN 0x%lx", (unsigned long)type);
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}

EXPORT BOOL WINAPI TerminateFilter(DWORD flags) {
  log_line("TerminateFilter flags=%lu", (unsigned long)flags);
  return TRUE;
}
