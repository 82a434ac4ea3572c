#include "connection.h"

#include <cstring>

#include "filters.h"
#include "isapi.h"
#include "platform/system.h"

namespace isapi_host {

namespace {
constexpr size_t kReadChunk = 16384;
}

void Connection::Consume(size_t n) {
  begin_ += n;
  filtered_ = filtered_ > n ? filtered_ - n : 0;
  if (begin_ >= buf_.size()) {
    buf_.clear();
    begin_ = 0;
    filtered_ = 0;
  }
}

void Connection::ReplaceUnfiltered(const char* p, size_t n) {
  buf_.replace(begin_ + filtered_, std::string::npos, p, n);
  filtered_ = available();
}

bool Connection::FilterNewBytes() {
  if (!read_filtering || !filters || unfiltered() == 0) return true;
  return filters->ReadRawData() == FilterSession::kContinue;
}

void Connection::SkipLeadingEmptyLines() {
  while (available() - unfiltered() >= 2 && data()[0] == '\r' && data()[1] == '\n') Consume(2);
}

void Connection::Compact() {
  if (begin_ > 0 && (begin_ >= buf_.size() / 2 || buf_.capacity() - buf_.size() < kReadChunk)) {
    buf_.erase(0, begin_);
    begin_ = 0;
  }
}

int64_t Connection::FillNonBlocking() {
  Compact();
  size_t old = buf_.size();
  size_t chunk = kReadChunk;
  if (next_read_size) {
    chunk = next_read_size;
    next_read_size = 0;
  }
  // Small reads land on the stack and only what arrived is appended: growing buf_ by the whole
  // chunk first zero-filled 16 KiB per request (4% of the host's CPU under load).
  constexpr size_t kStackRead = 16384;
  if (chunk <= kStackRead) {
    char tmp[kStackRead];
    int64_t n = NetRecv(sock, tmp, chunk);
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
    return n;
  }
  buf_.resize(old + chunk);
  int64_t n = NetRecv(sock, &buf_[old], chunk);
  buf_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
  return n;
}

int64_t Connection::FillBlocking(int timeout_ms) {
  int64_t deadline = MonotonicMs() + timeout_ms;
  for (;;) {
    int64_t n = FillNonBlocking();
    if (n > 0 && read_filtering) {
      if (!FilterNewBytes()) return -1;
      // A filter may swallow what was read (SF_STATUS_REQ_READ_NEXT): read more.
      if (available() == 0) continue;
    }
    if (n >= 0) return n;
    if (n == kIoError) return -1;
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) return -1;
    if (NetWaitReadable(sock, static_cast<int>(left)) < 0) return -1;
  }
}

int64_t Connection::RecvDirect(char* out, size_t cap, int timeout_ms) {
  if (read_filtering) {  // every byte goes through the buffer and the filters
    while (available() == 0) {
      int64_t n = FillBlocking(timeout_ms);
      if (n <= 0) return n;
    }
    size_t k = cap < available() ? cap : available();
    memcpy(out, data(), k);
    Consume(k);
    return static_cast<int64_t>(k);
  }
  int64_t deadline = MonotonicMs() + timeout_ms;
  for (;;) {
    int64_t n = NetRecv(sock, out, cap);
    if (n >= 0) return n;
    if (n == kIoError) return -1;
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) return -1;
    if (NetWaitReadable(sock, static_cast<int>(left)) < 0) return -1;
  }
}

bool Connection::SendAll(const char* p, size_t n, int timeout_ms) {
  while (n > 0) {
    int64_t w = NetSend(sock, p, n);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w == kIoError) return false;
    if (NetWaitWritable(sock, timeout_ms) <= 0) return false;
  }
  return true;
}

int64_t BodyReader::Read(Connection* c, char* out, size_t cap, int timeout_ms, uint32_t* err, bool* framing_error,
                         bool may_block) {
  *framing_error = false;
  if (failed_) {
    *err = ERROR_NETNAME_DELETED;
    return -1;
  }
  if (done() || cap == 0) return 0;
  if (mode_ == kLength) {
    size_t want = cap;
    if (want > remaining_) want = static_cast<size_t>(remaining_);
    int64_t n;
    if (c->available() > 0) {
      n = static_cast<int64_t>(want < c->available() ? want : c->available());
      memcpy(out, c->data(), static_cast<size_t>(n));
      c->Consume(static_cast<size_t>(n));
    } else {
      if (!may_block) return 0;
      n = c->RecvDirect(out, want, timeout_ms);
      if (n <= 0) {
        failed_ = true;
        *err = n == 0 ? ERROR_NETNAME_DELETED : ERROR_TIMEOUT;
        return -1;
      }
    }
    remaining_ -= static_cast<uint64_t>(n);
    raw_bytes_ += static_cast<uint64_t>(n);
    return n;
  }
  // chunked
  for (;;) {
    if (c->available() == 0) {
      if (!may_block) return 0;  // only what has arrived (the read-ahead)
      int64_t n = c->FillBlocking(timeout_ms);
      if (n <= 0) {
        failed_ = true;
        *err = n == 0 ? ERROR_NETNAME_DELETED : ERROR_TIMEOUT;
        return -1;
      }
    }
    size_t consumed = 0, produced = 0;
    ChunkedDecoder::Result r = chunked_.Feed(c->data(), c->available(), out, cap, &consumed, &produced);
    c->Consume(consumed);
    raw_bytes_ += consumed;
    if (r == ChunkedDecoder::kError) {
      failed_ = true;
      *framing_error = true;
      *err = 13;  // ERROR_INVALID_DATA
      return -1;
    }
    if (r == ChunkedDecoder::kDone) chunked_done_ = true;
    if (produced > 0 || chunked_done_) return static_cast<int64_t>(produced);
  }
}

}  // namespace isapi_host
