// The isapi-host server: listener, event loop for idle connections, thread pool for requests.
//
// Scheduling. The event loop (platform/poller.h) owns every idle connection: it reads request
// heads without blocking and starts serving a connection once a complete head is buffered, so
// slow clients never hold a thread. With epoll (Linux) several loop threads wait on the poller at
// once (one-shot registrations: each readiness event goes to exactly one of them) and the thread
// that saw the complete head serves the request itself: no hand-off between threads per request.
// With a poller that allows one waiter only (WSAPoll), one loop thread hands connections to the
// pool. Serving = parse the head, run the request (static file, error, or an ISAPI extension
// through RequestContext), then serve the next pipelined request, re-arm the connection in the
// poller (keep-alive) or close it. The pool runs completions (DONE_WITH_SESSION, async I/O).
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
#include "filters.h"
#include "http_parser.h"
#include "idle_set.h"
#include "platform/poller.h"
#include "static_files.h"
#include "thread_pool.h"
#include "url_path.h"
#include "vdir_map.h"

namespace isapi_host {

struct ServerConfig {
  std::string bind_addr = "127.0.0.1";
  int port = 8080;
  std::vector<std::pair<std::string, std::string>> vdirs;  // url prefix, library path
  std::vector<std::string> filters;                        // global filter libraries, load order
  std::string root;                                        // static files; "" = none
  std::string access_log;                                  // "" = no log
  int threads = 0;                                         // 0 = max(8, 2 * cores)
  size_t read_ahead = 49152;                               // UploadReadAheadSize
  size_t max_header_bytes = 16384;                         // → 431
  size_t max_request_line = 8192;                          // → 414
  int header_timeout_ms = 30000;                           // → 408 (silent close if no byte)
  int keepalive_timeout_ms = 120000;
  int io_timeout_ms = 120000;  // a stalled body read / response write
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
  // Extensions' asynchronous client I/O (WriteClient HSE_IO_ASYNC, ASYNC_READ_CLIENT, async
  // TransmitFile): elastic, so clients that stall never starve the request pool.
  ThreadPool& io_pool() { return *io_pool_; }
  AccessLog* access_log() { return access_log_.get(); }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  const NetAddress& bound() const { return bound_; }
  // APPL_PHYSICAL_PATH for URLs outside every vdir: --root, or the current directory.
  std::string static_root() const { return root_.empty() ? cwd_ : root_; }
  const FilterSet& filters() const { return filters_; }
  const Vdir* MatchVdir(const std::string& path) const { return vdirs_.Match(path); }
  // A static file for a URL outside every vdir (404 without --root).
  StaticFile ResolveStatic(const std::string& method, const std::string& path) const;
  // HSE_REQ_REPORT_UNHEALTHY: logged to stderr and shown by GET /__isapi-host/health.
  void ReportUnhealthy(const std::string& library, const std::string& reason);
  // A request on c is over. keep: serve the next request; otherwise close it gracefully.
  // Runs on a pool thread.
  void AfterRequest(Connection* c, bool keep);
  // Physical path for a URL (HSE_REQ_MAP_URL_TO_PATH(_EX), PATH_TRANSLATED), through the one
  // rule of url_path.h. A URL inside a virtual directory maps into the directory of its library;
  // other URLs map into --root (or the current directory without --root). Returns 0 or the
  // Win32 error (kUrlRefused) for a URL that would leave the mapped directory. *matched_url /
  // *matched_path receive the lengths of the vdir prefix and of the physical directory
  // (HSE_URL_MAPEX_INFO).
  uint32_t MapUrlToPath(const std::string& url, UrlForm form, std::string* path, const Vdir** vdir_out = nullptr,
                        size_t* matched_url = nullptr, size_t* matched_path = nullptr) const;
  // PATH_TRANSLATED of a request path (decoded, canonical): "" when it cannot be mapped.
  std::string PathTranslated(const std::string& path) const;

 private:
  static constexpr int kLingerMs = 2000;               // graceful close: wait this long for the client's FIN
  static constexpr int64_t kLingerMaxBytes = 1 << 20;  // ... discarding at most this much
  enum class Outcome { kKeepAlive, kClose, kPending };

  // event loop (loop thread)
  void LoopMain();
  void AcceptAll();
  void OnReadable(Connection* c);
  void ScanTimeouts(int64_t now);
  void LoopClose(Connection* c);  // caller removed c from idle_
  // Hands c back to the poller (release/acquire with OnReadable through c->handoff).
  void Rearm(Connection* c);
  void CloseLoop();  // after the loop threads stopped: listener and idle connections
  // pool side
  void ServeConnection(Connection* c);
  Outcome HandleRequest(Connection* c, HttpRequestHead& head, size_t head_bytes, int64_t start_ms);
  Outcome ServeStatic(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms,
                      const std::string* physical);
  // After a filter verdict other than kContinue during the request phase.
  Outcome FilterVerdict(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms,
                        FilterSession::Verdict v);
  // Sends a host-made response head (+ body) through the filters (SEND_RESPONSE,
  // SEND_RAW_DATA). *keep may turn false; *sent counts bytes; *status may change.
  bool SendHostResponse(Connection* c, const HttpRequestHead* head, int* status, std::vector<HttpHeader> headers,
                        const std::string& body, bool* keep, uint64_t* sent);
  bool SendOut(Connection* c, const char* p, size_t n, bool* keep);
  Outcome SendSimple(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms, int status,
                     const std::string& extra_headers = "");
  void SendErrorAndClose(Connection* c, int status, const HttpRequestHead* head, size_t head_bytes, int64_t start_ms);
  void LogSimple(Connection* c, const HttpRequestHead* head, int status, uint64_t sent, uint64_t received,
                 int64_t start_ms, bool notify_filters = true);
  void ReturnToLoop(Connection* c, bool linger);
  Outcome ServeHealth(Connection* c, const HttpRequestHead& head, size_t head_bytes, int64_t start_ms);
  void CloseNow(Connection* c);  // pool side, hard close
  // Fires END_OF_NET_SESSION (socket already closed) and frees the connection.
  void DestroyConnection(Connection* c);

  ServerConfig config_;
  VdirMap vdirs_;
  std::vector<std::unique_ptr<IsapiExtension>> extensions_;
  std::vector<std::unique_ptr<IsapiFilter>> filter_libs_;
  FilterSet filters_;
  std::vector<void*> libraries_;  // every library handle, opened once per path
  std::atomic<uint32_t> next_conn_id_{1};
  std::mutex health_mu_;
  std::vector<std::string> unhealthy_;  // "library: reason" lines, oldest first (at most 100)
  std::string root_;                    // absolute, with trailing separator; "" = none
  std::string cwd_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ThreadPool> io_pool_;
  std::unique_ptr<Poller> poller_;
  socket_t listener_ = kInvalidSocket;
  NetAddress bound_;
  std::vector<std::thread> loop_threads_;
  bool inline_serve_ = false;  // loop threads serve requests themselves
  std::atomic<int> loop_running_{0};
  std::atomic<int64_t> last_scan_{0};
  int listener_tag_ = 0;  // its address tags listener events

  IdleSet idle_;              // connections owned by the loop
  std::atomic<int> busy_{0};  // connections owned by pool threads / requests
  std::atomic<bool> stopping_{false};
};

}  // namespace isapi_host
