/* ssf_ext: ServerSupportFunction probes (issue 3). The URL's last path segment picks the probe;
 * query parameters are not decoded. $SSF_FILE names the file TRANSMIT_FILE / VECTOR_SEND send.
 *
 *   transmit?mode=sync|async&offset=N&len=N&sendheaders=1&disconnect=1
 *              HSE_REQ_TRANSMIT_FILE with head "HEAD[" and tail "]TAIL"; without sendheaders the
 *              extension sends its own header (Content-Length = head + len + tail) first; with it,
 *              HSE_IO_SEND_HEADERS + pszStatusCode "200 OK" + pHead = the header lines.
 *              async: the completion records "cbIO=N err=E" (see .../last) and ends the session.
 *   last       what the last completion / probe recorded
 *   sendurl?to=/path          HSE_REQ_SEND_URL
 *   exec?url=/path&ignore=1&async=1&method=M
 *              HSE_REQ_EXEC_URL with child header "X-Child: yes"; then GET_EXEC_URL_STATUS,
 *              recorded as "exec status=S sub=U win32=E" (see .../last)
 *   custom?code=N&async=1     HSE_REQ_SEND_CUSTOM_ERROR "N Custom"
 *   vector     HSE_REQ_VECTOR_SEND: status + headers, elements "<" , file bytes [2,5), ">"
 *   flush      HSE_REQ_SET_FLUSH_FLAG → "flush=1"
 *   unhealthy?reason=R        HSE_REQ_REPORT_UNHEALTHY
 *   token      HSE_REQ_GET_IMPERSONATION_TOKEN → "ok=B err=E token=null|set"
 *   normalize?u=URL           HSE_REQ_NORMALIZE_URL → the result or "FALSE err"
 *   inproc     HSE_REQ_IS_IN_PROCESS → "flag=N"
 *   connected  HSE_REQ_IS_CONNECTED → "connected=B"
 *   asyncread  (POST) ASYNC_READ_CLIENT without a callback (→ err), then with one until 0 bytes;
 *              answers "noncb=FALSE/87 total=N body=<bytes>"
 *   close      answers "closing" (with Content-Length) then HSE_REQ_CLOSE_CONNECTION
 *   abort      sends a header promising 100 bytes, 5 of them, then HSE_REQ_ABORTIVE_CLOSE
 *   mapex?u=URL               HSE_REQ_MAP_URL_TO_PATH_EX → "path= flags= cchPath= cchURL="
 *   unsupported               an unsupported code (1040) → "FALSE err=87"
 *   unsupported-all           every code this host does not support → "code:FALSE/87 ..." lines
 *   map?u=URL                 HSE_REQ_MAP_URL_TO_PATH: a 4-byte buffer first ("small=err/size"),
 *                             then a big one ("path=...")
 *   keepconn                  HSE_REQ_IS_KEEP_CONN → "keep=B"
 *   anything else             "ssf_ext <URL>" + the X-Child header if present
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))
#ifndef HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER
#define HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER 0
#define HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE 1
#endif

static char last[512];
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;

static void set_last(const char* s) {
  pthread_mutex_lock(&last_mu);
  snprintf(last, sizeof last, "%s", s);
  pthread_mutex_unlock(&last_mu);
}

static int param(const char* q, const char* key, char* out, size_t cap) {
  size_t k = strlen(key);
  const char* p = q;
  while (p && *p) {
    const char* amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    if (seg > k && strncmp(p, key, k) == 0 && p[k] == '=') {
      size_t n = seg - k - 1;
      if (n >= cap) n = cap - 1;
      memcpy(out, p + k + 1, n);
      out[n] = 0;
      return 1;
    }
    p = amp ? amp + 1 : NULL;
  }
  return 0;
}

static DWORD reply(EXTENSION_CONTROL_BLOCK* ecb, const char* text) {
  char headers[128];
  DWORD n = (DWORD)strlen(text);
  snprintf(headers, sizeof headers, "Content-Type: text/plain\r\nContent-Length: %lu\r\n\r\n", (unsigned long)n);
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID) "200 OK", NULL, (LPDWORD)headers))
    return HSE_STATUS_ERROR;
  ecb->WriteClient(ecb->ConnID, (LPVOID)text, &n, HSE_IO_SYNC);
  return HSE_STATUS_SUCCESS;
}

static void WINAPI done_cb(EXTENSION_CONTROL_BLOCK* ecb, PVOID ctx, DWORD cb, DWORD err) {
  char s[128];
  DWORD status = HSE_STATUS_SUCCESS;
  if (ctx) close((int)(intptr_t)ctx - 1);
  snprintf(s, sizeof s, "cbIO=%lu err=%lu", (unsigned long)cb, (unsigned long)err);
  set_last(s);
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static DWORD do_transmit(EXTENSION_CONTROL_BLOCK* ecb) {
  char v[64], headers[256];
  const char* file = getenv("SSF_FILE");
  HSE_TF_INFO tf;
  int fd, async, sendheaders;
  long size, offset = 0, len = 0;
  if (!file || (fd = open(file, O_RDONLY)) < 0) return HSE_STATUS_ERROR;
  size = lseek(fd, 0, SEEK_END);
  if (param(ecb->lpszQueryString, "offset", v, sizeof v)) offset = atol(v);
  if (param(ecb->lpszQueryString, "len", v, sizeof v)) len = atol(v);
  async = param(ecb->lpszQueryString, "mode", v, sizeof v) && strcmp(v, "async") == 0;
  sendheaders = param(ecb->lpszQueryString, "sendheaders", v, sizeof v);
  memset(&tf, 0, sizeof tf);
  tf.hFile = (HANDLE)(intptr_t)fd;
  tf.Offset = (DWORD)offset;
  tf.BytesToWrite = (DWORD)len;
  tf.dwFlags = async ? HSE_IO_ASYNC : HSE_IO_SYNC;
  if (param(ecb->lpszQueryString, "disconnect", v, sizeof v)) tf.dwFlags |= HSE_IO_DISCONNECT_AFTER_SEND;
  if (async) {
    tf.pfnHseIO = done_cb;
    tf.pContext = (PVOID)(intptr_t)(fd + 1);
  }
  snprintf(headers, sizeof headers, "Content-Type: text/plain\r\nContent-Length: %ld\r\n\r\n",
           (len ? len : size - offset) + (sendheaders ? 0 : 10));
  if (sendheaders) {
    tf.dwFlags |= HSE_IO_SEND_HEADERS;
    tf.pszStatusCode = "200 OK";
    tf.pHead = headers;
    tf.HeadLength = (DWORD)strlen(headers);
  } else {
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID) "200 OK", NULL,
                                    (LPDWORD)headers))
      return HSE_STATUS_ERROR;
    tf.pHead = (PVOID) "HEAD[";
    tf.HeadLength = 5;
    tf.pTail = (PVOID) "]TAIL";
    tf.TailLength = 5;
  }
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_TRANSMIT_FILE, &tf, NULL, NULL)) {
    close(fd);
    return HSE_STATUS_ERROR;
  }
  if (async) return HSE_STATUS_PENDING;
  close(fd);
  return HSE_STATUS_SUCCESS;
}

static void record_exec_status(EXTENSION_CONTROL_BLOCK* ecb) {
  HSE_EXEC_URL_STATUS st;
  char s[128];
  memset(&st, 0, sizeof st);
  if (ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_EXEC_URL_STATUS, &st, NULL, NULL))
    snprintf(s, sizeof s, "exec status=%u sub=%u win32=%lu", st.uHttpStatusCode, st.uHttpSubStatus,
             (unsigned long)st.dwWin32Error);
  else snprintf(s, sizeof s, "exec status FALSE err=%lu", (unsigned long)GetLastError());
  set_last(s);
}

static void WINAPI exec_done(EXTENSION_CONTROL_BLOCK* ecb, PVOID ctx, DWORD cb, DWORD err) {
  DWORD status = HSE_STATUS_SUCCESS;
  (void)ctx;
  (void)cb;
  (void)err;
  record_exec_status(ecb);
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static DWORD do_exec(EXTENSION_CONTROL_BLOCK* ecb) {
  static char url[512], method[32];
  HSE_EXEC_URL_INFO info;
  char v[16];
  memset(&info, 0, sizeof info);
  if (param(ecb->lpszQueryString, "url", url, sizeof url)) info.pszUrl = url;
  if (param(ecb->lpszQueryString, "method", method, sizeof method)) info.pszMethod = method;
  info.pszChildHeaders = "X-Child: yes\r\n";
  if (param(ecb->lpszQueryString, "ignore", v, sizeof v))
    info.dwExecUrlFlags |= HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR;
  if (param(ecb->lpszQueryString, "async", v, sizeof v)) {
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)exec_done, NULL, NULL);
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_EXEC_URL, &info, NULL, NULL)) return HSE_STATUS_ERROR;
    return HSE_STATUS_PENDING;
  }
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_EXEC_URL, &info, NULL, NULL)) return HSE_STATUS_ERROR;
  record_exec_status(ecb);
  return HSE_STATUS_SUCCESS;
}

static void WINAPI custom_done(EXTENSION_CONTROL_BLOCK* ecb, PVOID ctx, DWORD cb, DWORD err) {
  DWORD status = HSE_STATUS_SUCCESS;
  char s[64];
  (void)ctx;
  snprintf(s, sizeof s, "custom cbIO=%lu err=%lu", (unsigned long)cb, (unsigned long)err);
  set_last(s);
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static char read_buf[65536];
static DWORD read_total;
static void WINAPI read_done(EXTENSION_CONTROL_BLOCK* ecb, PVOID ctx, DWORD cb, DWORD err) {
  DWORD status = HSE_STATUS_SUCCESS;
  char* noncb = (char*)ctx;
  if (!err && cb > 0) {
    DWORD size = sizeof read_buf - read_total, type = HSE_IO_ASYNC;
    read_total += cb;
    if (ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_ASYNC_READ_CLIENT, read_buf + read_total, &size, &type)) return;
  }
  {
    char text[70000];
    snprintf(text, sizeof text, "%s total=%lu body=%.*s", noncb, (unsigned long)read_total, (int)read_total, read_buf);
    if (reply(ecb, text) != HSE_STATUS_SUCCESS) status = HSE_STATUS_ERROR;
  }
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, NULL, NULL);
}

static DWORD do_asyncread(EXTENSION_CONTROL_BLOCK* ecb) {
  static char noncb[64];
  DWORD size = sizeof read_buf, type = HSE_IO_ASYNC;
  BOOL ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_ASYNC_READ_CLIENT, read_buf, &size, &type);
  snprintf(noncb, sizeof noncb, "noncb=%s/%lu", ok ? "TRUE" : "FALSE", ok ? 0UL : (unsigned long)GetLastError());
  memcpy(read_buf, ecb->lpbData, ecb->cbAvailable);
  read_total = ecb->cbAvailable;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)read_done, NULL, (LPDWORD)noncb);
  size = sizeof read_buf - read_total;
  if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_ASYNC_READ_CLIENT, read_buf + read_total, &size, &type))
    return HSE_STATUS_ERROR;
  return HSE_STATUS_PENDING;
}

EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* ver) {
  ver->dwExtensionVersion = MAKELONG(0, 8);
  strcpy(ver->lpszExtensionDesc, "ssf_ext: ServerSupportFunction probes");
  return TRUE;
}

EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  const char* what = strrchr(ecb->lpszPathInfo, '/');
  char v[512], out[1024];
  what = what ? what + 1 : ecb->lpszPathInfo;
  if (!strcmp(what, "transmit")) return do_transmit(ecb);
  if (!strcmp(what, "last")) {
    pthread_mutex_lock(&last_mu);
    snprintf(out, sizeof out, "%s", last);
    pthread_mutex_unlock(&last_mu);
    return reply(ecb, out);
  }
  if (!strcmp(what, "sendurl")) {
    if (!param(ecb->lpszQueryString, "to", v, sizeof v)) strcpy(v, "/");
    return ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_URL, v, NULL, NULL) ? HSE_STATUS_SUCCESS
                                                                                    : HSE_STATUS_ERROR;
  }
  if (!strcmp(what, "exec")) return do_exec(ecb);
  if (!strcmp(what, "custom")) {
    HSE_CUSTOM_ERROR_INFO ce;
    char status[32];
    if (!param(ecb->lpszQueryString, "code", v, 16)) strcpy(v, "500");
    snprintf(status, sizeof status, "%s Custom", v);
    ce.pszStatus = status;
    ce.uHttpSubError = 0;
    ce.fAsync = param(ecb->lpszQueryString, "async", v, sizeof v);
    if (ce.fAsync) ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IO_COMPLETION, (LPVOID)custom_done, NULL, NULL);
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_CUSTOM_ERROR, &ce, NULL, NULL)) return HSE_STATUS_ERROR;
    return ce.fAsync ? HSE_STATUS_PENDING : HSE_STATUS_SUCCESS;
  }
  if (!strcmp(what, "vector")) {
    const char* file = getenv("SSF_FILE");
    int fd = file ? open(file, O_RDONLY) : -1;
    HSE_VECTOR_ELEMENT el[3];
    HSE_RESPONSE_VECTOR rv;
    BOOL ok;
    if (fd < 0) return HSE_STATUS_ERROR;
    memset(el, 0, sizeof el);
    el[0].ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
    el[0].pvContext = (PVOID) "<";
    el[0].cbSize = 1;
    el[1].ElementType = HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE;
    el[1].pvContext = (PVOID)(intptr_t)fd;
    el[1].cbOffset = 2;
    el[1].cbSize = 3;
    el[2].ElementType = HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER;
    el[2].pvContext = (PVOID) ">";
    el[2].cbSize = 1;
    rv.dwFlags = HSE_IO_SYNC | HSE_IO_SEND_HEADERS | HSE_IO_FINAL_SEND;
    rv.pszStatus = "201 Vectored";
    rv.pszHeaders = "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
    rv.nElementCount = 3;
    rv.lpElementArray = el;
    ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_VECTOR_SEND, &rv, NULL, NULL);
    close(fd);
    return ok ? HSE_STATUS_SUCCESS : HSE_STATUS_ERROR;
  }
  if (!strcmp(what, "flush")) {
    BOOL ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SET_FLUSH_FLAG, (LPVOID)(intptr_t)TRUE, NULL, NULL);
    return reply(ecb, ok ? "flush=1" : "flush=0");
  }
  if (!strcmp(what, "unhealthy")) {
    if (!param(ecb->lpszQueryString, "reason", v, sizeof v)) strcpy(v, "unspecified");
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_REPORT_UNHEALTHY, v, NULL, NULL);
    return reply(ecb, "reported");
  }
  if (!strcmp(what, "token")) {
    HANDLE token = (HANDLE)1;
    BOOL ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_IMPERSONATION_TOKEN, &token, NULL, NULL);
    snprintf(out, sizeof out, "ok=%d err=%lu token=%s", ok, ok ? 0UL : (unsigned long)GetLastError(),
             token ? "set" : "null");
    return reply(ecb, out);
  }
  if (!strcmp(what, "normalize")) {
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    if (ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_NORMALIZE_URL, v, NULL, NULL)) return reply(ecb, v);
    snprintf(out, sizeof out, "FALSE %lu", (unsigned long)GetLastError());
    return reply(ecb, out);
  }
  if (!strcmp(what, "inproc")) {
    DWORD flag = 99;
    BOOL ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IS_IN_PROCESS, &flag, NULL, NULL);
    snprintf(out, sizeof out, "ok=%d flag=%lu", ok, (unsigned long)flag);
    return reply(ecb, out);
  }
  if (!strcmp(what, "connected")) {
    BOOL c = 7;
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IS_CONNECTED, &c, NULL, NULL);
    snprintf(out, sizeof out, "connected=%d", c);
    return reply(ecb, out);
  }
  if (!strcmp(what, "asyncread")) return do_asyncread(ecb);
  if (!strcmp(what, "close")) {
    DWORD st = reply(ecb, "closing");
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_CLOSE_CONNECTION, NULL, NULL, NULL);
    return st;
  }
  if (!strcmp(what, "abort")) {
    DWORD n = 5;
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER, (LPVOID) "200 OK", NULL,
                               (LPDWORD) "Content-Length: 100\r\n\r\n");
    ecb->WriteClient(ecb->ConnID, (LPVOID) "12345", &n, HSE_IO_SYNC);
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_ABORTIVE_CLOSE, NULL, NULL, NULL);
    return HSE_STATUS_SUCCESS;
  }
  if (!strcmp(what, "mapex")) {
    HSE_URL_MAPEX_INFO mi;
    DWORD size = 0;
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH_EX, v, &size, (LPDWORD)&mi))
      return HSE_STATUS_ERROR;
    snprintf(out, sizeof out, "path=%s flags=0x%lx cchPath=%lu cchURL=%lu size=%lu", mi.lpszPath,
             (unsigned long)mi.dwFlags, (unsigned long)mi.cchMatchingPath, (unsigned long)mi.cchMatchingURL,
             (unsigned long)size);
    return reply(ecb, out);
  }
  if (!strcmp(what, "unsupported-all")) {
    static const DWORD codes[] = {1002, 1007, 1015, 1023, 1024, 1025, 1038, 1040, 1041,
                                  1042, 1044, 1045, 1046, 1047, 1049, 1050, 9999};
    size_t i, o = 0;
    char buf[4096];
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
      DWORD size = sizeof buf, type = 0;
      BOOL ok;
      SetLastError(0);
      ok = ecb->ServerSupportFunction(ecb->ConnID, codes[i], buf, &size, &type);
      o += (size_t)snprintf(out + o, sizeof out - o, "%lu:%s/%lu\n", (unsigned long)codes[i], ok ? "TRUE" : "FALSE",
                            (unsigned long)GetLastError());
    }
    return reply(ecb, out);
  }
  if (!strcmp(what, "map")) {
    char path[1024];
    DWORD size = 4;
    BOOL ok;
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    strcpy(path, v);
    ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH, path, &size, NULL);
    snprintf(out, sizeof out, "small=%s/%lu/%lu ", ok ? "TRUE" : "FALSE", ok ? 0UL : (unsigned long)GetLastError(),
             (unsigned long)size);
    strcpy(path, v);
    size = sizeof path;
    if (ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH, path, &size, NULL))
      snprintf(out + strlen(out), sizeof out - strlen(out), "path=%s size=%lu", path, (unsigned long)size);
    return reply(ecb, out);
  }
  if (!strcmp(what, "keepconn")) {
    BOOL k = 7;
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_IS_KEEP_CONN, &k, NULL, NULL);
    snprintf(out, sizeof out, "keep=%d", k);
    return reply(ecb, out);
  }
  if (!strcmp(what, "unsupported")) {
    BOOL ok = ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_GET_CACHE_INVALIDATION_CALLBACK, v, NULL, NULL);
    snprintf(out, sizeof out, "%s err=%lu", ok ? "TRUE" : "FALSE", (unsigned long)GetLastError());
    return reply(ecb, out);
  }
  {
    DWORD n = sizeof v;
    if (!ecb->GetServerVariable(ecb->ConnID, (LPSTR) "HTTP_X_CHILD", v, &n)) strcpy(v, "-");
    snprintf(out, sizeof out, "ssf_ext %s %s child=%s", ecb->lpszMethod, ecb->lpszPathInfo, v);
    return reply(ecb, out);
  }
}
