// Sample values for every channel message, and their JSON, derived from the schema
// (native/channel/messages.h). The native unit tests round-trip them; `isapi-native-tests
// --wire-samples` prints them for test/unit/wire_schema.test.ts, which checks that the worker's
// addon and runtime/channel.ts read the same values, and `--wire-decode` prints what frames
// written from JavaScript decode to.
#pragma once
#include <cstdio>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "wire.h"

namespace wire_samples {

using namespace isapi::channel;

// Fills every field with a value that tells the fields apart (u32s count up; byte fields carry a
// NUL and a byte that is not UTF-8; text fields carry a non-ASCII character).
class Filler {
 public:
  void u32(const char*, uint32_t& v) { v = 1000 + next_++; }
  void flag(const char*, bool& v) { v = (next_++ % 2) == 0; }
  void text(const char* n, std::string_view& s) { s = keep(std::string(n) + "-\xc3\xa9"); }
  void bytes(const char* n, std::string_view& s) { s = keep(std::string(n) + std::string("\0\xff", 2)); }
  void rest(const char* n, std::string_view& s) { bytes(n, s); }
  void u32s(const char*, std::vector<uint32_t>& v) { v = {next_++, 0xFFFFFFFFu}; }
  void texts(const char* n, std::vector<std::string_view>& v) {
    v = {keep(std::string(n) + "0"), keep(std::string(n) + "1")};
  }
  void blobs(const char* n, std::vector<std::string_view>& v) {
    v = {keep(std::string(n) + std::string("\0", 1)), keep("")};
  }
  void pairs(const char* n, Pairs& v) { v = {{keep(std::string(n) + "_A"), keep("a")}, {keep("B"), keep("b\r\n")}}; }
  void changes(const char*, std::vector<ChangeItem>& v) {
    v = {ChangeItem{1, keep("X-A:"), keep("1")}, ChangeItem{12, keep(std::string("\0\x01", 2)), keep("")}};
  }

 private:
  std::string_view keep(std::string s) {
    store_.push_back(std::move(s));
    return store_.back();
  }
  uint32_t next_ = 0;
  std::deque<std::string> store_;
};

// Writes a message's values as one JSON object keyed by the schema's names. Byte fields become
// {"hex": "..."} so that they survive JSON unchanged.
class Json {
 public:
  std::string result() const { return out_ + "}"; }

  void u32(const char* n, uint32_t v) { key(n) += std::to_string(v); }
  void flag(const char* n, bool v) { key(n) += v ? "true" : "false"; }
  void text(const char* n, std::string_view s) { str(key(n), s); }
  void bytes(const char* n, std::string_view s) { hex(key(n), s); }
  void rest(const char* n, std::string_view s) { bytes(n, s); }
  void u32s(const char* n, const std::vector<uint32_t>& v) {
    std::string& o = key(n);
    o += "[";
    for (size_t i = 0; i < v.size(); ++i) o += (i ? "," : "") + std::to_string(v[i]);
    o += "]";
  }
  void texts(const char* n, const std::vector<std::string_view>& v) {
    std::string& o = key(n);
    o += "[";
    for (size_t i = 0; i < v.size(); ++i) str(o += (i ? "," : ""), v[i]);
    o += "]";
  }
  void blobs(const char* n, const std::vector<std::string_view>& v) {
    std::string& o = key(n);
    o += "[";
    for (size_t i = 0; i < v.size(); ++i) hex(o += (i ? "," : ""), v[i]);
    o += "]";
  }
  void pairs(const char* n, const Pairs& v) {
    std::string& o = key(n);
    o += "{";
    for (size_t i = 0; i < v.size(); ++i) {
      str(o += (i ? "," : ""), v[i].first);
      str(o += ":", v[i].second);
    }
    o += "}";
  }
  void changes(const char* n, const std::vector<ChangeItem>& v) {
    std::string& o = key(n);
    o += "[";
    for (size_t i = 0; i < v.size(); ++i) {
      o += std::string(i ? "," : "") + "[" + std::to_string(v[i].op) + ",";
      hex(o, v[i].a);
      hex(o += ",", v[i].b);
      o += "]";
    }
    o += "]";
  }

 private:
  std::string& key(const char* n) {
    out_ += out_.size() > 1 ? "," : "";
    str(out_, n);
    out_ += ":";
    return out_;
  }
  static void str(std::string& o, std::string_view s) {
    o += '"';
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') o += {'\\', char(c)};
      else if (c < 0x20) {
        char b[8];
        std::snprintf(b, sizeof b, "\\u%04x", c);
        o += b;
      } else o += char(c);
    }
    o += '"';
  }
  static void hex(std::string& o, std::string_view s) {
    static const char* digits = "0123456789abcdef";
    o += "{\"hex\":\"";
    for (unsigned char c : s) o += {digits[c >> 4], digits[c & 15]};
    o += "\"}";
  }
  std::string out_ = "{";
};

template <class M>
std::string json_of(const M& m) {
  Json j;
  M::fields(j, m);
  return j.result();
}

inline std::string to_hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) o += {digits[c >> 4], digits[c & 15]};
  return o;
}

inline std::string from_hex(std::string_view h) {
  auto v = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  std::string o;
  for (size_t i = 0; i + 1 < h.size(); i += 2) o += char(v(h[i]) << 4 | v(h[i + 1]));
  return o;
}

}  // namespace wire_samples
