// Reading the channel on the worker's own event loop (libuv), where the platform allows it.
//
// Why: a reader thread that blocks in read() and wakes JavaScript through a thread-safe
// function costs two thread wake-ups and an eventfd round trip per batch of requests; profiling
// hello.ts at 64 connections put a quarter of the worker's CPU on that thread (issue 17). On
// POSIX the channel is a socket, so libuv can watch it (uv_poll) and the JavaScript thread reads
// it itself when it is readable. On Windows the channel is a named pipe, which uv_poll cannot
// watch: there the reader thread stays (worker_channel.cc).
#pragma once
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <functional>

#include "transport.h"

namespace isapi::worker {

// What the loop reader reports, on the JavaScript thread: bytes read (as many as were there),
// or the end of the channel (peer closed, or an error).
struct LoopReaderSink {
  std::function<void(const char* data, size_t n)> bytes;
  // After a readable event's bytes: hands the frames to JavaScript; false when the stream is
  // corrupt (the reader then stops and reports closed).
  std::function<bool()> flush;
  std::function<void()> closed;
};

// Starts watching h on env's event loop. false when this platform (or this Node) cannot: the
// caller then reads with a thread.
bool start_loop_reader(Napi::Env env, channel::NativeHandle h, LoopReaderSink sink);

}  // namespace isapi::worker
