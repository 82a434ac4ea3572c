// The server's life cycle: start (bind, load extensions and filters, start the pool and the
// loop threads), shut down, and the vdir → physical path mapping. The event loop is in
// server_loop.cc, the request pipeline in server_pipeline.cc, host-made responses and the
// access log in server_responses.cc.
#include "server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <system_error>

#include "http_util.h"
#include "platform/dynlib.h"
#include "platform/system.h"
#include "request_context.h"
#include "static_files.h"

namespace fs = std::filesystem;

namespace isapi_host {

namespace {

#ifdef _WIN32
constexpr char kSep = '\\';
#else
constexpr char kSep = '/';
#endif

std::string WithTrailingSep(std::string p) {
  if (p.empty() || (p.back() != '/' && p.back() != '\\')) p += kSep;
  return p;
}

}  // namespace

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() = default;

bool Server::Start(std::string* err) {
  if (!NetStartup(err)) return false;
  std::error_code ec;
  // UTF-8 both ways (u8path / u8string): .string() and a narrow fs::path are the ANSI code page on Windows.
  cwd_ = WithTrailingSep(fs::current_path(ec).u8string());
  if (!config_.root.empty()) {
    fs::path root = fs::absolute(fs::u8path(config_.root), ec);
    if (ec || !fs::is_directory(root, ec)) {
      *err = "--root " + config_.root + " is not a directory";
      return false;
    }
    root_ = WithTrailingSep(fs::weakly_canonical(root, ec).u8string());
  }
  for (const auto& vd : config_.vdirs) {
    // Library paths are UTF-8 (Utf8Arguments); a narrow fs::path would read them as ANSI on Windows.
    fs::path lib = fs::absolute(fs::u8path(vd.second), ec);
    if (!ec) lib = fs::weakly_canonical(lib, ec);
    if (!vdirs_.Add(vd.first, lib.u8string(), err)) return false;
  }
  if (!config_.access_log.empty()) {
    access_log_.reset(new AccessLog());
    if (!access_log_->Open(config_.access_log, err)) return false;
  }
  poller_ = Poller::Create(err);
  if (!poller_) return false;
  listener_ = NetListen(config_.bind_addr, config_.port, &bound_, err);
  if (listener_ == kInvalidSocket) return false;

  // Each library is loaded once, however many virtual directories and filter entries name it
  // (like IIS): one handle; a library that is both a filter and an extension gets both calls.
  std::map<std::string, void*> handles;
  auto open_library = [&](const std::string& path, const char* what) -> void* {
    auto it = handles.find(path);
    if (it != handles.end()) return it->second;
    std::string dlerr;
    void* h = DynlibOpen(path, &dlerr);
    if (!h) {
      *err = std::string("cannot load ISAPI ") + what + " " + path + ": " + dlerr;
      return nullptr;
    }
    handles.emplace(path, h);
    libraries_.push_back(h);
    return h;
  };
  // Filters load first (IIS loads global filters when the worker process starts).
  for (const std::string& f : config_.filters) {
    fs::path lib = fs::absolute(fs::u8path(f), ec);
    if (!ec) lib = fs::weakly_canonical(lib, ec);
    void* h = open_library(lib.u8string(), "filter");
    if (!h) return false;
    std::unique_ptr<IsapiFilter> filter(new IsapiFilter());
    if (!filter->Load(lib.u8string(), h, err)) return false;
    filters_.Add(filter.get());
    filter_libs_.push_back(std::move(filter));
  }
  std::map<std::string, IsapiExtension*> loaded;
  for (Vdir& v : vdirs_.entries()) {
    auto it = loaded.find(v.library);
    if (it == loaded.end()) {
      void* h = open_library(v.library, "extension");
      if (!h) return false;
      std::unique_ptr<IsapiExtension> ext(new IsapiExtension());
      if (!ext->Load(v.library, h, err)) return false;
      it = loaded.emplace(v.library, ext.get()).first;
      extensions_.push_back(std::move(ext));
    }
    v.extension = it->second;
    v.physical_dir = it->second->directory();
  }

  int threads = config_.threads;
  if (threads <= 0) {
    threads = static_cast<int>(std::thread::hardware_concurrency()) * 2;
    if (threads < 8) threads = 8;
  }
  pool_.reset(new ThreadPool(threads));
  io_pool_.reset(new ThreadPool(0, 512));
  if (!poller_->Add(listener_, &listener_tag_)) {
    *err = "cannot watch the listening socket: " + NetLastErrorText();
    return false;
  }
  inline_serve_ = poller_->ConcurrentWaits();
  int loopers = inline_serve_ ? threads : 1;
  last_scan_ = MonotonicMs();
  loop_running_ = loopers;
  for (int i = 0; i < loopers; i++) loop_threads_.emplace_back([this] { LoopMain(); });
  return true;
}

std::string Server::ListenUrl() const {
  std::string a = bound_.addr.find(':') != std::string::npos ? "[" + bound_.addr + "]" : bound_.addr;
  return "http://" + a + ":" + std::to_string(bound_.port) + "/";
}

void Server::Shutdown() {
  stopping_ = true;
  if (poller_) poller_->Wakeup();
  int64_t deadline = MonotonicMs() + config_.shutdown_grace_ms;
  // Loop threads finish the request they serve (bounded by the grace period), then exit.
  while (loop_running_.load() > 0 && MonotonicMs() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  bool loops_done = loop_running_.load() == 0;
  for (auto& t : loop_threads_) {
    if (!t.joinable()) continue;
    if (loops_done) t.join();
    else t.detach();
  }
  if (poller_) CloseLoop();
  while (busy_.load() > 0 && MonotonicMs() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  bool idle = busy_.load() == 0;
  if (!idle)
    fprintf(stderr, "isapi-host: %d request(s) still running after %d ms; terminating anyway\n", busy_.load(),
            config_.shutdown_grace_ms);
  for (auto& ext : extensions_) ext->Terminate();
  for (auto& f : filter_libs_) f->Terminate();
  // Unloading code that another thread may still be running would crash: keep it mapped then.
  if (idle) {
    for (auto& ext : extensions_) ext->Unload();
    for (void* h : libraries_) DynlibClose(h);
    libraries_.clear();
  }
  if (access_log_) access_log_->Flush();
}

uint32_t Server::MapUrlToPath(const std::string& url, UrlForm form, std::string* path, const Vdir** vdir_out,
                              size_t* matched_url, size_t* matched_path) const {
  std::string canon;
  if (uint32_t e = CanonicalUrlPath(url.substr(0, url.find('?')), form, &canon)) return e;
  const Vdir* v = vdirs_.Match(canon);
  std::string base = v ? v->physical_dir : (root_.empty() ? cwd_ : root_);
  std::string rest = canon.substr(v ? v->prefix.size() : 0);
  while (!rest.empty() && rest[0] == '/') rest.erase(0, 1);
  std::string p;
  if (uint32_t e = JoinUnderRoot(base, rest, &p)) return e;
  if (rest.empty() && p.size() > 1 && (p.back() == '/' || p.back() == '\\')) p.pop_back();
  if (vdir_out) *vdir_out = v;
  if (matched_url) *matched_url = v ? v->prefix.size() : 0;
  if (matched_path) *matched_path = base.size() > 1 ? base.size() - 1 : base.size();
  *path = std::move(p);
  return 0;
}

std::string Server::PathTranslated(const std::string& path) const {
  std::string p;
  return MapUrlToPath(path, UrlForm::kDecoded, &p) == 0 ? p : std::string();
}

}  // namespace isapi_host
