#include "server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <system_error>

#include "http_util.h"
#include "platform/dynlib.h"
#include "platform/system.h"
#include "request_context.h"
#include "static_files.h"

namespace fs = std::filesystem;

namespace isapi_host {

namespace {

constexpr int kLingerMs = 2000;              // graceful close: wait this long for the client's FIN
constexpr int64_t kLingerMaxBytes = 1 << 20;  // ... discarding at most this much
constexpr int kLoopTickMs = 500;

// A received or rewritten URL: canonical (dot segments resolved, '\' as '/') or refused.
bool CanonicalizeRequestPath(HttpRequestHead* head) {
  if (head->path == "*") return true;  // OPTIONS *
  std::string canon;
  if (CanonicalUrlPath(head->path, UrlForm::kDecoded, &canon) != 0) return false;
  head->path = std::move(canon);
  return true;
}

#ifdef _WIN32
constexpr char kSep = '\\';
#else
constexpr char kSep = '/';
#endif

std::string WithTrailingSep(std::string p) {
  if (p.empty() || (p.back() != '/' && p.back() != '\\')) p += kSep;
  return p;
}

}  // namespace

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() = default;

bool Server::Start(std::string* err) {
  if (!NetStartup(err)) return false;
  std::error_code ec;
  // UTF-8 both ways (u8path / u8string): .string() and a narrow fs::path are the ANSI code page on Windows.
  cwd_ = WithTrailingSep(fs::current_path(ec).u8string());
  if (!config_.root.empty()) {
    fs::path root = fs::absolute(fs::u8path(config_.root), ec);
    if (ec || !fs::is_directory(root, ec)) {
      *err = "--root " + config_.root + " is not a directory";
      return false;
    }
    root_ = WithTrailingSep(fs::weakly_canonical(root, ec).u8string());
  }
  for (const auto& vd : config_.vdirs) {
    // Library paths are UTF-8 (Utf8Arguments); a narrow fs::path would read them as ANSI on Windows.
    fs::path lib = fs::absolute(fs::u8path(vd.second), ec);
    if (!ec) lib = fs::weakly_canonical(lib, ec);
    if (!vdirs_.Add(vd.first, lib.u8string(), err)) return false;
  }
  if (!config_.access_log.empty()) {
    access_log_.reset(new AccessLog());
    if (!access_log_->Open(config_.access_log, err)) return false;
  }
  poller_ = Poller::Create(err);
  if (!poller_) return false;
  listener_ = NetListen(config_.bind_addr, config_.port, &bound_, err);
  if (listener_ == kInvalidSocket) return false;

  // Each library is loaded once, however many virtual directories and filter entries name it
  // (like IIS): one handle; a library that is both a filter and an extension gets both calls.
  std::map<std::string, void*> handles;
  auto open_library = [&](const std::string& path, const char* what) -> void* {
    auto it = handles.find(path);
    if (it != handles.end()) return it->second;
    std::string dlerr;
    void* h = DynlibOpen(path, &dlerr);
    if (!h) {
      *err = std::string("cannot load ISAPI ") + what + " " + path + ": " + dlerr;
      return nullptr;
    }
    handles.emplace(path, h);
    libraries_.push_back(h);
    return h;
  };
  // Filters load first (IIS loads global filters when the worker process starts).
  for (const std::string& f : config_.filters) {
    fs::path lib = fs::absolute(fs::u8path(f), ec);
    if (!ec) lib = fs::weakly_canonical(lib, ec);
    void* h = open_library(lib.u8string(), "filter");
    if (!h) return false;
    std::unique_ptr<IsapiFilter> filter(new IsapiFilter());
    if (!filter->Load(lib.u8string(), h, err)) return false;
    filters_.Add(filter.get());
    filter_libs_.push_back(std::move(filter));
  }
  std::map<std::string, IsapiExtension*> loaded;
  for (Vdir& v : vdirs_.entries()) {
    auto it = loaded.find(v.library);
    if (it == loaded.end()) {
      void* h = open_library(v.library, "extension");
      if (!h) return false;
      std::unique_ptr<IsapiExtension> ext(new IsapiExtension());
      if (!ext->Load(v.library, h, err)) return false;
      it = loaded.emplace(v.library, ext.get()).first;
      extensions_.push_back(std::move(ext));
    }
    v.extension = it->second;
    v.physical_dir = it->second->directory();
  }

  int threads = config_.threads;
  if (threads <= 0) {
    threads = static_cast<int>(std::thread::hardware_concurrency()) * 2;
    if (threads < 8) threads = 8;
  }
  pool_.reset(new ThreadPool(threads));
  io_pool_.reset(new ThreadPool(0, 512));
  if (!poller_->Add(listener_, &listener_tag_)) {
    *err = "cannot watch the listening socket: " + NetLastErrorText();
    return false;
  }
  inline_serve_ = poller_->ConcurrentWaits();
  int loopers = inline_serve_ ? threads : 1;
  last_scan_ = MonotonicMs();
  loop_running_ = loopers;
  for (int i = 0; i < loopers; i++) loop_threads_.emplace_back([this] { LoopMain(); });
  return true;
}

std::string Server::ListenUrl() const {
  std::string a = bound_.addr.find(':') != std::string::npos ? "[" + bound_.addr + "]" : bound_.addr;
  return "http://" + a + ":" + std::to_string(bound_.port) + "/";
}

void Server::Shutdown() {
  stopping_ = true;
  if (poller_) poller_->Wakeup();
  int64_t deadline = MonotonicMs() + config_.shutdown_grace_ms;
  // Loop threads finish the request they serve (bounded by the grace period), then exit.
  while (loop_running_.load() > 0 && MonotonicMs() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  bool loops_done = loop_running_.load() == 0;
  for (auto& t : loop_threads_) {
    if (!t.joinable()) continue;
    if (loops_done) t.join();
    else t.detach();
  }
  if (poller_) CloseLoop();
  while (busy_.load() > 0 && MonotonicMs() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  bool idle = busy_.load() == 0;
  if (!idle)
    fprintf(stderr, "isapi-host: %d request(s) still running after %d ms; terminating anyway\n",
            busy_.load(), config_.shutdown_grace_ms);
  for (auto& ext : extensions_) ext->Terminate();
  for (auto& f : filter_libs_) f->Terminate();
  // Unloading code that another thread may still be running would crash: keep it mapped then.
  if (idle) {
    for (auto& ext : extensions_) ext->Unload();
    for (void* h : libraries_) DynlibClose(h);
    libraries_.clear();
  }
  if (access_log_) access_log_->Flush();
}

uint32_t Server::MapUrlToPath(const std::string& url, UrlForm form, std::string* path,
                              const Vdir** vdir_out, size_t* matched_url,
                              size_t* matched_path) const {
  std::string canon;
  if (uint32_t e = CanonicalUrlPath(url.substr(0, url.find('?')), form, &canon)) return e;
  const Vdir* v = vdirs_.Match(canon);
  std::string base = v ? v->physical_dir : (root_.empty() ? cwd_ : root_);
  std::string rest = canon.substr(v ? v->prefix.size() : 0);
  while (!rest.empty() && rest[0] == '/') rest.erase(0, 1);
  std::string p;
  if (uint32_t e = JoinUnderRoot(base, rest, &p)) return e;
  if (rest.empty() && p.size() > 1 && (p.back() == '/' || p.back() == '\\')) p.pop_back();
  if (vdir_out) *vdir_out = v;
  if (matched_url) *matched_url = v ? v->prefix.size() : 0;
  if (matched_path) *matched_path = base.size() > 1 ? base.size() - 1 : base.size();
  *path = std::move(p);
  return 0;
}

std::string Server::PathTranslated(const std::string& path) const {
  std::string p;
  return MapUrlToPath(path, UrlForm::kDecoded, &p) == 0 ? p : std::string();
}

// ---------------------------------------------------------------- event loop (loop thread)

void Server::LoopMain() {
  PollEvent events[256];
  // With concurrent waiters each takes one event at a time, so connections spread over threads.
  int max_events = inline_serve_ ? 1 : 256;
  while (!stopping_.load()) {
    int n = poller_->Wait(events, max_events, kLoopTickMs);
    for (int i = 0; i < n && !stopping_.load(); i++) {
      void* tag = events[i].tag;
      if (!tag) continue;
      if (tag == &listener_tag_) AcceptAll();
      else OnReadable(static_cast<Connection*>(tag));
    }
    int64_t now = MonotonicMs();
    int64_t last = last_scan_.load();
    if (now - last >= kLoopTickMs && last_scan_.compare_exchange_strong(last, now)) ScanTimeouts(now);
  }
  loop_running_--;
}

void Server::CloseLoop() {
  poller_->Remove(listener_);
  NetClose(listener_);
  std::lock_guard<std::mutex> lock(idle_mu_);
  loop_closed_ = true;
  for (Connection* c : idle_) {
    poller_->Remove(c->sock);
    NetClose(c->sock);
    DestroyConnection(c);
  }
  idle_.clear();
}

void Server::AcceptAll() {
  int64_t now = MonotonicMs();
  for (int i = 0; i < 256; i++) {
    NetAddress peer, local;
    socket_t s = NetAccept(listener_, &peer, &local);
    if (s == kInvalidSocket) break;
    NetConfigureConnection(s);
    Connection* c = new Connection(s, peer, local);
    c->id = next_conn_id_.fetch_add(1, std::memory_order_relaxed);
    if (!filters_.empty()) {
      c->filters = new FilterSession(this, c, &filters_, c->id);
      c->read_filtering = c->filters->Wants(SF_NOTIFY_READ_RAW_DATA);
    }
    c->deadline_ms = now + config_.header_timeout_ms;  // first request: header timeout
    {
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.insert(c);
    }
    if (!poller_->Add(s, c)) {
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.erase(c);
      LoopClose(c);
    }
  }
  poller_->Rearm(listener_, &listener_tag_);
}

void Server::LoopClose(Connection* c) {
  poller_->Remove(c->sock);
  NetClose(c->sock);
  if (c->filters && c->filters->Wants(SF_NOTIFY_END_OF_NET_SESSION) && !stopping_.load()) {
    // Filters never run on the loop thread.
    busy_++;
    pool_->Post([this, c] {
      DestroyConnection(c);
      busy_--;
    });
    return;
  }
  DestroyConnection(c);
}

void Server::DestroyConnection(Connection* c) {
  if (c->filters) {
    c->filters->EndOfNetSession();
    delete c->filters;
    c->filters = nullptr;
  }
  delete c;
}

void Server::Rearm(Connection* c) {
  // Everything about c is read before the release: once re-armed, another loop thread may take
  // the connection (acquire in OnReadable) and close or free it while epoll_ctl returns.
  socket_t s = c->sock;
  c->handoff.fetch_add(1, std::memory_order_release);
  poller_->Rearm(s, c);
}

void Server::OnReadable(Connection* c) {
  c->handoff.load(std::memory_order_acquire);
  if (c->loop_state == Connection::LoopState::kLinger) {
    char buf[16384];
    for (;;) {
      int64_t n = NetRecv(c->sock, buf, sizeof buf);
      if (n > 0 && (c->linger_bytes += n) < kLingerMaxBytes) continue;
      if (n == kIoWouldBlock) {
        Rearm(c);
        return;
      }
      break;  // EOF, error or too much: close now
    }
    {
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.erase(c);
    }
    LoopClose(c);
    return;
  }
  int64_t n = c->FillNonBlocking();
  if (n == 0 || n == kIoError) {
    {
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.erase(c);
    }
    LoopClose(c);
    return;
  }
  if (c->read_filtering && c->unfiltered() > 0) {
    // READ_RAW_DATA filters see the bytes before anything parses them: on a pool thread.
    {
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.erase(c);
    }
    busy_++;
    if (inline_serve_) ServeConnection(c);
    else pool_->Post([this, c] { ServeConnection(c); });
    return;
  }
  c->SkipLeadingEmptyLines();
  if (n == kIoWouldBlock || c->available() == 0) {
    Rearm(c);
    return;
  }
  HeadScan scan = ScanRequestHead(c->data(), c->available(), config_.max_request_line,
                                  config_.max_header_bytes);
  if (scan.kind == HeadScan::kIncomplete) {
    if (!c->head_started) {
      c->head_started = true;
      c->deadline_ms = MonotonicMs() + config_.header_timeout_ms;
    }
    Rearm(c);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(idle_mu_);
    idle_.erase(c);
  }
  busy_++;
  if (inline_serve_) ServeConnection(c);  // this loop thread serves it: no hand-off
  else pool_->Post([this, c] { ServeConnection(c); });
}

void Server::ScanTimeouts(int64_t now) {
  std::vector<Connection*> expired;
  {
    std::lock_guard<std::mutex> lock(idle_mu_);
    for (Connection* c : idle_)
      if (c->deadline_ms <= now) expired.push_back(c);
    for (Connection* c : expired) idle_.erase(c);
  }
  for (Connection* c : expired) {
    if (c->loop_state == Connection::LoopState::kReading && c->head_started) {
      // A partial request head for too long: 408, then a graceful close.
      std::string r = BuildErrorResponse(408, false, false, false);
      NetSend(c->sock, r.data(), r.size());
      LogSimple(c, nullptr, 408, r.size(), c->available(), now, false);
      NetShutdownWrite(c->sock);
      c->loop_state = Connection::LoopState::kLinger;
      c->linger_bytes = 0;
      c->deadline_ms = now + kLingerMs;
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.insert(c);
      Rearm(c);
    } else {
      LoopClose(c);  // idle keep-alive connection, or a linger that timed out: close silently
    }
  }
}

// ---------------------------------------------------------------- pool side

void Server::ReturnToLoop(Connection* c, bool linger) {
  if (c->abort_close) {  // SO_LINGER 0 is set: closing now sends the reset
    CloseNow(c);
    return;
  }
  if (!linger && stopping_.load()) linger = true;
  if (linger) NetShutdownWrite(c->sock);
  int64_t now = MonotonicMs();
  std::unique_lock<std::mutex> lock(idle_mu_);
  if (loop_closed_) {
    lock.unlock();
    CloseNow(c);
    return;
  }
  c->linger_bytes = 0;
  if (linger) {
    c->loop_state = Connection::LoopState::kLinger;
    c->deadline_ms = now + kLingerMs;
  } else {
    c->loop_state = Connection::LoopState::kReading;
    c->head_started = c->available() > 0;
    c->deadline_ms = now + (c->head_started ? config_.header_timeout_ms : config_.keepalive_timeout_ms);
  }
  idle_.insert(c);
  Rearm(c);
  busy_--;
}

void Server::CloseNow(Connection* c) {
  poller_->Remove(c->sock);
  NetClose(c->sock);
  DestroyConnection(c);
  busy_--;
}

void Server::AfterRequest(Connection* c, bool keep) {
  if (keep) ServeConnection(c);
  else ReturnToLoop(c, true);
}

void Server::ServeConnection(Connection* c) {
  for (;;) {
    if (c->unfiltered() > 0 && c->filters->ReadRawData() != FilterSession::kContinue) {
      ReturnToLoop(c, true);  // a READ_RAW_DATA filter ended the connection
      return;
    }
    c->SkipLeadingEmptyLines();
    if (c->available() == 0) {
      ReturnToLoop(c, false);
      return;
    }
    HeadScan scan = ScanRequestHead(c->data(), c->available(), config_.max_request_line,
                                    config_.max_header_bytes);
    if (scan.kind == HeadScan::kIncomplete) {
      ReturnToLoop(c, false);
      return;
    }
    int64_t start = MonotonicMs();
    if (c->filters) c->filters->BeginRequest();
    if (scan.kind == HeadScan::kError) {
      SendErrorAndClose(c, scan.status, nullptr, c->available(), start);
      return;
    }
    HttpRequestHead head;
    int status = ParseRequestHead(c->data(), scan.head_len, &head);
    c->Consume(scan.head_len);
    // Dot segments are resolved as HTTP.sys does; a path that climbs above "/" is a 400.
    if (status == 0 && !CanonicalizeRequestPath(&head)) status = 400;
    if (status != 0) {
      SendErrorAndClose(c, status, &head, scan.head_len, start);
      return;
    }
    Outcome o = HandleRequest(c, head, scan.head_len, start);
    if (o == Outcome::kPending) return;  // the request hands the connection back later
    if (o == Outcome::kClose) {
      ReturnToLoop(c, true);
      return;
    }
  }
}

Server::Outcome Server::HandleRequest(Connection* c, HttpRequestHead& head, size_t head_bytes,
                                      int64_t start_ms) {
  FilterSession* fs = c->filters;
  if (fs) {
    fs->SetRequest(&head, nullptr, nullptr);
    if (fs->Wants(SF_NOTIFY_PREPROC_HEADERS)) {
      FilterSession::Verdict v = fs->PreprocHeaders(&head);
      if (v != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, v);
      // A rewritten URL obeys the same rules as a received one.
      if (!CanonicalizeRequestPath(&head)) return SendSimple(c, head, head_bytes, start_ms, 400);
    }
  }
  if (head.path == "/__isapi-host/health") return ServeHealth(c, head, head_bytes, start_ms);
  if (head.path == "*") {  // OPTIONS *
    return SendSimple(c, head, head_bytes, start_ms, 200, "Allow: OPTIONS, GET, HEAD, POST\r\n");
  }
  const Vdir* v = vdirs_.Match(head.path);
  if (!fs) {
    if (v) {
      RequestContext* ctx = new RequestContext(this, c, v, std::move(head), head_bytes, start_ms,
                                               PathTranslated(head.path));
      switch (ctx->Run()) {  // ctx may be gone now
        case RequestContext::Outcome::kKeepAlive: return Outcome::kKeepAlive;
        case RequestContext::Outcome::kClose: return Outcome::kClose;
        case RequestContext::Outcome::kPending: return Outcome::kPending;
      }
    }
    if (!root_.empty()) return ServeStatic(c, head, head_bytes, start_ms, nullptr);
    return SendSimple(c, head, head_bytes, start_ms, 404);
  }

  // ---- with filters: URL_MAP, AUTHENTICATION, AUTH_COMPLETE (isapi-abi.md §5 order)
  std::string physical = PathTranslated(head.path);
  fs->SetRequest(&head, v, &physical);
  if (fs->Wants(SF_NOTIFY_URL_MAP)) {
    FilterSession::Verdict fv = fs->UrlMap(head.path, &physical);
    if (fv != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, fv);
  }
  std::string authz;
  if (fs->Wants(SF_NOTIFY_AUTHENTICATION) &&
      (fs->first_request() || head.FindHeader("Authorization", &authz))) {
    FilterSession::Verdict fv = fs->Authenticate(head);
    if (fv != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, fv);
  }
  if (fs->Wants(SF_NOTIFY_AUTH_COMPLETE)) {
    std::string before = head.path;
    FilterSession::Verdict fv = fs->AuthComplete(&head);
    if (fv != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, fv);
    if (head.path != before) {  // rewritten: map again (URL_MAP may repeat)
      if (!CanonicalizeRequestPath(&head)) return SendSimple(c, head, head_bytes, start_ms, 400);
      v = vdirs_.Match(head.path);
      physical = PathTranslated(head.path);
      fs->SetRequest(&head, v, &physical);
      if (fs->Wants(SF_NOTIFY_URL_MAP)) {
        fv = fs->UrlMap(head.path, &physical);
        if (fv != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, fv);
      }
    }
  }
  if (v) {
    RequestContext* ctx =
        new RequestContext(this, c, v, std::move(head), head_bytes, start_ms, std::move(physical));
    switch (ctx->Run()) {  // ctx may be gone now
      case RequestContext::Outcome::kKeepAlive: return Outcome::kKeepAlive;
      case RequestContext::Outcome::kClose: return Outcome::kClose;
      case RequestContext::Outcome::kPending: return Outcome::kPending;
    }
  }
  if (!root_.empty()) return ServeStatic(c, head, head_bytes, start_ms, &physical);
  return SendSimple(c, head, head_bytes, start_ms, 404);
}

Server::Outcome Server::FilterVerdict(Connection* c, const HttpRequestHead& head,
                                      size_t head_bytes, int64_t start_ms,
                                      FilterSession::Verdict v) {
  FilterSession* fs = c->filters;
  switch (v) {
    case FilterSession::kFinished:
    case FilterSession::kFinishedKeepConn: {
      // The filter answered: the rest of the request (including the extension) is skipped.
      bool keep = v == FilterSession::kFinishedKeepConn && fs->response_keepable() &&
                  !head.has_body() && !stopping_.load();
      LogSimple(c, &head, fs->response_status() ? fs->response_status() : 200, fs->bytes_sent(),
                head_bytes, start_ms);
      return keep ? Outcome::kKeepAlive : Outcome::kClose;
    }
    case FilterSession::kDenied:
      fs->SetRequest(&head, nullptr, nullptr);
      return SendSimple(c, head, head_bytes, start_ms, 401);
    case FilterSession::kError:
    default:
      if (fs->responded()) {
        LogSimple(c, &head, fs->response_status() ? fs->response_status() : 500, fs->bytes_sent(),
                  head_bytes, start_ms);
        return Outcome::kClose;
      }
      {
        // The error page itself does not go through the filters again.
        std::string r = BuildErrorResponse(500, false, false, head.method == "HEAD");
        bool ok = c->SendAll(r.data(), r.size(), config_.io_timeout_ms);
        LogSimple(c, &head, 500, ok ? r.size() : 0, head_bytes, start_ms);
      }
      return Outcome::kClose;
  }
}

bool Server::SendOut(Connection* c, const char* p, size_t n, bool* keep) {
  if (!c->filters) return c->SendAll(p, n, config_.io_timeout_ms);
  bool close_after = false;
  bool ok = c->filters->Send(p, n, config_.io_timeout_ms, &close_after);
  if (close_after) *keep = false;
  return ok;
}

bool Server::SendHostResponse(Connection* c, const HttpRequestHead* head, int* status,
                              std::vector<HttpHeader> headers, const std::string& body,
                              bool* keep, uint64_t* sent) {
  FilterSession* fs = c->filters;
  std::string st = StatusLineText(*status);
  if (fs) {
    FilterSession::Verdict v = fs->SendResponse(&st, &headers);
    if (v == FilterSession::kFinished || v == FilterSession::kFinishedKeepConn) {
      // An ACCESS_DENIED filter answered instead.
      *keep = false;
      *sent += fs->bytes_sent();
      if (fs->response_status()) *status = fs->response_status();
      return true;
    }
    if (v == FilterSession::kError) {
      *keep = false;
      return false;
    }
    if (FramingOf(headers).close) *keep = false;
    *status = atoi(st.c_str());
    std::string bad = IsValidStatusText(st) ? CheckResponseHeaderList(headers) : "a status line with a control character";
    if (!bad.empty()) {
      // A filter's change could split the response: the plain error page goes out instead.
      fprintf(stderr, "isapi-host: response refused (500 sent instead): after SEND_RESPONSE filters: %s\n", bad.c_str());
      *status = 500;
      *keep = false;
      std::string r = BuildErrorResponse(500, false, false, head && head->method == "HEAD");
      bool ok = c->SendAll(r.data(), r.size(), config_.io_timeout_ms);
      if (ok) *sent += r.size();
      return ok;
    }
  }
  std::string out = ComposeResponseHead(st, headers, *keep, head && head->minor_version == 0);
  if (!(head && head->method == "HEAD")) out += body;
  bool ok = SendOut(c, out.data(), out.size(), keep);
  if (ok) *sent += out.size();
  return ok;
}

namespace {
std::vector<HttpHeader> ErrorHeaders(const std::string& body, const std::string& extra) {
  std::vector<HttpHeader> hv;
  hv.push_back(HttpHeader{"Content-Type", "text/html; charset=utf-8"});
  hv.push_back(HttpHeader{"Content-Length", std::to_string(body.size())});
  bool ended;
  if (!extra.empty()) ParseHeaderLines(extra.data(), extra.size(), &hv, &ended);
  return hv;
}
}  // namespace

Server::Outcome Server::SendSimple(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                                   int64_t start_ms, int status, const std::string& extra) {
  // A request body nobody reads: close rather than parse it as the next request.
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::string body = ErrorBody(status);
  uint64_t sent = 0;
  bool ok = SendHostResponse(c, &head, &status, ErrorHeaders(body, extra), body, &keep, &sent);
  LogSimple(c, &head, status, sent, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

Server::Outcome Server::ServeStatic(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                                    int64_t start_ms, const std::string* physical) {
  StaticFile f = ResolveStaticFile(root_, head.method, head.path, physical);
  if (f.status != 200)
    return SendSimple(c, head, head_bytes, start_ms, f.status,
                      f.status == 405 ? "Allow: GET, HEAD\r\n" : "");
  FILE* fp = OpenFileUtf8(f.path, "rb");
  if (!fp) return SendSimple(c, head, head_bytes, start_ms, 404);
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::vector<HttpHeader> hv;
  hv.push_back(HttpHeader{"Content-Type", f.content_type});
  hv.push_back(HttpHeader{"Content-Length", std::to_string(f.size)});
  uint64_t sent = 0;
  int status = 200;
  bool ok = SendHostResponse(c, &head, &status, std::move(hv), std::string(), &keep, &sent);
  if (ok && status == 200 && head.method != "HEAD") {
    char buf[65536];
    uint64_t left = f.size;
    while (ok && left > 0) {
      size_t n = fread(buf, 1, left < sizeof buf ? static_cast<size_t>(left) : sizeof buf, fp);
      if (n == 0) {
        ok = false;  // the file shrank: the framing is broken, close
        break;
      }
      ok = SendOut(c, buf, n, &keep);
      if (ok) sent += n;
      left -= n;
    }
  }
  fclose(fp);
  LogSimple(c, &head, status, sent, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

void Server::SendErrorAndClose(Connection* c, int status, const HttpRequestHead* head,
                               size_t head_bytes, int64_t start_ms) {
  bool keep = false;
  std::string body = ErrorBody(status);
  uint64_t sent = 0;
  if (c->filters && head) c->filters->SetRequest(head, nullptr, nullptr);
  SendHostResponse(c, head, &status, ErrorHeaders(body, ""), body, &keep, &sent);
  LogSimple(c, head, status, sent, head_bytes, start_ms);
  ReturnToLoop(c, true);
}

StaticFile Server::ResolveStatic(const std::string& method, const std::string& path) const {
  if (root_.empty()) {
    StaticFile f;
    f.status = 404;
    return f;
  }
  return ResolveStaticFile(root_, method, path);
}

void Server::ReportUnhealthy(const std::string& library, const std::string& reason) {
  fprintf(stderr, "isapi-host: %s reported unhealthy: %s\n", library.c_str(), reason.c_str());
  fflush(stderr);
  std::lock_guard<std::mutex> lock(health_mu_);
  if (unhealthy_.size() >= 100) unhealthy_.erase(unhealthy_.begin());
  unhealthy_.push_back(library + ": " + reason);
}

// GET /__isapi-host/health: 200 "healthy", or 503 with one "library: reason" line per
// HSE_REQ_REPORT_UNHEALTHY report (IIS would recycle the worker process; this host shows it).
Server::Outcome Server::ServeHealth(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                                    int64_t start_ms) {
  std::string body;
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (unhealthy_.empty()) body = "healthy\n";
    else
      for (const std::string& l : unhealthy_) body += "unhealthy: " + l + "\n";
  }
  int status = body == "healthy\n" ? 200 : 503;
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::vector<HttpHeader> hv;
  hv.push_back(HttpHeader{"Content-Type", "text/plain; charset=utf-8"});
  hv.push_back(HttpHeader{"Content-Length", std::to_string(body.size())});
  hv.push_back(HttpHeader{"Cache-Control", "no-store"});
  uint64_t sent = 0;
  bool ok = SendHostResponse(c, &head, &status, std::move(hv), body, &keep, &sent);
  LogSimple(c, &head, status, sent, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

void Server::LogSimple(Connection* c, const HttpRequestHead* head, int status, uint64_t sent,
                       uint64_t received, int64_t start_ms, bool notify_filters) {
  FilterSession* fs = notify_filters ? c->filters : nullptr;
  if (!access_log_ && !fs) return;
  AccessLogEntry e;
  e.server_ip = c->local.addr;
  e.server_port = c->local.port;
  e.client_ip = c->peer.addr;
  if (head) {
    e.method = head->method;
    e.uri_stem = head->path.empty() ? head->raw_path : head->path;
    e.uri_query = head->query;
    std::string ua;
    if (head->FindHeader("User-Agent", &ua)) e.user_agent = ua;
  }
  e.status = status;
  e.bytes_sent = sent;
  e.bytes_received = received;
  e.time_taken_ms = MonotonicMs() - start_ms;
  if (fs) {
    if (fs->auth()) e.username = fs->auth()->user;
    fs->EndOfRequest();
    fs->Log(&e);
    fs->ClearRequest();
  }
  if (access_log_) access_log_->Write(e);
}

}  // namespace isapi_host
