// The event loop (loop threads): accepting, reading request heads without blocking, timeouts,
// and graceful close. A connection with a complete head goes to ServeConnection
// (server_pipeline.cc).
#include "server.h"

#include <chrono>
#include <cstdio>
#include <system_error>

#include "http_util.h"
#include "platform/system.h"
#include "request_context.h"
#include "static_files.h"

namespace isapi_host {

namespace {

constexpr int kLoopTickMs = 500;

}  // namespace

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
  for (Connection* c : idle_.Close()) {
    poller_->Remove(c->sock);
    NetClose(c->sock);
    DestroyConnection(c);
  }
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
    bool added = false;
    if (!idle_.Insert(c, [&] { added = poller_->Add(s, c); })) {
      LoopClose(c);  // shutting down
    } else if (!added) {
      idle_.Erase(c);
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
    idle_.Erase(c);
    LoopClose(c);
    return;
  }
  int64_t n = c->FillNonBlocking();
  if (n == 0 || n == kIoError) {
    idle_.Erase(c);
    LoopClose(c);
    return;
  }
  if (c->read_filtering && c->unfiltered() > 0) {
    // READ_RAW_DATA filters see the bytes before anything parses them: on a pool thread.
    idle_.Erase(c);
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
  HeadScan scan = ScanRequestHead(c->data(), c->available(), config_.max_request_line, config_.max_header_bytes);
  if (scan.kind == HeadScan::kIncomplete) {
    if (!c->head_started) {
      c->head_started = true;
      c->deadline_ms = MonotonicMs() + config_.header_timeout_ms;
    }
    Rearm(c);
    return;
  }
  idle_.Erase(c);
  busy_++;
  if (inline_serve_) ServeConnection(c);  // this loop thread serves it: no hand-off
  else pool_->Post([this, c] { ServeConnection(c); });
}

void Server::ScanTimeouts(int64_t now) {
  for (Connection* c : idle_.TakeExpired(now)) {
    if (c->loop_state == Connection::LoopState::kReading && c->head_started) {
      // A partial request head for too long: 408, then a graceful close.
      std::string r = BuildErrorResponse(408, false, false, false);
      NetSend(c->sock, r.data(), r.size());
      LogSimple(c, nullptr, 408, r.size(), c->available(), now, false);
      NetShutdownWrite(c->sock);
      c->loop_state = Connection::LoopState::kLinger;
      c->linger_bytes = 0;
      c->deadline_ms = now + kLingerMs;
      if (!idle_.Insert(c, [&] { Rearm(c); })) LoopClose(c);
    } else {
      LoopClose(c);  // idle keep-alive connection, or a linger that timed out: close silently
    }
  }
}

}  // namespace isapi_host
