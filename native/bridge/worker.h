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
#include "taken_board.h"
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
  // send() for a request's Request frame: records its position among the Request frames of
  // this channel (req->channelSeq), which the taken board is compared with.
  bool send_request(const std::string& frame, InflightRequest& req);
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
  // When request_shutdown() was first called (the epoch if it was not).
  std::chrono::steady_clock::time_point drainingSince() const { return drainingSince_; }
  void kill() { process_.kill(); }
  // Heartbeat (the supervisor's thread): sends a Ping; the worker's event loop answers Pong.
  void ping();
  std::chrono::steady_clock::duration since_pong() const;
  // Kills a worker that stopped answering; its requests end with 504 instead of 502.
  void kill_unresponsive(const std::string& why);
  // True once the worker has sent Ready (so a later death is not a start failure).
  bool was_ready() const { return wasReady_.load(); }
  // The last lines the worker printed (stdout and stderr), for error pages and messages.
  std::string output_tail();
  // Joins the reader and reaps the process; returns the exit description.
  std::string reap(int timeoutMs);

  WorkerState state() const { return state_.load(); }
  // Ready and its channel has not failed a send: a worker that died a moment ago is skipped
  // at once, before its reader thread has noticed.
  bool usable() const { return state_.load() == WorkerState::Ready && !broken_.load(); }
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
  void on_ready(std::string_view payload);
  // A frame that does not decode as its type says: the worker speaks another protocol.
  void refuse_malformed(channel::Msg type);
  InflightPtr find(uint32_t id);
  void on_channel_closed();
  void output_loop();
  void mark_alive();  // a Ready or a Pong: the event loop answered
  // send() and send_request(): request, when given, gets its channelSeq in channel order.
  bool send_frames(const std::string& frames, InflightRequest* request);

  WorkerPool& pool_;
  const int slot_;
  std::atomic<WorkerState> state_{WorkerState::Starting};
  Process process_;
  channel::Endpoint channel_;
  // send(): frames queue here; one sender at a time writes everything queued (sendMu_ guards
  // the three). Web-server threads never wait for one another's system call.
  std::mutex sendMu_;
  std::string sendQueue_;
  bool sending_ = false;
  uint32_t nextRequestSeq_ = 0;  // Request frames queued so far, in channel order, mod 2^32 (sendMu_)
  channel::TakenBoard board_;
  std::thread reader_;
  std::thread outputReader_;
  std::atomic<bool> wasReady_{false};
  std::atomic<bool> broken_{false};
  std::chrono::steady_clock::time_point drainingSince_{};
  std::atomic<int64_t> lastPong_{0};  // steady_clock ticks
  uint32_t pingSeq_ = 0;
  std::atomic<bool> unresponsive_{false};
  std::mutex tailMu_;
  std::string outputTail_;
  std::string token_;
  std::chrono::steady_clock::time_point startedAt_;
  std::mutex mu_;
  std::unordered_map<uint32_t, InflightPtr> inflight_;
  std::unordered_map<uint32_t, std::shared_ptr<FilterWait>> filterWaits_;
};

}  // namespace isapi::bridge
