/* ecb_basics_ext: exercises the ECB contract of an ISAPI host. The URL's last path segment picks
 * the behaviour (the extension may be mapped at any virtual directory):
 *
 *   GET  .../vars?name=X       GetServerVariable(X) buffer protocol, one line per probe:
 *                                null-buffer: FALSE err=122 size=N
 *                                small-buffer: FALSE err=122 size=N   (buffer of N-1 bytes)
 *                                ok: <value>                          (or "ok: FALSE err=E")
 *                                unknown: FALSE err=1413              (a name no host knows)
 *   GET  .../uvars?name=X      GetServerVariable("UNICODE_X"): "size=N" + the value as ASCII
 *   GET  .../info              ECB fields and common server variables, "NAME=value" lines
 *   POST (any URL)             echoes the body (preloaded bytes + ReadClient until 0) back with a
 *                              Content-Length; a "X-Body-Total: <cbTotalBytes>" header
 *   GET  .../pending           returns HSE_STATUS_PENDING; a new thread answers after 50 ms and
 *                              calls HSE_REQ_DONE_WITH_SESSION
 *   GET  .../pending-early     DONE_WITH_SESSION from another thread BEFORE HttpExtensionProc
 *                              returns PENDING (the race a host must survive)
 *   GET  .../async             async WriteClient; the completion callback ends the session
 *   GET  .../error             returns HSE_STATUS_ERROR without sending anything
 *   GET  .../nothing           returns HSE_STATUS_SUCCESS without sending anything
 *   GET  .../raw               WriteClient without headers (writes its own status line)
 *   GET  .../close-delimited   headers without Content-Length, body, end: the host must close
 *   GET  .../chunked           sends "Transfer-Encoding: chunked" and frames the chunks itself
 *   GET  .../redirect          HSE_REQ_SEND_URL_REDIRECT_RESP to /elsewhere
 *   GET  .../log               sets lpszLogData and HSE_APPEND_LOG_PARAMETER, answers "logged"
 *   GET  .../status?code=N     dwHttpStatusCode and the status line are N
 *   GET  .../slow?ms=N         sleeps N ms (default 1000) in HttpExtensionProc, then answers
 *   anything else              "ecb_basics_ext" + the URL
 *
 * TerminateExtension prints "ecb_basics_ext: TerminateExtension(N)" to stderr and returns FALSE
 * for HSE_TERM_ADVISORY_UNLOAD, so a host must follow with HSE_TERM_MUST_UNLOAD.
 *
 *   gcc -shared -fPIC -O2 -I native/include -o /tmp/ecb_basics_ext.so \
 *       native/host/test/ecb_basics_ext.c -lpthread
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isapi.h"

#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#include <process.h>
static void sleep_ms(int ms) { Sleep(ms); }
typedef unsigned(__stdcall* thread_fn)(void*);
static int start_thread(void (*fn)(void*), void* arg) {
  return _beginthreadex(NULL, 0, (thread_fn)fn, arg, 0, NULL) != 0;
}
#else
#define EXPORT __attribute__((visibility("default")))
#include <pthread.h>
#include <time.h>
static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}
static int start_thread(void (*fn)(void*), void* arg) {
  pthread_t t;
  if (pthread_create(&t, NULL, (void* (*)(void*))fn, arg) != 0) return 0;
  pthread_detach(t);
  return 1;
}
#endif

/* ---- a growable text buffer */
typedef struct {
  char* data;
  size_t len, cap;
} Text;

static void text_add(Text* t, const char* p, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + n + 1) cap *= 2;
    t->data = (char*)realloc(t->data, cap);
    t->cap = cap;
  }
  memcpy(t->data + t->len, p, n);
  t->len += n;
  t->data[t->len] = 0;
}

static void text_printf(Text* t, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(Text* t, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  text_add(t, buf, (size_t)n);
}

/* ---- responses */
static BOOL send_response(EXTENSION_CONTROL_BLOCK* ecb, const char* status, const char* type, const char* body,
                          size_t len) {
  char headers[256];
  HSE_SEND_HEADER_EX_INFO info;
  DWORD n = (DWORD)len;
  snprintf(headers, sizeof headers, "Content-Type: %s\r\nContent-Length: %lu\r\n\r\n", type, (unsigned long)len);
  info.pszStatus = status;
  info.cchStatus = (DWORD)strlen(status);
  info.pszHeader = headers;
  info.cchHeader = (DWORD)strlen(headers);
  info.fKeepConn = TRUE;
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL, NULL)) return FALSE;
  return len == 0 || ecb->WriteClient(ecb->ConnID, (LPVOID)body, &n, HSE_IO_SYNC);
}

static DWORD send_text(EXTENSION_CONTROL_BLOCK* ecb, Text* t) {
  BOOL ok = send_response(ecb, "200 OK", "text/plain", t->data ? t->data : "", t->len);
  free(t->data);
  return ok ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
}

/* Value of a query parameter (not decoded). */
static int query_param(const char* query, const char* key, char* out, size_t cap) {
  size_t klen = strlen(key);
  const char* p = query;
  while (p && *p) {
    const char* amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    if (seg > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
      size_t vlen = seg - klen - 1;
      if (vlen >= cap) vlen = cap - 1;
      memcpy(out, p + klen + 1, vlen);
      out[vlen] = 0;
      return 1;
    }
    p = amp ? amp + 1 : NULL;
  }
  return 0;
}

static const char* last_segment(const char* path) {
  const char* s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* ---- GET .../vars?name=X */
static DWORD do_vars(EXTENSION_CONTROL_BLOCK* ecb) {
  char name[256];
  Text t = {0};
  DWORD size = 0, needed;
  BOOL ok;
  char* buf;
  if (!query_param(ecb->lpszQueryString, "name", name, sizeof name)) strcpy(name, "URL");

  ok = ecb->GetServerVariable(ecb->ConnID, name, NULL, &size);
  needed = size;
  text_printf(&t, "null-buffer: %s err=%lu size=%lu\n", ok ? "TRUE" : "FALSE", ok ? 0UL : (unsigned long)GetLastError(),
              (unsigned long)size);
  if (!ok && GetLastError() == ERROR_INSUFFICIENT_BUFFER && needed > 1) {
    char* small = (char*)malloc(needed);
    size = needed - 1;
    ok = ecb->GetServerVariable(ecb->ConnID, name, small, &size);
    text_printf(&t, "small-buffer: %s err=%lu size=%lu\n", ok ? "TRUE" : "FALSE",
                ok ? 0UL : (unsigned long)GetLastError(), (unsigned long)size);
    free(small);
  }
  buf = (char*)malloc(needed + 1);
  size = needed;
  ok = ecb->GetServerVariable(ecb->ConnID, name, buf, &size);
  if (ok) {
    text_add(&t, "ok: ", 4);
    text_add(&t, buf, strlen(buf));
    text_add(&t, "\n", 1);
    text_printf(&t, "ok-size: %lu\n", (unsigned long)size);
  } else {
    text_printf(&t, "ok: FALSE err=%lu\n", (unsigned long)GetLastError());
  }
  free(buf);

  size = 0;
  ok = ecb->GetServerVariable(ecb->ConnID, (LPSTR) "NO_SUCH_VARIABLE_XYZ", NULL, &size);
  text_printf(&t, "unknown: %s err=%lu\n", ok ? "TRUE" : "FALSE", ok ? 0UL : (unsigned long)GetLastError());
  return send_text(ecb, &t);
}

/* ---- GET .../uvars?name=X: UNICODE_X, reported as size + the low bytes of each UTF-16 unit */
static DWORD do_uvars(EXTENSION_CONTROL_BLOCK* ecb) {
  char name[256] = "UNICODE_";
  unsigned char buf[65536];
  DWORD size = sizeof buf, i;
  Text t = {0};
  if (!query_param(ecb->lpszQueryString, "name", name + 8, sizeof name - 8)) strcpy(name + 8, "URL");
  if (!ecb->GetServerVariable(ecb->ConnID, name, buf, &size)) {
    text_printf(&t, "FALSE err=%lu size=%lu\n", (unsigned long)GetLastError(), (unsigned long)size);
    return send_text(ecb, &t);
  }
  text_printf(&t, "size=%lu\n", (unsigned long)size);
  for (i = 0; i + 1 < size; i += 2) {
    unsigned u = buf[i] | (buf[i + 1] << 8);
    if (u == 0) break;
    if (u < 0x80) {
      char c = (char)u;
      text_add(&t, &c, 1);
    } else {
      text_printf(&t, "\\u%04x", u);
    }
  }
  text_add(&t, "\n", 1);
  return send_text(ecb, &t);
}

/* ---- GET .../info */
static DWORD do_info(EXTENSION_CONTROL_BLOCK* ecb) {
  static const char* names[] = {"REQUEST_METHOD",
                                "URL",
                                "QUERY_STRING",
                                "PATH_INFO",
                                "PATH_TRANSLATED",
                                "SCRIPT_NAME",
                                "CONTENT_TYPE",
                                "CONTENT_LENGTH",
                                "REMOTE_ADDR",
                                "REMOTE_HOST",
                                "REMOTE_PORT",
                                "SERVER_NAME",
                                "SERVER_PORT",
                                "SERVER_PORT_SECURE",
                                "SERVER_PROTOCOL",
                                "HTTP_VERSION",
                                "SERVER_SOFTWARE",
                                "HTTPS",
                                "INSTANCE_ID",
                                "INSTANCE_META_PATH",
                                "APPL_MD_PATH",
                                "APPL_PHYSICAL_PATH",
                                "AUTH_TYPE",
                                "REMOTE_USER",
                                "HTTP_HOST",
                                "HTTP_USER_AGENT",
                                "ALL_HTTP",
                                "ALL_RAW",
                                NULL};
  Text t = {0};
  char buf[65536];
  int i;
  text_printf(&t, "ecb.cbSize=%lu\necb.dwVersion=0x%08lx\necb.dwHttpStatusCode=%lu\n", (unsigned long)ecb->cbSize,
              (unsigned long)ecb->dwVersion, (unsigned long)ecb->dwHttpStatusCode);
  text_printf(&t, "ecb.lpszMethod=%s\necb.lpszQueryString=%s\necb.lpszPathInfo=%s\n", ecb->lpszMethod,
              ecb->lpszQueryString, ecb->lpszPathInfo);
  text_printf(&t, "ecb.lpszPathTranslated=%s\necb.lpszContentType=%s\n", ecb->lpszPathTranslated, ecb->lpszContentType);
  text_printf(&t, "ecb.cbTotalBytes=%lu\necb.cbAvailable=%lu\necb.lpszLogData=%s\n", (unsigned long)ecb->cbTotalBytes,
              (unsigned long)ecb->cbAvailable, ecb->lpszLogData);
  for (i = 0; names[i]; i++) {
    DWORD size = sizeof buf;
    if (ecb->GetServerVariable(ecb->ConnID, (LPSTR)names[i], buf, &size)) {
      text_printf(&t, "%s=", names[i]);
      text_add(&t, buf, strlen(buf));
      text_add(&t, "\n", 1);
    } else {
      text_printf(&t, "%s: FALSE err=%lu\n", names[i], (unsigned long)GetLastError());
    }
  }
  return send_text(ecb, &t);
}

/* ---- POST: echo */
static DWORD do_echo(EXTENSION_CONTROL_BLOCK* ecb) {
  Text t = {0};
  char buf[65536];
  char headers[256];
  HSE_SEND_HEADER_EX_INFO info;
  DWORD n;
  if (ecb->cbAvailable) text_add(&t, (const char*)ecb->lpbData, ecb->cbAvailable);
  for (;;) {
    n = sizeof buf;
    if (!ecb->ReadClient(ecb->ConnID, buf, &n)) {
      free(t.data);
      return HSE_STATUS_ERROR;
    }
    if (n == 0) break;
    text_add(&t, buf, n);
  }
  snprintf(headers, sizeof headers,
           "Content-Type: application/octet-stream\r\nX-Body-Total: %lu\r\nX-Preloaded: "
           "%lu\r\nContent-Length: %lu\r\n\r\n",
           (unsigned long)ecb->cbTotalBytes, (unsigned long)ecb->cbAvailable, (unsigned long)t.len);
  info.pszStatus = "200 OK";
  info.cchStatus = 7; /* counts the NUL, as some extensions do */
  info.pszHeader = headers;
  info.cchHeader = (DWORD)strlen(headers);
  info.fKeepConn = TRUE;
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL, NULL)) {
    free(t.data);
    return HSE_STATUS_ERROR;
  }
  n = (DWORD)t.len;
  if (n && !ecb->WriteClient(ecb->ConnID, t.data, &n, HSE_IO_SYNC)) {
    free(t.data);
    return HSE_STATUS_ERROR;
  }
  free(t.data);
  return HSE_STATUS_SUCCESS;
}

/* ---- PENDING + DONE_WITH_SESSION from another thread */
typedef struct {
  EXTENSION_CONTROL_BLOCK* ecb;
  int delay_ms;
} PendingJob;

static void pending_worker(void* arg) {
  PendingJob* job = (PendingJob*)arg;
  EXTENSION_CONTROL_BLOCK* ecb = job->ecb;
  DWORD status = HSE_STATUS_SUCCESS_AND_KEEP_CONN;
  static const char body[] = "pending done\n";
  sleep_ms(job->delay_ms);
  free(job);
  if (!send_response(ecb, "200 OK", "text/plain", body, sizeof body - 1)) status = HSE_STATUS_ERROR;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static DWORD do_pending(EXTENSION_CONTROL_BLOCK* ecb, int delay_ms, int sleep_before_return) {
  PendingJob* job = (PendingJob*)malloc(sizeof *job);
  job->ecb = ecb;
  job->delay_ms = delay_ms;
  if (!start_thread(pending_worker, job)) {
    free(job);
    return HSE_STATUS_ERROR;
  }
  if (sleep_before_return) sleep_ms(sleep_before_return);
  return HSE_STATUS_PENDING;
}

/* ---- async WriteClient */
static void WINAPI async_done(EXTENSION_CONTROL_BLOCK* ecb, PVOID ctx, DWORD cb, DWORD err) {
  DWORD status = err ? HSE_STATUS_ERROR : HSE_STATUS_SUCCESS;
  (void)ctx;
  (void)cb;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static DWORD do_async(EXTENSION_CONTROL_BLOCK* ecb) {
  static const char body[] = "async write\n";
  static char headers[] = "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\n";
  DWORD n = sizeof body - 1;
  DWORD bogus = 1;
  /* Without a registered completion an async write must fail with ERROR_INVALID_PARAMETER. */
  if (ecb->WriteClient(ecb->ConnID, (LPVOID)body, &bogus, HSE_IO_ASYNC) || GetLastError() != ERROR_INVALID_PARAMETER)
    return HSE_STATUS_ERROR;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)async_done, NULL, NULL);
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID) "200 OK", NULL, (LPDWORD)headers);
  if (!ecb->WriteClient(ecb->ConnID, (LPVOID)body, &n, HSE_IO_ASYNC)) return HSE_STATUS_ERROR;
  return HSE_STATUS_PENDING;
}

static DWORD do_simple_header(EXTENSION_CONTROL_BLOCK* ecb, const char* status, const char* headers) {
  return ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID)status, NULL, (LPDWORD)headers)
             ? HSE_STATUS_SUCCESS
             : HSE_STATUS_ERROR;
}

EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* ver) {
  ver->dwExtensionVersion = MAKELONG(0, 8);
  strcpy(ver->lpszExtensionDesc, "ecb_basics_ext: ISAPI host conformance probes");
  return TRUE;
}

EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  const char* what = last_segment(ecb->lpszPathInfo);
  if (strcmp(ecb->lpszMethod, "POST") == 0 || strcmp(ecb->lpszMethod, "PUT") == 0) return do_echo(ecb);
  if (strcmp(what, "vars") == 0) return do_vars(ecb);
  if (strcmp(what, "uvars") == 0) return do_uvars(ecb);
  if (strcmp(what, "info") == 0) return do_info(ecb);
  if (strcmp(what, "pending") == 0) return do_pending(ecb, 50, 0);
  if (strcmp(what, "pending-early") == 0) return do_pending(ecb, 0, 50);
  if (strcmp(what, "async") == 0) return do_async(ecb);
  if (strcmp(what, "error") == 0) return HSE_STATUS_ERROR;
  if (strcmp(what, "slow") == 0) {
    char ms[16];
    static const char body[] = "slow done\n";
    sleep_ms(query_param(ecb->lpszQueryString, "ms", ms, sizeof ms) ? atoi(ms) : 1000);
    return send_response(ecb, "200 OK", "text/plain", body, sizeof body - 1) ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
  }
  if (strcmp(what, "nothing") == 0) return HSE_STATUS_SUCCESS;
  if (strcmp(what, "raw") == 0) {
    static const char raw[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nraw output\n";
    DWORD n = sizeof raw - 1;
    ecb->WriteClient(ecb->ConnID, (LPVOID)raw, &n, HSE_IO_SYNC);
    return HSE_STATUS_SUCCESS;
  }
  if (strcmp(what, "close-delimited") == 0) {
    static const char body[] = "no length, ends at close\n";
    DWORD n = sizeof body - 1;
    if (do_simple_header(ecb, "200 OK", "Content-Type: text/plain\r\n\r\n") != HSE_STATUS_SUCCESS)
      return HSE_STATUS_ERROR;
    ecb->WriteClient(ecb->ConnID, (LPVOID)body, &n, HSE_IO_SYNC);
    return HSE_STATUS_SUCCESS;
  }
  if (strcmp(what, "chunked") == 0) {
    static const char body[] = "5\r\nHello\r\n7\r\n chunks\r\n0\r\n\r\n";
    DWORD n = sizeof body - 1;
    if (do_simple_header(ecb, "200 OK", "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n") !=
        HSE_STATUS_SUCCESS)
      return HSE_STATUS_ERROR;
    ecb->WriteClient(ecb->ConnID, (LPVOID)body, &n, HSE_IO_SYNC);
    return HSE_STATUS_SUCCESS;
  }
  if (strcmp(what, "redirect") == 0) {
    return ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_URL_REDIRECT_RESP, (LPVOID) "/elsewhere", NULL, NULL)
               ? HSE_STATUS_SUCCESS
               : HSE_STATUS_ERROR;
  }
  if (strcmp(what, "log") == 0) {
    static const char body[] = "logged\n";
    strcpy(ecb->lpszLogData, "[logdata]");
    ecb->ServerSupportFunction(ecb->ConnID, HSE_APPEND_LOG_PARAMETER, (LPVOID) "[appended]", NULL, NULL);
    return send_response(ecb, "200 OK", "text/plain", body, sizeof body - 1) ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
  }
  if (strcmp(what, "status") == 0) {
    char code[16] = "418";
    char status[64];
    if (!query_param(ecb->lpszQueryString, "code", code, sizeof code)) strcpy(code, "418");
    ecb->dwHttpStatusCode = (DWORD)atoi(code);
    snprintf(status, sizeof status, "%s Custom", code);
    return send_response(ecb, status, "text/plain", "status\n", 7) ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
  }
  {
    Text t = {0};
    text_printf(&t, "ecb_basics_ext %s\n", ecb->lpszPathInfo);
    return send_text(ecb, &t);
  }
}

/* Logs to stderr so tests can check the unload sequence: ADVISORY (1) is refused, MUST (2) accepted. */
EXPORT BOOL WINAPI TerminateExtension(DWORD flags) {
  fprintf(stderr, "ecb_basics_ext: TerminateExtension(%lu)\n", (unsigned long)flags);
  fflush(stderr);
  return flags == HSE_TERM_MUST_UNLOAD;
}
