#include "filters.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#include "access_log.h"
#include "connection.h"
#include "http_util.h"
#include "platform/dynlib.h"
#include "server.h"
#include "vdir_map.h"

namespace isapi_host {

#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif
// httpfilt.h: enum SF_PROPERTY_IIS { SF_PROPERTY_SSL_CTXT, SF_PROPERTY_INSTANCE_NUM_ID }.
constexpr ULONG_PTR kPropertySslCtxt = 0;
constexpr ULONG_PTR kPropertyInstanceNumId = 1;

namespace {

constexpr uint32_t kSessionMagic = 0x46494c54;  // "FILT"
constexpr uint32_t kDeadMagic = 0xDEADF117;

void* Symbol(void* handle, const char* name, const char* decorated) {
  void* p = DynlibSymbol(handle, name);
  if (!p && decorated) p = DynlibSymbol(handle, decorated);
  return p;
}

// Copies a value (plus NUL) with the GetServerVariable buffer protocol.
BOOL CopyOut(const std::string& value, LPVOID buffer, LPDWORD size) {
  DWORD needed = static_cast<DWORD>(value.size() + 1);
  if (!buffer || *size < needed) {
    *size = needed;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(buffer, value.c_str(), needed);
  *size = needed;
  return TRUE;
}

std::string Base64Decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  int bits = 0, acc = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// ---- the callbacks a filter receives (HTTP_FILTER_CONTEXT and the notification structs)

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
#ifdef _WIN32
typedef SF_REQ_TYPE SfReqType;  // the SDK declares the request as an enum
#else
typedef DWORD SfReqType;
#endif
BOOL WINAPI FcServerSupportFunction(PHTTP_FILTER_CONTEXT pfc, SfReqType req, PVOID data,
                                    ULONG_PTR ul1, ULONG_PTR ul2) {
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
  SetLastError(FilterSession::FromContext(pfc, nullptr) ? ERROR_NOT_SUPPORTED
                                                        : ERROR_INVALID_PARAMETER);
  return FALSE;
}

}  // namespace

// ---------------------------------------------------------------- IsapiFilter

bool IsapiFilter::Load(const std::string& path, void* handle, std::string* err) {
  path_ = path;
  handle_ = handle;
  GetVersionFn get_version =
      reinterpret_cast<GetVersionFn>(Symbol(handle, "GetFilterVersion", "_GetFilterVersion@4"));
  proc_ = reinterpret_cast<ProcFn>(Symbol(handle, "HttpFilterProc", "_HttpFilterProc@12"));
  terminate_ = reinterpret_cast<TerminateFn>(Symbol(handle, "TerminateFilter", "_TerminateFilter@4"));
  if (!get_version || !proc_) {
    *err = "ISAPI filter " + path + " does not export " +
           (get_version ? "HttpFilterProc" : "GetFilterVersion") +
           ": is it an ISAPI filter (an extension-only library is not)?";
    return false;
  }
  HTTP_FILTER_VERSION v;
  memset(&v, 0, sizeof v);
  v.dwServerFilterVersion = HTTP_FILTER_REVISION;
  if (!get_version(&v)) {
    *err = "GetFilterVersion of " + path +
           " returned FALSE: the filter refused to start (see its own log for why)";
    return false;
  }
  v.lpszFilterDesc[sizeof v.lpszFilterDesc - 1] = 0;
  description_ = v.lpszFilterDesc;
  flags_ = v.dwFlags;
  // Port bits: neither set means both. This host only has non-secure ports.
  bool nonsecure = (flags_ & SF_NOTIFY_NONSECURE_PORT) || !(flags_ & SF_NOTIFY_SECURE_PORT);
  notifications_ = nonsecure ? (flags_ & ~(SF_NOTIFY_SECURE_PORT | SF_NOTIFY_NONSECURE_PORT |
                                           SF_NOTIFY_ORDER_MASK))
                             : 0;
  return true;
}

int IsapiFilter::rank() const {
  if (flags_ & SF_NOTIFY_ORDER_HIGH) return 0;
  if (flags_ & SF_NOTIFY_ORDER_MEDIUM) return 1;
  return 2;
}

void IsapiFilter::Terminate() {
  if (terminated_ || !handle_) return;
  terminated_ = true;
  if (terminate_) terminate_(HSE_TERM_MUST_UNLOAD);
}

void FilterSet::Add(IsapiFilter* f) {
  ordered_.push_back(f);
  std::stable_sort(ordered_.begin(), ordered_.end(),
                   [](const IsapiFilter* a, const IsapiFilter* b) { return a->rank() < b->rank(); });
  mask_ |= f->notifications();
}

// ---------------------------------------------------------------- FilterSession

FilterSession::FilterSession(Server* server, Connection* conn, const FilterSet* set,
                             uint32_t conn_id)
    : magic_(kSessionMagic), server_(server), conn_(conn), set_(set), conn_id_(conn_id) {
  slots_.resize(set->ordered().size());
  for (size_t i = 0; i < slots_.size(); i++) {
    HTTP_FILTER_CONTEXT& fc = slots_[i].fc;
    memset(&fc, 0, sizeof fc);
    fc.cbSize = sizeof fc;
    fc.Revision = HTTP_FILTER_REVISION;
    fc.ServerContext = this;
    fc.ulReserved = static_cast<DWORD>(i);
    fc.fIsSecurePort = FALSE;
    fc.pFilterContext = nullptr;
    fc.GetServerVariable = FcGetServerVariable;
    fc.AddResponseHeaders = FcAddResponseHeaders;
    fc.WriteClient = FcWriteClient;
    fc.AllocMem = FcAllocMem;
    fc.ServerSupportFunction = FcServerSupportFunction;
  }
  RecomputeMask();
}

FilterSession::~FilterSession() {
  magic_ = kDeadMagic;
  for (void* p : allocations_) free(p);
}

FilterSession* FilterSession::FromContext(HTTP_FILTER_CONTEXT* pfc, size_t* slot) {
  if (!pfc) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return nullptr;
  }
  FilterSession* s = static_cast<FilterSession*>(pfc->ServerContext);
  if (!s || s->magic_ != kSessionMagic || pfc->ulReserved >= s->slots_.size() ||
      &s->slots_[pfc->ulReserved].fc != pfc) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return nullptr;
  }
  if (slot) *slot = pfc->ulReserved;
  return s;
}

void FilterSession::RecomputeMask() {
  DWORD m = 0;
  const auto& fl = set_->ordered();
  for (size_t i = 0; i < fl.size(); i++) m |= fl[i]->notifications() & ~slots_[i].disabled;
  mask_ = m;
}

DWORD FilterSession::Dispatch(DWORD type, void* data, bool reverse) {
  const auto& fl = set_->ordered();
  size_t n = fl.size();
  DWORD saved_type = cur_type_;
  cur_type_ = type;
  DWORD result = SF_STATUS_REQ_NEXT_NOTIFICATION;
  for (size_t k = 0; k < n; k++) {
    size_t i = reverse ? n - 1 - k : k;
    if (!(fl[i]->notifications() & type) || (slots_[i].disabled & type)) continue;
    SetLastError(0);
    DWORD r = fl[i]->Proc(&slots_[i].fc, type, data);
    if (r == SF_STATUS_REQ_NEXT_NOTIFICATION) continue;
    if (r == SF_STATUS_REQ_HANDLED_NOTIFICATION) break;  // the rest of the chain is skipped
    if (r == SF_STATUS_REQ_FINISHED || r == SF_STATUS_REQ_FINISHED_KEEP_CONN ||
        r == SF_STATUS_REQ_ERROR || r == SF_STATUS_REQ_READ_NEXT) {
      if (r == SF_STATUS_REQ_ERROR) last_error_ = GetLastError();
      result = r;
      break;
    }
    // Any other value: treated like NEXT_NOTIFICATION (IIS is lenient here too).
  }
  cur_type_ = saved_type;
  return result;
}

FilterSession::Verdict FilterSession::ToVerdict(DWORD status) const {
  switch (status) {
    case SF_STATUS_REQ_FINISHED: return kFinished;
    case SF_STATUS_REQ_FINISHED_KEEP_CONN: return kFinishedKeepConn;
    case SF_STATUS_REQ_ERROR: return kError;
    default: return kContinue;
  }
}

void FilterSession::BeginRequest() {
  requests_++;
  ClearRequest();
  auth_ = AuthInfo();
  auth_set_ = false;
  pending_headers_.clear();
  denial_headers_.clear();
  deny_reason_ = SF_DENIED_APPLICATION;
  responded_ = false;
  filter_headers_sent_ = false;
  filter_keep_ = false;
  response_status_ = 0;
  filter_content_length_ = -1;
  filter_body_bytes_ = 0;
  bytes_sent_ = 0;
}

void FilterSession::SetRequest(const HttpRequestHead* head, const Vdir* vdir,
                               const std::string* path_translated) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  head_ = head;
  vdir_ = vdir;
  path_translated_ = path_translated;
}

void FilterSession::ClearRequest() {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  head_ = nullptr;
  vdir_ = nullptr;
  path_translated_ = nullptr;
}

bool FilterSession::response_keepable() const {
  return filter_headers_sent_ && filter_keep_ && filter_content_length_ >= 0 &&
         filter_body_bytes_ == static_cast<uint64_t>(filter_content_length_);
}

// ---- notifications

FilterSession::Verdict FilterSession::ReadRawData() {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  size_t pending = conn_->unfiltered();
  if (pending == 0) return kContinue;
  HTTP_FILTER_RAW_DATA rd;
  memset(&rd, 0, sizeof rd);
  char* in_place = conn_->mutable_unfiltered();
  rd.pvInData = in_place;
  rd.cbInData = static_cast<DWORD>(pending);
  rd.cbInBuffer = static_cast<DWORD>(pending);
  DWORD r = Dispatch(SF_NOTIFY_READ_RAW_DATA, &rd, false);
  if (rd.pvInData != in_place || rd.cbInData != pending) {
    std::string replacement(static_cast<const char*>(rd.pvInData ? rd.pvInData : ""),
                            rd.pvInData ? rd.cbInData : 0);
    conn_->ReplaceUnfiltered(replacement.data(), replacement.size());
  } else {
    conn_->MarkFiltered();
  }
  return ToVerdict(r);  // READ_NEXT: the caller reads more anyway
}

FilterSession::Verdict FilterSession::PreprocHeaders(HttpRequestHead* head) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  HTTP_FILTER_PREPROC_HEADERS ph;
  memset(&ph, 0, sizeof ph);
  ph.GetHeader = HdrGetHeader;
  ph.SetHeader = HdrSetHeader;
  ph.AddHeader = HdrAddHeader;
  ph.HttpStatus = 0;
  HttpRequestHead* saved = cur_req_;
  cur_req_ = head;
  DWORD r = Dispatch(SF_NOTIFY_PREPROC_HEADERS, &ph, false);
  cur_req_ = saved;
  return ToVerdict(r);
}

FilterSession::Verdict FilterSession::UrlMap(const std::string& url, std::string* physical) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  size_t cap = physical->size() + 1 < 4096 ? 4096 : physical->size() + 1;
  std::vector<char> buf(cap, 0);
  memcpy(buf.data(), physical->c_str(), physical->size() + 1);
  std::string u = url;
  HTTP_FILTER_URL_MAP um;
  um.pszURL = u.c_str();
  um.pszPhysicalPath = buf.data();
  um.cbPathBuff = static_cast<DWORD>(cap);
  DWORD r = Dispatch(SF_NOTIFY_URL_MAP, &um, false);
  buf[cap - 1] = 0;
  *physical = buf.data();
  return ToVerdict(r);
}

FilterSession::Verdict FilterSession::Authenticate(const HttpRequestHead& head) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  char user[SF_MAX_USERNAME];
  char password[SF_MAX_PASSWORD];
  memset(user, 0, sizeof user);
  memset(password, 0, sizeof password);
  std::string authz, scheme;
  if (head.FindHeader("Authorization", &authz)) {
    size_t sp = authz.find(' ');
    scheme = authz.substr(0, sp);
    if (IEquals(scheme, "Basic") && sp != std::string::npos) {
      std::string decoded = Base64Decode(authz.substr(sp + 1));
      size_t colon = decoded.find(':');
      std::string u = decoded.substr(0, colon);
      std::string p = colon == std::string::npos ? "" : decoded.substr(colon + 1);
      strncpy(user, u.c_str(), sizeof user - 1);
      strncpy(password, p.c_str(), sizeof password - 1);
    }
  }
  HTTP_FILTER_AUTHENT au;
  au.pszUser = user;
  au.cbUserBuff = sizeof user;
  au.pszPassword = password;
  au.cbPasswordBuff = sizeof password;
  DWORD r = Dispatch(SF_NOTIFY_AUTHENTICATION, &au, false);
  user[sizeof user - 1] = 0;
  password[sizeof password - 1] = 0;
  auth_.user = user;
  auth_.password = password;
  auth_.type = auth_.user.empty() ? std::string() : scheme;
  auth_set_ = true;
  if (r == SF_STATUS_REQ_ERROR && last_error_ == ERROR_ACCESS_DENIED) {
    deny_reason_ = SF_DENIED_LOGON | SF_DENIED_FILTER;
    return kDenied;
  }
  return ToVerdict(r);
}

FilterSession::Verdict FilterSession::AuthComplete(HttpRequestHead* head) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  HTTP_FILTER_AUTH_COMPLETE_INFO ac;
  memset(&ac, 0, sizeof ac);
  ac.GetHeader = HdrGetHeader;
  ac.SetHeader = HdrSetHeader;
  ac.AddHeader = HdrAddHeader;
  ac.GetUserToken = AcGetUserToken;
  ac.HttpStatus = 0;
  ac.fResetAuth = FALSE;
  HttpRequestHead* saved = cur_req_;
  cur_req_ = head;
  DWORD r = Dispatch(SF_NOTIFY_AUTH_COMPLETE, &ac, false);
  cur_req_ = saved;
  return ToVerdict(r);
}

FilterSession::Verdict FilterSession::SendResponse(std::string* status,
                                                   std::vector<HttpHeader>* headers) {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  int code = atoi(status->c_str());
  if (!pending_headers_.empty()) {
    bool ended;
    ParseHeaderLines(pending_headers_.data(), pending_headers_.size(), headers, &ended);
    pending_headers_.clear();
  }
  if (code == 401) {
    if (Wants(SF_NOTIFY_ACCESS_DENIED)) {
      std::string url = head_ ? head_->path : std::string();
      std::string physical = path_translated_ ? *path_translated_ : std::string();
      HTTP_FILTER_ACCESS_DENIED ad;
      ad.pszURL = url.c_str();
      ad.pszPhysicalPath = physical.c_str();
      ad.dwReason = deny_reason_;
      Verdict v = ToVerdict(Dispatch(SF_NOTIFY_ACCESS_DENIED, &ad, false));
      if (v != kContinue) return v;
    }
    if (!denial_headers_.empty()) {
      bool ended;
      ParseHeaderLines(denial_headers_.data(), denial_headers_.size(), headers, &ended);
    }
  }
  if (!Wants(SF_NOTIFY_SEND_RESPONSE)) return kContinue;
  HTTP_FILTER_SEND_RESPONSE sr;
  memset(&sr, 0, sizeof sr);
  sr.GetHeader = HdrGetHeader;
  sr.SetHeader = HdrSetHeader;
  sr.AddHeader = HdrAddHeader;
  sr.HttpStatus = static_cast<DWORD>(code);
  std::string* saved_status = cur_status_;
  std::vector<HttpHeader>* saved_resp = cur_resp_;
  cur_status_ = status;
  cur_resp_ = headers;
  DWORD r = Dispatch(SF_NOTIFY_SEND_RESPONSE, &sr, false);
  cur_status_ = saved_status;
  cur_resp_ = saved_resp;
  return ToVerdict(r);
}

bool FilterSession::Send(const char* p, size_t n, int timeout_ms, bool* close_after) {
  if (!Wants(SF_NOTIFY_SEND_RAW_DATA)) return conn_->SendAll(p, n, timeout_ms);
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string scratch(p, n);  // filters may edit in place; the caller's bytes are const
  HTTP_FILTER_RAW_DATA rd;
  memset(&rd, 0, sizeof rd);
  rd.pvInData = &scratch[0];
  rd.cbInData = static_cast<DWORD>(n);
  rd.cbInBuffer = static_cast<DWORD>(n);
  DWORD r = Dispatch(SF_NOTIFY_SEND_RAW_DATA, &rd, true);
  if (r == SF_STATUS_REQ_ERROR) return false;
  if (r == SF_STATUS_REQ_FINISHED || r == SF_STATUS_REQ_FINISHED_KEEP_CONN) *close_after = true;
  if (!rd.pvInData || rd.cbInData == 0) return true;
  return conn_->SendAll(static_cast<const char*>(rd.pvInData), rd.cbInData, timeout_ms);
}

void FilterSession::EndOfRequest() {
  if (!Wants(SF_NOTIFY_END_OF_REQUEST)) return;
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  Dispatch(SF_NOTIFY_END_OF_REQUEST, nullptr, false);
}

void FilterSession::Log(AccessLogEntry* e) {
  if (!Wants(SF_NOTIFY_LOG)) return;
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string server_name = head_ && !head_->host.empty() ? head_->host : e->server_ip;
  size_t colon = server_name.rfind(':');
  if (colon != std::string::npos && server_name.find(']') == std::string::npos &&
      server_name.find(':') == colon)
    server_name.resize(colon);
  HTTP_FILTER_LOG lg;
  memset(&lg, 0, sizeof lg);
  lg.pszClientHostName = e->client_ip.c_str();
  lg.pszClientUserName = e->username.c_str();
  lg.pszServerName = server_name.c_str();
  lg.pszOperation = e->method.c_str();
  lg.pszTarget = e->uri_stem.c_str();
  lg.pszParameters = e->uri_query.c_str();
  lg.dwHttpStatus = static_cast<DWORD>(e->status);
  lg.dwWin32Status = e->win32_status;
  lg.dwBytesSent = e->bytes_sent > 0xFFFFFFFFull ? 0xFFFFFFFF : static_cast<DWORD>(e->bytes_sent);
  lg.dwBytesRecvd =
      e->bytes_received > 0xFFFFFFFFull ? 0xFFFFFFFF : static_cast<DWORD>(e->bytes_received);
  lg.msTimeForProcessing = static_cast<DWORD>(e->time_taken_ms);
  Dispatch(SF_NOTIFY_LOG, &lg, false);
  // Filters may have replaced the pointers (with AllocMem or static memory): copy the results.
  auto take = [](const char* p) { return p ? std::string(p) : std::string(); };
  AccessLogEntry r = *e;
  r.client_ip = take(lg.pszClientHostName);
  r.username = take(lg.pszClientUserName);
  r.method = take(lg.pszOperation);
  r.uri_stem = take(lg.pszTarget);
  r.uri_query = take(lg.pszParameters);
  r.status = static_cast<int>(lg.dwHttpStatus);
  r.win32_status = lg.dwWin32Status;
  r.bytes_sent = lg.dwBytesSent;
  r.bytes_received = lg.dwBytesRecvd;
  r.time_taken_ms = lg.msTimeForProcessing;
  *e = r;
}

void FilterSession::EndOfNetSession() {
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  ClearRequest();
  if (Wants(SF_NOTIFY_END_OF_NET_SESSION)) Dispatch(SF_NOTIFY_END_OF_NET_SESSION, nullptr, false);
  for (Slot& s : slots_) s.fc.pFilterContext = nullptr;
}

// ---- callbacks

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

BOOL FilterSession::ServerSupportFunction(size_t slot, DWORD req, PVOID data, ULONG_PTR ul1,
                                          ULONG_PTR ul2) {
  (void)ul2;
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  switch (req) {
    case SF_REQ_SEND_RESPONSE_HEADER:
      if (filter_headers_sent_) break;
      return SendFilterResponseHeader(static_cast<const char*>(data),
                                      reinterpret_cast<const char*>(ul1))
                 ? TRUE
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
    case SF_REQ_SET_PROXY_INFO:
      return TRUE;  // accepted; this host does no proxy caching
    default:
      break;
  }
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

BOOL FilterSession::GetHeader(LPSTR name_in, LPVOID buffer, LPDWORD size) {
  if (!name_in || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string name = name_in;
  bool colon = !name.empty() && name.back() == ':';
  if (colon) name.pop_back();
  if (cur_resp_) {  // SEND_RESPONSE
    if (!colon && IEquals(name, "status")) return CopyOut(*cur_status_, buffer, size);
    std::string v;
    bool found = false;
    for (const HttpHeader& h : *cur_resp_) {
      if (!IEquals(h.name, name)) continue;
      if (found) v += ", ";
      v += h.value;
      found = true;
    }
    if (!found) {
      SetLastError(ERROR_INVALID_INDEX);
      return FALSE;
    }
    return CopyOut(v, buffer, size);
  }
  if (!cur_req_) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!colon) {
    if (IEquals(name, "method")) return CopyOut(cur_req_->method, buffer, size);
    if (IEquals(name, "url")) return CopyOut(cur_req_->target, buffer, size);
    if (IEquals(name, "version")) return CopyOut(cur_req_->version, buffer, size);
  }
  std::string v;
  if (!cur_req_->FindHeader(name, &v)) {
    SetLastError(ERROR_INVALID_INDEX);
    return FALSE;
  }
  return CopyOut(v, buffer, size);
}

BOOL FilterSession::SetHeader(LPSTR name_in, LPSTR value_in, bool add) {
  if (!name_in || !*name_in) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string name = name_in;
  std::string value = value_in ? value_in : "";
  if (value.find_first_of("\r\n") != std::string::npos) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  bool colon = name.back() == ':';
  if (colon) name.pop_back();
  std::vector<HttpHeader>* list = nullptr;
  if (cur_resp_) {
    if (!colon && IEquals(name, "status")) {
      int code = atoi(value.c_str());
      if (code < 100 || code > 999) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
      }
      *cur_status_ = value.size() <= 3 ? StatusLineText(code) : value;
      return TRUE;
    }
    list = cur_resp_;
  } else if (cur_req_) {
    if (!colon && !add) {
      if (IEquals(name, "url")) {
        if (value.empty() || !SetRequestUrl(cur_req_, value)) {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        return TRUE;
      }
      if (IEquals(name, "method")) {
        if (value.empty()) {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        cur_req_->method = value;
        return TRUE;
      }
      if (IEquals(name, "version")) {
        if (value != "HTTP/1.0" && value != "HTTP/1.1") {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        cur_req_->version = value;
        cur_req_->minor_version = value[7] - '0';
        return TRUE;
      }
    }
    list = &cur_req_->headers;
  } else {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (add) {
    if (!value.empty()) list->push_back(HttpHeader{name, value});
  } else {
    bool replaced = false;
    for (auto it = list->begin(); it != list->end();) {
      if (!IEquals(it->name, name)) {
        ++it;
      } else if (!replaced && !value.empty()) {
        it->value = value;
        replaced = true;
        ++it;
      } else {
        it = list->erase(it);
      }
    }
    if (!replaced && !value.empty()) list->push_back(HttpHeader{name, value});
  }
  if (cur_req_ && list == &cur_req_->headers) {
    // Keep the derived facts in step: ALL_RAW and the Host.
    std::string raw;
    for (const HttpHeader& h : cur_req_->headers) raw += h.name + ": " + h.value + "\r\n";
    cur_req_->raw_headers = raw;
    if (IEquals(name, "Host")) {
      std::string host;
      cur_req_->host = cur_req_->FindHeader("Host", &host) ? host : std::string();
    }
  }
  return TRUE;
}

bool SetRequestUrl(HttpRequestHead* head, const std::string& url) {
  if (url.empty() || url[0] != '/') return false;
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f) return false;
  size_t q = url.find('?');
  std::string raw_path = url.substr(0, q);
  std::string path;
  if (!PercentDecode(raw_path, &path)) return false;
  head->target = url;
  head->raw_path = raw_path;
  head->path = path;
  head->query = q == std::string::npos ? "" : url.substr(q + 1);
  return true;
}

}  // namespace isapi_host
