// The worker's end of the channel: the threads and queues between the bridge and JavaScript.
//
// Threads: on POSIX the JavaScript thread reads the channel itself when the event loop says it
// is readable (loop_reader.h); on Windows a reader thread decodes frames and hands batches to
// JavaScript through a thread-safe function. A writer thread sends what JavaScript could not
// send without blocking, coalescing everything queued in one turn of the event loop into one
// write. JavaScript never blocks on the channel.
// Locks: inMu_ (frames for JavaScript) and outMu_ (bytes for the bridge) are never held together.
#pragma once
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "taken_board.h"
#include "transport.h"
#include "wire.h"

namespace isapi::worker {

// Pseudo message types delivered to JavaScript next to the real ones.
constexpr uint32_t kClosed = 0;
constexpr uint32_t kDrain = 1;

struct InFrame {
  uint32_t type;
  uint32_t id;
  std::string payload;
  uint16_t flags = 0;
};

// Where frames for the bridge go: the open channel, or a test's capture (addon.cc).
void send_frame(const std::string& frame);

// Converts one frame into a dispatch(type, id, message) call on the JavaScript thread. Ping is
// answered here (a blocked event loop never answers); a frame that does not decode as its
// type is reported to the bridge's log and dropped.
void dispatch_frame(Napi::Env env, Napi::Function dispatch, const InFrame& f);

class Channel {
 public:
  // Connects to the bridge named by ISAPI_CHANNEL; error says why not.
  bool open(Napi::Env env, Napi::Function drain, std::string& error);
  // Called on the JavaScript thread by the thread-safe function. What handlers queue while
  // it runs goes out in one write at the end, from this thread: a synchronous handler's
  // headers, body and Done cost one system call and no thread hand-off.
  void deliver(Napi::Env env, Napi::Function dispatch);
  // wakeWriter false: the caller flush()es right after, on this thread.
  void queue(const std::string& frames, bool wakeWriter = true);
  // Appends what encode(out) writes straight into the queue: a body is copied once, from
  // JavaScript's buffer to the queue, before the kernel takes it.
  template <class Encode>
  void queue_with(Encode&& encode, bool wakeWriter = true) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      size_t before = out_.size();
      encode(out_);
      after_queue_locked(before, wakeWriter, wake);
    }
    if (wake) outCv_.notify_one();
  }
  // Sends what is queued from the calling (JavaScript) thread if the channel takes it without
  // blocking; anything left is handed to the writer thread.
  void flush();
  // false above the high-water mark; a Drain follows once the queue is below the low-water mark.
  bool below_high_water();
  const std::string& token() const { return token_; }
  // JavaScript is handling a batch of frames: what it queues goes out in one write at the end.
  bool holding() const { return delivering_ || inReadable_; }

 private:
  void after_queue_locked(size_t before, bool wakeWriter, bool& wake);
  // A Drain is owed (JavaScript waits) and the queue fell below the low-water mark.
  bool drain_due_locked();
  void push(InFrame f);
  void read_loop();
  void write_loop();
  // The loop reader's side (JavaScript thread): decoded frames → in_, then deliver through
  // drain_ in a callback scope (so promises and nextTicks run after, as for any I/O callback).
  void take_frames();
  void call_drain();
  void on_loop_closed();
  static void exit_soon();

  Napi::Env env_ = nullptr;
  Napi::FunctionReference drain_;
  napi_async_context async_ = nullptr;
  channel::FrameDecoder loopDecoder_;
  bool loopCorrupt_ = false;

  channel::Endpoint ep_;
  channel::TakenBoard board_;
  uint32_t requestsStarted_ = 0;  // Request frames handed to JavaScript (JavaScript thread)
  std::string token_;
  Napi::ThreadSafeFunction tsfn_;
  std::mutex inMu_;
  std::deque<InFrame> in_;
  std::mutex outMu_;
  std::condition_variable outCv_;
  std::string out_;  // bytes for the bridge; out_[0, outOff_) are already sent
  size_t outOff_ = 0;
  size_t queued_ = 0;
  bool jsSending_ = false;  // flush() is writing from out_ on the JavaScript thread
  bool drainWanted_ = false;
  bool writerBusy_ = false;  // the writer thread is sending a batch (guarded by outMu_)
  bool delivering_ = false;  // JavaScript is inside deliver() (JavaScript thread only)
  bool inReadable_ = false;  // inside the loop reader's callback, promise jobs included (same)
  std::thread reader_, writer_;
};

}  // namespace isapi::worker
