// The asynchronous I/O of one request (see the threading notes in inflight_request.h):
// response writes queued and sent one at a time with HSE_IO_ASYNC, the request body read with
// HSE_REQ_ASYNC_READ_CLIENT and forwarded with flow control, DONE_WITH_SESSION once nothing is
// outstanding. A client that stops reading holds only its own request; a client that leaves
// mid-body is reported to the worker as an abort, never as the end of the body.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>

#include "inflight_request.h"

namespace isapi::bridge {

// Registers the bridge's completion callback on the ECB (HSE_REQ_IO_COMPLETION), once.
void register_io_completion(InflightRequest& req);

// Starts an asynchronous operation: `issue` makes the server call (without req.mu held) and
// returns false if the server refused it at once; `done` runs on completion, with req.mu held
// (it may release and retake it). Caller holds req.mu and has checked !req.ioBusy. Returns
// false if the call was refused.
bool begin_async_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock, std::function<bool()> issue,
                        AsyncContinuation done);

// Ends the request with an error now (the client went away, or the server refused its
// response) and tells the worker (Abort), so 'aborted' fires there and it stops producing.
void abort_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock);

// Issues DONE_WITH_SESSION if the request is completed, not yet done, and idle.
void issue_done_if_idle_locked(InflightRequest& req, std::unique_lock<std::mutex>& lock);

// Reader thread: body bytes of a Write frame for the client.
void queue_write_locked(const InflightPtr& req, std::string_view data, std::unique_lock<std::mutex>& lock);
// Reader thread: the worker's Done; the request ends once its queued writes are out.
void finish_after_writes_locked(const InflightPtr& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock);
// Reader thread: the worker took the request (Taken) or consumed body bytes (BodyCredit).
void start_body_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock);
void body_credit_locked(const InflightPtr& req, uint32_t bytes, std::unique_lock<std::mutex>& lock);

}  // namespace isapi::bridge
