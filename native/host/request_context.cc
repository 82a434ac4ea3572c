#include "request_context.h"

#include <cctype>
#include <cstring>

#include "access_log.h"
#include "http_util.h"
#include "platform/system.h"
#include "server.h"
#include "vdir_map.h"

namespace isapi_host {

namespace {

constexpr uint32_t kLiveMagic = 0x49534150;  // "ISAP"
constexpr uint32_t kDeadMagic = 0xDEADBEEF;
constexpr uint64_t kDrainLimit = 1 << 20;    // unread request body drained to keep a connection
constexpr int kDrainTimeoutMs = 5000;

// Extension callbacks (definitions in ecb_callbacks.cc).
}  // namespace

BOOL WINAPI EcbGetServerVariable(HCONN, LPSTR, LPVOID, LPDWORD);
BOOL WINAPI EcbWriteClient(HCONN, LPVOID, LPDWORD, DWORD);
BOOL WINAPI EcbReadClient(HCONN, LPVOID, LPDWORD);
BOOL WINAPI EcbServerSupportFunction(HCONN, DWORD, LPVOID, LPDWORD, LPDWORD);

RequestContext::RequestContext(Server* server, Connection* conn, const Vdir* vdir,
                               HttpRequestHead&& h, size_t head_bytes, int64_t start_ms)
    : server(server),
      conn(conn),
      vdir(vdir),
      head(std::move(h)),
      magic_(kLiveMagic),
      head_bytes_(head_bytes),
      start_ms_(start_ms) {
  head_only_ = head.method == "HEAD";
  method_ = head.method;
  query_ = head.query;
  // IIS gives PATH_INFO = the whole URL for script and wildcard maps.
  path_info_ = head.path;
  path_translated = server->MapUrlToPath(head.path);
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
  while (have < limit) {
    uint32_t err = 0;
    bool framing = false;
    int64_t n = body_.Read(conn, preread_.data() + have, limit - have,
                           server->config().io_timeout_ms, &err, &framing);
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
  if (!PreRead()) {
    // The body could not be read (client gone, timeout, bad chunk framing → 400 already sent);
    // the extension never runs.
    ecb.dwHttpStatusCode = 400;
    WriteLog();
    Release();  // completion
    Release();  // Run
    return Outcome::kClose;
  }
  DWORD st = vdir->extension->HttpExtensionProc(&ecb);
  DWORD final_status = st;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    proc_returned_ = true;
    proc_status_ = st;
    if (st == HSE_STATUS_PENDING) {
      if (!done_called_) {
        // Completion belongs to DONE_WITH_SESSION now; our reference keeps `this` valid until
        // the Release below.
        final_status = HSE_STATUS_PENDING;
      } else {
        final_status = done_status_;
        completed_ = true;
      }
    } else {
      completed_ = true;
    }
  }
  if (final_status == HSE_STATUS_PENDING) {
    Release();
    return Outcome::kPending;
  }
  bool keep = Finish(final_status);
  Release();  // completion
  Release();  // Run
  return keep ? Outcome::kKeepAlive : Outcome::kClose;
}

void RequestContext::CompleteFromPool(DWORD status) {
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
    if (done_called_ || completed_) return TRUE;  // duplicate, or not a pending request: ignored
    done_called_ = true;
    done_status_ = status;
    if (proc_returned_) {  // proc returned PENDING (otherwise completed_ would be set)
      completed_ = true;
      complete_now = true;
    }
  }
  if (complete_now) {
    // Never complete on the extension's own thread: it may hold its locks, and completion can
    // start the next request of the connection.
    server->pool().Post([this, status] { CompleteFromPool(status); });
  }
  return TRUE;
}

void RequestContext::PostCompletion(PFN_HSE_IO_COMPLETION cb, void* ctx, DWORD bytes, DWORD error) {
  AddRef();
  server->pool().Post([this, cb, ctx, bytes, error] {
    cb(&ecb, ctx, bytes, error);
    Release();
  });
}

bool RequestContext::SendLocked(const char* p, size_t n) {
  if (write_failed_) return false;
  if (n == 0) return true;
  if (!conn->SendAll(p, n, server->config().io_timeout_ms)) {
    write_failed_ = true;
    return false;
  }
  bytes_sent_ += n;
  return true;
}

BOOL RequestContext::SendHeaders(const char* status, size_t status_len, const char* headers,
                                 size_t headers_len, bool ex, bool keep_conn) {
  std::string st = status ? std::string(status, status_len) : std::string("200 OK");
  size_t cut = st.find_first_of("\r\n");
  if (cut != std::string::npos) st.resize(cut);
  if (st.empty()) st = "200 OK";
  if (st.size() < 3 || !isdigit(static_cast<unsigned char>(st[0])) ||
      !isdigit(static_cast<unsigned char>(st[1])) || !isdigit(static_cast<unsigned char>(st[2])) ||
      (st.size() > 3 && st[3] != ' ')) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  int code = (st[0] - '0') * 100 + (st[1] - '0') * 10 + (st[2] - '0');
  if (st.size() == 3) st += std::string(" ") + ReasonPhrase(code);

  // Header lines (CRLF or LF), up to the first empty line; what follows is body.
  std::string lines;
  bool has_server = false, has_date = false, ext_close = false, te_chunked = false;
  int64_t content_length = -1;
  size_t i = 0;
  bool ended = false;
  while (i < headers_len) {
    const char* nl = static_cast<const char*>(memchr(headers + i, '\n', headers_len - i));
    size_t line_end = nl ? static_cast<size_t>(nl - headers) : headers_len;
    size_t next = nl ? line_end + 1 : headers_len;
    std::string line(headers + i, line_end - i);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    i = next;
    if (line.empty()) {
      ended = nl != nullptr;
      break;
    }
    size_t colon = line.find(':');
    std::string name = colon == std::string::npos ? line : line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    size_t vb = value.find_first_not_of(" \t");
    value = vb == std::string::npos ? "" : value.substr(vb);
    std::string lower = value;
    for (char& ch : lower) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    if (IEquals(name, "Connection")) {
      // The host writes its own Connection header from its keep-alive decision.
      if (lower.find("close") != std::string::npos) ext_close = true;
      continue;
    }
    if (IEquals(name, "Content-Length")) {
      int64_t n = 0;
      bool ok = !value.empty();
      for (char ch : value) {
        if (ch == ' ' || ch == '\t') break;
        if (ch < '0' || ch > '9') { ok = false; break; }
        n = n * 10 + (ch - '0');
      }
      if (ok) content_length = n;
    } else if (IEquals(name, "Transfer-Encoding")) {
      if (lower.find("chunked") != std::string::npos) te_chunked = true;
    } else if (IEquals(name, "Server")) {
      has_server = true;
    } else if (IEquals(name, "Date")) {
      has_date = true;
    }
    lines += line;
    lines += "\r\n";
  }
  const char* body = ended ? headers + i : nullptr;
  size_t body_len = ended ? headers_len - i : 0;

  std::lock_guard<std::mutex> lock(write_mu_);
  if (headers_sent_ || raw_output_) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  bool http10 = head.minor_version == 0;
  bool framed = content_length >= 0 || (te_chunked && !http10) || head_only_ || code == 204 ||
                code == 304 || (code >= 100 && code < 200);
  keep_alive_ = head.keep_alive && framed && !ext_close && (!ex || keep_conn) &&
                !close_requested_.load() && !server->stopping();
  std::string out;
  out.reserve(128 + lines.size() + (head_only_ ? 0 : body_len));
  out += "HTTP/1.1 ";
  out += st;
  out += "\r\n";
  if (!has_server) {
    out += "Server: ";
    out += kServerHeader;
    out += "\r\n";
  }
  if (!has_date) {
    out += "Date: ";
    out += HttpDateNow();
    out += "\r\n";
  }
  out += lines;
  if (!keep_alive_) out += "Connection: close\r\n";
  else if (http10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  if (body_len && !head_only_) {
    out.append(body, body_len);
    resp_body_bytes_ += body_len;
  }
  headers_sent_ = true;
  status_sent_ = code;
  resp_content_length_ = content_length;
  if (!SendLocked(out.data(), out.size())) {
    SetLastError(ERROR_NETNAME_DELETED);
    return FALSE;
  }
  return TRUE;
}

bool RequestContext::SendRedirect(const char* url) {
  std::string location = url ? url : "/";
  size_t cut = location.find_first_of("\r\n");
  if (cut != std::string::npos) location.resize(cut);
  std::string body = "<head><title>Object moved</title></head><body><h1>Object Moved</h1>This "
                     "object may be found <a HREF=\"" + location + "\">here</a>.</body>\r\n";
  std::string headers = "Location: " + location + "\r\nContent-Type: text/html\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
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
    if (!headers_sent_ && !raw_output_) {
      if (status == HSE_STATUS_ERROR) {
        std::string r = BuildErrorResponse(500, false, false, head_only_);
        SendLocked(r.data(), r.size());
        status_sent_ = 500;
        headers_sent_ = true;
      }
      // A successful request that sent nothing: IIS sends nothing and closes.
      keep = false;
    } else {
      keep = keep_alive_ && !raw_output_ && !write_failed_ && status != HSE_STATUS_ERROR;
      if (keep && !head_only_ && resp_content_length_ >= 0 && status_sent_ != 204 &&
          status_sent_ != 304 && resp_body_bytes_ != static_cast<uint64_t>(resp_content_length_))
        keep = false;  // the declared length was not honoured: the framing is lost
    }
  }
  if (close_requested_.load() || server->stopping()) keep = false;
  if (keep && !body_.done()) keep = DrainBody();
  if (!keep && close_requested_.load()) NetShutdownBoth(conn->sock);
  WriteLog();
  return keep;
}

void RequestContext::WriteLog() {
  AccessLog* log = server->access_log();
  if (!log) return;
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
  log->Write(e);
}

}  // namespace isapi_host
