/* rewrite_filter: edits requests and responses.
 * PREPROC_HEADERS (GetHeader/SetHeader/AddHeader):
 *   url /old/<rest>          → SetHeader("url", "/x/<rest>")  (rewritten before vdir mapping)
 *   every request            → AddHeader("X-Added:", "yes"); SetHeader("X-Remove:", "") deletes it
 *   "X-Method:" header       → SetHeader("method", <value>)
 *   url /x/probe             → callback probes, reported as response headers (AddResponseHeaders):
 *       X-Probe-Normalize (SF_REQ_NORMALIZE_URL of "/a/./b/../c%41"), X-Probe-Connid
 *       (SF_REQ_GET_CONNID), X-Probe-Instance (SF_REQ_GET_PROPERTY instance id),
 *       X-Probe-Small (GetHeader("url") into a 2-byte buffer: "err size"),
 *       X-Probe-Missing (GetHeader of an absent header: err), X-Probe-Var (REMOTE_ADDR),
 *       X-Probe-Bad (an unknown SF_REQ code: err)
 * URL_MAP: /x/mapped... → pszPhysicalPath "/mapped/by/filter"; /remap.txt → $REWRITE_TARGET
 * SEND_RESPONSE: adds "X-Send-Response: <HttpStatus>", deletes "X-Preloaded:", and for a 404
 *   changes the status to "404 Gone Fishing" (SetHeader("status", ...)).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isapi.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* ver) {
  ver->dwFilterVersion = HTTP_FILTER_REVISION;
  strcpy(ver->lpszFilterDesc, "rewrite_filter");
  ver->dwFlags = SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_URL_MAP | SF_NOTIFY_SEND_RESPONSE | SF_NOTIFY_NONSECURE_PORT |
                 SF_NOTIFY_ORDER_MEDIUM;
  return TRUE;
}

static void add_probe(PHTTP_FILTER_CONTEXT pfc, const char* name, const char* value) {
  char line[512];
  snprintf(line, sizeof line, "X-Probe-%s: %s\r\n", name, value);
  pfc->AddResponseHeaders(pfc, line, 0);
}

static void probes(PHTTP_FILTER_CONTEXT pfc, PHTTP_FILTER_PREPROC_HEADERS ph) {
  char buf[256], v[256];
  DWORD n, id = 0;
  strcpy(buf, "/a/./b/../c%41");
  if (pfc->ServerSupportFunction(pfc, SF_REQ_NORMALIZE_URL, buf, 0, 0)) add_probe(pfc, "Normalize", buf);
  else add_probe(pfc, "Normalize", "FALSE");
  if (pfc->ServerSupportFunction(pfc, SF_REQ_GET_CONNID, &id, 0, 0)) {
    snprintf(v, sizeof v, "%lu", (unsigned long)id);
    add_probe(pfc, "Connid", v);
  }
  id = 0;
  if (pfc->ServerSupportFunction(pfc, SF_REQ_GET_PROPERTY, &id, 1 /* SF_PROPERTY_INSTANCE_NUM_ID */, 0)) {
    snprintf(v, sizeof v, "%lu", (unsigned long)id);
    add_probe(pfc, "Instance", v);
  }
  n = 2;
  if (!ph->GetHeader(pfc, (LPSTR) "url", buf, &n)) {
    snprintf(v, sizeof v, "%lu %lu", (unsigned long)GetLastError(), (unsigned long)n);
    add_probe(pfc, "Small", v);
  }
  n = sizeof buf;
  if (!ph->GetHeader(pfc, (LPSTR) "X-Not-There:", buf, &n)) {
    snprintf(v, sizeof v, "%lu", (unsigned long)GetLastError());
    add_probe(pfc, "Missing", v);
  }
  n = sizeof buf;
  if (pfc->GetServerVariable(pfc, (LPSTR) "REMOTE_ADDR", buf, &n)) add_probe(pfc, "Var", buf);
  /* Calls whose effect is not visible on the wire: their return codes are the contract. */
  snprintf(v, sizeof v, "%d", pfc->ServerSupportFunction(pfc, SF_REQ_SET_PROXY_INFO, NULL, 1, 0) ? 1 : 0);
  add_probe(pfc, "Proxy", v);
  snprintf(v, sizeof v, "%d", pfc->ServerSupportFunction(pfc, SF_REQ_SET_NEXT_READ_SIZE, NULL, 4096, 0) ? 1 : 0);
  add_probe(pfc, "Next-Read", v);
  if (!pfc->ServerSupportFunction(pfc, SF_REQ_SET_CERTIFICATE_INFO, NULL, 0, 0)) {
    snprintf(v, sizeof v, "%lu", (unsigned long)GetLastError());
    add_probe(pfc, "Cert", v);
  }
  if (!pfc->ServerSupportFunction(pfc, 999, NULL, 0, 0)) {
    snprintf(v, sizeof v, "%lu", (unsigned long)GetLastError());
    add_probe(pfc, "Bad", v);
  }
}

EXPORT DWORD WINAPI HttpFilterProc(PHTTP_FILTER_CONTEXT pfc, DWORD type, LPVOID data) {
  if (type == SF_NOTIFY_PREPROC_HEADERS) {
    PHTTP_FILTER_PREPROC_HEADERS ph = (PHTTP_FILTER_PREPROC_HEADERS)data;
    char url[1024], method[64];
    DWORD n = sizeof url;
    if (!ph->GetHeader(pfc, (LPSTR) "url", url, &n)) return SF_STATUS_REQ_ERROR;
    if (strncmp(url, "/old/", 5) == 0) {
      char to[1100];
      snprintf(to, sizeof to, "/x/%s", url + 5);
      if (!ph->SetHeader(pfc, (LPSTR) "url", to)) return SF_STATUS_REQ_ERROR;
    }
    ph->AddHeader(pfc, (LPSTR) "X-Added:", (LPSTR) "yes");
    ph->SetHeader(pfc, (LPSTR) "X-Remove:", (LPSTR) "");
    n = sizeof method;
    if (ph->GetHeader(pfc, (LPSTR) "X-Method:", method, &n)) ph->SetHeader(pfc, (LPSTR) "method", method);
    if (strcmp(url, "/x/probe") == 0) probes(pfc, ph);
  } else if (type == SF_NOTIFY_URL_MAP) {
    PHTTP_FILTER_URL_MAP um = (PHTTP_FILTER_URL_MAP)data;
    const char* target = getenv("REWRITE_TARGET");
    if (strncmp(um->pszURL, "/x/mapped", 9) == 0) {
      snprintf(um->pszPhysicalPath, um->cbPathBuff, "/mapped/by/filter");
    } else if (strcmp(um->pszURL, "/remap.txt") == 0 && target) {
      snprintf(um->pszPhysicalPath, um->cbPathBuff, "%s", target);
    }
  } else if (type == SF_NOTIFY_SEND_RESPONSE) {
    PHTTP_FILTER_SEND_RESPONSE sr = (PHTTP_FILTER_SEND_RESPONSE)data;
    char v[32];
    snprintf(v, sizeof v, "%lu", (unsigned long)sr->HttpStatus);
    sr->AddHeader(pfc, (LPSTR) "X-Send-Response:", v);
    sr->SetHeader(pfc, (LPSTR) "X-Preloaded:", (LPSTR) "");
    if (sr->HttpStatus == 404) sr->SetHeader(pfc, (LPSTR) "status", (LPSTR) "404 Gone Fishing");
  }
  return SF_STATUS_REQ_NEXT_NOTIFICATION;
}
