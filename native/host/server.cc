#include "server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <system_error>

#include "http_util.h"
#include "platform/system.h"
#include "request_context.h"
#include "static_files.h"

namespace fs = std::filesystem;

namespace isapi_host {

namespace {

constexpr int kLingerMs = 2000;              // graceful close: wait this long for the client's FIN
constexpr int64_t kLingerMaxBytes = 1 << 20;  // ... discarding at most this much
constexpr int kLoopTickMs = 500;

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
  cwd_ = WithTrailingSep(fs::current_path(ec).string());
  if (!config_.root.empty()) {
    fs::path root = fs::absolute(config_.root, ec);
    if (ec || !fs::is_directory(root, ec)) {
      *err = "--root " + config_.root + " is not a directory";
      return false;
    }
    root_ = WithTrailingSep(fs::weakly_canonical(root, ec).string());
  }
  for (const auto& vd : config_.vdirs) {
    fs::path lib = fs::absolute(vd.second, ec);
    if (!ec) lib = fs::weakly_canonical(lib, ec);
    if (!vdirs_.Add(vd.first, lib.string(), err)) return false;
  }
  if (!config_.access_log.empty()) {
    access_log_.reset(new AccessLog());
    if (!access_log_->Open(config_.access_log, err)) return false;
  }
  poller_ = Poller::Create(err);
  if (!poller_) return false;
  listener_ = NetListen(config_.bind_addr, config_.port, &bound_, err);
  if (listener_ == kInvalidSocket) return false;

  // Each library is loaded once, however many virtual directories map it (like IIS).
  std::map<std::string, IsapiExtension*> loaded;
  for (Vdir& v : vdirs_.entries()) {
    auto it = loaded.find(v.library);
    if (it == loaded.end()) {
      std::unique_ptr<IsapiExtension> ext(new IsapiExtension());
      if (!ext->Load(v.library, err)) return false;
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
  if (!poller_->Add(listener_, &listener_tag_)) {
    *err = "cannot watch the listening socket: " + NetLastErrorText();
    return false;
  }
  loop_thread_ = std::thread([this] { LoopMain(); });
  return true;
}

std::string Server::ListenUrl() const {
  std::string a = bound_.addr.find(':') != std::string::npos ? "[" + bound_.addr + "]" : bound_.addr;
  return "http://" + a + ":" + std::to_string(bound_.port) + "/";
}

void Server::Shutdown() {
  stopping_ = true;
  if (poller_) poller_->Wakeup();
  if (loop_thread_.joinable()) loop_thread_.join();
  int64_t deadline = MonotonicMs() + config_.shutdown_grace_ms;
  while (busy_.load() > 0 && MonotonicMs() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  bool idle = busy_.load() == 0;
  if (!idle)
    fprintf(stderr, "isapi-host: %d request(s) still running after %d ms; terminating anyway\n",
            busy_.load(), config_.shutdown_grace_ms);
  for (auto& ext : extensions_) ext->Terminate();
  // Unloading code that another thread may still be running would crash: keep it mapped then.
  if (idle)
    for (auto& ext : extensions_) ext->Unload();
  if (access_log_) access_log_->Flush();
}

std::string Server::MapUrlToPath(const std::string& url, const Vdir** vdir_out,
                                 size_t* matched_url, size_t* matched_path) const {
  const Vdir* v = vdirs_.Match(url);
  std::string base, rest;
  if (v) {
    base = v->physical_dir;
    rest = url.substr(v->prefix.size());
  } else {
    base = root_.empty() ? cwd_ : root_;
    rest = url;
  }
  if (vdir_out) *vdir_out = v;
  if (matched_url) *matched_url = v ? v->prefix.size() : 0;
  if (matched_path) *matched_path = base.size() > 1 ? base.size() - 1 : base.size();
  while (!rest.empty() && (rest[0] == '/' || rest[0] == '\\')) rest.erase(0, 1);
#ifdef _WIN32
  for (char& ch : rest)
    if (ch == '/') ch = '\\';
#endif
  std::string p = base + rest;
  if (rest.empty() && p.size() > 1 && (p.back() == '/' || p.back() == '\\')) p.pop_back();
  return p;
}

// ---------------------------------------------------------------- event loop (loop thread)

void Server::LoopMain() {
  PollEvent events[256];
  int64_t last_scan = MonotonicMs();
  while (!stopping_.load()) {
    int n = poller_->Wait(events, 256, kLoopTickMs);
    for (int i = 0; i < n; i++) {
      void* tag = events[i].tag;
      if (!tag) continue;
      if (tag == &listener_tag_) AcceptAll();
      else OnReadable(static_cast<Connection*>(tag));
    }
    int64_t now = MonotonicMs();
    if (now - last_scan >= kLoopTickMs) {
      ScanTimeouts(now);
      last_scan = now;
    }
  }
  poller_->Remove(listener_);
  NetClose(listener_);
  std::lock_guard<std::mutex> lock(idle_mu_);
  loop_closed_ = true;
  for (Connection* c : idle_) {
    poller_->Remove(c->sock);
    NetClose(c->sock);
    delete c;
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
  delete c;
}

void Server::OnReadable(Connection* c) {
  c->handoff.load(std::memory_order_acquire);
  if (c->loop_state == Connection::LoopState::kLinger) {
    char buf[16384];
    for (;;) {
      int64_t n = NetRecv(c->sock, buf, sizeof buf);
      if (n > 0 && (c->linger_bytes += n) < kLingerMaxBytes) continue;
      if (n == kIoWouldBlock) {
        poller_->Rearm(c->sock, c);
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
  c->SkipLeadingEmptyLines();
  if (n == kIoWouldBlock || c->available() == 0) {
    poller_->Rearm(c->sock, c);
    return;
  }
  HeadScan scan = ScanRequestHead(c->data(), c->available(), config_.max_request_line,
                                  config_.max_header_bytes);
  if (scan.kind == HeadScan::kIncomplete) {
    if (!c->head_started) {
      c->head_started = true;
      c->deadline_ms = MonotonicMs() + config_.header_timeout_ms;
    }
    poller_->Rearm(c->sock, c);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(idle_mu_);
    idle_.erase(c);
  }
  busy_++;
  pool_->Post([this, c] { ServeConnection(c); });
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
      LogSimple(c, nullptr, 408, r.size(), c->available(), now);
      NetShutdownWrite(c->sock);
      c->loop_state = Connection::LoopState::kLinger;
      c->linger_bytes = 0;
      c->deadline_ms = now + kLingerMs;
      c->handoff.fetch_add(1, std::memory_order_release);
      std::lock_guard<std::mutex> lock(idle_mu_);
      idle_.insert(c);
      poller_->Rearm(c->sock, c);
    } else {
      LoopClose(c);  // idle keep-alive connection, or a linger that timed out: close silently
    }
  }
}

// ---------------------------------------------------------------- pool side

void Server::ReturnToLoop(Connection* c, bool linger) {
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
  c->handoff.fetch_add(1, std::memory_order_release);
  poller_->Rearm(c->sock, c);
  busy_--;
}

void Server::CloseNow(Connection* c) {
  poller_->Remove(c->sock);
  NetClose(c->sock);
  delete c;
  busy_--;
}

void Server::AfterRequest(Connection* c, bool keep) {
  if (keep) ServeConnection(c);
  else ReturnToLoop(c, true);
}

void Server::ServeConnection(Connection* c) {
  for (;;) {
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
    if (scan.kind == HeadScan::kError) {
      SendErrorAndClose(c, scan.status, nullptr, c->available(), start);
      return;
    }
    HttpRequestHead head;
    int status = ParseRequestHead(c->data(), scan.head_len, &head);
    c->Consume(scan.head_len);
    // ".." segments (after percent-decoding) are refused for every URL: no vdir or root escape.
    if (status == 0 && HasDotDotSegment(head.path)) status = 400;
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
  if (head.path == "*") {  // OPTIONS *
    return SendSimple(c, head, head_bytes, start_ms, 200, "Allow: OPTIONS, GET, HEAD, POST\r\n");
  }
  const Vdir* v = vdirs_.Match(head.path);
  if (v) {
    RequestContext* ctx = new RequestContext(this, c, v, std::move(head), head_bytes, start_ms);
    switch (ctx->Run()) {  // ctx may be gone now
      case RequestContext::Outcome::kKeepAlive: return Outcome::kKeepAlive;
      case RequestContext::Outcome::kClose: return Outcome::kClose;
      case RequestContext::Outcome::kPending: return Outcome::kPending;
    }
  }
  if (!root_.empty()) return ServeStatic(c, head, head_bytes, start_ms);
  return SendSimple(c, head, head_bytes, start_ms, 404);
}

Server::Outcome Server::SendSimple(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                                   int64_t start_ms, int status, const std::string& extra) {
  // A request body nobody reads: close rather than parse it as the next request.
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::string r = BuildErrorResponse(status, keep, head.minor_version == 0, head.method == "HEAD", extra);
  bool ok = c->SendAll(r.data(), r.size(), config_.io_timeout_ms);
  LogSimple(c, &head, status, ok ? r.size() : 0, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

Server::Outcome Server::ServeStatic(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                                    int64_t start_ms) {
  StaticFile f = ResolveStaticFile(root_, head.method, head.path);
  if (f.status != 200)
    return SendSimple(c, head, head_bytes, start_ms, f.status,
                      f.status == 405 ? "Allow: GET, HEAD\r\n" : "");
  FILE* fp = fopen(f.path.c_str(), "rb");
  if (!fp) return SendSimple(c, head, head_bytes, start_ms, 404);
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::string h = "HTTP/1.1 200 OK\r\nServer: ";
  h += kServerHeader;
  h += "\r\nDate: " + HttpDateNow() + "\r\nContent-Type: " + f.content_type +
       "\r\nContent-Length: " + std::to_string(f.size) + "\r\n";
  if (!keep) h += "Connection: close\r\n";
  else if (head.minor_version == 0) h += "Connection: keep-alive\r\n";
  h += "\r\n";
  uint64_t sent = 0;
  bool ok = c->SendAll(h.data(), h.size(), config_.io_timeout_ms);
  if (ok) sent += h.size();
  if (ok && head.method != "HEAD") {
    char buf[65536];
    uint64_t left = f.size;
    while (ok && left > 0) {
      size_t n = fread(buf, 1, left < sizeof buf ? static_cast<size_t>(left) : sizeof buf, fp);
      if (n == 0) {
        ok = false;  // the file shrank: the framing is broken, close
        break;
      }
      ok = c->SendAll(buf, n, config_.io_timeout_ms);
      if (ok) sent += n;
      left -= n;
    }
  }
  fclose(fp);
  LogSimple(c, &head, 200, sent, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

void Server::SendErrorAndClose(Connection* c, int status, const HttpRequestHead* head,
                               size_t head_bytes, int64_t start_ms) {
  bool head_only = head && head->method == "HEAD";
  std::string r = BuildErrorResponse(status, false, false, head_only);
  bool ok = c->SendAll(r.data(), r.size(), config_.io_timeout_ms);
  LogSimple(c, head, status, ok ? r.size() : 0, head_bytes, start_ms);
  ReturnToLoop(c, true);
}

void Server::LogSimple(Connection* c, const HttpRequestHead* head, int status, uint64_t sent,
                       uint64_t received, int64_t start_ms) {
  if (!access_log_) return;
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
  access_log_->Write(e);
}

}  // namespace isapi_host
