// The four ECB callbacks an extension calls: GetServerVariable, WriteClient, ReadClient and
// ServerSupportFunction. Errors are reported the Windows way: FALSE + SetLastError.
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
#ifndef HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER
#define HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER 0
#endif
#ifndef HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE
#define HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE 1
#endif

constexpr int kMaxChildDepth = 8;  // EXEC_URL / SEND_URL nesting

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
        if (sp && sp + 4 <= p + n && isdigit(static_cast<unsigned char>(sp[1])))
          status_sent_ = atoi(sp + 1);
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
  if (uint32_t e = server->MapUrlToPath(static_cast<char*>(buffer), UrlForm::kEncoded, &path, &v,
                                        &matched_url, &matched_path)) {
    SetLastError(e);
    return FALSE;
  }
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
  PFN_HSE_IO_COMPLETION cb;
  void* cb_ctx;
  if (!CompletionFor(v->dwFlags & HSE_IO_ASYNC, &cb, &cb_ctx)) return FALSE;
  for (DWORD i = 0; i < v->nElementCount; i++) {
    DWORD t = v->lpElementArray[i].ElementType;
    if (t != HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER && t != HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE) {
      SetLastError(ERROR_INVALID_PARAMETER);
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
    const HSE_VECTOR_ELEMENT& el = v->lpElementArray[i];
    if (el.ElementType == HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE) {
      DWORD err = 0;
      ok = SendFileRange(el.pvContext, el.cbOffset, el.cbSize, &total, &err);
      continue;
    }
    DWORD n = static_cast<DWORD>(el.cbSize);
    ok = WriteClient(el.pvContext, &n, HSE_IO_SYNC) != FALSE;
    total += n;
  }
  if (v->dwFlags & (HSE_IO_DISCONNECT_AFTER_SEND)) close_requested_ = true;
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? total : 0, ok ? 0 : ERROR_NETNAME_DELETED);
    return TRUE;
  }
  return ok ? TRUE : FALSE;
}

bool RequestContext::SendFileRange(void* handle, uint64_t offset, uint64_t length, DWORD* total,
                                   DWORD* err) {
  if (!handle || handle == reinterpret_cast<void*>(static_cast<intptr_t>(-1))) {
    *err = ERROR_INVALID_PARAMETER;
    return false;
  }
  std::vector<char> buf(65536);
  while (length > 0) {
    size_t want = length < buf.size() ? static_cast<size_t>(length) : buf.size();
    int64_t n = FileReadAt(handle, buf.data(), want, offset);
    if (n < 0) {
      *err = ERROR_READ_FAULT;
      return false;
    }
    if (n == 0) break;  // end of file
    DWORD w = static_cast<DWORD>(n);
    if (!WriteClient(buf.data(), &w, HSE_IO_SYNC)) {
      *err = GetLastError();
      return false;
    }
    *total += w;
    offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  return true;
}

BOOL RequestContext::TransmitFile(HSE_TF_INFO* tf) {
  if (!tf) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  // Copy everything: with HSE_IO_ASYNC the extension's structure may be gone when the job runs.
  HSE_TF_INFO t = *tf;
  std::string status = t.pszStatusCode ? t.pszStatusCode : "";
  std::string head_bytes = t.pHead && t.HeadLength ? std::string(static_cast<char*>(t.pHead), t.HeadLength)
                                                   : std::string();
  if (t.pHead && !t.HeadLength && (t.dwFlags & HSE_IO_SEND_HEADERS))
    head_bytes = static_cast<char*>(t.pHead);  // headers given as a string without a length
  std::string tail = t.pTail && t.TailLength ? std::string(static_cast<char*>(t.pTail), t.TailLength)
                                             : std::string();
  PFN_HSE_IO_COMPLETION cb = t.pfnHseIO;
  void* cb_ctx = t.pContext;
  if (!cb) RegisteredCompletion(&cb, &cb_ctx);
  bool async = (t.dwFlags & HSE_IO_ASYNC) != 0;
  if (async && !cb) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!t.hFile || t.hFile == reinterpret_cast<HANDLE>(static_cast<intptr_t>(-1))) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  auto job = [this, t, status, head_bytes, tail](DWORD* total) -> DWORD {
    DWORD err = 0;
    *total = 0;
    if (t.dwFlags & HSE_IO_SEND_HEADERS) {
      if (!SendHeaders(status.empty() ? nullptr : status.c_str(), status.size(), head_bytes.data(),
                       head_bytes.size(), false, true))
        return GetLastError();
    } else if (!head_bytes.empty()) {
      DWORD n = static_cast<DWORD>(head_bytes.size());
      if (!WriteClient(const_cast<char*>(head_bytes.data()), &n, HSE_IO_SYNC)) return GetLastError();
      *total += n;
    }
    uint64_t length = t.BytesToWrite ? t.BytesToWrite : ~0ull;  // 0: the whole file
    if (!SendFileRange(t.hFile, t.Offset, length, total, &err)) return err;
    if (!tail.empty()) {
      DWORD n = static_cast<DWORD>(tail.size());
      if (!WriteClient(const_cast<char*>(tail.data()), &n, HSE_IO_SYNC)) return GetLastError();
      *total += n;
    }
    if (t.dwFlags & HSE_IO_DISCONNECT_AFTER_SEND) close_requested_ = true;
    return 0;
  };
  if (async) {
    AddRef();
    server->io_pool().Post([this, job, cb, cb_ctx] {
      DWORD total = 0;
      DWORD err = job(&total);
      cb(&ecb, cb_ctx, total, err);
      Release();
    });
    return TRUE;
  }
  DWORD total = 0;
  DWORD err = job(&total);
  if (err) {
    SetLastError(err);
    return FALSE;
  }
  return TRUE;
}

void RequestContext::OnChildDone(RequestContext* child) {
  bool hs, ro, wf, ka;
  int st;
  int64_t cl;
  uint64_t rb, bs;
  {
    std::lock_guard<std::mutex> lock(child->write_mu_);
    hs = child->headers_sent_;
    ro = child->raw_output_;
    wf = child->write_failed_;
    ka = child->keep_alive_;
    st = child->status_sent_;
    cl = child->resp_content_length_;
    rb = child->resp_body_bytes_;
    bs = child->bytes_sent_;
  }
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (hs || ro) {
      headers_sent_ = headers_sent_ || hs;
      raw_output_ = raw_output_ || ro;
      keep_alive_ = ka;
      status_sent_ = st;
      resp_content_length_ = cl;
      resp_body_bytes_ = rb;
    }
    write_failed_ = write_failed_ || wf;
    bytes_sent_ += bs;
  }
  if (child->close_requested_.load()) close_requested_ = true;
  std::lock_guard<std::mutex> lock(child_mu_);
  exec_status_.uHttpStatusCode =
      static_cast<uint16_t>(st ? st : static_cast<int>(child->ecb.dwHttpStatusCode));
  exec_status_.uHttpSubStatus = 0;
  exec_status_.dwWin32Error = wf ? ERROR_NETNAME_DELETED : 0;
  exec_status_valid_ = true;
  child_done_ = true;
  child_cv_.notify_all();
}

void RequestContext::ServeChildStatic(const HttpRequestHead& h) {
  StaticFile f = server->ResolveStatic(h.method, h.path);
  FILE* fp = f.status == 200 ? OpenFileUtf8(f.path, "rb") : nullptr;
  if (!fp) {
    int code = f.status == 200 ? 404 : f.status;
    std::string body = ErrorBody(code);
    std::string hdrs = "Content-Type: text/html; charset=utf-8\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body;
    std::string st = StatusLineText(code);
    SendHeaders(st.c_str(), st.size(), hdrs.data(), hdrs.size(), false, true);
  } else {
    std::string hdrs = std::string("Content-Type: ") + f.content_type + "\r\nContent-Length: " +
                       std::to_string(f.size) + "\r\n\r\n";
    if (SendHeaders("200 OK", 6, hdrs.data(), hdrs.size(), false, true) && h.method != "HEAD") {
      char buf[65536];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, fp)) > 0) {
        DWORD w = static_cast<DWORD>(n);
        if (!WriteClient(buf, &w, HSE_IO_SYNC)) break;
      }
    }
    fclose(fp);
  }
  std::lock_guard<std::mutex> lock(child_mu_);
  exec_status_.uHttpStatusCode = static_cast<uint16_t>(f.status == 200 && !fp ? 404 : f.status);
  exec_status_.uHttpSubStatus = 0;
  exec_status_.dwWin32Error = 0;
  exec_status_valid_ = true;
}

DWORD RequestContext::RunChild(const ExecRequest& x) {
  if (depth_ >= kMaxChildDepth) return ERROR_INVALID_PARAMETER;
  HttpRequestHead h = head;
  std::string url = x.has_url ? x.url : (head.query.empty() ? head.raw_path : head.raw_path + "?" + head.query);
  if (!SetRequestUrl(&h, url)) return ERROR_INVALID_PARAMETER;
  std::string canon;
  if (uint32_t e = CanonicalUrlPath(h.path, UrlForm::kDecoded, &canon)) return e;
  h.path = canon;
  if (!x.method.empty()) h.method = x.method;
  if (!x.headers.empty()) {
    std::vector<HttpHeader> extra;
    bool ended;
    ParseHeaderLines(x.headers.data(), x.headers.size(), &extra, &ended);
    for (const HttpHeader& e : extra) {
      bool replaced = false;
      for (HttpHeader& hh : h.headers)
        if (IEquals(hh.name, e.name)) {
          hh.value = e.value;
          replaced = true;
        }
      if (!replaced) h.headers.push_back(e);
    }
    h.raw_headers.clear();
    for (const HttpHeader& hh : h.headers) h.raw_headers += hh.name + ": " + hh.value + "\r\n";
  }
  h.chunked = false;
  h.expect_continue = false;
  h.content_length = x.has_entity ? x.entity.size() : 0;
  h.has_content_length = x.has_entity;
  const Vdir* v = server->MatchVdir(h.path);
  // IGNORE_CURRENT_INTERCEPTOR: a URL that maps back to this (wildcard) extension is served as
  // if no extension mapped it: a static file.
  if (v && (x.flags & HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR) && v->extension == vdir->extension)
    v = nullptr;
  if (!v) {
    ServeChildStatic(h);
    return 0;
  }
  {
    std::lock_guard<std::mutex> lock(child_mu_);
    child_done_ = false;
  }
  std::string translated = server->PathTranslated(h.path);
  RequestContext* child = new RequestContext(server, conn, v, std::move(h), 0, MonotonicMs(),
                                             std::move(translated), this);
  if (x.has_entity) child->preread_.assign(x.entity.begin(), x.entity.end());
  child->preread_.push_back(0);
  child->Run();  // returns at once if the child is pending; OnChildDone signals its end
  std::unique_lock<std::mutex> lock(child_mu_);
  child_cv_.wait(lock, [this] { return child_done_; });
  return exec_status_.dwWin32Error;
}

BOOL RequestContext::ExecUrl(const HSE_EXEC_URL_INFO* info) {
  ExecRequest x;
  if (info) {
    if (info->pszUrl) {
      x.has_url = true;
      x.url = info->pszUrl;
    }
    if (info->pszMethod) x.method = info->pszMethod;
    if (info->pszChildHeaders) x.headers = info->pszChildHeaders;
    if (info->pEntity) {
      x.has_entity = true;
      if (info->pEntity->lpbData && info->pEntity->cbAvailable)
        x.entity.assign(static_cast<const char*>(info->pEntity->lpbData), info->pEntity->cbAvailable);
    }
    x.flags = info->dwExecUrlFlags;
  }
  if (x.has_url && (x.url.empty() || x.url[0] != '/')) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb;
  void* cb_ctx;
  RegisteredCompletion(&cb, &cb_ctx);
  if (cb) {
    // IIS runs EXEC_URL asynchronously: the completion callback reports the child's end.
    AddRef();
    server->pool().Post([this, x, cb, cb_ctx] {
      DWORD err = RunChild(x);
      cb(&ecb, cb_ctx, 0, err);
      Release();
    });
    return TRUE;
  }
  // No completion routine registered: run the child synchronously (a lenient extension).
  DWORD err = RunChild(x);
  if (err) {
    SetLastError(err);
    return FALSE;
  }
  return TRUE;
}

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
  std::string hdrs = "Content-Type: text/html; charset=utf-8\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
  BOOL ok = SendHeaders(info->pszStatus, strlen(info->pszStatus), hdrs.data(), hdrs.size(), false, true);
  DWORD err = ok ? 0 : GetLastError();
  if (!ok && err == ERROR_INVALID_PARAMETER) return FALSE;  // headers were already sent
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? static_cast<DWORD>(body.size()) : 0, err);
    return TRUE;
  }
  return ok;
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
    case HSE_REQ_SEND_URL_REDIRECT_RESP:
      return SendRedirect(static_cast<const char*>(buffer)) ? TRUE : FALSE;
    case HSE_REQ_CLOSE_CONNECTION:
      close_requested_ = true;
      NetShutdownBoth(conn->sock);
      return TRUE;
    case HSE_REQ_ABORTIVE_CLOSE:
      // Reset (RST) instead of FIN: SO_LINGER 0, closed when the request ends.
      close_requested_ = true;
      conn->abort_close = true;
      NetSetAbortiveClose(conn->sock);
      return TRUE;
    case HSE_REQ_TRANSMIT_FILE:
      return TransmitFile(static_cast<HSE_TF_INFO*>(buffer));
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
    case HSE_REQ_EXEC_URL:
      return ExecUrl(static_cast<const HSE_EXEC_URL_INFO*>(buffer));
    case HSE_REQ_GET_EXEC_URL_STATUS: {
      if (!buffer) break;
      std::lock_guard<std::mutex> lock(child_mu_);
      if (!exec_status_valid_) break;
      *static_cast<HSE_EXEC_URL_STATUS*>(buffer) = exec_status_;
      return TRUE;
    }
    case HSE_REQ_SEND_CUSTOM_ERROR:
      return SendCustomError(static_cast<const HSE_CUSTOM_ERROR_INFO*>(buffer));
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
    case HSE_REQ_MAP_URL_TO_PATH:
      return MapUrlToPath(buffer, size);
    case HSE_REQ_MAP_URL_TO_PATH_EX:
      return MapUrlToPathEx(buffer, size, data_type);
    case HSE_REQ_VECTOR_SEND:
      return VectorSend(buffer);
    case HSE_REQ_SET_FLUSH_FLAG:
      return TRUE;  // every write is sent at once
    case HSE_REQ_REPORT_UNHEALTHY:
      server->ReportUnhealthy(vdir->library,
                              buffer ? static_cast<const char*>(buffer) : "(no reason)");
      return TRUE;
    default:
      break;
  }
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

}  // namespace isapi_host
