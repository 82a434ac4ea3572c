#include "inflight_request.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

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
    log_line(std::string("bug: request ") + std::to_string(id) + " went from " + phase_name(phase) + " to " +
             phase_name(to));
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

void InflightRequest::note_headers_sent(std::string_view block) {
  headersSent = true;
  size_t end = block.find("\r\n\r\n");
  std::string_view head = block.substr(0, end);
  bodyOut += end == std::string_view::npos ? 0 : block.size() - end - 4;
  // Content-Length, matched case-insensitively at the start of a header line.
  static constexpr std::string_view kName = "content-length:";
  for (size_t pos = 0; pos < head.size();) {
    size_t eol = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (line.size() > kName.size() && std::equal(kName.begin(), kName.end(), line.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string_view v = line.substr(kName.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      int64_t n = 0;
      bool digits = !v.empty();
      for (char c : v) {
        if (c == ' ' || c == '\t') break;
        if (c < '0' || c > '9' || n > (INT64_MAX - 9) / 10) {
          digits = false;
          break;
        }
        n = n * 10 + (c - '0');
      }
      if (digits) declaredLength = n;
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 2;
  }
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
  } else if (!req.response_complete()) {
    // Part of a response already went out: the only honest signal left is to cut the connection.
    hse = HSE_STATUS_ERROR;
  }
  // else the whole declared body is out (the worker died between its last write and Done):
  // the client has its answer, and the connection stays usable for its next request.
  complete_locked(req, hse, lock);
}

}  // namespace isapi::bridge
