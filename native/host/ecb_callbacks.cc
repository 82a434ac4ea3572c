// The four ECB callbacks an extension calls: GetServerVariable, WriteClient, ReadClient and
// ServerSupportFunction, and the plain I/O behind them. Errors are reported the Windows way:
// FALSE + SetLastError. The HSE_REQ_* requests are in ecb_server_support.cc, file sends
// (TransmitFile, VectorSend) in ecb_transmit.cc, child requests (EXEC_URL, SEND_URL) in
// ecb_child_requests.cc.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "filters.h"
#include "http_util.h"
#include "platform/system.h"
#include "request_context.h"
#include "server.h"
#include "server_variables.h"
#include "url_path.h"
#include "vdir_map.h"

namespace isapi_host {

namespace {
RequestContext* Lookup(HCONN h) {
  RequestContext* r = RequestContext::FromHandle(h);
  if (!r) SetLastError(ERROR_INVALID_PARAMETER);
  return r;
}
}  // namespace

BOOL WINAPI EcbGetServerVariable(HCONN h, LPSTR name, LPVOID buffer, LPDWORD size) {
  RequestContext* r = Lookup(h);
  return r ? r->GetServerVariable(name, buffer, size) : FALSE;
}
BOOL WINAPI EcbWriteClient(HCONN h, LPVOID buffer, LPDWORD bytes, DWORD flags) {
  RequestContext* r = Lookup(h);
  return r ? r->WriteClient(buffer, bytes, flags) : FALSE;
}
BOOL WINAPI EcbReadClient(HCONN h, LPVOID buffer, LPDWORD size) {
  RequestContext* r = Lookup(h);
  return r ? r->ReadClient(buffer, size) : FALSE;
}
BOOL WINAPI EcbServerSupportFunction(HCONN h, DWORD request, LPVOID buffer, LPDWORD size, LPDWORD data_type) {
  RequestContext* r = Lookup(h);
  return r ? r->ServerSupportFunction(request, buffer, size, data_type) : FALSE;
}

BOOL RequestContext::GetServerVariable(LPSTR name, LPVOID buffer, LPDWORD size) {
  return CopyServerVariable(Vars(), name, buffer, size);
}

BOOL RequestContext::WriteClient(LPVOID buffer, LPDWORD bytes, DWORD flags) {
  if (!bytes || (!buffer && *bytes)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb;
  void* cb_ctx;
  if (!CompletionFor(flags & HSE_IO_ASYNC, &cb, &cb_ctx)) return FALSE;
  DWORD n = *bytes;
  const char* p = static_cast<const char*>(buffer);
  if (cb) {
    // HSE_IO_ASYNC: as in IIS, the call returns at once and the send happens elsewhere (the
    // buffer stays the extension's until the completion). A client that does not read then
    // holds an I/O thread until the I/O timeout, never the extension's thread.
    AddRef();
    server->io_pool().Post([this, p, n, flags, cb, cb_ctx] {
      bool ok = WriteBody(p, n);
      if (flags & HSE_IO_DISCONNECT_AFTER_SEND) close_requested_ = true;
      cb(&ecb, cb_ctx, ok ? n : 0, ok ? 0 : ERROR_NETNAME_DELETED);
      Release();
    });
    return TRUE;
  }
  bool ok = WriteBody(p, n);
  if (flags & HSE_IO_DISCONNECT_AFTER_SEND) close_requested_ = true;
  if (!ok) {
    *bytes = 0;
    SetLastError(ERROR_NETNAME_DELETED);
    return FALSE;
  }
  return TRUE;
}

bool RequestContext::WriteBody(const char* p, DWORD n) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (taken_over_) return true;  // a filter answered this request: the extension's output is dropped
  if (!headers_sent_) {
    // No SEND_RESPONSE_HEADER: the extension writes its own status line and headers. The host
    // cannot know the framing, so the connection closes after the request.
    if (!raw_output_) {
      raw_output_ = true;
      if (n >= 12 && memcmp(p, "HTTP/", 5) == 0) {
        const char* sp = static_cast<const char*>(memchr(p, ' ', n < 16 ? n : 16));
        if (sp && sp + 4 <= p + n && isdigit(static_cast<unsigned char>(sp[1]))) status_sent_ = atoi(sp + 1);
      }
    }
    return SendLocked(p, n);
  }
  if (head_only_) return !write_failed_;  // HEAD: the body is discarded
  bool ok = SendLocked(p, n);
  if (ok) resp_body_bytes_ += n;
  return ok;
}

BOOL RequestContext::ReadClient(LPVOID buffer, LPDWORD size) {
  if (!size || (!buffer && *size)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::mutex> lock(read_mu_);
  uint32_t err = 0;
  bool framing = false;
  int64_t n = body_.Read(conn, static_cast<char*>(buffer), *size, server->config().io_timeout_ms, &err, &framing);
  if (n < 0) {
    *size = 0;
    close_requested_ = true;  // the request stream is unusable
    SetLastError(err);
    return FALSE;
  }
  *size = static_cast<DWORD>(n);
  return TRUE;
}

BOOL RequestContext::MapUrlToPath(LPVOID buffer, LPDWORD size) {
  if (!buffer || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  // The URL is the NUL-terminated string in the buffer; *size is the buffer's size for the result.
  std::string url(static_cast<char*>(buffer));
  std::string path;
  if (uint32_t e = server->MapUrlToPath(url, UrlForm::kEncoded, &path)) {
    SetLastError(e);
    return FALSE;
  }
  if (filters && filters->Wants(SF_NOTIFY_URL_MAP)) filters->UrlMap(url, &path);
  DWORD needed = static_cast<DWORD>(path.size() + 1);
  if (*size < needed) {
    *size = needed;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(buffer, path.c_str(), needed);
  *size = needed;
  return TRUE;
}

BOOL RequestContext::MapUrlToPathEx(LPVOID buffer, LPDWORD size, LPDWORD data_type) {
  if (!buffer || !data_type) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  HSE_URL_MAPEX_INFO* info = reinterpret_cast<HSE_URL_MAPEX_INFO*>(data_type);
  const Vdir* v = nullptr;
  size_t matched_url = 0, matched_path = 0;
  std::string path;
  if (uint32_t e =
          server->MapUrlToPath(static_cast<char*>(buffer), UrlForm::kEncoded, &path, &v, &matched_url, &matched_path)) {
    SetLastError(e);
    return FALSE;
  }
  if (path.size() + 1 > sizeof info->lpszPath) {
    if (size) *size = static_cast<DWORD>(path.size() + 1);
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(info->lpszPath, path.c_str(), path.size() + 1);
  info->dwFlags = v ? (HSE_URL_FLAGS_READ | HSE_URL_FLAGS_EXECUTE | HSE_URL_FLAGS_SCRIPT) : HSE_URL_FLAGS_READ;
  info->cchMatchingURL = static_cast<DWORD>(matched_url);
  info->cchMatchingPath = static_cast<DWORD>(matched_path);
  info->dwReserved1 = info->dwReserved2 = 0;
  if (size) *size = static_cast<DWORD>(path.size() + 1);
  return TRUE;
}

}  // namespace isapi_host
