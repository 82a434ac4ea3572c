// What a filter can call during a notification: the C callbacks of HTTP_FILTER_CONTEXT and the
// notification structs (filter_callbacks.h), and the FilterSession members behind them
// (server variables, response headers, WriteClient, AllocMem, ServerSupportFunction). The
// header-editing callbacks are in filter_headers.cc.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "connection.h"
#include "filter_callbacks.h"
#include "filters.h"
#include "http_util.h"
#include "server.h"

namespace isapi_host {

// httpfilt.h: enum SF_PROPERTY_IIS { SF_PROPERTY_SSL_CTXT, SF_PROPERTY_INSTANCE_NUM_ID }.
constexpr ULONG_PTR kPropertySslCtxt = 0;
constexpr ULONG_PTR kPropertyInstanceNumId = 1;

BOOL WINAPI FcGetServerVariable(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPVOID buffer, LPDWORD size) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->GetServerVariable(name, buffer, size) : FALSE;
}
BOOL WINAPI FcAddResponseHeaders(PHTTP_FILTER_CONTEXT pfc, LPSTR headers, DWORD) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->AddResponseHeaders(headers) : FALSE;
}
BOOL WINAPI FcWriteClient(PHTTP_FILTER_CONTEXT pfc, LPVOID buffer, LPDWORD bytes, DWORD) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->WriteClient(buffer, bytes) : FALSE;
}
VOID* WINAPI FcAllocMem(PHTTP_FILTER_CONTEXT pfc, DWORD size, DWORD) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->AllocMem(size) : nullptr;
}
BOOL WINAPI FcServerSupportFunction(PHTTP_FILTER_CONTEXT pfc, SfReqType req, PVOID data, ULONG_PTR ul1, ULONG_PTR ul2) {
  size_t slot = 0;
  FilterSession* s = FilterSession::FromContext(pfc, &slot);
  return s ? s->ServerSupportFunction(slot, static_cast<DWORD>(req), data, ul1, ul2) : FALSE;
}
BOOL WINAPI HdrGetHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPVOID buffer, LPDWORD size) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->GetHeader(name, buffer, size) : FALSE;
}
BOOL WINAPI HdrSetHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPSTR value) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->SetHeader(name, value, false) : FALSE;
}
BOOL WINAPI HdrAddHeader(PHTTP_FILTER_CONTEXT pfc, LPSTR name, LPSTR value) {
  FilterSession* s = FilterSession::FromContext(pfc, nullptr);
  return s ? s->SetHeader(name, value, true) : FALSE;
}
// There are no Windows tokens off Windows: FALSE + ERROR_NOT_SUPPORTED, *token = NULL.
BOOL WINAPI AcGetUserToken(PHTTP_FILTER_CONTEXT pfc, HANDLE* token) {
  if (token) *token = nullptr;
  SetLastError(FilterSession::FromContext(pfc, nullptr) ? ERROR_NOT_SUPPORTED : ERROR_INVALID_PARAMETER);
  return FALSE;
}

BOOL FilterSession::GetServerVariable(LPSTR name, LPVOID buffer, LPDWORD size) {
  if (!name || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  VarSource src;
  src.server = server_;
  src.conn = conn_;
  src.head = cur_req_ ? cur_req_ : head_;
  src.vdir = vdir_;
  src.path_translated = path_translated_;
  src.auth = auth();
  return CopyServerVariable(src, name, buffer, size);
}

BOOL FilterSession::AddResponseHeaders(LPSTR headers) {
  if (!headers) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  pending_headers_ += headers;
  if (!pending_headers_.empty() && pending_headers_.back() != '\n') pending_headers_ += "\r\n";
  return TRUE;
}

BOOL FilterSession::WriteClient(LPVOID buffer, LPDWORD bytes) {
  if (!bytes || (!buffer && *bytes)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  const char* p = static_cast<const char*>(buffer);
  DWORD n = *bytes;
  if (!responded_ && !filter_headers_sent_ && n >= 12 && memcmp(p, "HTTP/", 5) == 0) {
    const char* sp = static_cast<const char*>(memchr(p, ' ', n < 16 ? n : 16));
    if (sp && sp + 4 <= p + n) response_status_ = atoi(sp + 1);
  }
  responded_ = true;
  if (!conn_->SendAll(p, n, server_->config().io_timeout_ms)) {
    *bytes = 0;
    SetLastError(ERROR_NETNAME_DELETED);
    return FALSE;
  }
  bytes_sent_ += n;
  if (filter_headers_sent_) filter_body_bytes_ += n;
  return TRUE;
}

void* FilterSession::AllocMem(DWORD size) {
  void* p = calloc(1, size ? size : 1);
  if (!p) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(alloc_mu_);
  allocations_.push_back(p);
  return p;
}

bool FilterSession::SendFilterResponseHeader(const char* status, const char* headers) {
  std::string st = status && *status ? std::string(status) : std::string("200 OK");
  int code = atoi(st.c_str());
  // A status with CR/LF is refused, not cut: the rest could be a second header (R3).
  if (code < 100 || code > 999 || !IsValidStatusText(st)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return false;
  }
  if (st.size() <= 3) st = StatusLineText(code);
  std::vector<HttpHeader> hv;
  bool ended = false;
  size_t hl = headers ? strlen(headers) : 0;
  size_t off = headers ? ParseHeaderLines(headers, hl, &hv, &ended) : 0;
  if (!pending_headers_.empty()) {
    bool e2;
    ParseHeaderLines(pending_headers_.data(), pending_headers_.size(), &hv, &e2);
    pending_headers_.clear();
  }
  if (code == 401 && !denial_headers_.empty()) {
    bool e2;
    ParseHeaderLines(denial_headers_.data(), denial_headers_.size(), &hv, &e2);
  }
  std::string bad = CheckResponseHeaderList(hv);
  if (!bad.empty()) {
    fprintf(stderr, "isapi-host: a filter's SF_REQ_SEND_RESPONSE_HEADER refused: %s\n", bad.c_str());
    SetLastError(ERROR_INVALID_PARAMETER);
    return false;
  }
  ResponseFraming fr = FramingOf(hv);
  bool head_only = head_ && head_->method == "HEAD";
  bool http10 = head_ && head_->minor_version == 0;
  bool framed = fr.content_length >= 0 || code == 204 || code == 304 || head_only;
  filter_keep_ = head_ && head_->keep_alive && framed && !fr.close && !server_->stopping();
  filter_content_length_ = head_only || code == 204 || code == 304 ? 0 : fr.content_length;
  std::string out = ComposeResponseHead(st, hv, filter_keep_, http10);
  if (ended && off < hl) {
    out.append(headers + off, hl - off);
    filter_body_bytes_ += hl - off;
  }
  filter_headers_sent_ = true;
  responded_ = true;
  response_status_ = code;
  if (!conn_->SendAll(out.data(), out.size(), server_->config().io_timeout_ms)) {
    SetLastError(ERROR_NETNAME_DELETED);
    return false;
  }
  bytes_sent_ += out.size();
  return true;
}

BOOL FilterSession::ServerSupportFunction(size_t slot, DWORD req, PVOID data, ULONG_PTR ul1, ULONG_PTR ul2) {
  (void)ul2;
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  switch (req) {
    case SF_REQ_SEND_RESPONSE_HEADER:
      if (filter_headers_sent_) break;
      return SendFilterResponseHeader(static_cast<const char*>(data), reinterpret_cast<const char*>(ul1)) ? TRUE
                                                                                                          : FALSE;
    case SF_REQ_ADD_HEADERS_ON_DENIAL:
      if (!data) break;
      denial_headers_ += static_cast<const char*>(data);
      if (!denial_headers_.empty() && denial_headers_.back() != '\n') denial_headers_ += "\r\n";
      return TRUE;
    case SF_REQ_SET_NEXT_READ_SIZE:
      if (ul1 == 0 || ul1 > (1u << 24)) break;
      conn_->next_read_size = static_cast<uint32_t>(ul1);
      return TRUE;
    case SF_REQ_GET_CONNID:
      if (!data) break;
      *static_cast<DWORD*>(data) = conn_id_;
      return TRUE;
    case SF_REQ_GET_PROPERTY:
      if (ul1 == kPropertyInstanceNumId && data) {
        *static_cast<DWORD*>(data) = 1;  // INSTANCE_ID
        return TRUE;
      }
      if (ul1 == kPropertySslCtxt) {  // no TLS on this host
        SetLastError(ERROR_NOT_SUPPORTED);
        return FALSE;
      }
      break;
    case SF_REQ_NORMALIZE_URL: {
      if (!data) break;
      char* url = static_cast<char*>(data);
      std::string normalized;
      if (!NormalizeUrl(url, &normalized)) break;
      // Normalizing never lengthens a URL, so it fits the caller's buffer.
      if (normalized.size() > strlen(url)) break;
      memcpy(url, normalized.c_str(), normalized.size() + 1);
      return TRUE;
    }
    case SF_REQ_DISABLE_NOTIFICATIONS:
      slots_[slot].disabled |= static_cast<DWORD>(ul1);
      RecomputeMask();
      if (!Wants(SF_NOTIFY_READ_RAW_DATA)) conn_->read_filtering = false;
      return TRUE;
    case SF_REQ_SET_PROXY_INFO: return TRUE;  // accepted; this host does no proxy caching
    default: break;
  }
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

}  // namespace isapi_host
