#include "inflight_request.h"

#include <cstring>

#include <cassert>

#include "bridge_log.h"
#include "request_io.h"

namespace isapi::bridge {

const char* phase_name(RequestPhase p) {
  switch (p) {
    case RequestPhase::Waiting: return "Waiting";
    case RequestPhase::Sent: return "Sent";
    case RequestPhase::Taken: return "Taken";
    case RequestPhase::Finishing: return "Finishing";
    case RequestPhase::Ending: return "Ending";
    case RequestPhase::Closed: return "Closed";
  }
  return "?";
}

static bool allowed(RequestPhase from, RequestPhase to) {
  using P = RequestPhase;
  switch (to) {
    case P::Waiting: return from == P::Sent;
    case P::Sent: return from == P::Waiting;
    case P::Taken: return from == P::Sent;
    case P::Finishing: return from == P::Taken;
    case P::Ending: return from < P::Ending;
    case P::Closed: return from == P::Ending;
  }
  return false;
}

void InflightRequest::advance(RequestPhase to) {
  if (!allowed(phase, to)) {
    log_line(std::string("bug: request ") + std::to_string(id) + " went from " + phase_name(phase) + " to " + phase_name(to));
    assert(!"request phase transition not allowed");
  }
  phase = to;
}

bool complete_locked(InflightRequest& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock) {
  if (req.ended()) return false;
  req.advance(RequestPhase::Ending);
  req.doneStatus = hseStatus;
  req.outQueue.clear();
  // With an operation outstanding the ECB stays in use until its completion, which issues
  // DONE_WITH_SESSION (request_io.cc); otherwise it is issued now.
  issue_done_if_idle_locked(req, lock);
  return true;
}

void send_whole_response_locked(InflightRequest& req, int status, const std::string& statusLine,
                                const std::string& contentType, const std::string& body, int retryAfterSeconds) {
  std::string headers = "Content-Type: " + contentType + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (retryAfterSeconds > 0) headers += "Retry-After: " + std::to_string(retryAfterSeconds) + "\r\n";
  headers += "\r\n";
  // The body goes with the headers (text after the header block is body): one call, and no
  // WriteClient that could collide with an asynchronous read still outstanding.
  headers += body;
  HSE_SEND_HEADER_EX_INFO info{};
  info.pszStatus = statusLine.c_str();
  info.cchStatus = DWORD(statusLine.size());
  info.pszHeader = headers.c_str();
  info.cchHeader = DWORD(headers.size());
  info.fKeepConn = TRUE;
  req.ecb->dwHttpStatusCode = DWORD(status);
  req.ecb->ServerSupportFunction(req.ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr);
  req.headersSent = true;
}

void fail_request(InflightRequest& req, int status, const char* reason, const std::string& detail,
                  int retryAfterSeconds) {
  std::unique_lock<std::mutex> lock(req.mu);
  if (req.ended()) return;
  DWORD hse = HSE_STATUS_SUCCESS;
  if (!req.headersSent) {
    std::string statusLine = std::to_string(status) + " " + reason;
    send_whole_response_locked(req, status, statusLine, "text/plain; charset=utf-8", statusLine + "\n" + detail + "\n",
                               retryAfterSeconds);
  } else {
    // Part of a response already went out: the only honest signal left is to cut the connection.
    hse = HSE_STATUS_ERROR;
  }
  complete_locked(req, hse, lock);
}

}  // namespace isapi::bridge
