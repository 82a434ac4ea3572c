// One request the bridge has handed to a worker: the ECB it must complete exactly once, and
// the state shared between the worker's reader thread, the web server's I/O completion
// threads and the supervisor (deadlines, dead workers).
//
// Threads and ownership (all fields below `mu` are guarded by it):
// - HttpExtensionProc's thread builds the request and hands it to the pool; it never waits.
// - The worker's reader thread sends headers (synchronously: small) and queues writes.
// - Every other ECB I/O is asynchronous and one at a time, as ISAPI allows: response writes
//   (HSE_IO_ASYNC) and request-body reads (HSE_REQ_ASYNC_READ_CLIENT) are issued by whichever
//   thread finds the ECB idle, and continued from the server's completion callback
//   (request_io.cc). So no thread of ours and none of the server's waits for a client.
// - DONE_WITH_SESSION is issued once, by the first thread that finds the request finished
//   and no asynchronous operation outstanding.
#pragma once
#include <chrono>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "isapi.h"

namespace isapi::bridge {

class Worker;

// The life of a request in the bridge. Every change goes through InflightRequest::advance,
// which checks it against these arrows (anything else is a bug: logged, fatal in debug builds):
//
//   Waiting ──adopt──► Sent ──Taken──► Taken ──Done──► Finishing
//      ▲                │                 │                │
//      └──re-route──────┘                 │                │
//   (any of the four) ───── ended: Done's writes are out, a failure, the client left ─► Ending
//   Ending ──no I/O outstanding──► Closed (DONE_WITH_SESSION issued; the ECB is gone)
enum class RequestPhase : uint8_t {
  Waiting,    // no worker yet: queued in the pool, or taken back from a worker that died
  Sent,       // its Request frame went to a worker whose JavaScript has not yet taken it
  Taken,      // the worker's JavaScript has it: never re-routed from here on
  Finishing,  // the worker sent Done; queued writes are still going out
  Ending,     // over; DONE_WITH_SESSION waits for the outstanding asynchronous operation
  Closed,     // DONE_WITH_SESSION issued
};
const char* phase_name(RequestPhase p);

// What runs when the outstanding asynchronous operation completes, with the request's lock held.
using AsyncContinuation = std::function<void(DWORD cbIO, DWORD error, std::unique_lock<std::mutex>& lock)>;

struct InflightRequest {
  InflightRequest(EXTENSION_CONTROL_BLOCK* e, uint32_t i) : ecb(e), id(i), started(std::chrono::steady_clock::now()) {}

  EXTENSION_CONTROL_BLOCK* const ecb;
  const uint32_t id;
  const std::chrono::steady_clock::time_point started;

  std::mutex mu;
  std::shared_ptr<Worker> worker;  // null while waiting for a ready worker
  // The Request frame, kept until the worker's JavaScript has taken the request: a request
  // a dying worker never took goes to another worker instead of failing.
  std::string beginFrame;
  // Its Request frame's position among those sent on its worker's channel, modulo 2^32
  // (Worker::send_request), or -1 until then; compared with the worker's taken board when the
  // worker dies.
  std::atomic<int64_t> channelSeq{-1};
  RequestPhase phase = RequestPhase::Waiting;
  // Moves the request to `to` (caller holds mu); see RequestPhase for the allowed arrows.
  void advance(RequestPhase to);
  bool ended() const { return phase >= RequestPhase::Ending; }
  bool headersSent = false;
  DWORD doneStatus = HSE_STATUS_SUCCESS;  // for DONE_WITH_SESSION (Ending)

  // Asynchronous I/O, one operation at a time (request_io.cc).
  bool ioBusy = false;
  bool ioRegistered = false;
  bool forwarding = false;  // a completed read's bytes are being sent to the worker          // HSE_REQ_IO_COMPLETION
                            // set (on the first operation)
  AsyncContinuation asyncDone;            // the outstanding operation's continuation
  std::shared_ptr<InflightRequest> self;  // alive while an operation is outstanding
  std::shared_ptr<void> asyncStorage;     // what the server reads until completion (EXEC_URL)

  // Response body queued for the client, and bytes to acknowledge to the worker.
  std::deque<std::string> outQueue;
  uint64_t ackOwed = 0;
  // What the response declared and what of its body was handed to the server: a worker that
  // dies after its whole Content-Length went out has answered (fail_request keeps the
  // connection instead of cutting it under a client about to reuse it).
  int64_t declaredLength = -1;  // Content-Length of the sent headers, -1 if none
  uint64_t bodyOut = 0;         // body bytes given to the server (headers' tail + issued writes)
  void note_headers_sent(std::string_view headerBlock);
  bool response_complete() const { return declaredLength >= 0 && bodyOut >= uint64_t(declaredLength); }
  DWORD workerDoneStatus = HSE_STATUS_SUCCESS;  // what the worker's Done said (Finishing)

  // Request body beyond what the server preloaded: read asynchronously, forwarded with flow
  // control (at most a window ahead of what the worker consumed).
  bool chunkedBody = false;
  uint64_t bodyLeft = 0;     // bytes still to read (chunked: nonzero until the end)
  bool bodyPumping = false;  // the pump has started (after Taken)
  uint64_t bodySent = 0;     // request body bytes pushed to the worker
  uint64_t bodyCredit = 0;   // ... and consumed by it
  std::string readBuffer;
};

using InflightPtr = std::shared_ptr<InflightRequest>;

// Ends the request: DONE_WITH_SESSION now, or when the outstanding asynchronous operation
// completes. Caller holds req->mu (released and retaken). Returns true if this call ended it.
bool complete_locked(InflightRequest& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock);

// Sends a complete response (status, Content-Type, Content-Length, Retry-After if > 0, body)
// in one SEND_RESPONSE_HEADER_EX. Caller holds req.mu and has checked !req.headersSent.
void send_whole_response_locked(InflightRequest& req, int status, const std::string& statusLine,
                                const std::string& contentType, const std::string& body, int retryAfterSeconds);

// Sends a complete error response if nothing was sent yet, then completes the request.
// Used for a dead worker (502), a deadline (504) and no worker available (503).
void fail_request(InflightRequest& req, int status, const char* reason, const std::string& detail,
                  int retryAfterSeconds = 0);

}  // namespace isapi::bridge
