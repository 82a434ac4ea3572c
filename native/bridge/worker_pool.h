// The bridge's set of workers: starts them, waits for their Ready message, routes each request
// to the least-loaded ready worker, restarts dead ones with backoff and enforces deadlines.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "inflight_request.h"

namespace isapi::bridge {

class Worker;

struct PoolConfig {
  std::string workerExe;   // the SEA worker beside the bridge
  std::string bridgePath;  // this module (what the web server loaded)
  // What the worker loads as its Node-API addon (ISAPI_BRIDGE): this module, except in a
  // 32-bit bridge, whose x64 workers load the x64 build of the same code (see bridge_state.cc).
  std::string workerAddon;
  std::string logPath;
  int workers = 1;
  std::string appName;  // the script's name, for error pages
  // While this file exists, the application is offline (as with the ASP.NET Core Module):
  // no worker runs, so the folder's files can be replaced, and requests get 503 with its content.
  std::string appOfflinePath;
  int startupTimeoutMs = 30000;
  // A worker asked to drain (reload, app_offline.htm, redeploy) is killed after this long.
  int shutdownTimeoutMs = 10000;
  int requestTimeoutMs = 120000;
  // Heartbeat: a ready worker that does not answer a ping within this long is replaced.
  int pingTimeoutMs = 10000;
  int pingIntervalMs = 1000;
  // Rapid-fail protection (the ASP.NET Core Module's rapidFailsPerMinute): after this many
  // start failures within a minute, no worker is started for rapidFailCooldownMs.
  int rapidFailsPerMinute = 10;
  int rapidFailCooldownMs = 60000;
  bool detailedErrors = false;  // 503 pages show the last lines the worker printed
  // A worker whose own memory passes this is replaced the way a reload replaces it (0: never).
  size_t memoryLimitBytes = 0;
};

class WorkerPool {
 public:
  explicit WorkerPool(PoolConfig cfg) : cfg_(std::move(cfg)) {}
  ~WorkerPool();

  // Starts every worker. With waitForReady, waits until they are ready or have failed to
  // start, and returns false (with the reason) if none is ready; the pool keeps trying either
  // way and answers 503 at once while no worker can be ready.
  bool start(bool waitForReady, std::string& error);
  // Hands the request (its Request frame in req->beginFrame) to a worker, or queues it.
  void dispatch(const InflightPtr& req);
  // Graceful stop: Shutdown to every worker, wait up to drainMs, then kill.
  void stop(int drainMs);
  // Starts a fresh worker for every slot; each old one keeps serving until its replacement is
  // ready, then drains (finishes what it holds) and exits. No request fails.
  void reload(const std::string& reason);

  // The ready worker for a filter connection: the same one for the connection's lifetime
  // while the set of workers is unchanged, so its FilterContext stays in one process.
  std::shared_ptr<Worker> worker_for_connection(uint32_t connection);
  const PoolConfig& config() const { return cfg_; }

  // Called by workers' reader threads.
  void on_ready(Worker& w);
  void on_dead(Worker& w);

 private:
  void supervise();
  bool spawn_into(int slot, std::string& error);
  std::shared_ptr<Worker> pick_locked();

  PoolConfig cfg_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Worker>> workers_;
  struct SlotState {
    std::shared_ptr<Worker> retiring;  // the previous generation, serving until the new one is ready
    int startFailures = 0;             // consecutive workers of this slot that never became ready
    std::chrono::steady_clock::time_point restartAt{};
    bool restartPending = false;
  };
  // A start failure: counted for backoff and rapid-fail protection, remembered for 503 pages.
  void start_failed_locked(size_t slot, const std::string& why, const std::string& output);
  // Whether a request can wait for a worker that is (re)starting normally; false while every
  // slot is failing to start or rapid-fail protection holds: then requests get 503 at once.
  bool can_wait_locked() const;
  // Forgets the start failures and the cool-down (a new generation); with restartNow, every
  // slot is started on the next tick.
  void clear_failures_locked(bool restartNow);
  void fail_unavailable(const InflightPtr& req, const std::string& reason, int retryAfter);
  std::string unavailable_reason_locked(int& retryAfter) const;
  void answer_pending_if_hopeless_locked(std::unique_lock<std::mutex>& lock);
  void heartbeat_locked(std::unique_lock<std::mutex>& lock);
  std::deque<std::chrono::steady_clock::time_point> startFailureTimes_;
  std::chrono::steady_clock::time_point coolDownUntil_{};
  std::string lastFailure_;        // why the last worker failed to start
  std::string lastFailureOutput_;  // and what it printed
  std::chrono::steady_clock::time_point pingedAt_{};
  // app_offline.htm (checked by the supervisor each tick).
  bool offline_ = false;
  std::string offlineHtml_;
  void check_app_offline_locked(std::unique_lock<std::mutex>& lock);
  void answer_offline(const InflightPtr& req, const std::string& html);
  std::vector<SlotState> slots_;
  std::deque<InflightPtr> pending_;
  std::vector<std::shared_ptr<Worker>> draining_;  // asked to shut down; reaped once they exit
  std::thread supervisor_;
  bool stopping_ = false;
  std::string reloadReason_;  // non-empty: the supervisor reloads next tick
  int64_t exeStamp_ = 0;      // worker executable's mtime+size at start

  std::chrono::steady_clock::time_point memoryCheckedAt_{};

  void check_for_redeploy_locked();
  void start_reload_locked(std::unique_lock<std::mutex>& lock);
  void replace_slot_locked(size_t slot, std::unique_lock<std::mutex>& lock);
  void enforce_memory_limit_locked(std::unique_lock<std::mutex>& lock);
};

}  // namespace isapi::bridge
