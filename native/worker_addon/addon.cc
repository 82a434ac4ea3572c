// The worker's Node-API addon: what runtime/channel.ts calls (BridgeAddon). The worker (a Node
// SEA) loads the bridge binary with process.dlopen, so both ends share the channel's code
// (native/channel/); the schema (messages.h) decides every call's arguments and every message's
// fields (js_codec.h).
//
// Node-API symbols are weak references on ELF and delay-loaded on Windows, so this code costs
// nothing when the web server loads the bridge into a process without Node.
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <string>

#include "js_codec.h"
#include "platform/working_set.h"
#include "worker_channel.h"

#ifdef _WIN32
#include <process.h>
#define getpid _getpid
#else
#include <unistd.h>
#endif

namespace isapi::worker {

namespace msg = channel::msg;

Channel* g_channel = nullptr;
Napi::FunctionReference g_dispatch;  // JavaScript's dispatch(type, id, message)
std::string* g_capture = nullptr;    // set by _captureFrames: frames go there, not to the bridge

void send_frame(const std::string& frame) {
  if (g_capture) g_capture->append(frame);
  else if (g_channel) g_channel->queue(frame);
}

// Encodes m straight into where it goes (no intermediate frame: a 64 KiB body write is copied
// once).
template <class M>
void send_message(uint32_t id, const M& m) {
  if (g_capture) channel::encode(*g_capture, id, m);
  else if (g_channel) g_channel->queue_with([&](std::string& out) { channel::encode(out, id, m); });
}

// Reads message M from the call's arguments (after the request id when withId) and sends it;
// false, with a TypeError thrown, when an argument has the wrong type.
template <class M>
bool send_from_args(const Napi::CallbackInfo& info, const char* fn, bool withId) {
  uint32_t id = 0;
  if (withId) {
    if (!info[0].IsNumber()) {
      Napi::TypeError::New(info.Env(), std::string(fn) + "(): id must be a number").ThrowAsJavaScriptException();
      return false;
    }
    id = info[0].As<Napi::Number>().Uint32Value();
  }
  M m;
  FromJs args(info, withId ? 1 : 0, fn);
  M::fields(args, m);
  if (!args.error().empty()) {
    Napi::TypeError::New(info.Env(), args.error()).ThrowAsJavaScriptException();
    return false;
  }
  send_message(id, m);
  return true;
}

// An addon call that sends message M, its arguments in M's field order (after the request id
// when kWithId): headers(id, status, headers, keepConn), getVar(id, callId, name),
// serverSupport(id, callId, request, ints[], strs[]), filterCall(id, callId, op, name),
// filterReply(id, status, changes: [op, a, b][]), credit(id, bytes), reload(reason), log(line).
// The call's name (for its TypeErrors) is the function's data.
template <class M, bool kWithId>
Napi::Value Send(const Napi::CallbackInfo& info) {
  send_from_args<M>(info, static_cast<const char*>(info.Data()), kWithId);
  return info.Env().Undefined();
}

// The thread-safe function's target: drains the queued frames into dispatch().
Napi::Value DrainQueued(const Napi::CallbackInfo& info) {
  g_channel->deliver(info.Env(), g_dispatch.Value());
  return info.Env().Undefined();
}

// open(dispatch)
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
  }
  return env.Undefined();
}

Napi::Value Ready(const Napi::CallbackInfo& info) {
  msg::Ready m;
  m.protocol = channel::kProtocolVersion;
  m.pid = uint32_t(getpid());
  std::string token = g_channel ? g_channel->token() : std::string();
  m.token = token;
  std::string frame;
  channel::encode(frame, 0, m);
  send_frame(frame);
  return info.Env().Undefined();
}

// write(id, data) → false when the caller should wait for a Drain before writing more.
Napi::Value Write(const Napi::CallbackInfo& info) {
  if (!send_from_args<msg::Write>(info, "write", true)) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), !g_channel || g_channel->below_high_water());
}

// done(id, hseStatus, httpStatus, logData)
Napi::Value Done(const Napi::CallbackInfo& info) {
  // The request is complete: send it now, from this thread; inside a batch of requests, the
  // batch's end sends every answer in one write.
  if (send_from_args<msg::Done>(info, "done", true) && g_channel && !g_capture && !g_channel->holding())
    g_channel->flush();
  return info.Env().Undefined();
}

// releaseStartupPages() → bytes dropped from the resident set once the worker is ready: the
// pages of node's executable that only start-up used (platform/working_set.h).
Napi::Value ReleaseStartupPages(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(bridge::release_startup_pages()));
}

// _captureFrames(fn) → Buffer: runs fn and returns the frames its calls produced instead of
// sending them. For test/unit/wire_schema.test.ts, which checks the schema from JavaScript.
Napi::Value CaptureFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(env, "_captureFrames(fn) needs a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string frames;
  std::string* previous = g_capture;
  g_capture = &frames;
  info[0].As<Napi::Function>().Call({});
  g_capture = previous;
  if (env.IsExceptionPending()) return env.Undefined();
  return Napi::Buffer<char>::Copy(env, frames.data(), frames.size());
}

// _deliverFrames(frames: Buffer, dispatch): decodes frames as the reader thread does and hands
// each to dispatch as the channel would. For test/unit/wire_schema.test.ts.
Napi::Value DeliverFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "_deliverFrames(frames, dispatch) needs a Buffer and a function")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  channel::FrameDecoder decoder;
  decoder.feed(bytes.Data(), bytes.ByteLength());
  channel::FrameHeader h;
  std::string_view payload;
  bool corrupt = false;
  while (decoder.next(h, payload, corrupt)) {
    Napi::HandleScope scope(env);
    dispatch_frame(env, info[1].As<Napi::Function>(), InFrame{uint32_t(h.type), h.id, std::string(payload)});
    if (env.IsExceptionPending()) return env.Undefined();
  }
  if (corrupt) Napi::Error::New(env, "_deliverFrames: a frame's length is impossible").ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace isapi::worker

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  using namespace isapi::worker;
  auto add = [&](const char* name, Napi::Function::Callback fn) {
    exports.Set(name, Napi::Function::New(env, fn, name, const_cast<char*>(name)));
  };
  add("open", Open);
  add("ready", Ready);
  add("headers", Send<msg::ResponseHeaders, true>);
  add("write", Write);
  add("done", Done);
  add("getVar", Send<msg::GetVar, true>);
  add("credit", Send<msg::BodyCredit, true>);
  add("log", Send<msg::Log, false>);
  add("releaseStartupPages", ReleaseStartupPages);
  add("serverSupport", Send<msg::ServerSupport, true>);
  add("reload", Send<msg::Reload, false>);
  add("filterCall", Send<msg::FilterCall, true>);
  add("filterReply", Send<msg::FilterReply, true>);
  add("_captureFrames", CaptureFrames);
  add("_deliverFrames", DeliverFrames);
  exports.Set("protocolVersion", Napi::Number::New(env, isapi::channel::kProtocolVersion));
  return exports;
}

NODE_API_MODULE(isapi_bridge, InitAddon)
