// One request the bridge has handed to a worker: the ECB it must complete exactly once, and
// the state shared between the thread that pumps the request body, the worker's reader thread
// and the supervisor (deadlines).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "isapi.h"

namespace isapi::bridge {

class Worker;

struct InflightRequest {
  InflightRequest(EXTENSION_CONTROL_BLOCK* e, uint32_t i)
      : ecb(e), id(i), started(std::chrono::steady_clock::now()) {}

  EXTENSION_CONTROL_BLOCK* const ecb;
  const uint32_t id;
  const std::chrono::steady_clock::time_point started;

  std::mutex mu;                      // held around every call into the ECB
  std::condition_variable cv;         // body credit, worker assignment, completion
  std::shared_ptr<Worker> worker;     // null while waiting for a ready worker
  std::string beginFrame;             // the Request frame, until it has been sent
  bool headersSent = false;
  bool completed = false;             // DONE_WITH_SESSION is issued (or deferred below)
  bool pumping = false;               // HttpExtensionProc's thread is still reading the body
  bool doneDeferred = false;
  DWORD doneStatus = HSE_STATUS_SUCCESS;
  uint64_t bodySent = 0;              // request body bytes pushed to the worker
  uint64_t bodyCredit = 0;            // ... and consumed by it (flow control)
  // An asynchronous ServerSupportFunction in progress (EXEC_URL): what the web server reads
  // until its completion callback, and how to answer the worker then.
  std::shared_ptr<void> asyncStorage;
  std::function<void(DWORD cbIO, DWORD error)> asyncDone;
};

using InflightPtr = std::shared_ptr<InflightRequest>;

// Ends the request: DONE_WITH_SESSION now, or when the body pump lets go of the ECB.
// Caller holds req->mu. Returns true if this call completed it.
bool complete_locked(InflightRequest& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock);

// Sends a complete error response if nothing was sent yet, then completes the request.
// Used for a dead worker (502), a deadline (504) and no worker available (503).
void fail_request(InflightRequest& req, int status, const char* reason, const std::string& detail,
                  int retryAfterSeconds = 0);

}  // namespace isapi::bridge
