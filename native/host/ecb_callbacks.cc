// The four ECB callbacks an extension calls: GetServerVariable, WriteClient, ReadClient and
// ServerSupportFunction. Errors are reported the Windows way: FALSE + SetLastError.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "http_util.h"
#include "request_context.h"
#include "server.h"
#include "server_variables.h"
#include "vdir_map.h"

namespace isapi_host {

#ifndef HSE_APP_FLAG_IN_PROCESS
#define HSE_APP_FLAG_IN_PROCESS 0
#endif
#ifndef HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER
#define HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER 0
#endif

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
BOOL WINAPI EcbServerSupportFunction(HCONN h, DWORD request, LPVOID buffer, LPDWORD size,
                                     LPDWORD data_type) {
  RequestContext* r = Lookup(h);
  return r ? r->ServerSupportFunction(request, buffer, size, data_type) : FALSE;
}

BOOL RequestContext::GetServerVariable(LPSTR name, LPVOID buffer, LPDWORD size) {
  if (!name || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::string value;
  uint32_t err = 0;
  if (!LookupServerVariable(*this, name, &value, &err)) {
    SetLastError(err);
    return FALSE;
  }
  // value already holds the terminating NUL (one byte, or two for UNICODE_ variables).
  DWORD needed = static_cast<DWORD>(value.size());
  if (!buffer || *size < needed) {
    *size = needed;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(buffer, value.data(), needed);
  *size = needed;
  return TRUE;
}

BOOL RequestContext::WriteClient(LPVOID buffer, LPDWORD bytes, DWORD flags) {
  if (!bytes || (!buffer && *bytes)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb = nullptr;
  void* cb_ctx = nullptr;
  if (flags & HSE_IO_ASYNC) {
    std::lock_guard<std::mutex> lock(state_mu_);
    cb = io_callback_;
    cb_ctx = io_context_;
    if (!cb) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return FALSE;
    }
  }
  DWORD n = *bytes;
  const char* p = static_cast<const char*>(buffer);
  bool ok;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (!headers_sent_) {
      // No SEND_RESPONSE_HEADER: the extension writes its own status line and headers. The host
      // cannot know the framing, so the connection closes after the request.
      if (!raw_output_) {
        raw_output_ = true;
        if (n >= 12 && memcmp(p, "HTTP/", 5) == 0) {
          const char* sp = static_cast<const char*>(memchr(p, ' ', n < 16 ? n : 16));
          if (sp && sp + 4 <= p + n && isdigit(static_cast<unsigned char>(sp[1])))
            status_sent_ = atoi(sp + 1);
        }
      }
      ok = SendLocked(p, n);
    } else if (head_only_) {
      ok = !write_failed_;  // HEAD: the body is discarded
    } else {
      ok = SendLocked(p, n);
      if (ok) resp_body_bytes_ += n;
    }
  }
  if (flags & HSE_IO_DISCONNECT_AFTER_SEND) close_requested_ = true;
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? n : 0, ok ? 0 : ERROR_NETNAME_DELETED);
    return TRUE;
  }
  if (!ok) {
    *bytes = 0;
    SetLastError(ERROR_NETNAME_DELETED);
    return FALSE;
  }
  return TRUE;
}

BOOL RequestContext::ReadClient(LPVOID buffer, LPDWORD size) {
  if (!size || (!buffer && *size)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::mutex> lock(read_mu_);
  uint32_t err = 0;
  bool framing = false;
  int64_t n = body_.Read(conn, static_cast<char*>(buffer), *size, server->config().io_timeout_ms,
                         &err, &framing);
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
  std::string url(static_cast<char*>(buffer), strnlen(static_cast<char*>(buffer), *size));
  std::string path = server->MapUrlToPath(url);
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
  std::string path = server->MapUrlToPath(static_cast<char*>(buffer), &v, &matched_url, &matched_path);
  if (path.size() + 1 > sizeof info->lpszPath) {
    if (size) *size = static_cast<DWORD>(path.size() + 1);
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(info->lpszPath, path.c_str(), path.size() + 1);
  info->dwFlags = v ? (HSE_URL_FLAGS_READ | HSE_URL_FLAGS_EXECUTE | HSE_URL_FLAGS_SCRIPT)
                    : HSE_URL_FLAGS_READ;
  info->cchMatchingURL = static_cast<DWORD>(matched_url);
  info->cchMatchingPath = static_cast<DWORD>(matched_path);
  info->dwReserved1 = info->dwReserved2 = 0;
  if (size) *size = static_cast<DWORD>(path.size() + 1);
  return TRUE;
}

BOOL RequestContext::VectorSend(void* p) {
  HSE_RESPONSE_VECTOR* v = static_cast<HSE_RESPONSE_VECTOR*>(p);
  if (!v || (v->nElementCount && !v->lpElementArray)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb = nullptr;
  void* cb_ctx = nullptr;
  if (v->dwFlags & HSE_IO_ASYNC) {
    std::lock_guard<std::mutex> lock(state_mu_);
    cb = io_callback_;
    cb_ctx = io_context_;
    if (!cb) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return FALSE;
    }
  }
  for (DWORD i = 0; i < v->nElementCount; i++) {
    if (v->lpElementArray[i].ElementType != HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER) {
      SetLastError(ERROR_NOT_SUPPORTED);  // file-handle elements are not supported by this host
      return FALSE;
    }
  }
  bool ok = true;
  DWORD total = 0;
  if (v->dwFlags & HSE_IO_SEND_HEADERS) {
    const char* hdr = v->pszHeaders ? v->pszHeaders : "";
    ok = SendHeaders(v->pszStatus, v->pszStatus ? strlen(v->pszStatus) : 0, hdr, strlen(hdr), false,
                     true) != FALSE;
  }
  for (DWORD i = 0; ok && i < v->nElementCount; i++) {
    DWORD n = static_cast<DWORD>(v->lpElementArray[i].cbSize);
    ok = WriteClient(v->lpElementArray[i].pvContext, &n, HSE_IO_SYNC) != FALSE;
    total += n;
  }
  if (v->dwFlags & (HSE_IO_DISCONNECT_AFTER_SEND)) close_requested_ = true;
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? total : 0, ok ? 0 : ERROR_NETNAME_DELETED);
    return TRUE;
  }
  return ok ? TRUE : FALSE;
}

BOOL RequestContext::ServerSupportFunction(DWORD request, LPVOID buffer, LPDWORD size,
                                           LPDWORD data_type) {
  switch (request) {
    case HSE_REQ_SEND_RESPONSE_HEADER: {
      const char* status = static_cast<const char*>(buffer);
      const char* headers = reinterpret_cast<const char*>(data_type);
      return SendHeaders(status, status ? strlen(status) : 0, headers ? headers : "",
                         headers ? strlen(headers) : 0, false, true);
    }
    case HSE_REQ_SEND_RESPONSE_HEADER_EX: {
      const HSE_SEND_HEADER_EX_INFO* info = static_cast<const HSE_SEND_HEADER_EX_INFO*>(buffer);
      if (!info) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
      }
      // Lengths stop at the first NUL: some extensions count the terminator in cch.
      size_t slen = 0, hlen = 0;
      if (info->pszStatus)
        slen = info->cchStatus ? strnlen(info->pszStatus, info->cchStatus) : strlen(info->pszStatus);
      if (info->pszHeader)
        hlen = info->cchHeader ? strnlen(info->pszHeader, info->cchHeader) : strlen(info->pszHeader);
      return SendHeaders(info->pszStatus, slen, info->pszHeader ? info->pszHeader : "", hlen, true,
                         info->fKeepConn != FALSE);
    }
    case HSE_REQ_DONE_WITH_SESSION:
      return DoneWithSession(buffer);
    case HSE_REQ_IS_KEEP_CONN:
      if (!buffer) break;
      *static_cast<BOOL*>(buffer) =
          head.keep_alive && !close_requested_.load() && !server->stopping() ? TRUE : FALSE;
      return TRUE;
    case HSE_REQ_IS_CONNECTED:
      if (!buffer) break;
      *static_cast<BOOL*>(buffer) = NetPeerConnected(conn->sock) ? TRUE : FALSE;
      return TRUE;
    case HSE_REQ_IO_COMPLETION: {
      std::lock_guard<std::mutex> lock(state_mu_);
      io_callback_ = reinterpret_cast<PFN_HSE_IO_COMPLETION>(buffer);
      io_context_ = data_type;
      return TRUE;
    }
    case HSE_REQ_ASYNC_READ_CLIENT: {
      if (!buffer || !size || !data_type || !(*data_type & HSE_IO_ASYNC)) break;
      PFN_HSE_IO_COMPLETION cb;
      void* cb_ctx;
      {
        std::lock_guard<std::mutex> lock(state_mu_);
        cb = io_callback_;
        cb_ctx = io_context_;
      }
      if (!cb) break;
      char* out = static_cast<char*>(buffer);
      DWORD cap = *size;
      AddRef();
      server->pool().Post([this, out, cap, cb, cb_ctx] {
        DWORD n = cap;
        DWORD err = 0;
        if (!ReadClient(out, &n)) {
          err = GetLastError();
          n = 0;
        }
        cb(&ecb, cb_ctx, n, err);
        Release();
      });
      return TRUE;
    }
    case HSE_APPEND_LOG_PARAMETER: {
      if (!buffer) break;
      std::lock_guard<std::mutex> lock(write_mu_);
      log_param_ += static_cast<const char*>(buffer);
      return TRUE;
    }
    case HSE_REQ_SEND_URL_REDIRECT_RESP:
      return SendRedirect(static_cast<const char*>(buffer)) ? TRUE : FALSE;
    case HSE_REQ_CLOSE_CONNECTION:
    case HSE_REQ_ABORTIVE_CLOSE:
      close_requested_ = true;
      NetShutdownBoth(conn->sock);
      return TRUE;
    case HSE_REQ_IS_IN_PROCESS:
      if (!buffer) break;
      *static_cast<DWORD*>(buffer) = HSE_APP_FLAG_IN_PROCESS;
      return TRUE;
    case HSE_REQ_MAP_URL_TO_PATH:
      return MapUrlToPath(buffer, size);
    case HSE_REQ_MAP_URL_TO_PATH_EX:
      return MapUrlToPathEx(buffer, size, data_type);
    case HSE_REQ_VECTOR_SEND:
      return VectorSend(buffer);
    case HSE_REQ_SET_FLUSH_FLAG:
      return TRUE;  // every write is sent at once
    case HSE_REQ_REPORT_UNHEALTHY:
      fprintf(stderr, "isapi-host: extension reported unhealthy: %s\n",
              buffer ? static_cast<const char*>(buffer) : "(no reason)");
      return TRUE;
    default:
      break;
  }
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

}  // namespace isapi_host
