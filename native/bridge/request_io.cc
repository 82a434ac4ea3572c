#include "request_io.h"

#include <algorithm>

#include "bridge_log.h"
#include "wire.h"
#include "worker.h"

namespace isapi::bridge {

namespace {

// Request bodies are forwarded at most this far ahead of what the worker has consumed, so a
// large upload to a slow handler never piles up in the worker's memory.
constexpr uint64_t kBodyWindow = 1u << 20;
constexpr uint32_t kBodyChunk = 256 * 1024;
// Acknowledgements of written bytes are batched up to this much (or until the queue is empty):
// the worker's per-request window (runtime/ecb.ts) is several times larger.
constexpr uint64_t kAckBatch = 256u << 10;
constexpr size_t kCoalesce = 512u << 10;

// The continuation runs in the same critical section that marks the ECB idle: nothing else
// can start an operation before the finished one is accounted for.
VOID WINAPI io_completed(EXTENSION_CONTROL_BLOCK*, PVOID context, DWORD cbIO, DWORD error) {
  auto* raw = static_cast<InflightRequest*>(context);
  std::unique_lock<std::mutex> lock(raw->mu);
  AsyncContinuation done;
  done.swap(raw->asyncDone);
  InflightPtr keep;
  keep.swap(raw->self);
  raw->ioBusy = false;
  if (done) done(cbIO, error, lock);
  if (!lock.owns_lock()) lock.lock();
  issue_done_if_idle_locked(*raw, lock);  // a request that ended while the operation ran
}

void kick_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock);

void send_to_worker(const InflightPtr& req, const std::string& frame, std::unique_lock<std::mutex>& lock) {
  std::shared_ptr<Worker> w = req->worker;
  if (!w) return;
  lock.unlock();
  w->send(frame);
  lock.lock();
}

// io_completed issues a deferred DONE_WITH_SESSION after these continuations: an ended request
// needs nothing more here.
void write_done(const InflightPtr& req, DWORD error, std::unique_lock<std::mutex>& lock) {
  if (req->ended()) return;
  if (error != 0) return abort_locked(req, lock);  // the client went away
  if (!req->outQueue.empty()) {
    req->ackOwed += req->outQueue.front().size();
    req->outQueue.pop_front();
  }
  if (req->ackOwed >= kAckBatch || (req->outQueue.empty() && req->phase != RequestPhase::Finishing && req->ackOwed)) {
    channel::msg::WriteAck ack;
    ack.bytes = uint32_t(req->ackOwed);
    req->ackOwed = 0;
    send_to_worker(req, channel::encoded(req->id, ack), lock);
  }
  kick_locked(req, lock);
}

void read_done(const InflightPtr& req, DWORD cbIO, DWORD error, std::unique_lock<std::mutex>& lock) {
  if (req->ended()) return;
  bool end = false;
  if (error != 0 || (cbIO == 0 && !req->chunkedBody)) {
    // A Content-Length body cut short, or a failed read: the client left mid-body.
    log_line("request " + std::to_string(req->id) + ": the client went away after " + std::to_string(req->bodySent) +
             " body bytes (error " + std::to_string(error) + ")");
    return abort_locked(req, lock);
  }
  std::string frame;
  if (cbIO == 0) {
    end = true;  // the chunked body's last chunk
  } else {
    channel::msg::Body body;
    body.data = std::string_view(req->readBuffer.data(), cbIO);
    channel::encode(frame, req->id, body);
    req->bodySent += cbIO;
    if (!req->chunkedBody) req->bodyLeft -= std::min<uint64_t>(req->bodyLeft, cbIO);
    end = req->bodyLeft == 0;
  }
  if (end) {
    req->bodyLeft = 0;
    // An empty Body tells the worker there is no more.
    channel::encode(frame, req->id, channel::msg::Body{});
  }
  // No other read may start while this one's bytes are on their way: body frames stay in order.
  req->forwarding = true;
  send_to_worker(req, frame, lock);
  req->forwarding = false;
  kick_locked(req, lock);
}

// Starts the next operation the request is waiting for, if the ECB is idle: queued response
// bytes first, then the end of the request, then more request body (within the window).
void kick_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock) {
  if (req->ioBusy || req->forwarding) return;
  if (req->ended()) return issue_done_if_idle_locked(*req, lock);
  EXTENSION_CONTROL_BLOCK* ecb = req->ecb;
  if (!req->outQueue.empty()) {
    // Writes that piled up while the previous one was out go as one: one hand-off to the
    // server per batch, not per 64 KiB frame, when the client is slower than the worker.
    while (req->outQueue.size() > 1 && req->outQueue[0].size() + req->outQueue[1].size() <= kCoalesce) {
      req->outQueue[0] += req->outQueue[1];
      req->outQueue.erase(req->outQueue.begin() + 1);
    }
    std::string* data = &req->outQueue.front();
    req->bodyOut += data->size();
    bool ok = begin_async_locked(
        req, lock,
        [ecb, data] {
          DWORD n = DWORD(data->size());
          return ecb->WriteClient(ecb->ConnID, data->data(), &n, HSE_IO_ASYNC) != FALSE;
        },
        [req](DWORD, DWORD error, std::unique_lock<std::mutex>& lock) { write_done(req, error, lock); });
    if (!ok) abort_locked(req, lock);
    return;
  }
  if (req->phase == RequestPhase::Finishing) {
    complete_locked(*req, req->workerDoneStatus, lock);
    return;
  }
  if (req->bodyPumping && req->bodyLeft > 0 && req->bodySent < req->bodyCredit + kBodyWindow) {
    if (req->readBuffer.size() != kBodyChunk) req->readBuffer.resize(kBodyChunk);
    uint64_t want = req->chunkedBody ? kBodyChunk : std::min<uint64_t>(req->bodyLeft, kBodyChunk);
    char* buf = req->readBuffer.data();
    bool ok = begin_async_locked(
        req, lock,
        [ecb, buf, want] {
          DWORD size = DWORD(want);
          DWORD type = HSE_IO_ASYNC;
          return ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_ASYNC_READ_CLIENT, buf, &size, &type) != FALSE;
        },
        [req](DWORD cbIO, DWORD error, std::unique_lock<std::mutex>& lock) { read_done(req, cbIO, error, lock); });
    if (!ok) abort_locked(req, lock);
  }
}

}  // namespace

void abort_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock) {
  std::shared_ptr<Worker> w = req->worker;
  if (w) {
    lock.unlock();
    w->abort(req->id);
    lock.lock();
  }
  complete_locked(*req, HSE_STATUS_ERROR, lock);
}

void register_io_completion(InflightRequest& req) {
  req.ecb->ServerSupportFunction(req.ecb->ConnID, HSE_REQ_IO_COMPLETION, reinterpret_cast<LPVOID>(&io_completed),
                                 nullptr, reinterpret_cast<LPDWORD>(&req));
}

bool begin_async_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock, std::function<bool()> issue,
                        AsyncContinuation done) {
  if (!req->ioRegistered) {
    req->ioRegistered = true;
    register_io_completion(*req);
  }
  req->ioBusy = true;
  req->self = req;
  req->asyncDone = std::move(done);
  lock.unlock();
  bool ok = issue();
  lock.lock();
  if (!ok && req->ioBusy && req->asyncDone) {
    // Refused at once: no completion will come.
    req->ioBusy = false;
    req->asyncDone = nullptr;
    req->self = nullptr;
  }
  return ok;
}

void issue_done_if_idle_locked(InflightRequest& req, std::unique_lock<std::mutex>& lock) {
  if (req.phase != RequestPhase::Ending || req.ioBusy) return;
  req.advance(RequestPhase::Closed);
  EXTENSION_CONTROL_BLOCK* ecb = req.ecb;
  DWORD status = req.doneStatus;
  lock.unlock();
  ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &status, nullptr,
                             nullptr);  // the ECB may be freed from here on
  lock.lock();
}

void queue_write_locked(const InflightPtr& req, std::string_view data, std::unique_lock<std::mutex>& lock) {
  if (req->ended() || data.empty()) return;
  req->headersSent = true;
  req->outQueue.emplace_back(data);
  kick_locked(req, lock);
}

void finish_after_writes_locked(const InflightPtr& req, DWORD hseStatus, std::unique_lock<std::mutex>& lock) {
  if (req->ended()) return;
  req->advance(RequestPhase::Finishing);
  req->workerDoneStatus = hseStatus;
  kick_locked(req, lock);
}

void start_body_locked(const InflightPtr& req, std::unique_lock<std::mutex>& lock) {
  if (req->bodyPumping || req->bodyLeft == 0) return;
  req->bodyPumping = true;
  kick_locked(req, lock);
}

void body_credit_locked(const InflightPtr& req, uint32_t bytes, std::unique_lock<std::mutex>& lock) {
  req->bodyCredit += bytes;
  kick_locked(req, lock);
}

}  // namespace isapi::bridge
