// The channel's schema: every message, defined once.
//
// Each message is a struct whose static fields() names its fields in wire order and says how
// each is carried. Every end derives its code from this list: wire.cc encodes and decodes
// (encode()/decode() for each message), the worker's addon converts to and from JavaScript
// values keyed by the names given here (native/worker_addon/js_codec.h), and the native unit
// tests print samples of every message for test/unit/wire_schema.test.ts, which checks that
// runtime/channel.ts reads and writes the same values. Adding a field here changes all of them.
//
// Field kinds (how a field is carried; the JavaScript value in brackets):
//   u32    u32 little-endian                                   [number]
//   flag   u32 0 or 1                                          [boolean]
//   text   u32 length + bytes                                  [string, UTF-8]
//   bytes  u32 length + bytes                                  [Buffer]
//   u32s   u32 n + n × u32                                     [number[]]
//   texts  u32 n + n × text                                    [string[]]
//   blobs  u32 n + n × bytes                                   [Buffer[]]
//   pairs  u32 n + n × (text name, text value)                 [Record<string, string>]
//   changes u32 n + n × (u32 op, bytes a, bytes b)             [[number, Buffer, Buffer][]]
//   rest   the rest of the payload, no length                  [Buffer]
//
// Decoded strings are views into the frame's payload: they live as long as the payload does.
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace isapi::channel {

// Bumped whenever a message's fields or meaning change. The bridge passes its version to the
// worker (ISAPI_CHANNEL_PROTOCOL) and the worker sends its own in Ready: each end refuses the
// other when they differ, which happens only when a folder mixes files from different packs.
constexpr uint32_t kProtocolVersion = 4;  // 4: the taken board (taken_board.h)

enum class Msg : uint16_t {
  // worker → bridge
  Ready = 1,
  ResponseHeaders = 2,
  Write = 3,
  Done = 4,
  GetVar = 5,
  Log = 6,
  BodyCredit = 7,
  ServerSupport = 8,
  Reload = 9,
  FilterCall = 10,
  FilterReply = 11,
  Taken = 12,
  Pong = 13,

  // bridge → worker
  Request = 100,
  Body = 101,
  VarReply = 102,
  Abort = 103,
  Shutdown = 104,
  ServerSupportReply = 105,
  FilterNotify = 106,
  FilterCallReply = 107,
  Ping = 108,
  WriteAck = 109,
};

using Pairs = std::vector<std::pair<std::string_view, std::string_view>>;

// One change of a filter's reply (FilterChange below says what a and b mean).
struct ChangeItem {
  uint32_t op = 0;
  std::string_view a, b;
};

namespace msg {

// ---- worker → bridge

// The worker's first message: it runs and speaks this protocol; the token proves it is the
// process this bridge started.
struct Ready {
  static constexpr Msg kType = Msg::Ready;
  uint32_t protocol = 0;
  uint32_t pid = 0;
  std::string_view token;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("protocol", m.protocol);
    v.u32("pid", m.pid);
    v.text("token", m.token);
  }
};

// HSE_REQ_SEND_RESPONSE_HEADER_EX.
struct ResponseHeaders {
  static constexpr Msg kType = Msg::ResponseHeaders;
  std::string_view status, headers;
  bool keepConn = false;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.text("status", m.status);
    v.text("headers", m.headers);
    v.flag("keepConn", m.keepConn);
  }
};

// WriteClient: response body bytes.
struct Write {
  static constexpr Msg kType = Msg::Write;
  std::string_view data;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.bytes("data", m.data);
  }
};

// The handler finished: HSE_REQ_DONE_WITH_SESSION with the ECB's status and log data.
struct Done {
  static constexpr Msg kType = Msg::Done;
  uint32_t hseStatus = 0, httpStatus = 0;
  std::string_view logData;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("hseStatus", m.hseStatus);
    v.u32("httpStatus", m.httpStatus);
    v.text("logData", m.logData);
  }
};

// GetServerVariable for a variable the Request did not carry; answered by VarReply.
struct GetVar {
  static constexpr Msg kType = Msg::GetVar;
  uint32_t callId = 0;
  std::string_view name;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.text("name", m.name);
  }
};

// A worker-side diagnostic the bridge writes to its log.
struct Log {
  static constexpr Msg kType = Msg::Log;
  std::string_view line;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.text("line", m.line);
  }
};

// The worker consumed this many request-body bytes (flow control for request bodies).
struct BodyCredit {
  static constexpr Msg kType = Msg::BodyCredit;
  uint32_t bytes = 0;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("bytes", m.bytes);
  }
};

// A ServerSupportFunction call (HSE_REQ_*); answered by ServerSupportReply.
struct ServerSupport {
  static constexpr Msg kType = Msg::ServerSupport;
  uint32_t callId = 0, request = 0;
  std::vector<uint32_t> ints;
  std::vector<std::string_view> strs;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.u32("request", m.request);
    v.u32s("ints", m.ints);
    v.texts("strs", m.strs);
  }
};

// Start fresh workers and drain this generation.
struct Reload {
  static constexpr Msg kType = Msg::Reload;
  std::string_view reason;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.text("reason", m.reason);
  }
};

// (id = notification) A filter's query while the web server waits for its verdict.
struct FilterCall {
  static constexpr Msg kType = Msg::FilterCall;
  uint32_t callId = 0, op = 0;  // op: FilterQuery
  std::string_view name;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.u32("op", m.op);
    v.text("name", m.name);
  }
};

// (id = notification) The filter's verdict (SF_STATUS_REQ_*) and every change, in order.
struct FilterReply {
  static constexpr Msg kType = Msg::FilterReply;
  uint32_t status = 0;
  std::vector<ChangeItem> changes;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("status", m.status);
    v.changes("changes", m.changes);
  }
};

// The worker's JavaScript has the request: from now on it is never re-routed. Sent for a
// Request frame flagged kFrameWantsTaken (its body streams after it), or for every request
// when the worker has no taken board (taken_board.h); otherwise the board says it, and the
// request's first message from the worker implies it.
struct Taken {
  static constexpr Msg kType = Msg::Taken;
  template <class V, class M>
  static void fields(V&, M&) {}
};

// The answer to Ping, sent from the worker's event loop.
struct Pong {
  static constexpr Msg kType = Msg::Pong;
  uint32_t seq = 0;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("seq", m.seq);
  }
};

// ---- bridge → worker

// The first message of a request: everything a handler usually needs, so most requests never
// cross the channel again before the response.
struct Request {
  static constexpr Msg kType = Msg::Request;
  std::string_view method, query, pathInfo, pathTranslated, contentType;
  uint32_t totalBytes = 0;
  uint32_t connId = 0;
  Pairs vars;                  // prefetched server variables
  std::string_view preloaded;  // ECB lpbData[0..cbAvailable)
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.text("method", m.method);
    v.text("query", m.query);
    v.text("pathInfo", m.pathInfo);
    v.text("pathTranslated", m.pathTranslated);
    v.text("contentType", m.contentType);
    v.u32("totalBytes", m.totalBytes);
    v.u32("connId", m.connId);
    v.pairs("vars", m.vars);
    v.rest("body", m.preloaded);
  }
};

// Request body bytes; an empty Body ends the request body.
struct Body {
  static constexpr Msg kType = Msg::Body;
  std::string_view data;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.bytes("data", m.data);
  }
};

// The answer to GetVar: err is 0 or the Win32 error of GetServerVariable.
struct VarReply {
  static constexpr Msg kType = Msg::VarReply;
  uint32_t callId = 0, err = 0;
  std::string_view value;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.u32("err", m.err);
    v.bytes("value", m.value);
  }
};

// The client or the bridge gave up on the request.
struct Abort {
  static constexpr Msg kType = Msg::Abort;
  template <class V, class M>
  static void fields(V&, M&) {}
};

// Drain and exit.
struct Shutdown {
  static constexpr Msg kType = Msg::Shutdown;
  template <class V, class M>
  static void fields(V&, M&) {}
};

// The answer to ServerSupport.
struct ServerSupportReply {
  static constexpr Msg kType = Msg::ServerSupportReply;
  uint32_t callId = 0;
  bool ok = false;
  uint32_t error = 0;  // Win32 error when !ok
  std::vector<uint32_t> ints;
  std::string_view out;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.flag("ok", m.ok);
    v.u32("error", m.error);
    v.u32s("ints", m.ints);
    v.text("out", m.out);
  }
};

// (id = notification) A filter notification: its fields (per type, see
// native/bridge/filter_entry.cc) and the server variables a filter usually reads.
struct FilterNotify {
  static constexpr Msg kType = Msg::FilterNotify;
  uint32_t connection = 0, notification = 0;
  bool wantsReply = false;
  std::vector<std::string_view> fields_;
  Pairs vars;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("connection", m.connection);
    v.u32("notification", m.notification);
    v.flag("wantsReply", m.wantsReply);
    v.blobs("fields", m.fields_);
    v.pairs("vars", m.vars);
  }
};

// (id = notification) The answer to FilterCall.
struct FilterCallReply {
  static constexpr Msg kType = Msg::FilterCallReply;
  uint32_t callId = 0;
  bool ok = false;
  uint32_t error = 0;
  std::string_view out;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("callId", m.callId);
    v.flag("ok", m.ok);
    v.u32("error", m.error);
    v.text("out", m.out);
  }
};

// Heartbeat: a worker whose event loop is blocked never answers.
struct Ping {
  static constexpr Msg kType = Msg::Ping;
  uint32_t seq = 0;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("seq", m.seq);
  }
};

// The web server took this many bytes of the request's Write frames (per-request flow control
// for responses: a stalled client holds only its own).
struct WriteAck {
  static constexpr Msg kType = Msg::WriteAck;
  uint32_t bytes = 0;
  template <class V, class M>
  static void fields(V& v, M& m) {
    v.u32("bytes", m.bytes);
  }
};

}  // namespace msg

// Every message, for code that handles them all alike (the addon's dispatch, the samples).
// One message a line, kept from clang-format (which reflows such a list differently on each run).
// clang-format off
#define ISAPI_CHANNEL_MESSAGES(X) \
  X(Ready) \
  X(ResponseHeaders) \
  X(Write) \
  X(Done) \
  X(GetVar) \
  X(Log) \
  X(BodyCredit) \
  X(ServerSupport) \
  X(Reload) \
  X(FilterCall) \
  X(FilterReply) \
  X(Taken) \
  X(Pong) \
  X(Request) \
  X(Body) \
  X(VarReply) \
  X(Abort) \
  X(Shutdown) \
  X(ServerSupportReply) \
  X(FilterNotify) \
  X(FilterCallReply) \
  X(Ping) \
  X(WriteAck)
// clang-format on

// The server variables the bridge sends with every Request, so the worker answers them without a
// round trip (HTTP_* and HEADER_* it derives from ALL_RAW). runtime/server_variables.ts
// PREFETCHED_VARIABLES names the same (test/unit/wire_schema.test.ts).
inline constexpr const char* kPrefetchedVariables[] = {"URL",           "SCRIPT_NAME", "SERVER_PROTOCOL", "REMOTE_ADDR",
                                                       "REMOTE_PORT",   "SERVER_NAME", "SERVER_PORT",     "HTTPS",
                                                       "UNENCODED_URL", "ALL_RAW"};

// Queries a filter may make while the web server waits for its verdict (FilterCall.op).
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

}  // namespace isapi::channel
