// One ISAPI request: the EXTENSION_CONTROL_BLOCK, the request body, the response framing and the
// completion state machine.
//
// Lifetime. HttpExtensionProc may return HSE_STATUS_PENDING; the request then ends when the
// extension calls ServerSupportFunction(HSE_REQ_DONE_WITH_SESSION), from any thread, possibly
// before HttpExtensionProc has returned. `state_` (a RequestState, request_state.h, under
// `state_mu_`) decides exactly once which thread completes the request:
//   - HttpExtensionProc returned a final status            → the calling pool thread completes;
//   - it returned PENDING and DONE_WITH_SESSION came first  → the calling pool thread completes;
//   - it returned PENDING, DONE_WITH_SESSION comes later    → a pool task completes.
// Completing = finish the response framing, write the access-log line, then hand the connection
// back (next request / keep-alive, or close). The object itself is reference counted: Run() holds
// one reference, completion one, and every queued async completion callback one, so a callback
// or a late-returning HttpExtensionProc never sees freed memory.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"
#include "http_parser.h"
#include "isapi.h"
#include "request_state.h"
#include "server_variables.h"

namespace isapi_host {

class FilterSession;
class Server;
struct Vdir;

// What an EXEC_URL / SEND_URL child request runs, copied from HSE_EXEC_URL_INFO (whose memory
// belongs to the extension and may be gone when an asynchronous child runs).
struct ExecRequest {
  bool has_url = false;
  std::string url;
  std::string method;   // "" = the parent's
  std::string headers;  // extra request header lines
  bool has_entity = false;
  std::string entity;
  DWORD flags = 0;
};

class RequestContext {
 public:
  enum class Outcome { kKeepAlive, kClose, kPending };

  RequestContext(Server* server, Connection* conn, const Vdir* vdir, HttpRequestHead&& head, size_t head_bytes,
                 int64_t start_ms, std::string path_translated, RequestContext* parent = nullptr);
  RequestContext(const RequestContext&) = delete;
  RequestContext& operator=(const RequestContext&) = delete;

  // Runs the request on the calling pool thread. kPending: the connection now belongs to the
  // request and returns to the server through Server::AfterRequest when it completes.
  // The object may be deleted when Run returns.
  Outcome Run();

  // Maps an ECB ConnID back to its request; nullptr if it is not a live request.
  static RequestContext* FromHandle(HCONN h);

  // ECB callbacks (ecb_callbacks.cc; the HSE_REQ_* in ecb_server_support.cc, ecb_transmit.cc, ecb_child_requests.cc).
  // All may be called from any thread while the request lives.
  BOOL GetServerVariable(LPSTR name, LPVOID buffer, LPDWORD size);
  BOOL WriteClient(LPVOID buffer, LPDWORD bytes, DWORD flags);
  BOOL ReadClient(LPVOID buffer, LPDWORD size);
  BOOL ServerSupportFunction(DWORD request, LPVOID buffer, LPDWORD size, LPDWORD data_type);

  // ---- request facts (read-only after construction; used by server_variables.cc)
  EXTENSION_CONTROL_BLOCK ecb;
  Server* const server;
  Connection* const conn;
  const Vdir* const vdir;
  const HttpRequestHead head;
  std::string path_translated;
  FilterSession* const filters;  // the connection's filters, nullptr without any

  VarSource Vars() const;

 private:
  ~RequestContext();
  void AddRef() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Release();

  // Response side; *_locked functions need write_mu_. SendLocked sends any held head first
  // (in the same system call when the bytes are few).
  bool SendLocked(const char* p, size_t n);
  bool SendNowLocked(const char* p, size_t n);
  bool FlushHeldLocked();
  void FlushHeld();
  bool WriteBody(const char* p, DWORD n);  // the response body bytes of WriteClient, sync or async
  BOOL SendHeaders(const char* status, size_t status_len, const char* headers, size_t headers_len, bool ex,
                   bool keep_conn);
  // Extension output the host will not relay (it could split the response or make its framing
  // ambiguous): a 500 goes out instead, the connection closes after it, later output is dropped.
  // Returns FALSE with ERROR_INVALID_PARAMETER, for the caller to return.
  BOOL RefuseResponseLocked(const std::string& why);
  bool SendRedirect(const char* url);
  BOOL DoneWithSession(LPVOID buffer);
  BOOL VectorSend(void* vector);
  BOOL TransmitFile(HSE_TF_INFO* tf);
  // Sends [offset, offset+length) of a file (length 0xFFFFFFFFFFFFFFFF: to the end) as body.
  bool SendFileRange(void* handle, uint64_t offset, uint64_t length, DWORD* total, DWORD* err);
  BOOL ExecUrl(const HSE_EXEC_URL_INFO* info);
  // Runs a child request (EXEC_URL, SEND_URL) through the host's pipeline on this thread and
  // waits for it; its response goes to this request's client. Returns a Win32 error or 0.
  DWORD RunChild(const ExecRequest& x);
  void ServeChildStatic(const HttpRequestHead& h);
  void OnChildDone(RequestContext* child);
  BOOL SendCustomError(const HSE_CUSTOM_ERROR_INFO* info);
  BOOL MapUrlToPath(LPVOID buffer, LPDWORD size);
  BOOL MapUrlToPathEx(LPVOID buffer, LPDWORD size, LPDWORD data_type);
  void PostCompletion(PFN_HSE_IO_COMPLETION cb, void* ctx, DWORD bytes, DWORD error);
  // The routine registered with HSE_REQ_IO_COMPLETION, and its context.
  void RegisteredCompletion(PFN_HSE_IO_COMPLETION* cb, void** ctx);
  // For an asynchronous operation, the registered routine; FALSE + ERROR_INVALID_PARAMETER
  // when none is registered. A synchronous one gets none.
  bool CompletionFor(bool async, PFN_HSE_IO_COMPLETION* cb, void** ctx);
  // Pre-reads up to the read-ahead size into preread_. False: respond/close (already handled).
  bool PreRead();
  // Ends the request: framing checks, error page, access log. Returns true to keep the connection.
  bool Finish(DWORD status);
  void CompleteFromPool(DWORD status);
  bool DrainBody();
  void WriteLog();

  uint32_t magic_;
  RequestContext* const parent_;  // EXEC_URL / SEND_URL child: its parent request
  int depth_ = 0;
  std::mutex child_mu_;
  std::condition_variable child_cv_;
  bool child_done_ = false;
  HSE_EXEC_URL_STATUS exec_status_{};
  bool exec_status_valid_ = false;
  std::atomic<int> refs_{2};  // Run + completion
  size_t head_bytes_;
  int64_t start_ms_;
  bool head_only_;

  std::string method_, query_, path_info_, content_type_;
  std::vector<char> preread_;

  std::mutex read_mu_;
  BodyReader body_;

  std::mutex write_mu_;
  bool headers_sent_ = false;
  bool taken_over_ = false;  // an ACCESS_DENIED filter answered: the extension's output is dropped
  bool raw_output_ = false;
  bool write_failed_ = false;
  bool keep_alive_ = false;  // decided when the headers were sent
  int status_sent_ = 0;
  int64_t resp_content_length_ = -1;
  uint64_t resp_body_bytes_ = 0;
  uint64_t bytes_sent_ = 0;
  // A response head sent by HttpExtensionProc on its own thread, held until its first body
  // bytes, a child request, a close, or HttpExtensionProc's return (whichever comes first), so
  // that head and body reach the client in one segment, as Node's http server sends them.
  std::string held_head_;
  std::thread::id proc_thread_;  // the thread inside HttpExtensionProc, while it runs
  std::string log_param_;
  std::atomic<bool> close_requested_{false};

  std::mutex state_mu_;
  RequestState state_ = RequestState::kRunning;
  DWORD done_status_ = 0;  // DONE_WITH_SESSION's status, for a request in kDoneEarly
  PFN_HSE_IO_COMPLETION io_callback_ = nullptr;
  void* io_context_ = nullptr;
};

}  // namespace isapi_host
