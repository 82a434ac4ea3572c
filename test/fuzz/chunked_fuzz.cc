// libFuzzer target: the host's chunked request-body decoder, fed in pieces whose sizes come
// from the input, with a small output buffer: every split must decode the same bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "http_parser.h"

using namespace isapi_host;

static ChunkedDecoder::Result Decode(const uint8_t* data, size_t size, size_t piece, size_t out_cap, std::string* out) {
  ChunkedDecoder d(256);
  char buf[64];
  size_t i = 0;
  ChunkedDecoder::Result r = ChunkedDecoder::kContinue;
  while (i < size && r == ChunkedDecoder::kContinue) {
    size_t n = size - i < piece ? size - i : piece;
    size_t consumed = 0, produced = 0;
    r = d.Feed(reinterpret_cast<const char*>(data) + i, n, buf, out_cap, &consumed, &produced);
    if (consumed > n || produced > out_cap) abort();
    out->append(buf, produced);
    if (r == ChunkedDecoder::kContinue && consumed == 0 && produced == 0 && n > 0) {
      // No progress only when the output was full; with room it must consume something.
      abort();
    }
    i += consumed;
  }
  return r;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t piece = 1 + data[0] % 17;
  size_t out_cap = 1 + data[1] % 64;
  std::string whole, split;
  ChunkedDecoder::Result a = Decode(data + 2, size - 2, size, 64, &whole);
  ChunkedDecoder::Result b = Decode(data + 2, size - 2, piece, out_cap, &split);
  if (a != b) abort();
  if (a != ChunkedDecoder::kError && whole != split) abort();
  return 0;
}
