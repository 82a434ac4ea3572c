#include "worker_pool.h"

#include <algorithm>
#include <filesystem>

#include "bridge_log.h"
#include "wire.h"
#include "worker.h"

namespace isapi::bridge {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Request bodies are forwarded at most this far ahead of what the worker has consumed, so a
// large upload to a slow handler never piles up in the worker's memory.
constexpr uint64_t kBodyWindow = 1u << 20;
constexpr uint32_t kBodyChunk = 64 * 1024;
// A worker that dies within this long of starting counts as a rapid failure (backoff grows).
constexpr auto kRapidFailWindow = std::chrono::seconds(10);

WorkerPool::~WorkerPool() { stop(0); }

static int64_t file_stamp(const std::string& path) {
  std::error_code ec;
  auto t = std::filesystem::last_write_time(path, ec);
  if (ec) return 0;
  auto size = std::filesystem::file_size(path, ec);
  return int64_t(t.time_since_epoch().count()) ^ (int64_t(ec ? 0 : size) << 1);
}

bool WorkerPool::spawn_into(int slot, std::string& error) {
  auto w = std::make_shared<Worker>(*this, slot);
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers_[size_t(slot)] = w;
  }
  if (!w->start(error)) {
    log_line("worker " + std::to_string(slot) + ": " + error);
    std::lock_guard<std::mutex> lock(mu_);
    workers_[size_t(slot)] = nullptr;
    auto& s = slots_[size_t(slot)];
    s.rapidFailures++;
    s.restartPending = true;
    s.restartAt = Clock::now() + milliseconds(std::min(10000, 250 << std::min(s.rapidFailures, 6)));
    return false;
  }
  return true;
}

bool WorkerPool::start(bool waitForReady, std::string& error) {
  exeStamp_ = file_stamp(cfg_.workerExe);
  workers_.assign(size_t(cfg_.workers), nullptr);
  slots_.assign(size_t(cfg_.workers), SlotState{});
  for (int i = 0; i < cfg_.workers; ++i) spawn_into(i, error);
  supervisor_ = std::thread([this] { supervise(); });
  if (!waitForReady) return true;

  // Wait until every worker is ready, or every one that is not has died, or the deadline.
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = Clock::now() + milliseconds(cfg_.startupTimeoutMs);
  auto settled = [&] {
    int ready = 0, starting = 0;
    for (auto& w : workers_) {
      if (!w) continue;
      if (w->state() == WorkerState::Ready) ready++;
      else if (w->state() == WorkerState::Starting) starting++;
    }
    return starting == 0 || (ready > 0 && ready == cfg_.workers);
  };
  cv_.wait_until(lock, deadline, settled);
  int ready = 0;
  for (auto& w : workers_) ready += (w && w->state() == WorkerState::Ready);
  if (ready == 0) {
    if (error.empty()) error = "no worker became ready within " + std::to_string(cfg_.startupTimeoutMs) + " ms";
    return false;
  }
  return true;
}

std::shared_ptr<Worker> WorkerPool::pick_locked() {
  std::shared_ptr<Worker> best;
  size_t bestLoad = SIZE_MAX;
  auto consider = [&](const std::shared_ptr<Worker>& w) {
    if (!w || w->state() != WorkerState::Ready) return;
    size_t l = w->load();
    if (l < bestLoad) { best = w; bestLoad = l; }
  };
  for (auto& w : workers_) consider(w);
  for (auto& s : slots_) consider(s.retiring);
  return best;
}

std::shared_ptr<Worker> WorkerPool::worker_for_connection(uint32_t connection) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Worker>> ready;
  for (auto& w : workers_)
    if (w && w->state() == WorkerState::Ready) ready.push_back(w);
  if (ready.empty()) return nullptr;
  return ready[connection % ready.size()];
}

void WorkerPool::dispatch(const InflightPtr& req) {
  // A worker that died a moment ago may still look ready; adopt() refuses then, and the
  // request goes to the next one (or waits for a restart) instead of failing.
  for (int attempt = 0; attempt <= cfg_.workers; ++attempt) {
    std::shared_ptr<Worker> w;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
      w = pick_locked();
      if (!w) {
        pending_.push_back(req);
        return;
      }
    }
    if (w->adopt(req)) return;
  }
  fail_request(*req, 503, "Service Unavailable", "The extension is shutting down.", 5);
}

void WorkerPool::pump_body(const InflightPtr& req) {
  EXTENSION_CONTROL_BLOCK* ecb = req->ecb;
  const bool chunked = ecb->cbTotalBytes == 0xFFFFFFFFu;
  uint64_t remaining = chunked ? UINT64_MAX : uint64_t(ecb->cbTotalBytes) - ecb->cbAvailable;
  std::string chunk(kBodyChunk, '\0');
  std::string frame;
  {
    std::lock_guard<std::mutex> lock(req->mu);
    req->pumping = true;
    req->bodySent = ecb->cbAvailable;
  }
  bool ended = false;
  while (remaining > 0) {
    std::shared_ptr<Worker> w;
    {
      std::unique_lock<std::mutex> lock(req->mu);
      req->cv.wait(lock, [&] {
        return req->completed ||
               (req->worker && req->bodySent < req->bodyCredit + kBodyWindow);
      });
      if (req->completed) break;
      w = req->worker;
    }
    DWORD n = DWORD(std::min<uint64_t>(remaining, kBodyChunk));
    if (!ecb->ReadClient(ecb->ConnID, chunk.data(), &n) || n == 0) {
      ended = n == 0 && chunked;  // a short Content-Length body is a client that went away
      break;
    }
    remaining -= chunked ? 0 : n;
    frame.clear();
    channel::FrameWriter(frame, channel::Msg::Body, req->id).str(std::string_view(chunk.data(), n)).finish();
    {
      std::lock_guard<std::mutex> lock(req->mu);
      req->bodySent += n;
    }
    if (!w->send(frame)) break;
  }
  std::shared_ptr<Worker> w;
  {
    std::lock_guard<std::mutex> lock(req->mu);
    w = req->completed ? nullptr : req->worker;
  }
  if (w) {
    // An empty Body tells the worker there is no more (chunked end, or a client that left).
    frame.clear();
    channel::FrameWriter(frame, channel::Msg::Body, req->id).str({}).finish();
    w->send(frame);
  }
  (void)ended;
  std::unique_lock<std::mutex> lock(req->mu);
  req->pumping = false;
  if (req->doneDeferred) {
    req->doneDeferred = false;
    DWORD s = req->doneStatus;
    lock.unlock();
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &s, nullptr, nullptr);
  }
}

void WorkerPool::on_ready(Worker& w) {
  std::deque<InflightPtr> todo;
  std::shared_ptr<Worker> self, retired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = slots_[size_t(w.slot())];
    slot.restartPending = false;
    self = workers_[size_t(w.slot())];
    if (self.get() != &w) return;
    // The replacement is ready: the previous generation stops taking requests and drains.
    retired = std::move(slot.retiring);
    if (retired) draining_.push_back(retired);
    todo.swap(pending_);
    cv_.notify_all();
  }
  if (retired) retired->request_shutdown();
  for (auto& r : todo)
    if (!self->adopt(r)) dispatch(r);
}

void WorkerPool::reload(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reloadReason_.empty()) reloadReason_ = reason;
  cv_.notify_all();
}

void WorkerPool::check_for_redeploy_locked() {
  int64_t stamp = file_stamp(cfg_.workerExe);
  if (stamp == 0 || stamp == exeStamp_) return;
  exeStamp_ = stamp;
  if (reloadReason_.empty()) reloadReason_ = "the worker executable changed (redeploy)";
}

void WorkerPool::start_reload_locked(std::unique_lock<std::mutex>& lock) {
  std::string reason;
  reason.swap(reloadReason_);
  log_line("reloading all workers: " + reason);
  for (size_t i = 0; i < workers_.size(); ++i) replace_slot_locked(i, lock);
}

// A fresh worker for the slot; a ready old one keeps serving until the new one is ready (then
// drains), anything else of the slot is asked to stop now.
void WorkerPool::replace_slot_locked(size_t i, std::unique_lock<std::mutex>& lock) {
  auto old = workers_[i];
  if (old && old->state() == WorkerState::Ready) {
    // A slot replaced twice before its new worker was ready keeps the oldest serving.
    if (slots_[i].retiring) {
      draining_.push_back(old);
    } else {
      slots_[i].retiring = old;
    }
  } else if (old) {
    draining_.push_back(old);
  }
  workers_[i] = nullptr;
  lock.unlock();
  if (old && slots_[i].retiring != old) old->request_shutdown();
  std::string err;
  spawn_into(int(i), err);
  lock.lock();
}

// IIS recycles w3wp by its private memory, which does not include our workers: a leaking app
// would grow unchecked. Once a second, a ready worker over the limit is replaced without
// failing a request. A worker is given a few seconds after its start, so that a limit set below
// what a fresh worker needs shows in the log instead of replacing workers in a loop.
void WorkerPool::enforce_memory_limit_locked(std::unique_lock<std::mutex>& lock) {
  if (!cfg_.memoryLimitBytes) return;
  auto now = Clock::now();
  if (now - memoryCheckedAt_ < std::chrono::seconds(1)) return;
  memoryCheckedAt_ = now;
  constexpr auto kSettle = std::chrono::seconds(5);
  for (size_t i = 0; i < workers_.size(); ++i) {
    auto w = workers_[i];
    if (!w || w->state() != WorkerState::Ready || slots_[i].retiring || now - w->startedAt() < kSettle) continue;
    size_t used = w->private_memory();
    if (used <= cfg_.memoryLimitBytes) continue;
    log_line("worker " + std::to_string(i) + " (pid " + std::to_string(w->pid()) + ") uses " +
             std::to_string(used >> 20) + " MiB, over the limit of " + std::to_string(cfg_.memoryLimitBytes >> 20) +
             " MiB (ISAPI_WORKER_MEMORY_LIMIT_MB): replacing it");
    replace_slot_locked(i, lock);
  }
}

void WorkerPool::on_dead(Worker&) {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

void WorkerPool::supervise() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, milliseconds(100));
    if (stopping_) break;
    auto now = Clock::now();
    check_for_redeploy_locked();
    if (!reloadReason_.empty()) start_reload_locked(lock);
    enforce_memory_limit_locked(lock);

    for (auto it = draining_.begin(); it != draining_.end();) {
      if ((*it)->state() != WorkerState::Dead) { ++it; continue; }
      auto w = *it;
      it = draining_.erase(it);
      lock.unlock();
      std::string how = w->reap(2000);
      log_line("worker " + std::to_string(w->slot()) + " (pid " + std::to_string(w->pid()) + ") of the previous generation exited: " + how);
      lock.lock();
      it = draining_.begin();
    }

    for (size_t i = 0; i < workers_.size(); ++i) {
      auto w = workers_[i];
      auto& s = slots_[i];
      if (s.retiring && s.retiring->state() == WorkerState::Dead) draining_.push_back(std::move(s.retiring));
      if (w && w->state() == WorkerState::Starting &&
          now - w->startedAt() > milliseconds(cfg_.startupTimeoutMs)) {
        log_line("worker " + std::to_string(i) + " sent no Ready message within " +
                 std::to_string(cfg_.startupTimeoutMs) + " ms; stopping it");
        w->kill();
      }
      if (w && w->state() == WorkerState::Dead) {
        workers_[i] = nullptr;
        lock.unlock();
        std::string how = w->reap(2000);
        lock.lock();
        bool rapid = now - w->startedAt() < kRapidFailWindow;
        s.rapidFailures = rapid ? s.rapidFailures + 1 : 0;
        int delayMs = s.rapidFailures <= 1 ? 0 : std::min(10000, 250 << std::min(s.rapidFailures - 1, 6));
        log_line("worker " + std::to_string(i) + " (pid " + std::to_string(w->pid()) + ") exited: " + how +
                 (delayMs ? "; restarting in " + std::to_string(delayMs) + " ms" : "; restarting"));
        s.restartPending = true;
        s.restartAt = now + milliseconds(delayMs);
      }
      if (!workers_[i] && s.restartPending && now >= s.restartAt && !stopping_) {
        s.restartPending = false;
        lock.unlock();
        std::string err;
        spawn_into(int(i), err);
        lock.lock();
      }
    }

    // Requests waiting for a worker: after the startup timeout, 503 with a retry hint.
    while (!pending_.empty() && now - pending_.front()->started > milliseconds(cfg_.startupTimeoutMs)) {
      auto r = pending_.front();
      pending_.pop_front();
      lock.unlock();
      fail_request(*r, 503, "Service Unavailable", "No worker process is available; see " + log_path(), 10);
      lock.lock();
    }

    // Deadlines for requests held by workers.
    std::vector<std::shared_ptr<Worker>> live;
    for (auto& w : workers_) if (w) live.push_back(w);
    for (auto& s : slots_) if (s.retiring) live.push_back(s.retiring);
    for (auto& w : draining_) live.push_back(w);
    lock.unlock();
    for (auto& w : live) {
      for (auto& r : w->snapshot()) {
        if (now - r->started <= milliseconds(cfg_.requestTimeoutMs)) continue;
        log_line("request " + std::to_string(r->id) + " on worker " + std::to_string(w->slot()) +
                 " passed its " + std::to_string(cfg_.requestTimeoutMs) + " ms deadline");
        w->abort(r->id);
        fail_request(*r, 504, "Gateway Timeout", "The extension did not answer in time.");
      }
    }
    lock.lock();
  }
}

void WorkerPool::stop(int drainMs) {
  std::vector<std::shared_ptr<Worker>> live;
  std::deque<InflightPtr> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !supervisor_.joinable()) return;
    stopping_ = true;
    for (auto& w : workers_) if (w) live.push_back(w);
    for (auto& s : slots_) if (s.retiring) live.push_back(s.retiring);
    for (auto& w : draining_) live.push_back(w);
    draining_.clear();
    for (auto& s : slots_) s.retiring = nullptr;
    pending.swap(pending_);
    cv_.notify_all();
  }
  if (supervisor_.joinable()) supervisor_.join();
  for (auto& r : pending) fail_request(*r, 503, "Service Unavailable", "The extension is shutting down.", 5);
  for (auto& w : live) w->request_shutdown();
  for (auto& w : live) {
    std::string how = w->reap(drainMs);
    log_line("worker " + std::to_string(w->slot()) + " (pid " + std::to_string(w->pid()) + ") stopped: " + how);
  }
  std::lock_guard<std::mutex> lock(mu_);
  workers_.clear();
}

}  // namespace isapi::bridge
