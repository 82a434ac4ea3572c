// loop_reader.h on POSIX: the channel socket watched by a uv_poll_t on the worker's event loop.
//
// The bridge binary is also loaded by web servers without Node, so it does not link libuv: the
// few libuv functions used here are looked up in the running executable (Node exports its
// libuv), and a Node without them gets the reader thread instead. They are part of libuv 1.x's
// stable ABI; the handle is sized with uv_handle_size, so its layout is never assumed.
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

#include <cstdlib>
#include <string>

#include "loop_reader.h"

namespace isapi::worker {

namespace {

struct uv_poll_s;  // opaque: sized by uv_handle_size
using uv_poll_cb = void (*)(uv_poll_s* handle, int status, int events);

constexpr int kUvPoll = 8;      // UV_POLL in uv_handle_type
constexpr int kUvReadable = 1;  // UV_READABLE

struct Uv {
  size_t (*handle_size)(int type);
  int (*poll_init)(::uv_loop_s* loop, uv_poll_s* handle, int fd);
  int (*poll_start)(uv_poll_s* handle, int events, uv_poll_cb cb);
  int (*poll_stop)(uv_poll_s* handle);
};

bool resolve(Uv& uv) {
  auto sym = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
  uv.handle_size = reinterpret_cast<size_t (*)(int)>(sym("uv_handle_size"));
  uv.poll_init = reinterpret_cast<int (*)(::uv_loop_s*, uv_poll_s*, int)>(sym("uv_poll_init"));
  uv.poll_start = reinterpret_cast<int (*)(uv_poll_s*, int, uv_poll_cb)>(sym("uv_poll_start"));
  uv.poll_stop = reinterpret_cast<int (*)(uv_poll_s*)>(sym("uv_poll_stop"));
  return uv.handle_size && uv.poll_init && uv.poll_start && uv.poll_stop;
}

// Lives as long as the process: the channel is never reopened, and the worker exits when it ends.
struct Reader {
  Uv uv;
  uv_poll_s* handle = nullptr;
  int fd = -1;
  LoopReaderSink sink;
  std::string buf = std::string(256 * 1024, '\0');
};

Reader* g_reader = nullptr;  // one channel per worker

void on_readable(uv_poll_s* handle, int status, int /*events*/) {
  Reader* r = g_reader;
  bool closed = status < 0;
  // What is there now, up to a bound, so one busy channel cannot starve the rest of the loop.
  for (size_t total = 0; !closed && total < 4 * r->buf.size();) {
    ssize_t n = ::recv(r->fd, r->buf.data(), r->buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      r->sink.bytes(r->buf.data(), size_t(n));
      total += size_t(n);
      if (size_t(n) < r->buf.size()) break;  // drained
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed = true;  // 0: the bridge closed its end; < 0: the channel broke
  }
  if (!r->sink.flush()) closed = true;
  if (closed) {
    r->uv.poll_stop(handle);
    r->sink.closed();
  }
}

}  // namespace

bool start_loop_reader(Napi::Env env, channel::NativeHandle h, LoopReaderSink sink) {
  if (std::getenv("ISAPI_CHANNEL_READER_THREAD")) return false;  // the thread, for comparison
  auto* r = new Reader();
  ::uv_loop_s* loop = nullptr;
  if (!resolve(r->uv) || napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    delete r;
    return false;
  }
  r->fd = h;
  r->sink = std::move(sink);
  r->handle = static_cast<uv_poll_s*>(std::calloc(1, r->uv.handle_size(kUvPoll)));
  if (!r->handle || r->uv.poll_init(loop, r->handle, h) != 0) {
    std::free(r->handle);
    delete r;
    return false;
  }
  g_reader = r;
  if (r->uv.poll_start(r->handle, kUvReadable, on_readable) != 0) {
    g_reader = nullptr;
    return false;  // the handle stays initialised but unused: one small leak, once, on a failure path
  }
  return true;
}

}  // namespace isapi::worker
