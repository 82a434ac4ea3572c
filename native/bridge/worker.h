// One worker process and its channel, as seen from the bridge. The reader thread turns the
// worker's messages into ECB calls; a dead channel fails every request the worker held.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "inflight_request.h"
#include "platform/process.h"
#include "transport.h"
#include "wire.h"

namespace isapi::bridge {

class WorkerPool;

// A filter notification waiting for its verdict: the reader thread queues the worker's
// queries and final reply here; the web server's thread (inside HttpFilterProc) takes them.
struct FilterWait {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<channel::Msg, std::string>> frames;
  bool dead = false;  // the worker went away
};

enum class WorkerState { Starting, Ready, Draining, Dead };

class Worker : public std::enable_shared_from_this<Worker> {
 public:
  Worker(WorkerPool& pool, int slot) : pool_(pool), slot_(slot) {}
  ~Worker();

  bool start(std::string& error);
  // Sends one or more encoded frames; false if the channel is gone (the reader notices too).
  bool send(const std::string& frames);
  // Registers the request as this worker's and sends its first frame. False when the worker
  // is gone and the request never reached it: the caller routes it elsewhere.
  bool adopt(const InflightPtr& req);
  void forget(uint32_t id);
  // Forgets the request and sends the worker an Abort for it ('aborted'/'close' fire there and
  // it stops producing); the caller ends the request on the server side.
  void abort(uint32_t id);
  void await_filter(uint32_t id, const std::shared_ptr<FilterWait>& wait);
  void forget_filter(uint32_t id);
  void request_shutdown();
  void kill() { process_.kill(); }
  // Joins the reader and reaps the process; returns the exit description.
  std::string reap(int timeoutMs);

  WorkerState state() const { return state_.load(); }
  int slot() const { return slot_; }
  long pid() const { return process_.pid(); }
  size_t private_memory() const { return process_.private_memory(); }
  size_t load();
  std::chrono::steady_clock::time_point startedAt() const { return startedAt_; }
  // Every request still held, for deadlines.
  std::vector<InflightPtr> snapshot();

 private:
  void read_loop();
  // mergedBody: body bytes of Write frames that directly followed a ResponseHeaders frame.
  void handle(const channel::FrameHeader& h, std::string_view payload, const std::string& mergedBody);
  InflightPtr find(uint32_t id);
  void abandon(InflightRequest& req, std::unique_lock<std::mutex>& lock);
  void on_channel_closed();

  WorkerPool& pool_;
  const int slot_;
  std::atomic<WorkerState> state_{WorkerState::Starting};
  Process process_;
  channel::Endpoint channel_;
  std::mutex sendMu_;
  std::thread reader_;
  std::string token_;
  std::chrono::steady_clock::time_point startedAt_;
  std::mutex mu_;
  std::unordered_map<uint32_t, InflightPtr> inflight_;
  std::unordered_map<uint32_t, std::shared_ptr<FilterWait>> filterWaits_;
};

}  // namespace isapi::bridge
