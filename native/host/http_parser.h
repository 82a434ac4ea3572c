// Strict HTTP/1.x request parsing: the request head, percent-decoding of the path and the
// chunked transfer coding. Rejects the request-smuggling shapes (CL+TE, differing CLs,
// non-numeric CL, TE other than "chunked", obs-fold, whitespace before the colon, bare LF/CR).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace isapi_host {

struct HttpHeader {
  std::string name;   // as sent
  std::string value;  // without surrounding whitespace
};

struct HttpRequestHead {
  std::string method;
  std::string target;   // request-target as sent
  std::string version;  // "HTTP/1.1"
  int minor_version = 1;
  std::string raw_path;             // path part of the target, still percent-encoded
  std::string path;                 // percent-decoded path (URL, PATH_INFO)
  std::string query;                // after '?', not decoded; "" if none
  std::string host;                 // Host header (or authority of an absolute-form target)
  std::vector<HttpHeader> headers;  // in arrival order
  std::string raw_headers;          // header lines exactly as received (ALL_RAW), without the blank line
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool chunked = false;
  bool keep_alive = true;  // what the client allows
  bool expect_continue = false;

  bool has_body() const { return chunked || content_length > 0; }
  // Value of a header (case-insensitive name); repeated headers joined with ", ". nullptr if absent.
  bool FindHeader(const std::string& name, std::string* value) const;
};

struct HeadScan {
  enum Kind { kIncomplete, kComplete, kError } kind = kIncomplete;
  size_t head_len = 0;  // bytes up to and including the blank line (kComplete)
  int status = 0;       // HTTP status for kError (414, 431)
};

// Finds the end of the request head in [data, data+len) and enforces the size limits:
// request line over max_line bytes → 414, header section over max_header bytes → 431.
HeadScan ScanRequestHead(const char* data, size_t len, size_t max_line, size_t max_header);

// Parses a complete head (as found by ScanRequestHead). Returns 0, or the HTTP error status
// (400, 417, 505). *head may be partially filled on error (method, version).
int ParseRequestHead(const char* data, size_t len, HttpRequestHead* head);

// Decodes %XX escapes. False on an invalid escape or an encoded NUL.
bool PercentDecode(const std::string& in, std::string* out);

// True if a '/'-separated segment of path equals "..".
bool HasDotDotSegment(const std::string& path);

// Incremental decoder for a chunked request body. Trailers are read and discarded.
class ChunkedDecoder {
 public:
  enum Result { kContinue, kDone, kError };
  explicit ChunkedDecoder(size_t max_trailer_bytes = 16384) : max_trailer_(max_trailer_bytes) {}
  // Consumes framing and data from `in`, copies up to out_cap data bytes to `out`.
  Result Feed(const char* in, size_t in_len, char* out, size_t out_cap, size_t* consumed, size_t* produced);
  bool done() const { return state_ == kStateDone; }

 private:
  enum State { kSize, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kTrailerLf, kStateDone };
  State state_ = kSize;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  size_t line_len_ = 0;
  size_t trailer_bytes_ = 0;
  size_t max_trailer_;
  bool trailer_line_empty_ = true;
};

}  // namespace isapi_host
