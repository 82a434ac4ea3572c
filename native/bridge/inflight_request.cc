#include "inflight_request.h"

#include <cstring>

#include "request_io.h"

namespace isapi::bridge {

bool complete_locked(InflightRequest& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock) {
  if (req.completed) return false;
  req.completed = true;
  req.doneStatus = hseStatus;
  req.outQueue.clear();
  // With an operation outstanding the ECB stays in use until its completion, which issues
  // DONE_WITH_SESSION (request_io.cc); otherwise it is issued now.
  issue_done_if_idle_locked(req, lock);
  return true;
}

void fail_request(InflightRequest& req, int status, const char* reason, const std::string& detail,
                  int retryAfterSeconds) {
  std::unique_lock<std::mutex> lock(req.mu);
  if (req.completed) return;
  DWORD hse = HSE_STATUS_SUCCESS;
  if (!req.headersSent) {
    std::string statusLine = std::to_string(status) + " " + reason;
    std::string body = statusLine + "\n" + detail + "\n";
    std::string headers = "Content-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n";
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
  } else {
    // Part of a response already went out: the only honest signal left is to cut the connection.
    hse = HSE_STATUS_ERROR;
  }
  complete_locked(req, hse, lock);
}

}  // namespace isapi::bridge
