// ISAPI filters: loading (IsapiFilter), the server-wide dispatch order (FilterSet) and the
// per-connection state every notification runs against (FilterSession).
//
// Files: filter_loader.cc (IsapiFilter, FilterSet), filter_session.cc (FilterSession and the
// notifications), filter_callbacks.{h,cc} (what a filter calls), filter_headers.cc (header editing).
//
// Order. Filters are dispatched HIGH, MEDIUM, LOW (LOW is the default); ties in load order
// (--filter order); SF_NOTIFY_SEND_RAW_DATA runs the same list in reverse, so the HIGH filter is
// nearest the wire. A filter whose flags name only SF_NOTIFY_SECURE_PORT never sees a
// notification: this host has no TLS port (neither port bit set means both).
//
// Threads. A connection's notifications run on the pool thread that serves its request, except
// SEND_RESPONSE / SEND_RAW_DATA raised by an extension's writes from its own threads (serialized
// by the request's write lock) and URL_MAP raised by HSE_REQ_MAP_URL_TO_PATH. A per-session
// recursive mutex serializes dispatches, so a filter never runs twice at once for one connection.
//
// Filter output. WriteClient and SF_REQ_SEND_RESPONSE_HEADER from a filter go straight to the
// client: they do not raise SEND_RESPONSE / SEND_RAW_DATA again (no re-entrancy).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http_parser.h"
#include "isapi.h"
#include "server_variables.h"

namespace isapi_host {

class Connection;
class Server;
struct AccessLogEntry;
struct Vdir;

class IsapiFilter {
 public:
  // handle: the library, opened once by the server (shared with an extension of the same path).
  bool Load(const std::string& path, void* handle, std::string* err);
  DWORD Proc(HTTP_FILTER_CONTEXT* pfc, DWORD type, void* data) { return proc_(pfc, type, data); }
  // TerminateFilter(HSE_TERM_MUST_UNLOAD), once, if exported.
  void Terminate();

  DWORD flags() const { return flags_; }                  // as GetFilterVersion returned them
  DWORD notifications() const { return notifications_; }  // what this host delivers
  int rank() const;                                       // 0 HIGH, 1 MEDIUM, 2 LOW
  const std::string& path() const { return path_; }
  const std::string& description() const { return description_; }

 private:
  typedef BOOL(WINAPI* GetVersionFn)(HTTP_FILTER_VERSION*);
  typedef DWORD(WINAPI* ProcFn)(HTTP_FILTER_CONTEXT*, DWORD, void*);
  typedef BOOL(WINAPI* TerminateFn)(DWORD);

  std::string path_;
  std::string description_;
  void* handle_ = nullptr;
  ProcFn proc_ = nullptr;
  TerminateFn terminate_ = nullptr;
  bool terminated_ = false;
  DWORD flags_ = 0;
  DWORD notifications_ = 0;
};

class FilterSet {
 public:
  void Add(IsapiFilter* f);  // in load order
  const std::vector<IsapiFilter*>& ordered() const { return ordered_; }
  DWORD mask() const { return mask_; }
  bool empty() const { return ordered_.empty(); }

 private:
  std::vector<IsapiFilter*> ordered_;
  DWORD mask_ = 0;
};

class FilterSession {
 public:
  // What the host does after a notification chain.
  enum Verdict {
    kContinue,          // NEXT_NOTIFICATION / HANDLED_NOTIFICATION (or nobody subscribed)
    kFinished,          // SF_STATUS_REQ_FINISHED: the filter answered; close the connection
    kFinishedKeepConn,  // SF_STATUS_REQ_FINISHED_KEEP_CONN: answered; keep it if framing allows
    kError,             // SF_STATUS_REQ_ERROR: 500 (or close if a response was started)
    kDenied,            // SF_STATUS_REQ_ERROR with ERROR_ACCESS_DENIED (AUTHENTICATION): 401
  };

  FilterSession(Server* server, Connection* conn, const FilterSet* set, uint32_t conn_id);
  ~FilterSession();  // frees AllocMem memory
  FilterSession(const FilterSession&) = delete;
  FilterSession& operator=(const FilterSession&) = delete;

  // True if some filter still wants `type` on this connection (DISABLE_NOTIFICATIONS applied).
  bool Wants(DWORD type) const { return (mask_ & type) != 0; }

  // ---- request lifecycle (pool thread serving the request)
  void BeginRequest();
  // The request's facts for GetServerVariable; pointers must stay valid until ClearRequest.
  void SetRequest(const HttpRequestHead* head, const Vdir* vdir, const std::string* path_translated);
  void ClearRequest();
  bool first_request() const { return requests_ == 1; }
  const AuthInfo* auth() const { return auth_set_ ? &auth_ : nullptr; }

  // SF_NOTIFY_READ_RAW_DATA over the connection's bytes no filter has seen yet (in place).
  Verdict ReadRawData();
  Verdict PreprocHeaders(HttpRequestHead* head);
  Verdict UrlMap(const std::string& url, std::string* physical);
  Verdict Authenticate(const HttpRequestHead& head);
  Verdict AuthComplete(HttpRequestHead* head);
  // A response head the host is about to send: adds AddResponseHeaders text and, for a 401, the
  // ADD_HEADERS_ON_DENIAL text after raising ACCESS_DENIED (a FINISHED verdict means a filter
  // answered instead: send nothing); then SEND_RESPONSE, which may edit status and headers.
  Verdict SendResponse(std::string* status, std::vector<HttpHeader>* headers);
  // Sends bytes through SEND_RAW_DATA (reverse order). False: not sent (client gone, or a filter
  // returned ERROR). *close_after: a filter returned FINISHED (send, then close).
  bool Send(const char* p, size_t n, int timeout_ms, bool* close_after);
  void EndOfRequest();
  void Log(AccessLogEntry* e);
  void EndOfNetSession();
  void set_deny_reason(DWORD r) { deny_reason_ = r; }

  // What filters wrote themselves during the current request.
  bool responded() const { return responded_; }
  int response_status() const { return response_status_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  // True if the filter's own response was framed (Content-Length honoured), so a
  // FINISHED_KEEP_CONN may keep the connection.
  bool response_keepable() const;

  // ---- used by the filter callbacks (filter_callbacks.cc, filter_headers.cc)
  BOOL GetServerVariable(LPSTR name, LPVOID buffer, LPDWORD size);
  BOOL AddResponseHeaders(LPSTR headers);
  BOOL WriteClient(LPVOID buffer, LPDWORD bytes);
  void* AllocMem(DWORD size);
  BOOL ServerSupportFunction(size_t slot, DWORD req, PVOID data, ULONG_PTR ul1, ULONG_PTR ul2);
  BOOL GetHeader(LPSTR name, LPVOID buffer, LPDWORD size);
  BOOL SetHeader(LPSTR name, LPSTR value, bool add);
  static FilterSession* FromContext(HTTP_FILTER_CONTEXT* pfc, size_t* slot);

 private:
  struct Slot {
    HTTP_FILTER_CONTEXT fc;
    DWORD disabled = 0;
  };
  // Runs one notification through the chain; returns the SF_STATUS_REQ_* that ended it
  // (NEXT_NOTIFICATION when every filter passed or one HANDLED it).
  DWORD Dispatch(DWORD type, void* data, bool reverse);
  Verdict ToVerdict(DWORD status) const;
  void RecomputeMask();
  bool SendFilterResponseHeader(const char* status, const char* headers);

  uint32_t magic_;
  Server* server_;
  Connection* conn_;
  const FilterSet* set_;
  uint32_t conn_id_;
  std::vector<Slot> slots_;
  DWORD mask_ = 0;
  std::recursive_mutex dispatch_mu_;
  std::mutex alloc_mu_;
  std::vector<void*> allocations_;

  // the notification running now
  DWORD cur_type_ = 0;
  HttpRequestHead* cur_req_ = nullptr;  // PREPROC_HEADERS / AUTH_COMPLETE
  bool cur_req_dirty_ = false;
  std::string* cur_status_ = nullptr;  // SEND_RESPONSE
  std::vector<HttpHeader>* cur_resp_ = nullptr;
  DWORD last_error_ = 0;

  // the current request
  uint64_t requests_ = 0;
  const HttpRequestHead* head_ = nullptr;
  const Vdir* vdir_ = nullptr;
  const std::string* path_translated_ = nullptr;
  AuthInfo auth_;
  bool auth_set_ = false;
  std::string pending_headers_;  // AddResponseHeaders
  std::string denial_headers_;   // SF_REQ_ADD_HEADERS_ON_DENIAL
  DWORD deny_reason_ = SF_DENIED_APPLICATION;
  bool responded_ = false;
  bool filter_headers_sent_ = false;
  bool filter_keep_ = false;
  int response_status_ = 0;
  int64_t filter_content_length_ = -1;
  uint64_t filter_body_bytes_ = 0;
  uint64_t bytes_sent_ = 0;
};

// Sets the request-target of a head ("/path?query"): target, raw_path, query and the decoded path.
bool SetRequestUrl(HttpRequestHead* head, const std::string& url);

}  // namespace isapi_host
