/* security_ext: what an extension can do to a response or to path mapping, for the host's
 * security suite (test/security/). Portable C: built as a .so on Linux and as a .dll with
 * mingw-w64 for the Windows host under Wine. The last path segment picks the case:
 *
 *   map?u=URL     HSE_REQ_MAP_URL_TO_PATH of the raw (still encoded) URL → "path=P" or "err=N"
 *   mapex?u=URL   HSE_REQ_MAP_URL_TO_PATH_EX → "path=P" or "err=N"
 *   exec?u=URL    HSE_REQ_EXEC_URL (sync): the child answers, or "err=N"
 *   var?n=NAME    GetServerVariable(NAME) → its value, or "err=N"
 *   info          "url=<URL> pathinfo=<PATH_INFO>"
 *   hdr?c=CASE    SEND_RESPONSE_HEADER_EX with crafted header text (see kCases); on FALSE the
 *                 extension reports nothing more (the host has answered, or will close)
 *   redirect-crlf SEND_URL_REDIRECT_RESP to a URL with CR LF → "err=N"
 */
#include <stdio.h>
#include <string.h>

#include "isapi.h"

#ifdef _WIN32
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

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

static DWORD reply_err(EXTENSION_CONTROL_BLOCK* ecb) {
  char out[32];
  snprintf(out, sizeof out, "err=%lu", (unsigned long)GetLastError());
  return reply(ecb, out);
}

/* Header texts given with their exact length (cchHeader), NULs included. */
static const struct {
  const char *name, *status;
  const char* text;
  size_t len;
} kCases[] = {
#define CASE(n, st, t) \
  { n, st, t, sizeof t - 1 }
    CASE("nul-in-header", "200 OK", "X-A: a\0b\r\nContent-Length: 2\r\n\r\nok"),
    CASE("nul-in-body", "200 OK", "Content-Length: 3\r\n\r\na\0b"),
    CASE("nul-terminator-counted", "200 OK", "Content-Length: 2\r\n\r\nok\0"),
    CASE("two-content-lengths", "200 OK", "Content-Length: 2\r\nContent-Length: 20\r\n\r\nok"),
    CASE("same-content-length-twice", "200 OK", "Content-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
    CASE("content-length-and-chunked", "200 OK", "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
    CASE("content-length-19-digits", "200 OK", "Content-Length: 9999999999999999999\r\n\r\nok"),
    CASE("content-length-not-a-number", "200 OK", "Content-Length: 2x\r\n\r\nok"),
    CASE("bare-cr-in-value", "200 OK", "X-A: a\rSet-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok"),
    CASE("space-in-name", "200 OK", "X A: b\r\nContent-Length: 2\r\n\r\nok"),
    CASE("line-without-colon", "200 OK", "Set-Cookie injected\r\nContent-Length: 2\r\n\r\nok"),
    CASE("crlf-in-status", "200 OK\r\nSet-Cookie: injected=1", "Content-Length: 2\r\n\r\nok"),
    CASE("nul-in-status", "200 OK\0X", "Content-Length: 2\r\n\r\nok"),
    CASE("plain", "200 OK", "Content-Length: 2\r\n\r\nok"),
#undef CASE
};

static DWORD do_hdr(EXTENSION_CONTROL_BLOCK* ecb) {
  char c[64];
  size_t i;
  if (!param(ecb->lpszQueryString, "c", c, sizeof c)) return reply(ecb, "no case");
  for (i = 0; i < sizeof kCases / sizeof kCases[0]; i++) {
    if (strcmp(kCases[i].name, c) == 0) {
      HSE_SEND_HEADER_EX_INFO info;
      memset(&info, 0, sizeof info);
      info.pszStatus = kCases[i].status;
      info.cchStatus = (DWORD)strlen(kCases[i].status);
      if (strcmp(c, "nul-in-status") == 0) info.cchStatus = 9;
      info.pszHeader = kCases[i].text;
      info.cchHeader = (DWORD)kCases[i].len;
      info.fKeepConn = TRUE;
      if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL, NULL))
        return HSE_STATUS_SUCCESS;
      return HSE_STATUS_SUCCESS;
    }
  }
  return reply(ecb, "unknown case");
}

EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* ver) {
  ver->dwExtensionVersion = MAKELONG(0, 8);
  strcpy(ver->lpszExtensionDesc, "security_ext");
  return TRUE;
}

EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  char v[1024], out[2048];
  const char* what = strrchr(ecb->lpszPathInfo, '/');
  what = what ? what + 1 : ecb->lpszPathInfo;
  if (!strcmp(what, "map")) {
    char path[2048];
    DWORD size = sizeof path;
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    strcpy(path, v);
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH, path, &size, NULL)) return reply_err(ecb);
    snprintf(out, sizeof out, "path=%s", path);
    return reply(ecb, out);
  }
  if (!strcmp(what, "mapex")) {
    HSE_URL_MAPEX_INFO mi;
    DWORD size = 0;
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_MAP_URL_TO_PATH_EX, v, &size, (LPDWORD)&mi))
      return reply_err(ecb);
    snprintf(out, sizeof out, "path=%s", mi.lpszPath);
    return reply(ecb, out);
  }
  if (!strcmp(what, "exec")) {
    HSE_EXEC_URL_INFO x;
    memset(&x, 0, sizeof x);
    if (!param(ecb->lpszQueryString, "u", v, sizeof v)) strcpy(v, "/");
    x.pszUrl = v;
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_EXEC_URL, &x, NULL, NULL)) return reply_err(ecb);
    return HSE_STATUS_SUCCESS;
  }
  if (!strcmp(what, "var")) {
    char name[128];
    DWORD size = sizeof out;
    if (!param(ecb->lpszQueryString, "n", name, sizeof name)) strcpy(name, "URL");
    if (!ecb->GetServerVariable(ecb->ConnID, name, out, &size)) return reply_err(ecb);
    return reply(ecb, out);
  }
  if (!strcmp(what, "info")) {
    char url[1024];
    DWORD size = sizeof url;
    if (!ecb->GetServerVariable(ecb->ConnID, (LPSTR) "URL", url, &size)) url[0] = 0;
    snprintf(out, sizeof out, "url=%s pathinfo=%s", url, ecb->lpszPathInfo);
    return reply(ecb, out);
  }
  if (!strcmp(what, "hdr")) return do_hdr(ecb);
  if (!strcmp(what, "redirect-crlf")) {
    if (!ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_URL_REDIRECT_RESP,
                                    (LPVOID) "/x\r\nSet-Cookie: injected=1", NULL, NULL))
      return reply_err(ecb);
    return HSE_STATUS_SUCCESS;
  }
  snprintf(out, sizeof out, "security_ext %s", ecb->lpszPathInfo);
  return reply(ecb, out);
}

EXPORT BOOL WINAPI TerminateExtension(DWORD flags) {
  (void)flags;
  return TRUE;
}
