// One client TCP connection: its socket, the bytes received but not yet consumed (which may hold
// pipelined requests), and blocking-with-timeout I/O helpers used by pool threads.
// Ownership moves between the event loop (idle / reading a head / lingering) and exactly one
// request at a time; the two never touch a connection concurrently.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "http_parser.h"
#include "platform/socket.h"

namespace isapi_host {

class FilterSession;

class Connection {
 public:
  Connection(socket_t s, const NetAddress& peer, const NetAddress& local) : sock(s), peer(peer), local(local) {}

  const char* data() const { return buf_.data() + begin_; }
  size_t available() const { return buf_.size() - begin_; }
  void Consume(size_t n);
  // Drops leading CRLFs before a request line (RFC 9112 §2.2).
  void SkipLeadingEmptyLines();

  // One non-blocking recv into the buffer. > 0, 0 (EOF), kIoWouldBlock, kIoError.
  int64_t FillNonBlocking();
  // Waits for and reads at least one byte. > 0, 0 (EOF), -1 timeout or error.
  int64_t FillBlocking(int timeout_ms);
  // Reads directly into `out` when nothing is buffered (large bodies skip the copy).
  int64_t RecvDirect(char* out, size_t cap, int timeout_ms);
  // Sends every byte, waiting for the socket when it is full. False if the peer is gone or the
  // send stalls for timeout_ms.
  bool SendAll(const char* p, size_t n, int timeout_ms);

  socket_t sock;
  NetAddress peer;
  NetAddress local;
  uint32_t id = 0;           // SF_REQ_GET_CONNID
  bool abort_close = false;  // HSE_REQ_ABORTIVE_CLOSE: reset instead of a graceful close

  // ISAPI filters (nullptr when none are loaded). With read_filtering, every byte received goes
  // through SF_NOTIFY_READ_RAW_DATA before anything parses it: bytes [0, filtered) of the buffer
  // have been through the filters, the rest not yet.
  FilterSession* filters = nullptr;
  bool read_filtering = false;
  uint32_t next_read_size = 0;  // SF_REQ_SET_NEXT_READ_SIZE: size of the next read (once)
  size_t unfiltered() const { return read_filtering ? available() - filtered_ : 0; }
  char* mutable_unfiltered() { return &buf_[begin_ + filtered_]; }
  void ReplaceUnfiltered(const char* p, size_t n);
  void MarkFiltered() { filtered_ = available(); }

  // Event-loop state (touched only by the owner).
  enum class LoopState { kReading, kLinger } loop_state = LoopState::kReading;
  int64_t deadline_ms = 0;
  bool head_started = false;
  int64_t linger_bytes = 0;
  // Release/acquire pair for handing the connection to the loop through the poller: the kernel
  // orders epoll_ctl before epoll_wait, but the C++ memory model (and ThreadSanitizer) need this.
  std::atomic<uint32_t> handoff{0};

 private:
  void Compact();
  // Runs READ_RAW_DATA over new bytes (read_filtering). False: a filter ended the connection.
  bool FilterNewBytes();
  std::string buf_;
  size_t begin_ = 0;
  size_t filtered_ = 0;
};

// Reads a request body (Content-Length or chunked) from a connection, never past its end.
class BodyReader {
 public:
  void InitNone() { mode_ = kNone; }
  void InitLength(uint64_t n) {
    mode_ = n ? kLength : kNone;
    remaining_ = n;
  }
  void InitChunked(size_t max_trailer) {
    mode_ = kChunked;
    chunked_ = ChunkedDecoder(max_trailer);
  }
  // > 0 bytes, 0 at the end of the body, -1 on error (*err: a Win32 error code;
  // *framing_error: the chunked framing was invalid). With may_block false, only what is
  // already buffered is decoded, and 0 also means "nothing more has arrived yet".
  int64_t Read(Connection* c, char* out, size_t cap, int timeout_ms, uint32_t* err, bool* framing_error,
               bool may_block = true);
  bool done() const { return mode_ == kNone || (mode_ == kLength && remaining_ == 0) || chunked_done_; }
  bool failed() const { return failed_; }
  uint64_t raw_bytes() const { return raw_bytes_; }

 private:
  enum Mode { kNone, kLength, kChunked } mode_ = kNone;
  uint64_t remaining_ = 0;
  ChunkedDecoder chunked_;
  bool chunked_done_ = false;
  bool failed_ = false;
  uint64_t raw_bytes_ = 0;
};

}  // namespace isapi_host
