// The channel's framing, shared by the bridge (in the web server) and the worker's addon.
//
// A frame is a 12-byte header followed by `length` payload bytes:
//   u32 length | u16 type | u16 flags | u32 request id      (all little-endian)
// The payload's fields, per message type, are defined once in messages.h; encode() and
// decode() below are the only code that turns them into bytes and back. The two ends may come
// from different builds (a win-ia32 web server's bridge, a win-x64 worker's addon), so the
// Ready handshake carries kProtocolVersion and each end refuses a different one.
// Nothing in a frame depends on the pointer size: sizes and ids are u32, never size_t or a
// pointer, so a 32-bit bridge and a 64-bit worker read each other's frames.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "messages.h"

namespace isapi::channel {

constexpr uint32_t kHeaderSize = 12;
constexpr uint32_t kMaxFrame = 64u * 1024u * 1024u;  // a larger frame means a corrupt stream

// FrameHeader::flags. On a Request: the worker must send Taken before the handler runs (the
// rest of the body is read only after Taken).
constexpr uint16_t kFrameWantsTaken = 1;

// Sets the flags of the frame that starts at frame[start].
inline void set_frame_flags(std::string& frame, size_t start, uint16_t flags) {
  frame[start + 6] = char(flags & 0xff);
  frame[start + 7] = char(flags >> 8);
}

struct FrameHeader {
  uint32_t length;
  Msg type;
  uint16_t flags;
  uint32_t id;
};

inline void put_u32(std::string& out, uint32_t v) {
  char b[4] = {char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
  out.append(b, 4);
}
inline uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Builds one frame in place; finish() patches the length.
class FrameWriter {
 public:
  FrameWriter(std::string& out, Msg type, uint32_t id) : out_(out), start_(out.size()) {
    put_u32(out_, 0);
    char t[4] = {char(uint16_t(type)), char(uint16_t(type) >> 8), 0, 0};
    out_.append(t, 4);
    put_u32(out_, id);
  }
  FrameWriter& u32(uint32_t v) {
    put_u32(out_, v);
    return *this;
  }
  FrameWriter& bytes(const void* p, size_t n) {
    put_u32(out_, uint32_t(n));
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  FrameWriter& str(std::string_view s) { return bytes(s.data(), s.size()); }
  // Raw bytes without a length prefix: the rest of the payload.
  FrameWriter& tail(const void* p, size_t n) {
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  void finish() {
    uint32_t len = uint32_t(out_.size() - start_ - kHeaderSize);
    char b[4] = {char(len), char(len >> 8), char(len >> 16), char(len >> 24)};
    std::memcpy(&out_[start_], b, 4);
  }

 private:
  std::string& out_;
  size_t start_;
};

// Reads the fields of one frame's payload; any overrun marks the reader bad instead of crashing.
class FrameReader {
 public:
  FrameReader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}
  uint32_t u32() {
    if (end_ - p_ < 4) {
      bad_ = true;
      return 0;
    }
    uint32_t v = get_u32(p_);
    p_ += 4;
    return v;
  }
  std::string_view str() {
    uint32_t n = u32();
    if (bad_ || uint32_t(end_ - p_) < n) {
      bad_ = true;
      return {};
    }
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  std::string_view rest() {
    std::string_view s(reinterpret_cast<const char*>(p_), size_t(end_ - p_));
    p_ = end_;
    return s;
  }
  bool ok() const { return !bad_; }
  size_t remaining() const { return size_t(end_ - p_); }
  void fail() { bad_ = true; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  bool bad_ = false;
};

// Splits a byte stream into frames. feed() appends; next() yields complete frames.
class FrameDecoder {
 public:
  void feed(const void* p, size_t n) { buf_.insert(buf_.end(), (const uint8_t*)p, (const uint8_t*)p + n); }
  // Returns false when no complete frame is buffered. Sets `corrupt` on an impossible length.
  bool next(FrameHeader& h, std::string_view& payload, bool& corrupt);
  // Drop consumed bytes; call once after draining next().
  void compact();

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
};

// A frame's payload has a fixed field order per message, so a decoder that ends with bytes
// left over or too few has a frame from a different protocol: decode() refuses both.
#define ISAPI_DECLARE_CODEC(N)                                 \
  void encode(std::string& out, uint32_t id, const msg::N& m); \
  bool decode(std::string_view payload, msg::N& m);
ISAPI_CHANNEL_MESSAGES(ISAPI_DECLARE_CODEC)
#undef ISAPI_DECLARE_CODEC

// One message as a frame of its own.
template <class M>
std::string encoded(uint32_t id, const M& m) {
  std::string frame;
  encode(frame, id, m);
  return frame;
}

// The message's name as messages.h spells it ("ResponseHeaders"), or "" for an unknown type.
const char* message_name(Msg type);

// Calls f with a default-constructed message of the given type; false for an unknown type.
template <class F>
bool with_message(Msg type, F&& f) {
  switch (type) {
#define ISAPI_MESSAGE_CASE(N) \
  case Msg::N: {              \
    msg::N m;                 \
    f(m);                     \
    return true;              \
  }
    ISAPI_CHANNEL_MESSAGES(ISAPI_MESSAGE_CASE)
#undef ISAPI_MESSAGE_CASE
  }
  return false;
}

// The request's first frame (the name the bridge's code uses for it).
using RequestBegin = msg::Request;

}  // namespace isapi::channel
