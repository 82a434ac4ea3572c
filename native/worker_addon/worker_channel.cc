// The worker's end of the channel (worker_channel.h): the reader and writer threads, and the
// hand-off of frames to JavaScript.
#include "worker_channel.h"

#include <chrono>
#include <cstdlib>

#include "js_codec.h"
#include "loop_reader.h"

namespace isapi::worker {

using channel::Msg;

// write() answers false above kHighWater queued bytes, and a Drain follows once below kLowWater.
// 1 MiB is several times the channel's socket buffer, so the writer never runs dry (streaming
// 32-256 MiB measured as fast as with 4 MiB), and a streamed download holds ~10 MiB less in the
// worker: the queue and the writer's batch each grow to about this size (issue 7).
constexpr size_t kHighWater = 1u << 20;
constexpr size_t kLowWater = 256u << 10;

void dispatch_frame(Napi::Env env, Napi::Function dispatch, const InFrame& f) {
  Napi::Number type = Napi::Number::New(env, f.type);
  Napi::Number id = Napi::Number::New(env, f.id);
  if (f.type == kClosed || f.type == kDrain) {
    dispatch.Call({type, id});
    return;
  }
  const Msg t = Msg(f.type);
  if (t == Msg::Ping) {
    channel::msg::Ping ping;
    if (!channel::decode(f.payload, ping)) return;
    channel::msg::Pong pong;
    pong.seq = ping.seq;
    std::string frame;
    channel::encode(frame, 0, pong);
    send_frame(frame);
    return;
  }
  bool decoded = false;
  const bool known = channel::with_message(t, [&](auto& m) {
    decoded = channel::decode(f.payload, m);
    if (decoded) dispatch.Call({type, id, to_js(env, m)});
  });
  if (known && decoded) return;
  channel::msg::Log log;
  std::string line = std::string("the bridge sent a ") +
                     (known ? "malformed " + std::string(channel::message_name(t))
                            : "message of unknown type " + std::to_string(f.type)) +
                     " (a bridge from a different pack?); dropped it";
  log.line = line;
  std::string frame;
  channel::encode(frame, 0, log);
  send_frame(frame);
}

bool Channel::open(Napi::Env env, Napi::Function drain, std::string& error) {
  const char* addr = std::getenv("ISAPI_CHANNEL");
  const char* token = std::getenv("ISAPI_CHANNEL_TOKEN");
  if (!addr || !token) {
    error =
        "this program is a node-isapi worker: it is started by its bridge (_<name>.dll/.so) "
        "inside a web server, not directly. Run `isapi serve <folder>` to try it.";
    return false;
  }
  // Checked before connecting: a bridge from another pack would misread every frame.
  const char* protocol = std::getenv("ISAPI_CHANNEL_PROTOCOL");
  if (protocol && std::strtoul(protocol, nullptr, 10) != channel::kProtocolVersion) {
    error = "this worker's addon speaks channel protocol " + std::to_string(channel::kProtocolVersion) +
            " but its bridge speaks " + protocol + ": the folder mixes files from different packs (pack it again)";
    return false;
  }
  token_ = token;
  if (!channel::open_worker_end(addr, ep_, error)) return false;
  if (const char* board = std::getenv("ISAPI_TAKEN_BOARD")) board_.open(board);  // else: Taken for each
  // The thread-safe function also carries the writer thread's Drain, on every platform.
  tsfn_ = Napi::ThreadSafeFunction::New(env, drain, "isapi-channel", 0, 1);
  env_ = env;
  drain_ = Napi::Persistent(drain);
  napi_value name = Napi::String::New(env, "isapi-channel");
  napi_async_init(env, nullptr, name, &async_);
  LoopReaderSink sink;
  sink.bytes = [this](const char* data, size_t n) { loopDecoder_.feed(data, n); };
  sink.flush = [this] {
    take_frames();
    // The callback scope runs the promise jobs the batch started before it returns: what
    // they send (an async handler's answer, a filter's verdict) joins the batch's one write
    // instead of waking the writer thread for a second one.
    inReadable_ = true;
    call_drain();
    inReadable_ = false;
    flush();
    return !loopCorrupt_;
  };
  sink.closed = [this] { on_loop_closed(); };
  if (!start_loop_reader(env, ep_.handle(), std::move(sink))) {
    reader_ = std::thread([this] { read_loop(); });
    reader_.detach();
  }
  writer_ = std::thread([this] { write_loop(); });
  writer_.detach();
  return true;
}

// Moves every complete frame out of the decoder; true when the stream is corrupt.
static bool take_decoded(channel::FrameDecoder& decoder, std::deque<InFrame>& out) {
  channel::FrameHeader h;
  std::string_view payload;
  bool corrupt = false;
  while (decoder.next(h, payload, corrupt))
    out.push_back(InFrame{uint32_t(h.type), h.id, std::string(payload), h.flags});
  decoder.compact();
  return corrupt;
}

void Channel::take_frames() {
  std::lock_guard<std::mutex> lock(inMu_);
  if (take_decoded(loopDecoder_, in_)) loopCorrupt_ = true;
}

void Channel::call_drain() {
  Napi::HandleScope scope(env_);
  drain_.Value().MakeCallback(env_.Global(), std::initializer_list<napi_value>{}, async_);
  if (env_.IsExceptionPending()) {
    // As for an exception thrown in any I/O callback: the process's uncaughtException.
    Napi::Error e = env_.GetAndClearPendingException();
    napi_fatal_exception(env_, e.Value());
  }
}

void Channel::on_loop_closed() {
  {
    std::lock_guard<std::mutex> lock(inMu_);
    in_.push_back(InFrame{kClosed, 0, {}});
  }
  call_drain();
  exit_soon();
}

void Channel::exit_soon() {
  // The bridge (and so the web server) is gone. Give JavaScript a moment to finish cleanly,
  // then make sure no orphaned worker is left behind even if its event loop is blocked.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::_Exit(0);
  }).detach();
}

void Channel::deliver(Napi::Env env, Napi::Function dispatch) {
  std::deque<InFrame> batch;
  {
    std::lock_guard<std::mutex> lock(inMu_);
    batch.swap(in_);
  }
  // JavaScript is about to run these requests' handlers: say so first, and send it now, so
  // that a handler that blocks the event loop or kills the process is never replayed on
  // another worker (it may have had effects); a request not yet taken may be.
  // With a taken board the count in shared memory says it, at no system call; a request whose
  // body streams after Taken (flagged by the bridge) still gets the message.
  std::string taken;
  for (auto& f : batch) {
    if (Msg(f.type) != Msg::Request) continue;
    ++requestsStarted_;
    if (!board_.valid() || (f.flags & channel::kFrameWantsTaken)) channel::encode(taken, f.id, channel::msg::Taken{});
  }
  board_.publish(requestsStarted_);
  if (!taken.empty()) {
    queue(taken, false);  // flush() sends it now, or wakes the writer for what is left
    flush();
  }
  delivering_ = true;
  for (auto& f : batch) {
    Napi::HandleScope scope(env);
    dispatch_frame(env, dispatch, f);
    if (env.IsExceptionPending()) break;  // surfaces as an uncaught exception in the worker
  }
  delivering_ = false;
  flush();
}

void Channel::queue(const std::string& frames, bool wakeWriter) {
  queue_with([&](std::string& out) { out += frames; }, wakeWriter);
}

void Channel::after_queue_locked(size_t before, bool wakeWriter, bool& wake) {
  queued_ += out_.size() - before;
  wake = wakeWriter && before == outOff_ && !holding() && !writerBusy_;
}

void Channel::flush() {
  const char* p;
  size_t n;
  {
    std::lock_guard<std::mutex> lock(outMu_);
    if (out_.size() == outOff_) return;
    if (writerBusy_) {  // keep the order: the writer sends it after what it is sending
      outCv_.notify_one();
      return;
    }
    // Only this (JavaScript) thread appends to out_, and jsSending_ keeps the writer off it, so
    // the bytes stay put while the lock is released.
    jsSending_ = true;
    p = out_.data() + outOff_;
    n = out_.size() - outOff_;
  }
  long w = ep_.try_write(p, n);
  size_t sent = w > 0 ? size_t(w) : 0;
  bool drain = false;
  {
    std::lock_guard<std::mutex> lock(outMu_);
    jsSending_ = false;
    queued_ -= sent;
    outOff_ += sent;
    if (outOff_ < out_.size()) {
      outCv_.notify_one();  // the rest: the writer continues from outOff_, nothing is copied
    } else {
      out_.clear();  // keeps its capacity: a stream of writes reuses one buffer
      outOff_ = 0;
      drain = drain_due_locked();
    }
  }
  if (drain) push(InFrame{kDrain, 0, {}});
}

bool Channel::drain_due_locked() {
  if (!drainWanted_ || queued_ >= kLowWater) return false;
  drainWanted_ = false;
  return true;
}

bool Channel::below_high_water() {
  std::lock_guard<std::mutex> lock(outMu_);
  if (queued_ <= kHighWater) return true;
  drainWanted_ = true;
  return false;
}

void Channel::push(InFrame f) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(inMu_);
    wake = in_.empty();
    in_.push_back(std::move(f));
  }
  if (wake) tsfn_.NonBlockingCall();
}

void Channel::read_loop() {
  channel::FrameDecoder decoder;
  std::string buf(256 * 1024, '\0');
  for (;;) {
    long n = ep_.read_some(buf.data(), buf.size());
    if (n <= 0) break;
    decoder.feed(buf.data(), size_t(n));
    std::deque<InFrame> batch;
    const bool corrupt = take_decoded(decoder, batch);
    if (!batch.empty()) {
      bool wake;
      {
        std::lock_guard<std::mutex> lock(inMu_);
        wake = in_.empty();
        for (auto& f : batch) in_.push_back(std::move(f));
      }
      if (wake) tsfn_.NonBlockingCall();
    }
    if (corrupt) break;
  }
  push(InFrame{kClosed, 0, {}});
  exit_soon();
}

void Channel::write_loop() {
  std::string batch;
  for (;;) {
    size_t off;
    {
      std::unique_lock<std::mutex> lock(outMu_);
      outCv_.wait(lock, [&] { return out_.size() > outOff_ && !jsSending_; });
      batch.swap(out_);  // out_ gets the previous batch's buffer back, emptied, capacity kept
      off = outOff_;
      outOff_ = 0;
      writerBusy_ = true;
    }
    bool ok = ep_.write_all(batch.data() + off, batch.size() - off);
    bool drain = false;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      queued_ -= batch.size() - off;
      writerBusy_ = false;
      drain = drain_due_locked();
    }
    batch.clear();
    if (!ok) {
      ep_.shutdown();
      return;
    }
    if (drain) push(InFrame{kDrain, 0, {}});
  }
}

}  // namespace isapi::worker
