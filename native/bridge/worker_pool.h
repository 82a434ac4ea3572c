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
  std::string workerExe;      // the SEA worker beside the bridge
  std::string bridgePath;     // this module; the worker loads it as its addon
  std::string logPath;
  int workers = 1;
  int startupTimeoutMs = 30000;
  int requestTimeoutMs = 120000;
  // A worker whose own memory passes this is replaced the way a reload replaces it (0: never).
  size_t memoryLimitBytes = 0;
};

class WorkerPool {
 public:
  explicit WorkerPool(PoolConfig cfg) : cfg_(std::move(cfg)) {}
  ~WorkerPool();

  // Starts every worker. With waitForReady, waits for their Ready messages and returns false
  // if none became ready; without, returns at once (requests wait for a ready worker).
  bool start(bool waitForReady, std::string& error);
  // Hands the request (its Request frame in req->beginFrame) to a worker, or queues it.
  void dispatch(const InflightPtr& req);
  // Reads the rest of the request body with ReadClient and forwards it with flow control.
  void pump_body(const InflightPtr& req);
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
    int rapidFailures = 0;
    std::chrono::steady_clock::time_point restartAt{};
    bool restartPending = false;
  };
  std::vector<SlotState> slots_;
  std::deque<InflightPtr> pending_;
  std::vector<std::shared_ptr<Worker>> draining_;  // asked to shut down; reaped once they exit
  std::thread supervisor_;
  bool stopping_ = false;
  std::string reloadReason_;                       // non-empty: the supervisor reloads next tick
  int64_t exeStamp_ = 0;                           // worker executable's mtime+size at start

  std::chrono::steady_clock::time_point memoryCheckedAt_{};

  void check_for_redeploy_locked();
  void start_reload_locked(std::unique_lock<std::mutex>& lock);
  void replace_slot_locked(size_t slot, std::unique_lock<std::mutex>& lock);
  void enforce_memory_limit_locked(std::unique_lock<std::mutex>& lock);
};

}  // namespace isapi::bridge
