// The channel's wire format, shared by the bridge (C++ side) and the worker's addon (JS side).
//
// A frame is a 12-byte header followed by `length` payload bytes:
//   u32 length | u16 type | u16 flags | u32 request id      (all little-endian)
// Payload fields are appended in a fixed order per message type: u32 integers, and
// byte strings as u32 length + bytes. There is no schema negotiation: both ends are
// always built from the same source (the bridge DLL is also the worker's addon; a 32-bit
// bridge's x64 workers load the x64 build packed beside it), so they agree by construction.
// Nothing in a frame depends on the pointer size: sizes and ids are u32, never size_t or a
// pointer, so a 32-bit bridge and a 64-bit worker read each other's frames.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace isapi::channel {

constexpr uint32_t kHeaderSize = 12;
constexpr uint32_t kMaxFrame = 64u * 1024u * 1024u;  // a larger frame means a corrupt stream
constexpr uint32_t kProtocolVersion = 2;

enum class Msg : uint16_t {
  // worker → bridge
  Ready = 1,          // u32 protocol, u32 pid, str token
  ResponseHeaders = 2,// str status, str headers, u32 keepConn
  Write = 3,          // bytes
  Done = 4,           // u32 hseStatus, u32 httpStatus, str logData
  GetVar = 5,         // u32 callId, str name
  Log = 6,            // str line (worker-side diagnostics the bridge writes to its log)
  BodyCredit = 7,     // u32 bytes the worker consumed (flow control for request bodies)
  ServerSupport = 8,  // u32 callId, u32 request (HSE_REQ_*), u32 n + n×u32, u32 m + m×str
  Reload = 9,         // str reason: start fresh workers and drain this generation
  FilterCall = 10,    // (id = notification) u32 callId, u32 op, str arg: a query during a notification
  FilterReply = 11,   // (id = notification) u32 SF_STATUS_REQ_*, u32 n + n×(u32 op, str a, str b) changes
  Taken = 12,         // the worker's JavaScript has the request: it is no longer safe to re-route it
  Pong = 13,          // u32 seq: the answer to Ping, sent from the worker's event loop

  // bridge → worker
  Request = 100,      // see RequestBegin below
  Body = 101,         // bytes; an empty Body ends the request body
  VarReply = 102,     // u32 callId, u32 win32Error, str value
  Abort = 103,        // the client or the bridge gave up on the request
  Shutdown = 104,     // drain and exit
  ServerSupportReply = 105,  // u32 callId, u32 ok, u32 win32Error, u32 n + n×u32, str out
  FilterNotify = 106, // (id = notification) u32 connection, u32 SF_NOTIFY_*, u32 wantsReply,
                      //   u32 n + n×str fields, u32 m + m×(str name, str value) server variables
  FilterCallReply = 107,  // u32 callId, u32 ok, u32 win32Error, str value
  Ping = 108,         // u32 seq: heartbeat; a worker whose event loop is blocked never answers
  WriteAck = 109,     // u32 bytes of the request's Write frames the web server has taken
                      //   (per-request flow control for responses: a stalled client holds only its own)
};

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
  FrameWriter& u32(uint32_t v) { put_u32(out_, v); return *this; }
  FrameWriter& bytes(const void* p, size_t n) {
    put_u32(out_, uint32_t(n));
    out_.append(static_cast<const char*>(p), n);
    return *this;
  }
  FrameWriter& str(std::string_view s) { return bytes(s.data(), s.size()); }
  // Raw bytes without a length prefix: the rest of the payload.
  FrameWriter& tail(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); return *this; }
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
    if (end_ - p_ < 4) { bad_ = true; return 0; }
    uint32_t v = get_u32(p_); p_ += 4; return v;
  }
  std::string_view str() {
    uint32_t n = u32();
    if (bad_ || uint32_t(end_ - p_) < n) { bad_ = true; return {}; }
    std::string_view s(reinterpret_cast<const char*>(p_), n); p_ += n; return s;
  }
  std::string_view rest() {
    std::string_view s(reinterpret_cast<const char*>(p_), size_t(end_ - p_)); p_ = end_; return s;
  }
  bool ok() const { return !bad_; }
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

// The first message of a request: everything a handler usually needs, so most requests
// never cross the channel again before the response.
struct RequestBegin {
  std::string_view method, query, pathInfo, pathTranslated, contentType;
  uint32_t totalBytes = 0;
  uint32_t connId = 0;
  std::vector<std::pair<std::string_view, std::string_view>> vars;  // prefetched server variables
  std::string_view preloaded;                                        // ECB lpbData[0..cbAvailable)
};

// Queries a filter may make while the web server waits for its verdict.
enum class FilterQuery : uint32_t { GetHeader = 1, GetServerVariable = 2 };

// Changes a filter's reply carries, applied in order before HttpFilterProc returns.
enum class FilterChange : uint32_t {
  SetHeader = 1,             // a = name ("url", "method", "version" or "Name:"), b = value ("" deletes)
  AddHeader = 2,             // a = name, b = value
  AddResponseHeaders = 3,    // a = "Name: value\r\n" lines
  WriteClient = 4,           // a = bytes
  SendResponseHeader = 5,    // a = status, b = header lines
  DisableNotifications = 6,  // a = decimal mask
  SetPhysicalPath = 7,       // a = path (URL_MAP)
  SetLogField = 8,           // a = field index (0-5 strings, 6 status, 7 win32), b = value (LOG)
  SetUser = 9,               // a = user (AUTHENTICATION)
  SetPassword = 10,          // a = password (AUTHENTICATION)
  AddHeadersOnDenial = 11,   // a = header lines
  SetRawData = 12,           // a = bytes replacing the raw data (READ/SEND_RAW_DATA)
  SetNextReadSize = 13,      // a = decimal size
  SetHttpStatus = 14,        // a = decimal status (SEND_RESPONSE, AUTH_COMPLETE)
};

void encode_request(std::string& out, uint32_t id, const RequestBegin& r);
bool decode_request(std::string_view payload, RequestBegin& r);

}  // namespace isapi::channel
