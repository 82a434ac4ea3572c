// Child requests (HSE_REQ_EXEC_URL, HSE_REQ_SEND_URL): a request run through the host's own
// pipeline on the parent's thread, its response going to the parent's client.
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

constexpr int kMaxChildDepth = 8;  // EXEC_URL / SEND_URL nesting

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
  exec_status_.uHttpStatusCode = static_cast<uint16_t>(st ? st : static_cast<int>(child->ecb.dwHttpStatusCode));
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
    std::string hdrs =
        "Content-Type: text/html; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    std::string st = StatusLineText(code);
    SendHeaders(st.c_str(), st.size(), hdrs.data(), hdrs.size(), false, true);
  } else {
    std::string hdrs =
        std::string("Content-Type: ") + f.content_type + "\r\nContent-Length: " + std::to_string(f.size) + "\r\n\r\n";
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
  FlushHeld();  // the child writes to the connection itself: this request's head goes first
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
  if (v && (x.flags & HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR) && v->extension == vdir->extension) v = nullptr;
  if (!v) {
    ServeChildStatic(h);
    return 0;
  }
  {
    std::lock_guard<std::mutex> lock(child_mu_);
    child_done_ = false;
  }
  std::string translated = server->PathTranslated(h.path);
  RequestContext* child =
      new RequestContext(server, conn, v, std::move(h), 0, MonotonicMs(), std::move(translated), this);
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

}  // namespace isapi_host
