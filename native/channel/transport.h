// The channel's transport: a private, bidirectional byte stream between the bridge and one
// worker. Portable interface; transport_posix.cc uses an inherited socketpair end,
// transport_win.cc a named pipe with an owner-only DACL (see docs/architecture.md, "The process model").
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace isapi::channel {

#ifdef _WIN32
using NativeHandle = void*;  // HANDLE
#else
using NativeHandle = int;  // file descriptor
#endif

class Endpoint {
 public:
  Endpoint() = default;
  explicit Endpoint(NativeHandle h) : h_(h) {}
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  Endpoint(Endpoint&& o) noexcept : h_(o.h_) { o.h_ = invalid(); }
  Endpoint& operator=(Endpoint&& o) noexcept;
  ~Endpoint() { close(); }

  bool valid() const { return h_ != invalid(); }
  // Writes every byte or fails (peer gone). Never raises SIGPIPE.
  bool write_all(const void* data, size_t n);
  // Writes what fits without blocking: the count written (0 when it would block), -1 on error.
  long try_write(const void* data, size_t n);
  // Blocks until some bytes arrive. Returns the count, 0 when the peer closed, -1 on error.
  long read_some(void* buf, size_t n);
  // Wakes a reader blocked in read_some (it then sees 0) without releasing the handle.
  void shutdown();
  void close();
  NativeHandle handle() const { return h_; }
  static NativeHandle invalid();

 private:
  NativeHandle h_ = invalid();
};

// Bridge side. Creates the channel for one worker: `parent` is the bridge's end; `childHandle`
// is the end the worker inherits (closed by the bridge after spawning); `childAddress` is what
// the worker passes to open_worker_end() (it travels in the ISAPI_CHANNEL variable).
bool create_channel(Endpoint& parent, NativeHandle& childHandle, std::string& childAddress, std::string& error);
void close_native(NativeHandle h);

// Worker side: connects to the address the bridge gave it.
bool open_worker_end(const std::string& address, Endpoint& out, std::string& error);

// A random token (hex) that the worker must echo in its Ready message.
std::string random_token();

#ifdef _WIN32
// Windows: the bridge end's wait for the worker to connect also watches the worker process, so a
// worker that dies before connecting reads as end-of-stream (see transport_win.cc).
bool link_worker_process(NativeHandle childHandle, void* process);
// "The system cannot find the file specified (error 2)": FormatMessage for a Win32 error.
std::string system_message(unsigned long err);
#endif

}  // namespace isapi::channel
