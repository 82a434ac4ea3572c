#include "request_context.h"

#include <cctype>
#include <cstdio>
#include <cstring>

#include "access_log.h"
#include "filters.h"
#include "http_util.h"
#include "platform/system.h"
#include "server.h"
#include "vdir_map.h"

namespace isapi_host {

namespace {

constexpr uint32_t kLiveMagic = 0x49534150;  // "ISAP"
constexpr uint32_t kDeadMagic = 0xDEADBEEF;
constexpr uint64_t kDrainLimit = 1 << 20;  // unread request body drained to keep a connection
constexpr int kDrainTimeoutMs = 5000;

// Extension callbacks (definitions in ecb_callbacks.cc).
}  // namespace

BOOL WINAPI EcbGetServerVariable(HCONN, LPSTR, LPVOID, LPDWORD);
BOOL WINAPI EcbWriteClient(HCONN, LPVOID, LPDWORD, DWORD);
BOOL WINAPI EcbReadClient(HCONN, LPVOID, LPDWORD);
BOOL WINAPI EcbServerSupportFunction(HCONN, DWORD, LPVOID, LPDWORD, LPDWORD);

RequestContext::RequestContext(Server* server, Connection* conn, const Vdir* vdir, HttpRequestHead&& h,
                               size_t head_bytes, int64_t start_ms, std::string translated, RequestContext* parent)
    : server(server),
      conn(conn),
      vdir(vdir),
      head(std::move(h)),
      path_translated(std::move(translated)),
      filters(conn->filters),
      magic_(kLiveMagic),
      parent_(parent),
      head_bytes_(head_bytes),
      start_ms_(start_ms) {
  head_only_ = head.method == "HEAD";
  method_ = head.method;
  query_ = head.query;
  // IIS gives PATH_INFO = the whole URL for script and wildcard maps.
  path_info_ = head.path;
  if (filters && !parent_) filters->SetRequest(&head, vdir, &path_translated);
  if (parent_) depth_ = parent_->depth_ + 1;
  if (!head.FindHeader("Content-Type", &content_type_)) content_type_.clear();
  if (head.chunked) body_.InitChunked(server->config().max_header_bytes);
  else body_.InitLength(head.content_length);

  memset(&ecb, 0, sizeof ecb);
  ecb.cbSize = sizeof ecb;
  ecb.dwVersion = MAKELONG(0, 8);
  ecb.ConnID = this;
  ecb.dwHttpStatusCode = 200;
  ecb.lpszMethod = &method_[0];
  ecb.lpszQueryString = &query_[0];
  ecb.lpszPathInfo = &path_info_[0];
  ecb.lpszPathTranslated = &path_translated[0];
  ecb.lpszContentType = &content_type_[0];
  if (head.chunked || head.content_length >= 0xFFFFFFFFull) ecb.cbTotalBytes = 0xFFFFFFFF;
  else ecb.cbTotalBytes = static_cast<DWORD>(head.content_length);
  ecb.GetServerVariable = EcbGetServerVariable;
  ecb.WriteClient = EcbWriteClient;
  ecb.ReadClient = EcbReadClient;
  ecb.ServerSupportFunction = EcbServerSupportFunction;
}

RequestContext::~RequestContext() { magic_ = kDeadMagic; }

VarSource RequestContext::Vars() const {
  VarSource v;
  v.server = server;
  v.conn = conn;
  v.head = &head;
  v.vdir = vdir;
  v.path_translated = &path_translated;
  v.auth = filters ? filters->auth() : nullptr;
  return v;
}

RequestContext* RequestContext::FromHandle(HCONN h) {
  RequestContext* r = static_cast<RequestContext*>(h);
  if (!r || r->magic_ != kLiveMagic) return nullptr;
  return r;
}

void RequestContext::Release() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool RequestContext::PreRead() {
  size_t limit = server->config().read_ahead;
  if (!head.chunked && head.content_length < limit) limit = static_cast<size_t>(head.content_length);
  preread_.resize(limit + 1);
  size_t have = 0;
  if (head.has_body() && head.expect_continue) {
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!conn->SendAll(kContinue, sizeof kContinue - 1, server->config().io_timeout_ms)) return false;
  }
  // The read-ahead takes what the client has already sent and never waits for more: a client
  // that sends its head and then stalls (or sends slowly) must not hold this thread. IIS may
  // also call the extension with less than UploadReadAheadSize preloaded; the rest comes by
  // ReadClient. (With READ_RAW_DATA filters every byte goes through them on this thread
  // anyway, so there the read-ahead waits as before.)
  const bool wait = conn->read_filtering;
  if (!wait && limit > 0 && conn->available() < limit) conn->FillNonBlocking();
  while (have < limit) {
    uint32_t err = 0;
    bool framing = false;
    int64_t n =
        body_.Read(conn, preread_.data() + have, limit - have, server->config().io_timeout_ms, &err, &framing, wait);
    if (n < 0) {
      if (framing) {
        std::string r = BuildErrorResponse(400, false, false, head_only_);
        conn->SendAll(r.data(), r.size(), server->config().io_timeout_ms);
        std::lock_guard<std::mutex> lock(write_mu_);
        status_sent_ = 400;
        bytes_sent_ += r.size();
        headers_sent_ = true;
      }
      return false;
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  preread_.resize(have + 1);
  preread_[have] = 0;
  ecb.cbAvailable = static_cast<DWORD>(have);
  ecb.lpbData = reinterpret_cast<LPBYTE>(preread_.data());
  return true;
}

RequestContext::Outcome RequestContext::Run() {
  if (parent_) {
    // A child request: its entity (if any) is already in preread_; nothing is read from the client.
    if (preread_.empty()) preread_.push_back(0);
    ecb.cbAvailable = static_cast<DWORD>(preread_.size() - 1);
    ecb.cbTotalBytes = ecb.cbAvailable;
    ecb.lpbData = reinterpret_cast<LPBYTE>(preread_.data());
  } else if (!PreRead()) {
    // The body could not be read (client gone, timeout, bad chunk framing → 400 already sent);
    // the extension never runs.
    ecb.dwHttpStatusCode = 400;
    WriteLog();
    Release();  // completion
    Release();  // Run
    return Outcome::kClose;
  }
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    proc_thread_ = std::this_thread::get_id();
  }
  DWORD st = vdir->extension->HttpExtensionProc(&ecb);
  {
    // From here on a head goes out at once; one held until now goes out before the request
    // may wait (PENDING) for more.
    std::lock_guard<std::mutex> lock(write_mu_);
    proc_thread_ = std::thread::id();
    FlushHeldLocked();
  }
  DWORD final_status = st;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    if (st == HSE_STATUS_PENDING && state_ == RequestState::kRunning) {
      // Completion belongs to DONE_WITH_SESSION now; our reference keeps `this` valid until
      // the Release below.
      AdvanceRequestState(&state_, RequestState::kPending);
      final_status = HSE_STATUS_PENDING;
    } else {
      // A final status, or PENDING after DONE_WITH_SESSION already came: this thread completes.
      if (st == HSE_STATUS_PENDING) final_status = done_status_;
      AdvanceRequestState(&state_, RequestState::kCompleted);
    }
  }
  if (final_status == HSE_STATUS_PENDING) {
    Release();
    return Outcome::kPending;
  }
  bool keep = Finish(final_status);
  if (parent_) parent_->OnChildDone(this);
  Release();  // completion
  Release();  // Run
  return keep ? Outcome::kKeepAlive : Outcome::kClose;
}

void RequestContext::CompleteFromPool(DWORD status) {
  if (parent_) {
    Finish(status);
    parent_->OnChildDone(this);
    Release();
    return;
  }
  bool keep = Finish(status);
  Connection* c = conn;
  Server* s = server;
  Release();
  s->AfterRequest(c, keep);
}

BOOL RequestContext::DoneWithSession(LPVOID buffer) {
  DWORD status = buffer ? *static_cast<DWORD*>(buffer) : HSE_STATUS_SUCCESS;
  bool complete_now = false;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    switch (state_) {
      case RequestState::kRunning:  // HttpExtensionProc's return completes, with this status
        done_status_ = status;
        AdvanceRequestState(&state_, RequestState::kDoneEarly);
        break;
      case RequestState::kPending:
        AdvanceRequestState(&state_, RequestState::kCompleted);
        complete_now = true;
        break;
      case RequestState::kDoneEarly:
      case RequestState::kCompleted: return TRUE;  // a duplicate, or a request that was not pending: ignored
    }
  }
  if (complete_now) {
    // Completing on the caller's thread saves a thread hand-off per request (the common case
    // for out-of-process extensions, whose DONE_WITH_SESSION comes from their channel thread).
    // It is only done when completion cannot call back into any extension or filter: no
    // filters (END_OF_REQUEST and LOG would run on this thread) and no buffered next request
    // to start. Otherwise a pool thread completes it, as the caller may hold its own locks.
    if (!parent_ && !conn->filters && conn->available() == 0) {
      CompleteFromPool(status);
    } else {
      server->pool().Post([this, status] { CompleteFromPool(status); });
    }
  }
  return TRUE;
}

void RequestContext::RegisteredCompletion(PFN_HSE_IO_COMPLETION* cb, void** ctx) {
  std::lock_guard<std::mutex> lock(state_mu_);
  *cb = io_callback_;
  *ctx = io_context_;
}

bool RequestContext::CompletionFor(bool async, PFN_HSE_IO_COMPLETION* cb, void** ctx) {
  *cb = nullptr;
  *ctx = nullptr;
  if (!async) return true;
  RegisteredCompletion(cb, ctx);
  if (*cb) return true;
  SetLastError(ERROR_INVALID_PARAMETER);
  return false;
}

void RequestContext::PostCompletion(PFN_HSE_IO_COMPLETION cb, void* ctx, DWORD bytes, DWORD error) {
  AddRef();
  server->pool().Post([this, cb, ctx, bytes, error] {
    cb(&ecb, ctx, bytes, error);
    Release();
  });
}

bool RequestContext::SendLocked(const char* p, size_t n) {
  if (!held_head_.empty()) {
    constexpr size_t kMergeLimit = 16384;  // larger bodies: two sends beat one copy
    if (n <= kMergeLimit) {
      held_head_.append(p, n);
      return FlushHeldLocked();
    }
    if (!FlushHeldLocked()) return false;
  }
  return SendNowLocked(p, n);
}

bool RequestContext::FlushHeldLocked() {
  if (held_head_.empty()) return !write_failed_;
  std::string out;
  out.swap(held_head_);
  return SendNowLocked(out.data(), out.size());
}

void RequestContext::FlushHeld() {
  std::lock_guard<std::mutex> lock(write_mu_);
  FlushHeldLocked();
}

bool RequestContext::SendNowLocked(const char* p, size_t n) {
  if (write_failed_) return false;
  if (n == 0) return true;
  bool ok;
  if (filters) {
    bool close_after = false;
    ok = filters->Send(p, n, server->config().io_timeout_ms, &close_after);
    if (close_after) close_requested_ = true;
  } else {
    ok = conn->SendAll(p, n, server->config().io_timeout_ms);
  }
  if (!ok) {
    write_failed_ = true;
    return false;
  }
  bytes_sent_ += n;
  return true;
}

BOOL RequestContext::SendHeaders(const char* status, size_t status_len, const char* headers, size_t headers_len,
                                 bool ex, bool keep_conn) {
  std::string st = status ? std::string(status, status_len) : std::string("200 OK");
  if (st.empty()) st = "200 OK";
  if (st.size() < 3 || !isdigit(static_cast<unsigned char>(st[0])) || !isdigit(static_cast<unsigned char>(st[1])) ||
      !isdigit(static_cast<unsigned char>(st[2])) || (st.size() > 3 && st[3] != ' ')) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  int code = (st[0] - '0') * 100 + (st[1] - '0') * 10 + (st[2] - '0');
  if (st.size() == 3) st += std::string(" ") + ReasonPhrase(code);

  // Header lines (CRLF or LF), up to the first empty line; what follows is body. Parsed by
  // length: a NUL in the header lines is refused, one in the body is sent.
  std::vector<HttpHeader> hv;
  bool ended = false;
  std::string bad;
  size_t off = ParseResponseHeaderLines(headers, headers_len, &hv, &ended, &bad);
  const char* body = ended ? headers + off : nullptr;
  size_t body_len = ended ? headers_len - off : 0;

  std::lock_guard<std::mutex> lock(write_mu_);
  if (headers_sent_ || raw_output_) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!IsValidStatusText(st)) return RefuseResponseLocked("the status line has a control character (CR, LF, NUL...)");
  if (bad.empty()) bad = CheckResponseHeaderList(hv);
  if (!bad.empty()) return RefuseResponseLocked(bad);
  if (filters) {
    FilterSession::Verdict v = filters->SendResponse(&st, &hv);
    if (v == FilterSession::kFinished || v == FilterSession::kFinishedKeepConn) {
      // An ACCESS_DENIED filter answered instead: drop the extension's response.
      taken_over_ = true;
      headers_sent_ = true;
      keep_alive_ = false;
      status_sent_ = filters->response_status() ? filters->response_status() : code;
      bytes_sent_ += filters->bytes_sent();
      return TRUE;
    }
    if (v == FilterSession::kError) {  // a SEND_RESPONSE filter failed: close without a response
      headers_sent_ = true;
      write_failed_ = true;
      status_sent_ = 500;
      SetLastError(ERROR_NETNAME_DELETED);
      return FALSE;
    }
    // What the filters changed obeys the same rules.
    if (!IsValidStatusText(st)) return RefuseResponseLocked("a filter set a status line with a control character");
    bad = CheckResponseHeaderList(hv);
    if (!bad.empty()) return RefuseResponseLocked("after SEND_RESPONSE filters: " + bad);
    code = atoi(st.c_str());
  }
  // Identical repeats of Content-Length (the check refused different ones) go out once.
  bool seen_length = false;
  for (auto it = hv.begin(); it != hv.end();) {
    bool length = IEquals(it->name, "Content-Length");
    if (length && seen_length) {
      it = hv.erase(it);
      continue;
    }
    seen_length = seen_length || length;
    ++it;
  }
  ResponseFraming fr = FramingOf(hv);
  bool http10 = head.minor_version == 0;
  bool framed = fr.content_length >= 0 || (fr.chunked && !http10) || head_only_ || code == 204 || code == 304 ||
                (code >= 100 && code < 200);
  keep_alive_ =
      head.keep_alive && framed && !fr.close && (!ex || keep_conn) && !close_requested_.load() && !server->stopping();
  std::string out = ComposeResponseHead(st, hv, keep_alive_, http10);
  if (body_len && !head_only_) {
    out.append(body, body_len);
    resp_body_bytes_ += body_len;
  }
  headers_sent_ = true;
  status_sent_ = code;
  resp_content_length_ = fr.content_length;
  bool body_follows = !head_only_ && code != 204 && code != 304 && code >= 200 &&
                      (fr.content_length < 0 || static_cast<uint64_t>(fr.content_length) > resp_body_bytes_);
  if (body_follows && !filters && !parent_ && proc_thread_ == std::this_thread::get_id()) {
    held_head_ = std::move(out);  // goes out with the first body bytes (SendLocked)
    return TRUE;
  }
  if (!SendLocked(out.data(), out.size())) {
    SetLastError(ERROR_NETNAME_DELETED);
    return FALSE;
  }
  return TRUE;
}

BOOL RequestContext::RefuseResponseLocked(const std::string& why) {
  fprintf(stderr, "isapi-host: %s: response refused (500 sent instead): %s\n", vdir->library.c_str(), why.c_str());
  std::string st = StatusLineText(500);
  std::string body = ErrorBody(500);
  std::vector<HttpHeader> hv;
  hv.push_back(HttpHeader{"Content-Type", "text/html; charset=utf-8"});
  hv.push_back(HttpHeader{"Content-Length", std::to_string(body.size())});
  std::string r = ComposeResponseHead(st, hv, false, false);
  if (!head_only_) r += body;
  // The extension's later output is dropped (taken over) and the connection closes after it.
  headers_sent_ = true;
  taken_over_ = true;
  keep_alive_ = false;
  status_sent_ = 500;
  SendLocked(r.data(), r.size());
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

bool RequestContext::SendRedirect(const char* url) {
  std::string location = url ? url : "/";
  // A Location that would end the header line is refused, never cut (the rest could be a
  // second header).
  for (unsigned char c : location)
    if (c < 0x20 || c == 0x7f) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return false;
    }
  std::string body =
      "<head><title>Object moved</title></head><body><h1>Object Moved</h1>This "
      "object may be found <a HREF=\"" +
      location + "\">here</a>.</body>\r\n";
  std::string headers = "Location: " + location +
                        "\r\nContent-Type: text/html\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                        body;
  return SendHeaders("302 Object Moved", 16, headers.data(), headers.size(), false, true);
}

bool RequestContext::DrainBody() {
  std::lock_guard<std::mutex> lock(read_mu_);
  char buf[16384];
  uint64_t drained = 0;
  while (!body_.done()) {
    uint32_t err = 0;
    bool framing = false;
    int64_t n = body_.Read(conn, buf, sizeof buf, kDrainTimeoutMs, &err, &framing);
    if (n < 0) return false;
    drained += static_cast<uint64_t>(n);
    if (drained > kDrainLimit) return false;
  }
  return true;
}

bool RequestContext::Finish(DWORD status) {
  bool keep;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    FlushHeldLocked();
    if (!headers_sent_ && !raw_output_) {
      if (status == HSE_STATUS_ERROR) {
        std::string st = StatusLineText(500);
        std::string body = ErrorBody(500);
        std::vector<HttpHeader> hv;
        hv.push_back(HttpHeader{"Content-Type", "text/html; charset=utf-8"});
        hv.push_back(HttpHeader{"Content-Length", std::to_string(body.size())});
        FilterSession::Verdict v = filters ? filters->SendResponse(&st, &hv) : FilterSession::kContinue;
        if (v == FilterSession::kContinue) {
          std::string r = ComposeResponseHead(st, hv, false, false);
          if (!head_only_) r += body;
          SendLocked(r.data(), r.size());
        }
        status_sent_ = 500;
        headers_sent_ = true;
      }
      // A successful request that sent nothing: IIS sends nothing and closes.
      keep = false;
    } else {
      keep = keep_alive_ && !raw_output_ && !write_failed_ && !taken_over_ && status != HSE_STATUS_ERROR;
      if (keep && !head_only_ && resp_content_length_ >= 0 && status_sent_ != 204 && status_sent_ != 304 &&
          resp_body_bytes_ != static_cast<uint64_t>(resp_content_length_))
        keep = false;  // the declared length was not honoured: the framing is lost
    }
  }
  if (parent_) return false;  // a child: the parent decides about the connection
  if (close_requested_.load() || server->stopping()) keep = false;
  if (keep && !body_.done()) keep = DrainBody();
  if (!keep && close_requested_.load() && !conn->abort_close) NetShutdownBoth(conn->sock);
  WriteLog();
  return keep;
}

void RequestContext::WriteLog() {
  if (parent_) return;  // child requests are not logged separately (like IIS)
  AccessLog* log = server->access_log();
  if (!log && !filters) return;
  AccessLogEntry e;
  e.server_ip = conn->local.addr;
  e.method = head.method;
  e.uri_stem = head.path;
  // IIS appends the extension's log data (lpszLogData, HSE_APPEND_LOG_PARAMETER) to cs-uri-query.
  char logdata[HSE_LOG_BUFFER_LEN + 1];
  memcpy(logdata, ecb.lpszLogData, HSE_LOG_BUFFER_LEN);
  logdata[HSE_LOG_BUFFER_LEN] = 0;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    e.uri_query = head.query + logdata + log_param_;
    e.status = status_sent_ ? status_sent_ : static_cast<int>(ecb.dwHttpStatusCode);
    e.win32_status = write_failed_ ? ERROR_NETNAME_DELETED : 0;
    e.bytes_sent = bytes_sent_;
  }
  e.server_port = conn->local.port;
  e.client_ip = conn->peer.addr;
  std::string ua;
  if (head.FindHeader("User-Agent", &ua)) e.user_agent = ua;
  e.bytes_received = head_bytes_ + body_.raw_bytes();
  e.time_taken_ms = MonotonicMs() - start_ms_;
  if (filters) {
    if (filters->auth()) e.username = filters->auth()->user;
    filters->EndOfRequest();
    filters->Log(&e);
    filters->ClearRequest();
  }
  if (log) log->Write(e);
}

}  // namespace isapi_host
