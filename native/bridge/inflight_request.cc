#include "inflight_request.h"

#include <cstring>

namespace isapi::bridge {

static void done_with_session(EXTENSION_CONTROL_BLOCK* ecb, DWORD status) {
  DWORD s = status;
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &s, nullptr, nullptr);
}

bool complete_locked(InflightRequest& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock) {
  if (req.completed) return false;
  req.completed = true;
  req.cv.notify_all();
  if (req.pumping) {
    // The body pump is inside ReadClient on this ECB: it issues DONE_WITH_SESSION when it stops.
    req.doneDeferred = true;
    req.doneStatus = hseStatus;
    return true;
  }
  EXTENSION_CONTROL_BLOCK* ecb = req.ecb;
  lock.unlock();
  done_with_session(ecb, hseStatus);  // the ECB may be freed from here on
  lock.lock();
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
    HSE_SEND_HEADER_EX_INFO info{};
    info.pszStatus = statusLine.c_str();
    info.cchStatus = DWORD(statusLine.size());
    info.pszHeader = headers.c_str();
    info.cchHeader = DWORD(headers.size());
    info.fKeepConn = TRUE;
    req.ecb->dwHttpStatusCode = DWORD(status);
    req.ecb->ServerSupportFunction(req.ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, nullptr, nullptr);
    DWORD n = DWORD(body.size());
    req.ecb->WriteClient(req.ecb->ConnID, body.data(), &n, HSE_IO_SYNC);
    req.headersSent = true;
  } else {
    // Part of a response already went out: the only honest signal left is to cut the connection.
    hse = HSE_STATUS_ERROR;
  }
  complete_locked(req, hse, lock);
}

}  // namespace isapi::bridge
