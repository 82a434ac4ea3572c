// Serving a connection (a loop thread with epoll, else a pool thread): one request after another
// through READ_RAW_DATA, the head parser, PREPROC_HEADERS, URL canonicalisation, URL_MAP and
// AUTHENTICATION, then a static file, a host-made response or an ISAPI extension
// (RequestContext); then keep-alive, pipelining or close.
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

// A received or rewritten URL: canonical (dot segments resolved, '\' as '/') or refused.
bool CanonicalizeRequestPath(HttpRequestHead* head) {
  if (head->path == "*") return true;  // OPTIONS *
  std::string canon;
  if (CanonicalUrlPath(head->path, UrlForm::kDecoded, &canon) != 0) return false;
  head->path = std::move(canon);
  return true;
}

}  // namespace

void Server::ReturnToLoop(Connection* c, bool linger) {
  if (c->abort_close) {  // SO_LINGER 0 is set: closing now sends the reset
    CloseNow(c);
    return;
  }
  if (!linger && stopping_.load()) linger = true;
  if (linger) NetShutdownWrite(c->sock);
  int64_t now = MonotonicMs();
  c->linger_bytes = 0;
  if (linger) {
    c->loop_state = Connection::LoopState::kLinger;
    c->deadline_ms = now + kLingerMs;
  } else {
    c->loop_state = Connection::LoopState::kReading;
    c->head_started = c->available() > 0;
    c->deadline_ms = now + (c->head_started ? config_.header_timeout_ms : config_.keepalive_timeout_ms);
  }
  if (!idle_.Insert(c, [&] { Rearm(c); })) {
    CloseNow(c);  // the loop is closed: shutting down
    return;
  }
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
    HeadScan scan = ScanRequestHead(c->data(), c->available(), config_.max_request_line, config_.max_header_bytes);
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

Server::Outcome Server::HandleRequest(Connection* c, HttpRequestHead& head, size_t head_bytes, int64_t start_ms) {
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
      RequestContext* ctx =
          new RequestContext(this, c, v, std::move(head), head_bytes, start_ms, PathTranslated(head.path));
      switch (ctx->Run()) {  // ctx may be gone now
        case RequestContext::Outcome::kKeepAlive: return Outcome::kKeepAlive;
        case RequestContext::Outcome::kClose: return Outcome::kClose;
        case RequestContext::Outcome::kPending: return Outcome::kPending;
      }
    }
    if (!root_.empty()) return ServeStatic(c, head, head_bytes, start_ms, nullptr);
    return SendSimple(c, head, head_bytes, start_ms, 404);
  }

  // ---- with filters: URL_MAP, AUTHENTICATION, AUTH_COMPLETE (docs/isapi.md §5 order)
  std::string physical = PathTranslated(head.path);
  fs->SetRequest(&head, v, &physical);
  if (fs->Wants(SF_NOTIFY_URL_MAP)) {
    FilterSession::Verdict fv = fs->UrlMap(head.path, &physical);
    if (fv != FilterSession::kContinue) return FilterVerdict(c, head, head_bytes, start_ms, fv);
  }
  std::string authz;
  if (fs->Wants(SF_NOTIFY_AUTHENTICATION) && (fs->first_request() || head.FindHeader("Authorization", &authz))) {
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
    RequestContext* ctx = new RequestContext(this, c, v, std::move(head), head_bytes, start_ms, std::move(physical));
    switch (ctx->Run()) {  // ctx may be gone now
      case RequestContext::Outcome::kKeepAlive: return Outcome::kKeepAlive;
      case RequestContext::Outcome::kClose: return Outcome::kClose;
      case RequestContext::Outcome::kPending: return Outcome::kPending;
    }
  }
  if (!root_.empty()) return ServeStatic(c, head, head_bytes, start_ms, &physical);
  return SendSimple(c, head, head_bytes, start_ms, 404);
}

Server::Outcome Server::FilterVerdict(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms,
                                      FilterSession::Verdict v) {
  FilterSession* fs = c->filters;
  switch (v) {
    case FilterSession::kFinished:
    case FilterSession::kFinishedKeepConn: {
      // The filter answered: the rest of the request (including the extension) is skipped.
      bool keep =
          v == FilterSession::kFinishedKeepConn && fs->response_keepable() && !head.has_body() && !stopping_.load();
      LogSimple(c, &head, fs->response_status() ? fs->response_status() : 200, fs->bytes_sent(), head_bytes, start_ms);
      return keep ? Outcome::kKeepAlive : Outcome::kClose;
    }
    case FilterSession::kDenied:
      fs->SetRequest(&head, nullptr, nullptr);
      return SendSimple(c, head, head_bytes, start_ms, 401);
    case FilterSession::kError:
    default:
      if (fs->responded()) {
        LogSimple(c, &head, fs->response_status() ? fs->response_status() : 500, fs->bytes_sent(), head_bytes,
                  start_ms);
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

bool Server::SendHostResponse(Connection* c, const HttpRequestHead* head, int* status, std::vector<HttpHeader> headers,
                              const std::string& body, bool* keep, uint64_t* sent) {
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
    std::string bad =
        IsValidStatusText(st) ? CheckResponseHeaderList(headers) : "a status line with a control character";
    if (!bad.empty()) {
      // A filter's change could split the response: the plain error page goes out instead.
      fprintf(stderr, "isapi-host: response refused (500 sent instead): after SEND_RESPONSE filters: %s\n",
              bad.c_str());
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

}  // namespace isapi_host
