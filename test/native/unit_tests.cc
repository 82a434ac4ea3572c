// Native unit tests: the pieces of the host and the channel that can be checked without a
// socket or a process (the wire codec, the HTTP head parser, the chunked decoder, the vdir map,
// the elastic thread pool). Built by CMake (native/host/CMakeLists.txt, target
// isapi-native-tests) and run by test/unit/native.test.ts, which reads the summary line.
// `--wire-samples` and `--wire-decode` serve test/unit/wire_schema.test.ts (wire_samples.h).
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_parser.h"
#include "request_state.h"
#include "thread_pool.h"
#include "vdir_map.h"
#include "wire.h"
#include "wire_samples.h"

namespace {

int g_checks = 0;
int g_failures = 0;

#define CHECK(cond)                                               \
  do {                                                            \
    ++g_checks;                                                   \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    }                                                             \
  } while (0)

using namespace isapi::channel;
using namespace isapi_host;

void wire_round_trip() {
  std::string out;
  FrameWriter(out, Msg::ResponseHeaders, 7).str("200 OK").str("A: b\r\n\r\n").u32(1).finish();
  FrameWriter(out, Msg::Write, 7).str(std::string("x\0y", 3)).finish();
  FrameDecoder d;
  // Byte by byte: a frame is yielded only once it is complete.
  FrameHeader h;
  std::string_view payload;
  bool corrupt = false;
  int frames = 0;
  for (char c : out) {
    d.feed(&c, 1);
    while (d.next(h, payload, corrupt)) {
      ++frames;
      FrameReader r(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
      CHECK(h.id == 7);
      if (frames == 1) {
        CHECK(h.type == Msg::ResponseHeaders);
        CHECK(r.str() == "200 OK");
        CHECK(r.str() == "A: b\r\n\r\n");
        CHECK(r.u32() == 1);
        CHECK(r.ok());
      } else {
        CHECK(h.type == Msg::Write);
        CHECK(r.str() == std::string_view("x\0y", 3));  // NUL carried, never a truncation
      }
    }
    d.compact();
  }
  CHECK(frames == 2);
  CHECK(!corrupt);
}

void wire_reader_overrun() {
  std::string out;
  FrameWriter(out, Msg::GetVar, 1).u32(5).finish();
  FrameReader r(reinterpret_cast<const uint8_t*>(out.data()) + kHeaderSize, out.size() - kHeaderSize);
  CHECK(r.u32() == 5);
  CHECK(r.str().empty());  // nothing left: marked bad, no crash
  CHECK(!r.ok());
}

void wire_corrupt_length() {
  std::string out;
  put_u32(out, kMaxFrame + 1);
  out.append(8, '\0');
  FrameDecoder d;
  d.feed(out.data(), out.size());
  FrameHeader h;
  std::string_view payload;
  bool corrupt = false;
  CHECK(!d.next(h, payload, corrupt));
  CHECK(corrupt);
}

void wire_request() {
  RequestBegin in;
  in.method = "POST";
  in.query = "a=1";
  in.pathInfo = "/hello/x";
  in.pathTranslated = "/srv/x";
  in.contentType = "text/plain";
  in.totalBytes = 0xFFFFFFFFu;
  in.connId = 42;
  in.vars = {{"URL", "/hello/x"}, {"ALL_RAW", "Host: x\r\n"}};
  in.preloaded = std::string_view("body\0bytes", 10);
  std::string frame;
  encode(frame, 42, in);
  RequestBegin out;
  CHECK(decode(std::string_view(frame).substr(kHeaderSize), out));
  CHECK(out.method == "POST" && out.query == "a=1" && out.pathInfo == "/hello/x");
  CHECK(out.totalBytes == 0xFFFFFFFFu && out.connId == 42);
  CHECK(out.vars.size() == 2 && out.vars[1].first == "ALL_RAW" && out.vars[1].second == "Host: x\r\n");
  CHECK(out.preloaded == std::string_view("body\0bytes", 10));
  // A truncated payload is refused, not read past its end.
  RequestBegin cut;
  CHECK(!decode(std::string_view(frame).substr(kHeaderSize, 20), cut));
}

// Every message of the schema: its samples survive encode → decode unchanged, and a payload one
// byte short or one byte long is refused (another protocol's frame, never misread).
void wire_every_message() {
  int messages = 0;
#define ISAPI_ROUND_TRIP(N)                                                                              \
  {                                                                                                      \
    ++messages;                                                                                          \
    msg::N in;                                                                                           \
    wire_samples::Filler fill;                                                                           \
    msg::N::fields(fill, in);                                                                            \
    std::string frame;                                                                                   \
    encode(frame, 7, in);                                                                                \
    CHECK(get_u32(reinterpret_cast<const uint8_t*>(frame.data())) == frame.size() - kHeaderSize);        \
    std::string_view payload = std::string_view(frame).substr(kHeaderSize);                              \
    msg::N out;                                                                                          \
    CHECK(decode(payload, out));                                                                         \
    CHECK(wire_samples::json_of(out) == wire_samples::json_of(in));                                      \
    if (!payload.empty()) {                                                                              \
      msg::N shortOne;                                                                                   \
      /* A rest field takes any length: only messages without one must refuse. */                        \
      if (std::string(#N) != "Request") CHECK(!decode(payload.substr(0, payload.size() - 1), shortOne)); \
    }                                                                                                    \
    msg::N longOne;                                                                                      \
    if (std::string(#N) != "Request") CHECK(!decode(std::string(payload) + "x", longOne));               \
    CHECK(std::string(message_name(msg::N::kType)) == #N);                                               \
  }
  ISAPI_CHANNEL_MESSAGES(ISAPI_ROUND_TRIP)
#undef ISAPI_ROUND_TRIP
  CHECK(messages == 23);
  // A list count larger than the payload could hold is refused before anything is allocated.
  std::string frame;
  FrameWriter(frame, Msg::ServerSupport, 1).u32(1).u32(2).u32(0x7FFFFFFF).finish();
  msg::ServerSupport huge;
  CHECK(!decode(std::string_view(frame).substr(kHeaderSize), huge));
}

// --wire-samples: one line per message: name, type, the frame in hex, the values as JSON.
int print_samples() {
#define ISAPI_PRINT_SAMPLE(N)                                                                      \
  {                                                                                                \
    msg::N m;                                                                                      \
    wire_samples::Filler fill;                                                                     \
    msg::N::fields(fill, m);                                                                       \
    std::string frame;                                                                             \
    encode(frame, 7, m);                                                                           \
    std::printf("%s %u %s %s\n", #N, unsigned(msg::N::kType), wire_samples::to_hex(frame).c_str(), \
                wire_samples::json_of(m).c_str());                                                 \
  }
  ISAPI_CHANNEL_MESSAGES(ISAPI_PRINT_SAMPLE)
#undef ISAPI_PRINT_SAMPLE
  std::printf("protocol %u\n", unsigned(kProtocolVersion));
  std::printf("prefetched");
  for (const char* name : kPrefetchedVariables) std::printf(" %s", name);
  std::printf("\n");
  return 0;
}

// --wire-decode: reads frames (hex, any number per line) from stdin and prints, per frame, its
// message name, request id and values as JSON; "malformed" when a frame does not decode.
int decode_stdin() {
  std::string hex, line;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) hex.append(buf, n);
  std::string bytes;
  std::string clean;
  for (char c : hex)
    if (std::isxdigit(static_cast<unsigned char>(c))) clean += c;
  bytes = wire_samples::from_hex(clean);
  FrameDecoder d;
  d.feed(bytes.data(), bytes.size());
  FrameHeader h;
  std::string_view payload;
  bool corrupt = false;
  while (d.next(h, payload, corrupt)) {
    std::string json = "malformed";
    bool known = with_message(h.type, [&](auto& m) {
      if (decode(payload, m)) json = wire_samples::json_of(m);
    });
    std::printf("%s %u %s\n", known ? message_name(h.type) : "unknown", unsigned(h.id), json.c_str());
  }
  return corrupt ? 1 : 0;
}

// The host's request states: the three ways to Completed, and nothing back or around them.
void request_states() {
  using S = RequestState;
  CHECK(RequestStateAllowed(S::kRunning, S::kCompleted));  // a final status
  CHECK(RequestStateAllowed(S::kRunning, S::kPending) && RequestStateAllowed(S::kPending, S::kCompleted));
  CHECK(RequestStateAllowed(S::kRunning, S::kDoneEarly) && RequestStateAllowed(S::kDoneEarly, S::kCompleted));
  CHECK(!RequestStateAllowed(S::kCompleted, S::kCompleted));  // completed twice
  CHECK(!RequestStateAllowed(S::kPending, S::kDoneEarly));
  CHECK(!RequestStateAllowed(S::kDoneEarly, S::kPending));
  CHECK(!RequestStateAllowed(S::kCompleted, S::kRunning));
  CHECK(!RequestStateAllowed(S::kPending, S::kRunning));
  CHECK(std::string(RequestStateName(S::kDoneEarly)) == "DoneEarly");
  RequestState s = S::kRunning;
  AdvanceRequestState(&s, S::kPending);
  AdvanceRequestState(&s, S::kCompleted);
  CHECK(s == S::kCompleted);
}

int parse(const std::string& text, HttpRequestHead* head) {
  HeadScan scan = ScanRequestHead(text.data(), text.size(), 8192, 16384);
  if (scan.kind != HeadScan::kComplete) return scan.kind == HeadScan::kError ? scan.status : -1;
  return ParseRequestHead(text.data(), scan.head_len, head);
}

void http_head() {
  HttpRequestHead h;
  CHECK(parse("GET /a%20b?x=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\n", &h) == 0);
  CHECK(h.method == "GET" && h.path == "/a b" && h.raw_path == "/a%20b" && h.query == "x=1");
  CHECK(h.host == "example" && h.has_content_length && h.content_length == 5 && !h.chunked);
  HttpRequestHead incomplete;
  CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n", &incomplete) == -1);
  HttpRequestHead smuggle;  // CL + TE: the classic smuggling shape
  CHECK(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &smuggle) ==
        400);
  HttpRequestHead twoLengths;
  CHECK(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &twoLengths) == 400);
  HttpRequestHead fold;
  CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", &fold) == 400);
  HttpRequestHead longLine;
  CHECK(parse("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", &longLine) == 414);
  std::string decoded;
  CHECK(PercentDecode("%41%42c", &decoded) && decoded == "ABc");
  CHECK(!PercentDecode("%00", &decoded));  // an encoded NUL is refused
  CHECK(!PercentDecode("%4", &decoded));
}

std::string dechunk(const std::string& in, size_t piece, ChunkedDecoder::Result* last) {
  ChunkedDecoder d;
  std::string out;
  char buf[7];
  size_t pos = 0;
  *last = ChunkedDecoder::kContinue;
  while (pos < in.size() && *last == ChunkedDecoder::kContinue) {
    size_t n = std::min(piece, in.size() - pos);
    size_t used = 0;
    while (used < n && *last == ChunkedDecoder::kContinue) {
      size_t consumed = 0, produced = 0;
      *last = d.Feed(in.data() + pos + used, n - used, buf, sizeof buf, &consumed, &produced);
      out.append(buf, produced);
      used += consumed;
      if (consumed == 0 && produced == 0) break;
    }
    pos += used;
  }
  return out;
}

void chunked() {
  const std::string body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t piece : {size_t(1), size_t(3), body.size()}) {
    ChunkedDecoder::Result r;
    CHECK(dechunk(body, piece, &r) == "hello world");
    CHECK(r == ChunkedDecoder::kDone);
  }
  ChunkedDecoder::Result bad;
  dechunk("zz\r\nhello\r\n0\r\n\r\n", 64, &bad);
  CHECK(bad == ChunkedDecoder::kError);
  ChunkedDecoder::Result noCrlf;
  dechunk("5\r\nhelloX\r\n0\r\n\r\n", 64, &noCrlf);
  CHECK(noCrlf == ChunkedDecoder::kError);
}

void vdirs() {
  VdirMap m;
  std::string err;
  CHECK(m.Add("/", "/lib/root.so", &err));
  CHECK(m.Add("/app", "/lib/app.so", &err));
  CHECK(m.Add("/app/admin/", "/lib/admin.so", &err));
  CHECK(!m.Add("/APP", "/lib/other.so", &err));  // the same prefix, IIS-style case-insensitively
  CHECK(m.Match("/app/admin/x")->library == "/lib/admin.so");
  CHECK(m.Match("/APP/Admin")->library == "/lib/admin.so");
  CHECK(m.Match("/app/x")->library == "/lib/app.so");
  CHECK(m.Match("/application")->library == "/lib/root.so");  // a prefix matches whole segments
  CHECK(m.Match("/")->library == "/lib/root.so");
}

void elastic_pool() {
  // Every task waits until all have started: a fixed pool of 2 would never finish them.
  ThreadPool pool(0, 64);
  constexpr int kTasks = 20;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, finished = 0;
  for (int i = 0; i < kTasks; ++i) {
    pool.Post([&] {
      std::unique_lock<std::mutex> lock(mu);
      ++started;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return started == kTasks; });
      ++finished;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  CHECK(cv.wait_for(lock, std::chrono::seconds(10), [&] { return finished == kTasks; }));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--wire-samples") return print_samples();
  if (argc > 1 && std::string(argv[1]) == "--wire-decode") return decode_stdin();
  wire_round_trip();
  wire_reader_overrun();
  wire_corrupt_length();
  wire_request();
  wire_every_message();
  request_states();
  http_head();
  chunked();
  vdirs();
  elastic_pool();
  std::printf("native unit tests: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
