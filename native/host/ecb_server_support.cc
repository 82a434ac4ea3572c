// ServerSupportFunction: every HSE_REQ_* request the host answers, and SEND_CUSTOM_ERROR.
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

// HSE_REQ_IS_IN_PROCESS answers one of these (Microsoft: an ISAPI in worker process isolation
// mode always gets HSE_APP_FLAG_IN_PROCESS; the OOP values only exist in IIS 5 isolation mode).
#ifndef HSE_APP_FLAG_IN_PROCESS
#define HSE_APP_FLAG_IN_PROCESS 0
#endif
#ifndef HSE_APP_FLAG_ISOLATED_OOP
#define HSE_APP_FLAG_ISOLATED_OOP 1
#endif
#ifndef HSE_APP_FLAG_POOLED_OOP
#define HSE_APP_FLAG_POOLED_OOP 2
#endif

BOOL RequestContext::SendCustomError(const HSE_CUSTOM_ERROR_INFO* info) {
  if (!info || !info->pszStatus) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  int code = atoi(info->pszStatus);
  if (code < 400 || code > 599) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb;
  void* cb_ctx;
  if (!CompletionFor(info->fAsync, &cb, &cb_ctx)) return FALSE;
  // The host's error page for the status (IIS: the site's custom error for status.substatus).
  std::string body = ErrorBody(code);
  std::string hdrs =
      "Content-Type: text/html; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  BOOL ok = SendHeaders(info->pszStatus, strlen(info->pszStatus), hdrs.data(), hdrs.size(), false, true);
  DWORD err = ok ? 0 : GetLastError();
  if (!ok && err == ERROR_INVALID_PARAMETER) return FALSE;  // headers were already sent
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? static_cast<DWORD>(body.size()) : 0, err);
    return TRUE;
  }
  return ok;
}

BOOL RequestContext::ServerSupportFunction(DWORD request, LPVOID buffer, LPDWORD size, LPDWORD data_type) {
  switch (request) {
    case HSE_REQ_SEND_RESPONSE_HEADER: {
      const char* status = static_cast<const char*>(buffer);
      const char* headers = reinterpret_cast<const char*>(data_type);
      return SendHeaders(status, status ? strlen(status) : 0, headers ? headers : "", headers ? strlen(headers) : 0,
                         false, true);
    }
    case HSE_REQ_SEND_RESPONSE_HEADER_EX: {
      const HSE_SEND_HEADER_EX_INFO* info = static_cast<const HSE_SEND_HEADER_EX_INFO*>(buffer);
      if (!info) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
      }
      // By length: some extensions count the terminator in cch (one trailing NUL is dropped);
      // any other NUL is carried to SendHeaders, which refuses it in the header lines and sends
      // it in the body. Never a silent cut at the first NUL.
      size_t slen = 0, hlen = 0;
      if (info->pszStatus) {
        slen = info->cchStatus ? info->cchStatus : strlen(info->pszStatus);
        if (slen && info->pszStatus[slen - 1] == 0) slen--;
      }
      if (info->pszHeader) {
        hlen = info->cchHeader ? info->cchHeader : strlen(info->pszHeader);
        if (hlen && info->pszHeader[hlen - 1] == 0) hlen--;
      }
      return SendHeaders(info->pszStatus, slen, info->pszHeader ? info->pszHeader : "", hlen, true,
                         info->fKeepConn != FALSE);
    }
    case HSE_REQ_DONE_WITH_SESSION: return DoneWithSession(buffer);
    case HSE_REQ_IS_KEEP_CONN:
      if (!buffer) break;
      *static_cast<BOOL*>(buffer) = head.keep_alive && !close_requested_.load() && !server->stopping() ? TRUE : FALSE;
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
      RegisteredCompletion(&cb, &cb_ctx);
      if (!cb) break;
      char* out = static_cast<char*>(buffer);
      DWORD cap = *size;
      AddRef();
      server->io_pool().Post([this, out, cap, cb, cb_ctx] {
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
    case HSE_REQ_SEND_URL_REDIRECT_RESP: return SendRedirect(static_cast<const char*>(buffer)) ? TRUE : FALSE;
    case HSE_REQ_CLOSE_CONNECTION:
      FlushHeld();  // the head the extension sent still goes out before the close
      close_requested_ = true;
      NetShutdownBoth(conn->sock);
      return TRUE;
    case HSE_REQ_ABORTIVE_CLOSE:
      // Reset (RST) instead of FIN: SO_LINGER 0, closed when the request ends.
      FlushHeld();
      close_requested_ = true;
      conn->abort_close = true;
      NetSetAbortiveClose(conn->sock);
      return TRUE;
    case HSE_REQ_TRANSMIT_FILE: return TransmitFile(static_cast<HSE_TF_INFO*>(buffer));
    case HSE_REQ_SEND_URL: {
      if (!buffer || static_cast<const char*>(buffer)[0] != '/') break;
      ExecRequest x;
      x.has_url = true;
      x.url = static_cast<const char*>(buffer);
      DWORD err = RunChild(x);
      if (err) {
        SetLastError(err);
        return FALSE;
      }
      return TRUE;
    }
    case HSE_REQ_EXEC_URL: return ExecUrl(static_cast<const HSE_EXEC_URL_INFO*>(buffer));
    case HSE_REQ_GET_EXEC_URL_STATUS: {
      if (!buffer) break;
      std::lock_guard<std::mutex> lock(child_mu_);
      if (!exec_status_valid_) break;
      *static_cast<HSE_EXEC_URL_STATUS*>(buffer) = exec_status_;
      return TRUE;
    }
    case HSE_REQ_SEND_CUSTOM_ERROR: return SendCustomError(static_cast<const HSE_CUSTOM_ERROR_INFO*>(buffer));
    case HSE_REQ_GET_IMPERSONATION_TOKEN:
      // No Windows token off Windows: TRUE with a NULL token, which means "the server process's
      // own identity" (what RevertToSelf gives). Documented in docs/host-conformance.md.
      if (!buffer) break;
      *static_cast<HANDLE*>(buffer) = nullptr;
      return TRUE;
    case HSE_REQ_NORMALIZE_URL: {
      if (!buffer) break;
      char* url = static_cast<char*>(buffer);
      std::string normalized;
      if (!NormalizeUrl(url, &normalized) || normalized.size() > strlen(url)) break;
      memcpy(url, normalized.c_str(), normalized.size() + 1);
      return TRUE;
    }
    case HSE_REQ_IS_IN_PROCESS:
      if (!buffer) break;
      *static_cast<DWORD*>(buffer) = HSE_APP_FLAG_IN_PROCESS;
      return TRUE;
    case HSE_REQ_MAP_URL_TO_PATH: return MapUrlToPath(buffer, size);
    case HSE_REQ_MAP_URL_TO_PATH_EX: return MapUrlToPathEx(buffer, size, data_type);
    case HSE_REQ_VECTOR_SEND: return VectorSend(buffer);
    case HSE_REQ_SET_FLUSH_FLAG: return TRUE;  // every write is sent at once
    case HSE_REQ_REPORT_UNHEALTHY:
      server->ReportUnhealthy(vdir->library, buffer ? static_cast<const char*>(buffer) : "(no reason)");
      return TRUE;
    default: break;
  }
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

}  // namespace isapi_host
