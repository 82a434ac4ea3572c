// The isapi-host server: listener, event loop for idle connections, thread pool for requests.
//
// Scheduling. The event loop (platform/poller.h) owns every idle connection: it reads request
// heads without blocking and hands a connection to the pool once a complete head is buffered, so
// slow clients never hold a pool thread. A pool thread parses the head, runs the request
// (static file, error, or an ISAPI extension through RequestContext) and then either serves the
// next pipelined request, re-arms the connection in the loop (keep-alive) or closes it.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "access_log.h"
#include "connection.h"
#include "extension_loader.h"
#include "http_parser.h"
#include "platform/poller.h"
#include "thread_pool.h"
#include "vdir_map.h"

namespace isapi_host {

struct ServerConfig {
  std::string bind_addr = "127.0.0.1";
  int port = 8080;
  std::vector<std::pair<std::string, std::string>> vdirs;  // url prefix, library path
  std::string root;                                        // static files; "" = none
  std::string access_log;                                  // "" = no log
  int threads = 0;                                         // 0 = max(8, 2 * cores)
  size_t read_ahead = 49152;                               // UploadReadAheadSize
  size_t max_header_bytes = 16384;                         // → 431
  size_t max_request_line = 8192;                          // → 414
  int header_timeout_ms = 30000;                           // → 408 (silent close if no byte)
  int keepalive_timeout_ms = 120000;
  int io_timeout_ms = 120000;                              // a stalled body read / response write
  int shutdown_grace_ms = 10000;
};

class Server {
 public:
  explicit Server(const ServerConfig& config);
  ~Server();

  // Binds, loads every extension (GetExtensionVersion), starts the pool and the event loop.
  bool Start(std::string* err);
  std::string ListenUrl() const;
  // Stops accepting, waits (bounded) for in-flight requests, terminates and unloads extensions.
  void Shutdown();

  // ---- used while serving requests
  const ServerConfig& config() const { return config_; }
  ThreadPool& pool() { return *pool_; }
  AccessLog* access_log() { return access_log_.get(); }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  const NetAddress& bound() const { return bound_; }
  // A request on c is over. keep: serve the next request; otherwise close it gracefully.
  // Runs on a pool thread.
  void AfterRequest(Connection* c, bool keep);
  // Physical path for a URL (PATH_TRANSLATED, HSE_REQ_MAP_URL_TO_PATH). A URL inside a virtual
  // directory maps into the directory of its library; other URLs map into --root (or the
  // current directory without --root). *matched_url / *matched_path receive the lengths of the
  // vdir prefix and of the physical directory (HSE_URL_MAPEX_INFO).
  std::string MapUrlToPath(const std::string& url, const Vdir** vdir_out = nullptr,
                           size_t* matched_url = nullptr, size_t* matched_path = nullptr) const;

 private:
  enum class Outcome { kKeepAlive, kClose, kPending };

  // event loop (loop thread)
  void LoopMain();
  void AcceptAll();
  void OnReadable(Connection* c);
  void ScanTimeouts(int64_t now);
  void LoopClose(Connection* c);  // caller removed c from idle_
  // pool side
  void ServeConnection(Connection* c);
  Outcome HandleRequest(Connection* c, HttpRequestHead& head, size_t head_bytes, int64_t start_ms);
  Outcome ServeStatic(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                      int64_t start_ms);
  Outcome SendSimple(Connection* c, const HttpRequestHead& head, size_t head_bytes,
                     int64_t start_ms, int status, const std::string& extra_headers = "");
  void SendErrorAndClose(Connection* c, int status, const HttpRequestHead* head, size_t head_bytes,
                         int64_t start_ms);
  void LogSimple(Connection* c, const HttpRequestHead* head, int status, uint64_t sent,
                 uint64_t received, int64_t start_ms);
  void ReturnToLoop(Connection* c, bool linger);
  void CloseNow(Connection* c);  // pool side, hard close

  ServerConfig config_;
  VdirMap vdirs_;
  std::vector<std::unique_ptr<IsapiExtension>> extensions_;
  std::string root_;  // absolute, with trailing separator; "" = none
  std::string cwd_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Poller> poller_;
  socket_t listener_ = kInvalidSocket;
  NetAddress bound_;
  std::thread loop_thread_;
  int listener_tag_ = 0;  // its address tags listener events

  std::mutex idle_mu_;
  std::unordered_set<Connection*> idle_;  // connections owned by the loop
  bool loop_closed_ = false;
  std::atomic<int> busy_{0};  // connections owned by pool threads / requests
  std::atomic<bool> stopping_{false};
};

}  // namespace isapi_host
