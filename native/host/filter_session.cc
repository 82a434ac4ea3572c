// FilterSession: a connection's filter state, the dispatch of one notification down the filter
// list, and each notification the host raises (READ_RAW_DATA … END_OF_NET_SESSION).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "access_log.h"
#include "base64.h"
#include "connection.h"
#include "filter_callbacks.h"
#include "filters.h"
#include "http_util.h"
#include "server.h"
#include "vdir_map.h"

namespace isapi_host {

#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif

namespace {

constexpr uint32_t kSessionMagic = 0x46494c54;  // "FILT"
constexpr uint32_t kDeadMagic = 0xDEADF117;

}  // namespace

FilterSession::FilterSession(Server* server, Connection* conn, const FilterSet* set, uint32_t conn_id)
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
    if (r == SF_STATUS_REQ_FINISHED || r == SF_STATUS_REQ_FINISHED_KEEP_CONN || r == SF_STATUS_REQ_ERROR ||
        r == SF_STATUS_REQ_READ_NEXT) {
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

void FilterSession::SetRequest(const HttpRequestHead* head, const Vdir* vdir, const std::string* path_translated) {
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
    std::string replacement(static_cast<const char*>(rd.pvInData ? rd.pvInData : ""), rd.pvInData ? rd.cbInData : 0);
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

FilterSession::Verdict FilterSession::SendResponse(std::string* status, std::vector<HttpHeader>* headers) {
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
  if (colon != std::string::npos && server_name.find(']') == std::string::npos && server_name.find(':') == colon)
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
  lg.dwBytesRecvd = e->bytes_received > 0xFFFFFFFFull ? 0xFFFFFFFF : static_cast<DWORD>(e->bytes_received);
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

}  // namespace isapi_host
