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
  if (h.length > kMaxFrame) { corrupt = true; return false; }
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

void encode_request(std::string& out, uint32_t id, const RequestBegin& r) {
  FrameWriter w(out, Msg::Request, id);
  w.str(r.method).str(r.query).str(r.pathInfo).str(r.pathTranslated).str(r.contentType);
  w.u32(r.totalBytes).u32(r.connId).u32(uint32_t(r.vars.size()));
  for (auto& [name, value] : r.vars) w.str(name).str(value);
  w.tail(r.preloaded.data(), r.preloaded.size());
  w.finish();
}

bool decode_request(std::string_view payload, RequestBegin& r) {
  FrameReader rd(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  r.method = rd.str(); r.query = rd.str(); r.pathInfo = rd.str();
  r.pathTranslated = rd.str(); r.contentType = rd.str();
  r.totalBytes = rd.u32(); r.connId = rd.u32();
  uint32_t n = rd.u32();
  if (!rd.ok() || n > 4096) return false;
  r.vars.clear();
  r.vars.reserve(n);
  for (uint32_t i = 0; i < n && rd.ok(); ++i) {
    auto name = rd.str();
    auto value = rd.str();
    r.vars.emplace_back(name, value);
  }
  r.preloaded = rd.rest();
  return rd.ok();
}

}  // namespace isapi::channel
