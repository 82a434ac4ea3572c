#include "wire.h"

namespace isapi::channel {

bool FrameDecoder::next(FrameHeader& h, std::string_view& payload, bool& corrupt) {
  corrupt = false;
  size_t avail = buf_.size() - pos_;
  if (avail < kHeaderSize) return false;
  const uint8_t* p = buf_.data() + pos_;
  h.length = get_u32(p);
  h.type = Msg(uint16_t(p[4] | p[5] << 8));
  h.flags = uint16_t(p[6] | p[7] << 8);
  h.id = get_u32(p + 8);
  if (h.length > kMaxFrame) {
    corrupt = true;
    return false;
  }
  if (avail < kHeaderSize + h.length) return false;
  payload = std::string_view(reinterpret_cast<const char*>(p + kHeaderSize), h.length);
  pos_ += kHeaderSize + h.length;
  return true;
}

void FrameDecoder::compact() {
  if (pos_ == 0) return;
  buf_.erase(buf_.begin(), buf_.begin() + pos_);
  pos_ = 0;
}

namespace {

// Writes a message's fields in the order messages.h lists them.
struct Encoder {
  FrameWriter& w;
  void u32(const char*, uint32_t v) { w.u32(v); }
  void flag(const char*, bool v) { w.u32(v ? 1 : 0); }
  void text(const char*, std::string_view s) { w.str(s); }
  void bytes(const char*, std::string_view s) { w.str(s); }
  void u32s(const char*, const std::vector<uint32_t>& v) {
    w.u32(uint32_t(v.size()));
    for (uint32_t x : v) w.u32(x);
  }
  void texts(const char*, const std::vector<std::string_view>& v) {
    w.u32(uint32_t(v.size()));
    for (auto s : v) w.str(s);
  }
  void blobs(const char* name, const std::vector<std::string_view>& v) { texts(name, v); }
  void pairs(const char*, const Pairs& v) {
    w.u32(uint32_t(v.size()));
    for (auto& [k, x] : v) w.str(k).str(x);
  }
  void changes(const char*, const std::vector<ChangeItem>& v) {
    w.u32(uint32_t(v.size()));
    for (auto& c : v) w.u32(c.op).str(c.a).str(c.b);
  }
  void rest(const char*, std::string_view s) { w.tail(s.data(), s.size()); }
};

// Reads them back. A list longer than kMaxListItems, or longer than the bytes left could hold,
// marks the reader bad before anything is allocated for it.
constexpr uint32_t kMaxListItems = 4096;

struct Decoder {
  FrameReader& r;
  uint32_t count(size_t minItemSize) {
    uint32_t n = r.u32();
    if (n > kMaxListItems || size_t(n) * minItemSize > r.remaining()) {
      r.fail();
      return 0;
    }
    return n;
  }
  void u32(const char*, uint32_t& v) { v = r.u32(); }
  void flag(const char*, bool& v) { v = r.u32() != 0; }
  void text(const char*, std::string_view& s) { s = r.str(); }
  void bytes(const char*, std::string_view& s) { s = r.str(); }
  void u32s(const char*, std::vector<uint32_t>& v) {
    uint32_t n = count(4);
    v.clear();
    for (uint32_t i = 0; i < n && r.ok(); ++i) v.push_back(r.u32());
  }
  void texts(const char*, std::vector<std::string_view>& v) {
    uint32_t n = count(4);
    v.clear();
    for (uint32_t i = 0; i < n && r.ok(); ++i) v.push_back(r.str());
  }
  void blobs(const char* name, std::vector<std::string_view>& v) { texts(name, v); }
  void pairs(const char*, Pairs& v) {
    uint32_t n = count(8);
    v.clear();
    v.reserve(n);
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      auto k = r.str();
      auto x = r.str();
      v.emplace_back(k, x);
    }
  }
  void changes(const char*, std::vector<ChangeItem>& v) {
    uint32_t n = count(12);
    v.clear();
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      ChangeItem c;
      c.op = r.u32();
      c.a = r.str();
      c.b = r.str();
      v.push_back(c);
    }
  }
  void rest(const char*, std::string_view& s) { s = r.rest(); }
};

template <class M>
void encode_message(std::string& out, uint32_t id, const M& m) {
  FrameWriter w(out, M::kType, id);
  Encoder e{w};
  M::fields(e, m);
  w.finish();
}

template <class M>
bool decode_message(std::string_view payload, M& m) {
  FrameReader r(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  Decoder d{r};
  M::fields(d, m);
  return r.ok() && r.remaining() == 0;
}

}  // namespace

#define ISAPI_DEFINE_CODEC(N)                                                                 \
  void encode(std::string& out, uint32_t id, const msg::N& m) { encode_message(out, id, m); } \
  bool decode(std::string_view payload, msg::N& m) { return decode_message(payload, m); }
ISAPI_CHANNEL_MESSAGES(ISAPI_DEFINE_CODEC)
#undef ISAPI_DEFINE_CODEC

const char* message_name(Msg type) {
  switch (type) {
#define ISAPI_MESSAGE_NAME(N) \
  case Msg::N: return #N;
    ISAPI_CHANNEL_MESSAGES(ISAPI_MESSAGE_NAME)
#undef ISAPI_MESSAGE_NAME
  }
  return "";
}

}  // namespace isapi::channel
