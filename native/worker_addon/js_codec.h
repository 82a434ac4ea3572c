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
#include <unordered_map>
#include <vector>

#include "wire.h"

namespace isapi::worker {

// Objects for JavaScript are made by small JavaScript functions, compiled once per environment
// from the schema's field names: `(a0, a1, ...) => ({ method: a0, query: a1, ... })`. V8 gives
// such a literal one fixed shape and stores its fields inline, where setting each property
// through Node-API went through V8's generic runtime path and interned every key on every
// message: the worker's largest single cost per request (issue 17).
struct JsBuilders {
  Napi::FunctionReference pairs;                                 // [name, value, ...] → object
  std::unordered_map<uint32_t, Napi::FunctionReference> byType;  // message type → its literal
};

inline Napi::Function compile(Napi::Env env, const std::string& source) {
  napi_value result;
  if (napi_run_script(env, Napi::String::New(env, source), &result) != napi_ok) return Napi::Function();
  return Napi::Value(env, result).As<Napi::Function>();
}

inline JsBuilders& builders(Napi::Env env) {
  // Per environment (instance data, deleted with it), so an addon loaded by a worker_thread
  // gets its own.
  auto* b = env.GetInstanceData<JsBuilders>();
  if (!b) {
    b = new JsBuilders();
    b->pairs = Napi::Persistent(compile(
        env, "(function (a) { const o = {}; for (let i = 0; i < a.length; i += 2) o[a[i]] = a[i + 1]; return o; })"));
    env.SetInstanceData(b);
  }
  return *b;
}

// The names of a message's fields, in order (to compile its builder).
struct FieldNames {
  std::vector<const char*> names;
  template <class T>
  void add(const char* n, const T&) {
    names.push_back(n);
  }
  void u32(const char* n, const uint32_t& v) { add(n, v); }
  void flag(const char* n, const bool& v) { add(n, v); }
  void text(const char* n, const std::string_view& v) { add(n, v); }
  void bytes(const char* n, const std::string_view& v) { add(n, v); }
  void rest(const char* n, const std::string_view& v) { add(n, v); }
  void u32s(const char* n, const std::vector<uint32_t>& v) { add(n, v); }
  void texts(const char* n, const std::vector<std::string_view>& v) { add(n, v); }
  void blobs(const char* n, const std::vector<std::string_view>& v) { add(n, v); }
  void pairs(const char* n, const channel::Pairs& v) { add(n, v); }
  void changes(const char* n, const std::vector<channel::ChangeItem>& v) { add(n, v); }
};

template <class M>
Napi::Function builder_for(Napi::Env env) {
  JsBuilders& b = builders(env);
  auto it = b.byType.find(uint32_t(M::kType));
  if (it != b.byType.end()) return it->second.Value();
  FieldNames f;
  const M sample{};
  M::fields(f, sample);
  std::string params, body;
  for (size_t i = 0; i < f.names.size(); ++i) {
    params += (i ? ", a" : "a") + std::to_string(i);
    body += std::string(i ? ", " : "") + "\"" + f.names[i] + "\": a" + std::to_string(i);
  }
  Napi::Function fn = compile(env, "(function (" + params + ") { return { " + body + " }; })");
  b.byType.emplace(uint32_t(M::kType), Napi::Persistent(fn));
  return fn;
}

// Converts a decoded message's fields, in order, to JavaScript values.
class ToJs {
 public:
  explicit ToJs(Napi::Env env) : env_(env) {}
  const std::vector<napi_value>& values() const { return values_; }

  void u32(const char*, uint32_t v) { put(Napi::Number::New(env_, v)); }
  void flag(const char*, bool v) { put(Napi::Boolean::New(env_, v)); }
  void text(const char*, std::string_view s) { put(str(s)); }
  void bytes(const char*, std::string_view s) { put(buf(s)); }
  void rest(const char*, std::string_view s) { put(buf(s)); }
  void u32s(const char*, const std::vector<uint32_t>& v) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) a.Set(i, Napi::Number::New(env_, v[i]));
    put(a);
  }
  void texts(const char*, const std::vector<std::string_view>& v) { list(v, false); }
  void blobs(const char*, const std::vector<std::string_view>& v) { list(v, true); }
  void pairs(const char*, const channel::Pairs& v) {
    Napi::Array flat = Napi::Array::New(env_, v.size() * 2);
    uint32_t i = 0;
    for (auto& [k, x] : v) {
      flat.Set(i++, str(k));
      flat.Set(i++, str(x));
    }
    put(builders(env_).pairs.Value().Call({flat}));
  }
  void changes(const char*, const std::vector<channel::ChangeItem>& v) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) {
      Napi::Array c = Napi::Array::New(env_, 3);
      c.Set(0u, Napi::Number::New(env_, v[i].op));
      c.Set(1u, buf(v[i].a));
      c.Set(2u, buf(v[i].b));
      a.Set(i, c);
    }
    put(a);
  }

 private:
  void put(napi_value v) { values_.push_back(v); }
  Napi::String str(std::string_view s) { return Napi::String::New(env_, s.data(), s.size()); }
  Napi::Value buf(std::string_view s) { return Napi::Buffer<char>::Copy(env_, s.data(), s.size()); }
  void list(const std::vector<std::string_view>& v, bool asBuffers) {
    Napi::Array a = Napi::Array::New(env_, v.size());
    for (uint32_t i = 0; i < v.size(); ++i) a.Set(i, asBuffers ? buf(v[i]) : Napi::Value(str(v[i])));
    put(a);
  }

  Napi::Env env_;
  std::vector<napi_value> values_;
};

template <class M>
Napi::Value to_js(Napi::Env env, const M& m) {
  ToJs t(env);
  M::fields(t, m);
  return builder_for<M>(env).Call(t.values());
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
