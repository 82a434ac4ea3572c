// libFuzzer target: the channel's frame decoder and payload readers (native/channel/wire.*),
// which the bridge runs on whatever a worker writes. Fed in pieces; frames must never exceed
// what was fed, and decoding any payload as any message of the schema (messages.h) must stay in
// bounds.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "wire.h"

using namespace isapi::channel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t piece = 1 + data[0] % 31;
  FrameDecoder d;
  size_t fed = 0, seen = 0;
  for (size_t i = 1; i < size; i += piece) {
    size_t n = size - i < piece ? size - i : piece;
    d.feed(data + i, n);
    fed += n;
    FrameHeader h;
    std::string_view payload;
    bool corrupt = false;
    while (d.next(h, payload, corrupt)) {
      seen += kHeaderSize + payload.size();
      if (seen > fed || payload.size() != h.length) abort();
#define ISAPI_DECODE_AS(N) \
  {                        \
    msg::N m;              \
    decode(payload, m);    \
  }
      ISAPI_CHANNEL_MESSAGES(ISAPI_DECODE_AS)
#undef ISAPI_DECODE_AS
      FrameReader rd(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
      while (rd.ok()) {
        rd.u32();
        rd.str();
      }
    }
    if (corrupt) return 0;
    d.compact();
  }
  return 0;
}
