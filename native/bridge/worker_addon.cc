// The worker's side of the channel, as a Node-API addon. The worker (a Node SEA) loads this
// same bridge binary with process.dlopen, so both ends share wire.h/transport.h.
//
// Threads: a reader thread decodes frames and hands batches to JavaScript through a
// thread-safe function; a writer thread sends what JavaScript queued, coalescing everything
// queued in one turn of the event loop into one write. JavaScript never blocks on the channel.
//
// Node-API symbols are weak references on ELF and delay-loaded on Windows, so this file costs
// nothing when the web server loads the bridge into a process without Node.
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "platform/working_set.h"
#include "transport.h"
#include "wire.h"

#ifdef _WIN32
#include <process.h>
#define getpid _getpid
#else
#include <unistd.h>
#endif

namespace isapi::worker {

using channel::FrameWriter;
using channel::Msg;

// Pseudo message types delivered to JavaScript next to the real ones.
constexpr uint32_t kClosed = 0;
constexpr uint32_t kDrain = 1;
// write() answers false above kHighWater queued bytes, and a Drain follows once below kLowWater.
// 1 MiB is several times the channel's socket buffer, so the writer never runs dry (streaming
// 32-256 MiB measured as fast as with 4 MiB), and a streamed download holds ~10 MiB less in the
// worker: the queue and the writer's batch each grow to about this size (issue 7).
constexpr size_t kHighWater = 1u << 20;
constexpr size_t kLowWater = 256u << 10;

struct InFrame {
  uint32_t type;
  uint32_t id;
  std::string payload;
};

class Channel {
 public:
  bool open(Napi::Env env, Napi::Function drain, std::string& error) {
    const char* addr = std::getenv("ISAPI_CHANNEL");
    const char* token = std::getenv("ISAPI_CHANNEL_TOKEN");
    if (!addr || !token) {
      error = "this program is a node-isapi worker: it is started by its bridge (_<name>.dll/.so) "
              "inside a web server, not directly. Run `isapi serve <folder>` to try it.";
      return false;
    }
    token_ = token;
    if (!channel::open_worker_end(addr, ep_, error)) return false;
    tsfn_ = Napi::ThreadSafeFunction::New(env, drain, "isapi-channel", 0, 1);
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
    reader_.detach();
    writer_.detach();
    return true;
  }

  // Called on the JavaScript thread by the thread-safe function. What handlers queue while
  // it runs goes out in one write at the end, from this thread: a synchronous handler's
  // headers, body and Done cost one system call and no thread hand-off.
  void deliver(Napi::Env env, Napi::Function dispatch) {
    std::deque<InFrame> batch;
    {
      std::lock_guard<std::mutex> lock(inMu_);
      batch.swap(in_);
    }
    // JavaScript is about to run these requests' handlers: say so first, and send it now, so
    // that a handler that blocks the event loop or kills the process is never replayed on
    // another worker (it may have had effects); a request not yet taken may be.
    std::string taken;
    for (auto& f : batch)
      if (Msg(f.type) == Msg::Request) FrameWriter(taken, Msg::Taken, f.id).finish();
    if (!taken.empty()) {
      queue(taken);
      flush();
    }
    delivering_ = true;
    for (auto& f : batch) {
      Napi::HandleScope scope(env);
      dispatch_one(env, dispatch, f);
      if (env.IsExceptionPending()) break;  // surfaces as an uncaught exception in the worker
    }
    delivering_ = false;
    flush();
  }

  void queue(const std::string& frames) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      wake = out_.empty() && !delivering_ && !writerBusy_;
      out_ += frames;
      queued_ += frames.size();
    }
    if (wake) outCv_.notify_one();
  }

  // Sends what is queued from the calling (JavaScript) thread if the channel takes it without
  // blocking; anything left is handed to the writer thread.
  void flush() {
    std::string batch;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      if (out_.empty()) return;
      if (writerBusy_) {  // keep the order: the writer sends it after what it is sending
        outCv_.notify_one();
        return;
      }
      batch.swap(out_);
    }
    long n = ep_.try_write(batch.data(), batch.size());
    size_t sent = n > 0 ? size_t(n) : 0;
    bool drain = false;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      queued_ -= sent;
      if (sent < batch.size()) {
        out_.insert(0, batch, sent, std::string::npos);
        outCv_.notify_one();
      } else if (drainWanted_ && queued_ < kLowWater) {
        drainWanted_ = false;
        drain = true;
      }
    }
    if (drain) push(InFrame{kDrain, 0, {}});
  }

  bool below_high_water() {
    std::lock_guard<std::mutex> lock(outMu_);
    if (queued_ <= kHighWater) return true;
    drainWanted_ = true;
    return false;
  }

  const std::string& token() const { return token_; }

 private:
  void push(InFrame f) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(inMu_);
      wake = in_.empty();
      in_.push_back(std::move(f));
    }
    if (wake) tsfn_.NonBlockingCall();
  }

  void read_loop() {
    channel::FrameDecoder decoder;
    std::string buf(256 * 1024, '\0');
    for (;;) {
      long n = ep_.read_some(buf.data(), buf.size());
      if (n <= 0) break;
      decoder.feed(buf.data(), size_t(n));
      channel::FrameHeader h;
      std::string_view payload;
      bool corrupt = false;
      std::deque<InFrame> batch;
      while (decoder.next(h, payload, corrupt))
        batch.push_back(InFrame{uint32_t(h.type), h.id, std::string(payload)});
      decoder.compact();
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
    // The bridge (and so the web server) is gone. Give JavaScript a moment to finish cleanly,
    // then make sure no orphaned worker is left behind even if its event loop is blocked.
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::_Exit(0);
  }

  void write_loop() {
    std::string batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(outMu_);
        outCv_.wait(lock, [&] { return !out_.empty(); });
        batch.swap(out_);
        writerBusy_ = true;
      }
      bool ok = ep_.write_all(batch.data(), batch.size());
      bool drain = false;
      {
        std::lock_guard<std::mutex> lock(outMu_);
        queued_ -= batch.size();
        writerBusy_ = false;
        if (drainWanted_ && queued_ < kLowWater) { drainWanted_ = false; drain = true; }
      }
      batch.clear();
      if (!ok) { ep_.shutdown(); return; }
      if (drain) push(InFrame{kDrain, 0, {}});
    }
  }

  static Napi::String js_str(Napi::Env env, std::string_view s) {
    return Napi::String::New(env, s.data(), s.size());
  }

  void dispatch_one(Napi::Env env, Napi::Function dispatch, const InFrame& f) {
    Napi::Number type = Napi::Number::New(env, f.type);
    Napi::Number id = Napi::Number::New(env, f.id);
    channel::FrameReader rd(reinterpret_cast<const uint8_t*>(f.payload.data()), f.payload.size());
    switch (Msg(f.type)) {
      case Msg::Request: {
        channel::RequestBegin r;
        if (!channel::decode_request(f.payload, r)) return;
        Napi::Object o = Napi::Object::New(env);
        o.Set("method", js_str(env, r.method));
        o.Set("query", js_str(env, r.query));
        o.Set("pathInfo", js_str(env, r.pathInfo));
        o.Set("pathTranslated", js_str(env, r.pathTranslated));
        o.Set("contentType", js_str(env, r.contentType));
        o.Set("totalBytes", Napi::Number::New(env, r.totalBytes));
        o.Set("connId", Napi::Number::New(env, r.connId));
        Napi::Object vars = Napi::Object::New(env);
        for (auto& [k, v] : r.vars) vars.Set(js_str(env, k), js_str(env, v));
        o.Set("vars", vars);
        o.Set("body", Napi::Buffer<char>::Copy(env, r.preloaded.data(), r.preloaded.size()));
        dispatch.Call({type, id, o});
        return;
      }
      case Msg::Ping: {
        // Answered here, on the JavaScript thread, so a blocked event loop never answers.
        std::string pong;
        FrameWriter(pong, Msg::Pong, 0).u32(rd.u32()).finish();
        queue(pong);
        return;
      }
      case Msg::WriteAck: {
        dispatch.Call({type, id, Napi::Number::New(env, rd.u32())});
        return;
      }
      case Msg::Body: {
        std::string_view data = rd.str();
        dispatch.Call({type, id, Napi::Buffer<char>::Copy(env, data.data(), data.size())});
        return;
      }
      case Msg::VarReply: {
        uint32_t callId = rd.u32();
        uint32_t err = rd.u32();
        std::string_view value = rd.str();
        dispatch.Call({type, id, Napi::Number::New(env, callId), Napi::Number::New(env, err),
                       Napi::Buffer<char>::Copy(env, value.data(), value.size())});
        return;
      }
      case Msg::FilterNotify: {
        Napi::Object n = Napi::Object::New(env);
        n.Set("connection", Napi::Number::New(env, rd.u32()));
        n.Set("notification", Napi::Number::New(env, rd.u32()));
        n.Set("wantsReply", Napi::Boolean::New(env, rd.u32() != 0));
        uint32_t nf = rd.u32();
        Napi::Array fields = Napi::Array::New(env);
        for (uint32_t i = 0; i < nf && i < 64 && rd.ok(); ++i) {
          std::string_view f = rd.str();
          fields.Set(i, Napi::Buffer<char>::Copy(env, f.data(), f.size()));
        }
        n.Set("fields", fields);
        uint32_t nv = rd.u32();
        Napi::Object vars = Napi::Object::New(env);
        for (uint32_t i = 0; i < nv && i < 64 && rd.ok(); ++i) {
          std::string_view k = rd.str();
          std::string_view v = rd.str();
          vars.Set(js_str(env, k), js_str(env, v));
        }
        n.Set("vars", vars);
        dispatch.Call({type, id, n});
        return;
      }
      case Msg::FilterCallReply: {
        uint32_t callId = rd.u32();
        Napi::Object r = Napi::Object::New(env);
        r.Set("ok", Napi::Boolean::New(env, rd.u32() != 0));
        r.Set("error", Napi::Number::New(env, rd.u32()));
        r.Set("out", js_str(env, rd.str()));
        dispatch.Call({type, id, Napi::Number::New(env, callId), r});
        return;
      }
      case Msg::ServerSupportReply: {
        uint32_t callId = rd.u32();
        uint32_t ok = rd.u32();
        uint32_t err = rd.u32();
        uint32_t n = rd.u32();
        Napi::Array ints = Napi::Array::New(env);
        for (uint32_t i = 0; i < n && i < 16 && rd.ok(); ++i) ints.Set(i, Napi::Number::New(env, rd.u32()));
        std::string_view out = rd.str();
        Napi::Object r = Napi::Object::New(env);
        r.Set("ok", Napi::Boolean::New(env, ok != 0));
        r.Set("error", Napi::Number::New(env, err));
        r.Set("ints", ints);
        r.Set("out", js_str(env, out));
        dispatch.Call({type, id, Napi::Number::New(env, callId), r});
        return;
      }
      default:
        dispatch.Call({type, id});
        return;
    }
  }

  channel::Endpoint ep_;
  std::string token_;
  Napi::ThreadSafeFunction tsfn_;
  std::mutex inMu_;
  std::deque<InFrame> in_;
  std::mutex outMu_;
  std::condition_variable outCv_;
  std::string out_;
  size_t queued_ = 0;
  bool drainWanted_ = false;
  bool writerBusy_ = false;   // the writer thread is sending a batch (guarded by outMu_)
  bool delivering_ = false;   // JavaScript is inside deliver() (JavaScript thread only)
  std::thread reader_, writer_;
};

Channel* g_channel = nullptr;
Napi::FunctionReference g_dispatch;  // JavaScript's dispatch(type, id, ...)

// The thread-safe function's target: drains the queued frames into dispatch().
Napi::Value DrainQueued(const Napi::CallbackInfo& info) {
  g_channel->deliver(info.Env(), g_dispatch.Value());
  return info.Env().Undefined();
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_channel) {
    Napi::Error::New(env, "the channel is already open").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(env, "open(dispatch) needs a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  g_dispatch = Napi::Persistent(info[0].As<Napi::Function>());
  auto* ch = new Channel();
  g_channel = ch;
  std::string error;
  if (!ch->open(env, Napi::Function::New(env, DrainQueued, "drainChannel"), error)) {
    g_channel = nullptr;
    delete ch;
    Napi::Error::New(env, error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return env.Undefined();
}

static std::string str_arg(const Napi::Value& v) {
  if (v.IsBuffer()) {
    auto b = v.As<Napi::Buffer<char>>();
    return std::string(b.Data(), b.Length());
  }
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  return {};
}

static uint32_t u32_arg(const Napi::Value& v) { return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0; }

Napi::Value Ready(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::Ready, 0).u32(channel::kProtocolVersion).u32(uint32_t(getpid())).str(g_channel->token()).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// headers(id, status, headers, keepConn)
Napi::Value Headers(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::ResponseHeaders, u32_arg(info[0]))
      .str(str_arg(info[1])).str(str_arg(info[2])).u32(info[3].ToBoolean() ? 1 : 0).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// write(id, data) → false when the caller should wait for a Drain before writing more.
Napi::Value Write(const Napi::CallbackInfo& info) {
  std::string frame;
  if (info[1].IsBuffer() || info[1].IsTypedArray()) {
    auto a = info[1].As<Napi::Uint8Array>();
    FrameWriter(frame, Msg::Write, u32_arg(info[0])).bytes(a.Data(), a.ByteLength()).finish();
  } else {
    FrameWriter(frame, Msg::Write, u32_arg(info[0])).str(str_arg(info[1])).finish();
  }
  g_channel->queue(frame);
  return Napi::Boolean::New(info.Env(), g_channel->below_high_water());
}

// done(id, hseStatus, httpStatus, logData)
Napi::Value Done(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::Done, u32_arg(info[0]))
      .u32(u32_arg(info[1])).u32(u32_arg(info[2])).str(str_arg(info[3])).finish();
  g_channel->queue(frame);
  g_channel->flush();  // the request is complete: send it now, from this thread
  return info.Env().Undefined();
}

// getVar(id, callId, name)
Napi::Value GetVar(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::GetVar, u32_arg(info[0])).u32(u32_arg(info[1])).str(str_arg(info[2])).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// serverSupport(id, callId, request, ints[], strs[]): a ServerSupportFunction call.
Napi::Value ServerSupport(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter f(frame, Msg::ServerSupport, u32_arg(info[0]));
  f.u32(u32_arg(info[1])).u32(u32_arg(info[2]));
  Napi::Array ints = info[3].IsArray() ? info[3].As<Napi::Array>() : Napi::Array::New(info.Env());
  f.u32(ints.Length());
  for (uint32_t i = 0; i < ints.Length(); ++i) f.u32(u32_arg(ints.Get(i)));
  Napi::Array strs = info[4].IsArray() ? info[4].As<Napi::Array>() : Napi::Array::New(info.Env());
  f.u32(strs.Length());
  for (uint32_t i = 0; i < strs.Length(); ++i) f.str(str_arg(strs.Get(i)));
  f.finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// filterCall(id, callId, op, name): a query while the web server waits for the verdict.
Napi::Value FilterCall(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::FilterCall, u32_arg(info[0])).u32(u32_arg(info[1])).u32(u32_arg(info[2])).str(str_arg(info[3])).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// filterReply(id, status, changes: [op, a, b][]): the verdict and every change, in order.
Napi::Value FilterReply(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter f(frame, Msg::FilterReply, u32_arg(info[0]));
  f.u32(u32_arg(info[1]));
  Napi::Array changes = info[2].IsArray() ? info[2].As<Napi::Array>() : Napi::Array::New(info.Env());
  f.u32(changes.Length());
  for (uint32_t i = 0; i < changes.Length(); ++i) {
    Napi::Value c = changes.Get(i);
    Napi::Array change = c.IsArray() ? c.As<Napi::Array>() : Napi::Array::New(info.Env());
    f.u32(u32_arg(change.Get(0u))).str(str_arg(change.Get(1u))).str(str_arg(change.Get(2u)));
  }
  f.finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// reload(reason): ask the bridge for a fresh generation of workers.
Napi::Value Reload(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::Reload, 0).str(str_arg(info[0])).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// credit(id, bytes): the worker consumed that much request body.
Napi::Value Credit(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::BodyCredit, u32_arg(info[0])).u32(u32_arg(info[1])).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// log(line): a line for the bridge's log file.
Napi::Value Log(const Napi::CallbackInfo& info) {
  std::string frame;
  FrameWriter(frame, Msg::Log, 0).str(str_arg(info[0])).finish();
  g_channel->queue(frame);
  return info.Env().Undefined();
}

// releaseStartupPages() → bytes dropped from the resident set once the worker is ready: the
// pages of node's executable that only start-up used (platform/working_set.h).
Napi::Value ReleaseStartupPages(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(bridge::release_startup_pages()));
}

}  // namespace isapi::worker

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  using namespace isapi::worker;
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("ready", Napi::Function::New(env, Ready, "ready"));
  exports.Set("headers", Napi::Function::New(env, Headers, "headers"));
  exports.Set("write", Napi::Function::New(env, Write, "write"));
  exports.Set("done", Napi::Function::New(env, Done, "done"));
  exports.Set("getVar", Napi::Function::New(env, GetVar, "getVar"));
  exports.Set("credit", Napi::Function::New(env, Credit, "credit"));
  exports.Set("log", Napi::Function::New(env, Log, "log"));
  exports.Set("releaseStartupPages", Napi::Function::New(env, ReleaseStartupPages, "releaseStartupPages"));
  exports.Set("serverSupport", Napi::Function::New(env, ServerSupport, "serverSupport"));
  exports.Set("reload", Napi::Function::New(env, Reload, "reload"));
  exports.Set("filterCall", Napi::Function::New(env, FilterCall, "filterCall"));
  exports.Set("filterReply", Napi::Function::New(env, FilterReply, "filterReply"));
  exports.Set("protocolVersion", Napi::Number::New(env, isapi::channel::kProtocolVersion));
  return exports;
}

NODE_API_MODULE(isapi_bridge, InitAddon)
