// Channel messages to and from JavaScript values, derived from the schema (messages.h): a
// message becomes an object keyed by its fields' names, and an addon call's arguments are read
// in the order of the fields. runtime/channel.ts declares the same shapes;
// test/unit/wire_schema.test.ts checks that both agree.
#pragma once
#define NAPI_DISABLE_CPP_EXCEPTIONS
#include <napi.h>

#include <deque>
#include <string>
#include <string_view>

#include "wire.h"

namespace isapi::worker {

// Builds the JavaScript object for a decoded message.
class ToJs {
 public:
  explicit ToJs(Napi::Env env) : env_(env), obj_(Napi::Object::New(env)) {}
  Napi::Object result() const { return obj_; }

  void u32(const char* n, uint32_t v) { obj_.Set(n, Napi::Number::New(env_, v)); }
  void flag(const char* n, bool v) { obj_.Set(n, Napi::Boolean::New(env_, v)); }
  void text(const char* n, std::string_view s) { obj_.Set(n, str(s)); }
  void bytes(const char* n, std::string_view s) { obj_.Set(n, buf(s)); }
  void rest(const char* n, std::string_view s) { obj_.Set(n, buf(s)); }
  void u32s(const char* n, const std::vector<uint32_t>& v) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) a.Set(i, Napi::Number::New(env_, v[i]));
    obj_.Set(n, a);
  }
  void texts(const char* n, const std::vector<std::string_view>& v) { list(n, v, false); }
  void blobs(const char* n, const std::vector<std::string_view>& v) { list(n, v, true); }
  void pairs(const char* n, const channel::Pairs& v) {
    Napi::Object o = Napi::Object::New(env_);
    for (auto& [k, x] : v) o.Set(str(k), str(x));
    obj_.Set(n, o);
  }
  void changes(const char* n, const std::vector<channel::ChangeItem>& v) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) {
      Napi::Array c = Napi::Array::New(env_, 3);
      c.Set(0u, Napi::Number::New(env_, v[i].op));
      c.Set(1u, buf(v[i].a));
      c.Set(2u, buf(v[i].b));
      a.Set(i, c);
    }
    obj_.Set(n, a);
  }

 private:
  Napi::String str(std::string_view s) { return Napi::String::New(env_, s.data(), s.size()); }
  Napi::Value buf(std::string_view s) { return Napi::Buffer<char>::Copy(env_, s.data(), s.size()); }
  void list(const char* n, const std::vector<std::string_view>& v, bool asBuffers) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) a.Set(i, asBuffers ? buf(v[i]) : Napi::Value(str(v[i])));
    obj_.Set(n, a);
  }

  Napi::Env env_;
  Napi::Object obj_;
};

template <class M>
Napi::Object to_js(Napi::Env env, const M& m) {
  ToJs t(env);
  M::fields(t, m);
  return t.result();
}

// Fills a message from an addon call's arguments, from `first` on, in field order. Strings and
// byte fields take a string or a Uint8Array; the first wrong argument is reported by name.
class FromJs {
 public:
  FromJs(const Napi::CallbackInfo& info, size_t first, const char* fn) : info_(info), next_(first), fn_(fn) {}
  // The TypeError for the first bad argument, or "" when all were good.
  const std::string& error() const { return error_; }

  void u32(const char* n, uint32_t& v) {
    Napi::Value a = arg();
    if (a.IsNumber()) v = a.As<Napi::Number>().Uint32Value();
    else fail(n, "a number");
  }
  void flag(const char*, bool& v) { v = arg().ToBoolean(); }
  void text(const char* n, std::string_view& s) { s = string_of(arg(), n); }
  void bytes(const char* n, std::string_view& s) { s = string_of(arg(), n); }
  void rest(const char* n, std::string_view& s) { s = string_of(arg(), n); }
  void u32s(const char* n, std::vector<uint32_t>& v) {
    Napi::Value a = arg();
    if (!a.IsArray()) return fail(n, "an array of numbers");
    Napi::Array arr = a.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value x = arr.Get(i);
      if (!x.IsNumber()) return fail(n, "an array of numbers");
      v.push_back(x.As<Napi::Number>().Uint32Value());
    }
  }
  void texts(const char* n, std::vector<std::string_view>& v) {
    Napi::Value a = arg();
    if (!a.IsArray()) return fail(n, "an array of strings");
    Napi::Array arr = a.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) v.push_back(string_of(arr.Get(i), n));
  }
  void blobs(const char* n, std::vector<std::string_view>& v) { texts(n, v); }
  void pairs(const char* n, channel::Pairs& v) {
    Napi::Value a = arg();
    if (!a.IsObject()) return fail(n, "an object of strings");
    Napi::Object o = a.As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      Napi::Value k = keys.Get(i);
      v.emplace_back(string_of(k, n), string_of(o.Get(k), n));
    }
  }
  void changes(const char* n, std::vector<channel::ChangeItem>& v) {
    Napi::Value a = arg();
    if (!a.IsArray()) return fail(n, "an array of [op, a, b]");
    Napi::Array arr = a.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value c = arr.Get(i);
      if (!c.IsArray() || !c.As<Napi::Array>().Get(0u).IsNumber()) return fail(n, "an array of [op, a, b]");
      Napi::Array t = c.As<Napi::Array>();
      channel::ChangeItem item;
      item.op = t.Get(0u).As<Napi::Number>().Uint32Value();
      item.a = string_of(t.Get(1u), n);
      item.b = string_of(t.Get(2u), n);
      v.push_back(item);
    }
  }

 private:
  Napi::Value arg() { return info_[next_++]; }
  void fail(const char* field, const char* want) {
    if (error_.empty()) error_ = std::string(fn_) + "(): " + field + " must be " + want;
  }
  // The bytes stay in store_ until the frame is encoded. Absent optional strings are empty.
  std::string_view string_of(const Napi::Value& v, const char* field) {
    if (v.IsUndefined()) return {};
    if (v.IsString()) {
      store_.push_back(v.As<Napi::String>().Utf8Value());
      return store_.back();
    }
    if (v.IsTypedArray()) {
      Napi::Uint8Array a = v.As<Napi::Uint8Array>();
      return std::string_view(reinterpret_cast<const char*>(a.Data()), a.ByteLength());
    }
    fail(field, "a string or a Uint8Array");
    return {};
  }

  const Napi::CallbackInfo& info_;
  size_t next_;
  const char* fn_;
  std::string error_;
  std::deque<std::string> store_;
};

}  // namespace isapi::worker
