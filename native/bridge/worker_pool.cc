// The pool's supervision: start, backoff, rapid-fail protection, heartbeat, app_offline.htm,
// redeploy reloads and shutdown. Kept in one file (~500 lines) on purpose: each of these decides
// under the same lock (mu_) which slot may start a worker next, and reading them side by side is
// how the lock's rules stay checkable. The per-worker side is worker.cc.
#include "worker_pool.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bridge_log.h"
#include "wire.h"
#include "worker.h"

namespace isapi::bridge {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Backoff between start attempts of a slot whose workers fail to start: 250 ms, doubling, at
// most 10 s. A worker that was ready and then died is restarted at once.
static int backoff_ms(int failures) { return std::min(10000, 250 << std::min(std::max(failures - 1, 0), 6)); }

WorkerPool::~WorkerPool() { stop(0); }

// Paths are UTF-8 in the bridge; u8path keeps a folder such as C:\inetpub\fü working on Windows.
static int64_t file_stamp(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::u8path(path);
  auto t = std::filesystem::last_write_time(p, ec);
  if (ec) return 0;
  auto size = std::filesystem::file_size(p, ec);
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
    std::unique_lock<std::mutex> lock(mu_);
    workers_[size_t(slot)] = nullptr;
    start_failed_locked(size_t(slot), error, {});
    answer_pending_if_hopeless_locked(lock);
    return false;
  }
  return true;
}

void WorkerPool::start_failed_locked(size_t slot, const std::string& why, const std::string& output) {
  auto now = Clock::now();
  auto& s = slots_[slot];
  s.startFailures++;
  s.restartPending = true;
  s.restartAt = now + milliseconds(backoff_ms(s.startFailures));
  lastFailure_ = why;
  lastFailureOutput_ = output;
  startFailureTimes_.push_back(now);
  while (!startFailureTimes_.empty() && now - startFailureTimes_.front() > std::chrono::minutes(1))
    startFailureTimes_.pop_front();
  if (int(startFailureTimes_.size()) >= cfg_.rapidFailsPerMinute && now >= coolDownUntil_) {
    coolDownUntil_ = now + milliseconds(cfg_.rapidFailCooldownMs);
    startFailureTimes_.clear();
    log_line(std::to_string(cfg_.rapidFailsPerMinute) +
             " workers failed to start within a minute (rapid-fail protection, "
             "ISAPI_RAPID_FAILS_PER_MINUTE): no worker is started for " +
             std::to_string(cfg_.rapidFailCooldownMs / 1000) +
             " s, and requests get 503 meanwhile. Last failure: " + why);
  }
}

void WorkerPool::clear_failures_locked(bool restartNow) {
  coolDownUntil_ = {};
  startFailureTimes_.clear();
  for (auto& s : slots_) {
    s.startFailures = 0;
    s.restartPending = restartNow;
    s.restartAt = Clock::now();
  }
}

bool WorkerPool::can_wait_locked() const {
  if (stopping_ || Clock::now() < coolDownUntil_) return false;
  for (auto& s : slots_)
    if (s.startFailures == 0) return true;
  return false;
}

std::string WorkerPool::unavailable_reason_locked(int& retryAfter) const {
  auto now = Clock::now();
  auto next = Clock::time_point::max();
  if (now < coolDownUntil_) next = coolDownUntil_;
  else
    for (auto& s : slots_)
      if (s.restartPending) next = std::min(next, s.restartAt);
  retryAfter =
      next == Clock::time_point::max()
          ? 1
          : int(std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(next - now).count() + 1));
  std::string app = cfg_.appName.empty() ? "The application" : "The application '" + cfg_.appName + "'";
  std::string text = app + " is not available: its worker process could not start";
  if (!lastFailure_.empty()) text += " (" + lastFailure_ + ")";
  text += now < coolDownUntil_
              ? ". Too many start failures in a minute: starting again in " + std::to_string(retryAfter) + " s."
              : ". Retrying in " + std::to_string(retryAfter) + " s.";
  text += "\nThe worker's output is in " + log_path() + ".";
  if (cfg_.detailedErrors && !lastFailureOutput_.empty())
    text += "\n\nLast lines the worker printed (ISAPI_DETAILED_ERRORS=1):\n" + lastFailureOutput_;
  return text;
}

void WorkerPool::answer_offline(const InflightPtr& req, const std::string& html) {
  std::unique_lock<std::mutex> lock(req->mu);
  if (req->ended() || req->headersSent) return;
  send_whole_response_locked(*req, 503, "503 Service Unavailable", "text/html; charset=utf-8", html, 5);
  complete_locked(*req, HSE_STATUS_SUCCESS, lock);
}

// app_offline.htm appeared: every worker drains (finishes what it holds) and exits, so the
// folder's executables are free to be replaced; requests meanwhile get the file's content with
// 503. It went away: a fresh generation starts, with a clean failure record.
void WorkerPool::check_app_offline_locked(std::unique_lock<std::mutex>& lock) {
  if (cfg_.appOfflinePath.empty()) return;
  std::error_code ec;
  bool present = std::filesystem::exists(std::filesystem::u8path(cfg_.appOfflinePath), ec);
  if (present && !offline_) {
    std::ifstream in(std::filesystem::u8path(cfg_.appOfflinePath), std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    offlineHtml_ = text.str().substr(0, 1u << 20);
    if (offlineHtml_.empty())
      offlineHtml_ = "<!doctype html><title>Offline</title><p>The application is offline.</p>\n";
    offline_ = true;
    log_line(
        "app_offline.htm found: the application is offline; stopping the workers (requests get 503 with its content)");
    std::vector<std::shared_ptr<Worker>> stopping;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]) stopping.push_back(std::move(workers_[i]));
      if (slots_[i].retiring) stopping.push_back(std::move(slots_[i].retiring));
      slots_[i].restartPending = false;
    }
    for (auto& w : stopping) draining_.push_back(w);
    std::deque<InflightPtr> waiting;
    waiting.swap(pending_);
    std::string html = offlineHtml_;
    lock.unlock();
    for (auto& w : stopping) w->request_shutdown();
    for (auto& r : waiting) answer_offline(r, html);
    lock.lock();
  } else if (!present && offline_) {
    offline_ = false;
    offlineHtml_.clear();
    exeStamp_ = file_stamp(cfg_.workerExe);  // whatever was deployed meanwhile is what starts now
    clear_failures_locked(true);
    log_line("app_offline.htm removed: starting fresh workers");
  }
}

void WorkerPool::fail_unavailable(const InflightPtr& req, const std::string& reason, int retryAfter) {
  fail_request(*req, 503, "Service Unavailable", reason, retryAfter);
}

// Requests waiting for a worker that will not come (every slot failing): 503 now, not after
// the startup timeout.
void WorkerPool::answer_pending_if_hopeless_locked(std::unique_lock<std::mutex>& lock) {
  if (pending_.empty() || can_wait_locked() || pick_locked()) return;
  std::deque<InflightPtr> todo;
  todo.swap(pending_);
  int retryAfter = 1;
  std::string reason = unavailable_reason_locked(retryAfter);
  lock.unlock();
  for (auto& r : todo) fail_unavailable(r, reason, retryAfter);
  lock.lock();
}

bool WorkerPool::start(bool waitForReady, std::string& error) {
  exeStamp_ = file_stamp(cfg_.workerExe);
  workers_.assign(size_t(cfg_.workers), nullptr);
  slots_.assign(size_t(cfg_.workers), SlotState{});
  {
    std::unique_lock<std::mutex> lock(mu_);
    check_app_offline_locked(lock);
  }
  if (offline_) {
    supervisor_ = std::thread([this] { supervise(); });
    return true;  // nothing to wait for: requests get the offline page
  }
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
    return (ready > 0 && ready == cfg_.workers) || (ready == 0 && !can_wait_locked()) || (starting == 0 && ready > 0);
  };
  cv_.wait_until(lock, deadline, settled);
  int ready = 0;
  for (auto& w : workers_) ready += (w && w->state() == WorkerState::Ready);
  if (ready == 0) {
    if (!lastFailure_.empty()) error = lastFailure_;
    else if (error.empty()) error = "no worker became ready within " + std::to_string(cfg_.startupTimeoutMs) + " ms";
    return false;
  }
  return true;
}

std::shared_ptr<Worker> WorkerPool::pick_locked() {
  std::shared_ptr<Worker> best;
  size_t bestLoad = SIZE_MAX;
  auto consider = [&](const std::shared_ptr<Worker>& w) {
    if (!w || !w->usable()) return;
    size_t l = w->load();
    if (l < bestLoad) {
      best = w;
      bestLoad = l;
    }
  };
  for (auto& w : workers_) consider(w);
  for (auto& s : slots_) consider(s.retiring);
  return best;
}

std::shared_ptr<Worker> WorkerPool::worker_for_connection(uint32_t connection) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Worker>> ready;
  for (auto& w : workers_)
    if (w && w->usable()) ready.push_back(w);
  if (ready.empty()) return nullptr;
  return ready[connection % ready.size()];
}

void WorkerPool::dispatch(const InflightPtr& req) {
  // A worker that died a moment ago may still look ready; adopt() refuses then, and the
  // request goes to the next one (or waits for a restart) instead of failing.
  for (int attempt = 0; attempt <= cfg_.workers + 1; ++attempt) {
    std::shared_ptr<Worker> w;
    std::string reason;
    int retryAfter = 1;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) break;
      if (offline_) {
        std::string html = offlineHtml_;
        lock.unlock();
        return answer_offline(req, html);
      }
      w = pick_locked();
      if (!w) {
        if (can_wait_locked()) {
          pending_.push_back(req);
          return;
        }
        reason = unavailable_reason_locked(retryAfter);
      }
    }
    if (!w) return fail_unavailable(req, reason, retryAfter);
    if (w->adopt(req)) return;
  }
  fail_request(*req, 503, "Service Unavailable", "The extension is shutting down.", 5);
}

void WorkerPool::on_ready(Worker& w) {
  std::deque<InflightPtr> todo;
  std::shared_ptr<Worker> self, retired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = slots_[size_t(w.slot())];
    slot.restartPending = false;
    slot.startFailures = 0;
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
  // A new generation starts with a clean record: a fixed script redeployed after a crash loop
  // is started at once, without waiting for the backoff or the rapid-fail cool-down.
  clear_failures_locked(false);
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

// Every ready worker is pinged once per interval; one whose event loop has not answered within
// the ping timeout is killed, its requests answered 504, and the slot restarted.
void WorkerPool::heartbeat_locked(std::unique_lock<std::mutex>& lock) {
  auto now = Clock::now();
  std::vector<std::shared_ptr<Worker>> ready, stuck;
  for (auto& w : workers_)
    if (w && w->state() == WorkerState::Ready) ready.push_back(w);
  for (auto& s : slots_)
    if (s.retiring && s.retiring->state() == WorkerState::Ready) ready.push_back(s.retiring);
  for (auto& w : ready)
    if (w->since_pong() > milliseconds(cfg_.pingTimeoutMs)) stuck.push_back(w);
  bool pingNow = now - pingedAt_ >= milliseconds(cfg_.pingIntervalMs);
  if (pingNow) pingedAt_ = now;
  lock.unlock();
  for (auto& w : stuck)
    w->kill_unresponsive("did not answer a heartbeat within " + std::to_string(cfg_.pingTimeoutMs) +
                         " ms (ISAPI_PING_TIMEOUT_MS): its event loop is blocked");
  if (pingNow)
    for (auto& w : ready) w->ping();
  lock.lock();
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
    check_app_offline_locked(lock);
    if (!offline_) {
      check_for_redeploy_locked();
      if (!reloadReason_.empty()) start_reload_locked(lock);
      enforce_memory_limit_locked(lock);
      heartbeat_locked(lock);
    }

    for (auto it = draining_.begin(); it != draining_.end();) {
      if ((*it)->state() != WorkerState::Dead) {
        auto since = (*it)->drainingSince();
        if (since != Clock::time_point{} && now - since > milliseconds(cfg_.shutdownTimeoutMs)) {
          log_line("worker " + std::to_string((*it)->slot()) + " (pid " + std::to_string((*it)->pid()) +
                   ") still had requests " + std::to_string(cfg_.shutdownTimeoutMs) +
                   " ms after it was asked to stop (ISAPI_SHUTDOWN_TIMEOUT_MS); stopping it");
          (*it)->kill();
        }
        ++it;
        continue;
      }
      auto w = *it;
      it = draining_.erase(it);
      lock.unlock();
      std::string how = w->reap(2000);
      log_line("worker " + std::to_string(w->slot()) + " (pid " + std::to_string(w->pid()) +
               ") of the previous generation exited: " + how);
      lock.lock();
      it = draining_.begin();
    }

    for (size_t i = 0; i < workers_.size(); ++i) {
      auto w = workers_[i];
      auto& s = slots_[i];
      if (s.retiring && s.retiring->state() == WorkerState::Dead) draining_.push_back(std::move(s.retiring));
      if (w && w->state() == WorkerState::Starting && now - w->startedAt() > milliseconds(cfg_.startupTimeoutMs)) {
        log_line("worker " + std::to_string(i) + " sent no Ready message within " +
                 std::to_string(cfg_.startupTimeoutMs) + " ms; stopping it");
        w->kill();
      }
      if (w && w->state() == WorkerState::Dead) {
        workers_[i] = nullptr;
        lock.unlock();
        std::string how = w->reap(2000);
        std::string output = w->output_tail();
        lock.lock();
        if (w->was_ready()) {
          // It served, then died (a crash, a kill, a blocked event loop): not a start failure.
          // The slot restarts at once so the pool is never left empty for long.
          s.startFailures = 0;
          s.restartPending = true;
          s.restartAt = now;
          log_line("worker " + std::to_string(i) + " (pid " + std::to_string(w->pid()) + ") exited: " + how +
                   "; restarting");
        } else {
          bool timedOut = now - w->startedAt() > milliseconds(cfg_.startupTimeoutMs);
          std::string why = timedOut
                                ? "it sent no Ready message within " + std::to_string(cfg_.startupTimeoutMs) + " ms"
                                : "it exited (" + how + ") before it was ready";
          start_failed_locked(i, why, output);
          log_line(
              "worker " + std::to_string(i) + " (pid " + std::to_string(w->pid()) + ") failed to start: " + why +
              "; retrying in " +
              std::to_string(std::max<int64_t>(
                  0, std::chrono::duration_cast<milliseconds>(std::max(s.restartAt, coolDownUntil_) - now).count())) +
              " ms");
          answer_pending_if_hopeless_locked(lock);
        }
      }
      if (!workers_[i] && s.restartPending && now >= s.restartAt && now >= coolDownUntil_ && !stopping_ && !offline_) {
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
      fail_request(*r, 503, "Service Unavailable",
                   "No worker became ready within " + std::to_string(cfg_.startupTimeoutMs) +
                       " ms (ISAPI_STARTUP_TIMEOUT_MS); see " + log_path(),
                   5);
      lock.lock();
    }

    // Deadlines for requests held by workers.
    std::vector<std::shared_ptr<Worker>> live;
    for (auto& w : workers_)
      if (w) live.push_back(w);
    for (auto& s : slots_)
      if (s.retiring) live.push_back(s.retiring);
    for (auto& w : draining_) live.push_back(w);
    lock.unlock();
    for (auto& w : live) {
      for (auto& r : w->snapshot()) {
        if (now - r->started <= milliseconds(cfg_.requestTimeoutMs)) continue;
        log_line("request " + std::to_string(r->id) + " on worker " + std::to_string(w->slot()) + " passed its " +
                 std::to_string(cfg_.requestTimeoutMs) + " ms deadline");
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
    for (auto& w : workers_)
      if (w) live.push_back(w);
    for (auto& s : slots_)
      if (s.retiring) live.push_back(s.retiring);
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
