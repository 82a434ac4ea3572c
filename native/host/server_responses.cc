// Responses the host makes itself (errors, static files, the health page) and their access-log
// lines; ISAPI_REPORT_UNHEALTHY reports.
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
std::vector<HttpHeader> ErrorHeaders(const std::string& body, const std::string& extra) {
  std::vector<HttpHeader> hv;
  hv.push_back(HttpHeader{"Content-Type", "text/html; charset=utf-8"});
  hv.push_back(HttpHeader{"Content-Length", std::to_string(body.size())});
  bool ended;
  if (!extra.empty()) ParseHeaderLines(extra.data(), extra.size(), &hv, &ended);
  return hv;
}
}  // namespace

Server::Outcome Server::SendSimple(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms,
                                   int status, const std::string& extra) {
  // A request body nobody reads: close rather than parse it as the next request.
  bool keep = head.keep_alive && !head.has_body() && !stopping_.load();
  std::string body = ErrorBody(status);
  uint64_t sent = 0;
  bool ok = SendHostResponse(c, &head, &status, ErrorHeaders(body, extra), body, &keep, &sent);
  LogSimple(c, &head, status, sent, head_bytes, start_ms);
  return ok && keep ? Outcome::kKeepAlive : Outcome::kClose;
}

Server::Outcome Server::ServeStatic(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms,
                                    const std::string* physical) {
  StaticFile f = ResolveStaticFile(root_, head.method, head.path, physical);
  if (f.status != 200)
    return SendSimple(c, head, head_bytes, start_ms, f.status, f.status == 405 ? "Allow: GET, HEAD\r\n" : "");
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

void Server::SendErrorAndClose(Connection* c, int status, const HttpRequestHead* head, size_t head_bytes,
                               int64_t start_ms) {
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
Server::Outcome Server::ServeHealth(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms) {
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

void Server::LogSimple(Connection* c, const HttpRequestHead* head, int status, uint64_t sent, uint64_t received,
                       int64_t start_ms, bool notify_filters) {
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
