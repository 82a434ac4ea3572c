// The ISAPI filter entry points. Filters are synchronous in ISAPI: HttpFilterProc sends the
// notification with its data to the connection's worker and waits, with a deadline, for one
// reply carrying the verdict and every change. While it waits it answers the worker's queries
// (GetHeader, GetServerVariable) on this thread, the only one allowed to touch pfc.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bridge_exports.h"
#include "bridge_log.h"
#include "bridge_state.h"
#include "isapi.h"
#include "response_check.h"
#include "wire.h"
#include "worker.h"

namespace isapi::bridge {
namespace {

using channel::FilterChange;
using channel::FilterQuery;
using channel::Msg;
namespace msg = channel::msg;

// Notification ids live in the upper half so they never collide with request ids.
std::atomic<uint32_t> g_nextNotification{0x80000000u};
std::atomic<uint32_t> g_nextConnection{1};

using GetHeaderFn = BOOL(WINAPI*)(PHTTP_FILTER_CONTEXT, LPSTR, LPVOID, LPDWORD);

std::string read_header(PHTTP_FILTER_CONTEXT pfc, GetHeaderFn getHeader, const std::string& name, bool& found) {
  char stack[1024];
  DWORD size = sizeof stack;
  found = false;
  if (getHeader(pfc, const_cast<char*>(name.c_str()), stack, &size)) {
    found = true;
    return std::string(stack, size ? size - 1 : 0);
  }
  if (GetLastError() != ERROR_INSUFFICIENT_BUFFER) return {};
  std::string big(size, '\0');
  if (!getHeader(pfc, const_cast<char*>(name.c_str()), big.data(), &size)) return {};
  found = true;
  big.resize(size ? size - 1 : 0);
  return big;
}

std::string read_variable(PHTTP_FILTER_CONTEXT pfc, const std::string& name, bool& found, DWORD& err) {
  char stack[1024];
  DWORD size = sizeof stack;
  found = false;
  err = 0;
  if (pfc->GetServerVariable(pfc, const_cast<char*>(name.c_str()), stack, &size)) {
    found = true;
    return std::string(stack, size ? size - 1 : 0);
  }
  err = GetLastError();
  if (err != ERROR_INSUFFICIENT_BUFFER) return {};
  std::string big(size, '\0');
  if (!pfc->GetServerVariable(pfc, const_cast<char*>(name.c_str()), big.data(), &size)) {
    err = GetLastError();
    return {};
  }
  found = true;
  err = 0;
  big.resize(size ? size - 1 : 0);
  return big;
}

// GetHeader for the notifications whose structure has one (same leading layout).
GetHeaderFn header_reader(DWORD type, void* pv) {
  switch (type) {
    case SF_NOTIFY_PREPROC_HEADERS:
    case SF_NOTIFY_SEND_RESPONSE: return static_cast<HTTP_FILTER_PREPROC_HEADERS*>(pv)->GetHeader;
    case SF_NOTIFY_AUTH_COMPLETE: return static_cast<HTTP_FILTER_AUTH_COMPLETE_INFO*>(pv)->GetHeader;
    default: return nullptr;
  }
}

// The notification's data as strings, in the order runtime/filter_context.ts reads them.
std::vector<std::string> fields_of(PHTTP_FILTER_CONTEXT pfc, DWORD type, void* pv) {
  std::vector<std::string> f;
  bool found;
  switch (type) {
    case SF_NOTIFY_PREPROC_HEADERS:
    case SF_NOTIFY_AUTH_COMPLETE: {
      GetHeaderFn get = header_reader(type, pv);
      for (const char* name : {"method", "url", "version"}) f.push_back(read_header(pfc, get, name, found));
      DWORD status = type == SF_NOTIFY_PREPROC_HEADERS ? static_cast<HTTP_FILTER_PREPROC_HEADERS*>(pv)->HttpStatus
                                                       : static_cast<HTTP_FILTER_AUTH_COMPLETE_INFO*>(pv)->HttpStatus;
      f.push_back(std::to_string(status));
      break;
    }
    case SF_NOTIFY_SEND_RESPONSE:
      f.push_back(std::to_string(static_cast<HTTP_FILTER_SEND_RESPONSE*>(pv)->HttpStatus));
      break;
    case SF_NOTIFY_URL_MAP: {
      auto* m = static_cast<HTTP_FILTER_URL_MAP*>(pv);
      f.push_back(m->pszURL ? m->pszURL : "");
      f.push_back(m->pszPhysicalPath ? m->pszPhysicalPath : "");
      break;
    }
    case SF_NOTIFY_AUTHENTICATION: {
      auto* a = static_cast<HTTP_FILTER_AUTHENT*>(pv);
      f.push_back(a->pszUser ? a->pszUser : "");
      f.push_back(a->pszPassword ? a->pszPassword : "");
      break;
    }
    case SF_NOTIFY_ACCESS_DENIED: {
      auto* d = static_cast<HTTP_FILTER_ACCESS_DENIED*>(pv);
      f.push_back(d->pszURL ? d->pszURL : "");
      f.push_back(d->pszPhysicalPath ? d->pszPhysicalPath : "");
      f.push_back(std::to_string(d->dwReason));
      break;
    }
    case SF_NOTIFY_LOG: {
      auto* l = static_cast<HTTP_FILTER_LOG*>(pv);
      for (const char* s : {l->pszClientHostName, l->pszClientUserName, l->pszServerName, l->pszOperation, l->pszTarget,
                            l->pszParameters})
        f.push_back(s ? s : "");
      for (DWORD n : {l->dwHttpStatus, l->dwWin32Status, l->dwBytesSent, l->dwBytesRecvd, l->msTimeForProcessing})
        f.push_back(std::to_string(n));
      break;
    }
    case SF_NOTIFY_READ_RAW_DATA:
    case SF_NOTIFY_SEND_RAW_DATA: {
      auto* r = static_cast<HTTP_FILTER_RAW_DATA*>(pv);
      f.emplace_back(static_cast<const char*>(r->pvInData), r->cbInData);
      break;
    }
    default: break;
  }
  return f;
}

// Server variables sent with each notification, when the server has them at that point.
const char* const kFilterVars[] = {"REMOTE_ADDR", "SERVER_PORT", "URL", "ALL_RAW"};

char* alloc_copy(PHTTP_FILTER_CONTEXT pfc, const std::string& s) {
  char* p = static_cast<char*>(pfc->AllocMem(pfc, DWORD(s.size() + 1), 0));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

void copy_into(char* dst, DWORD cap, const std::string& s) {
  if (!dst || cap == 0) return;
  size_t n = std::min<size_t>(s.size(), cap - 1);
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

void apply_change(PHTTP_FILTER_CONTEXT pfc, DWORD type, void* pv, FilterChange op, const std::string& a,
                  const std::string& b) {
  switch (op) {
    case FilterChange::SetHeader:
    case FilterChange::AddHeader: {
      BOOL(WINAPI * fn)(PHTTP_FILTER_CONTEXT, LPSTR, LPSTR) = nullptr;
      if (type == SF_NOTIFY_PREPROC_HEADERS || type == SF_NOTIFY_SEND_RESPONSE) {
        auto* h = static_cast<HTTP_FILTER_PREPROC_HEADERS*>(pv);
        fn = op == FilterChange::SetHeader ? h->SetHeader : h->AddHeader;
      } else if (type == SF_NOTIFY_AUTH_COMPLETE) {
        auto* h = static_cast<HTTP_FILTER_AUTH_COMPLETE_INFO*>(pv);
        fn = op == FilterChange::SetHeader ? h->SetHeader : h->AddHeader;
      }
      if (fn) fn(pfc, const_cast<char*>(a.c_str()), const_cast<char*>(b.c_str()));
      break;
    }
    case FilterChange::AddResponseHeaders: pfc->AddResponseHeaders(pfc, const_cast<char*>(a.c_str()), 0); break;
    case FilterChange::WriteClient: {
      DWORD n = DWORD(a.size());
      pfc->WriteClient(pfc, const_cast<char*>(a.data()), &n, 0);
      break;
    }
    case FilterChange::SendResponseHeader:
      pfc->ServerSupportFunction(pfc, SF_REQ_TYPE(SF_REQ_SEND_RESPONSE_HEADER), const_cast<char*>(a.c_str()),
                                 reinterpret_cast<ULONG_PTR>(b.c_str()), 0);
      break;
    case FilterChange::DisableNotifications:
      pfc->ServerSupportFunction(pfc, SF_REQ_TYPE(SF_REQ_DISABLE_NOTIFICATIONS), nullptr,
                                 ULONG_PTR(std::strtoul(a.c_str(), nullptr, 10)), 0);
      break;
    case FilterChange::SetPhysicalPath:
      if (type == SF_NOTIFY_URL_MAP) {
        auto* m = static_cast<HTTP_FILTER_URL_MAP*>(pv);
        copy_into(m->pszPhysicalPath, m->cbPathBuff, a);
      }
      break;
    case FilterChange::SetLogField:
      if (type == SF_NOTIFY_LOG) {
        auto* l = static_cast<HTTP_FILTER_LOG*>(pv);
        int index = std::atoi(a.c_str());
        const CHAR** strings[] = {&l->pszClientHostName, &l->pszClientUserName, &l->pszServerName,
                                  &l->pszOperation,      &l->pszTarget,         &l->pszParameters};
        if (index >= 0 && index < 6) {
          // AllocMem: the log reads the new string after we return; it lives until the session ends.
          if (char* copy = alloc_copy(pfc, b)) *strings[index] = copy;
        } else if (index == 6) {
          l->dwHttpStatus = DWORD(std::strtoul(b.c_str(), nullptr, 10));
        } else if (index == 7) {
          l->dwWin32Status = DWORD(std::strtoul(b.c_str(), nullptr, 10));
        }
      }
      break;
    case FilterChange::SetUser:
    case FilterChange::SetPassword:
      if (type == SF_NOTIFY_AUTHENTICATION) {
        auto* au = static_cast<HTTP_FILTER_AUTHENT*>(pv);
        if (op == FilterChange::SetUser) copy_into(au->pszUser, au->cbUserBuff, a);
        else copy_into(au->pszPassword, au->cbPasswordBuff, a);
      }
      break;
    case FilterChange::AddHeadersOnDenial:
      pfc->ServerSupportFunction(pfc, SF_REQ_TYPE(SF_REQ_ADD_HEADERS_ON_DENIAL), const_cast<char*>(a.c_str()), 0, 0);
      break;
    case FilterChange::SetRawData:
      if (type == SF_NOTIFY_READ_RAW_DATA || type == SF_NOTIFY_SEND_RAW_DATA) {
        auto* r = static_cast<HTTP_FILTER_RAW_DATA*>(pv);
        void* copy = pfc->AllocMem(pfc, DWORD(a.size() + 1), 0);
        if (copy) {
          std::memcpy(copy, a.data(), a.size());
          r->pvInData = copy;
          r->cbInData = DWORD(a.size());
          r->cbInBuffer = DWORD(a.size() + 1);
        }
      }
      break;
    case FilterChange::SetNextReadSize:
      pfc->ServerSupportFunction(pfc, SF_REQ_TYPE(SF_REQ_SET_NEXT_READ_SIZE), nullptr,
                                 ULONG_PTR(std::strtoul(a.c_str(), nullptr, 10)), 0);
      break;
    case FilterChange::SetHttpStatus: {
      DWORD status = DWORD(std::strtoul(a.c_str(), nullptr, 10));
      if (type == SF_NOTIFY_PREPROC_HEADERS || type == SF_NOTIFY_SEND_RESPONSE)
        static_cast<HTTP_FILTER_PREPROC_HEADERS*>(pv)->HttpStatus = status;
      else if (type == SF_NOTIFY_AUTH_COMPLETE) static_cast<HTTP_FILTER_AUTH_COMPLETE_INFO*>(pv)->HttpStatus = status;
      break;
    }
  }
}

// What a filter does when its worker cannot answer: by default it fails closed with 503, as
// long as the response has not started; otherwise (or with "pass-through") the request goes on.
DWORD on_failure(PHTTP_FILTER_CONTEXT pfc, DWORD type, const char* why) {
  log_line(std::string("filter notification 0x") +
           [&] {
             char b[16];
             std::snprintf(b, sizeof b, "%x", unsigned(type));
             return std::string(b);
           }() +
           " failed: " + why);
  bool beforeResponse = type == SF_NOTIFY_READ_RAW_DATA || type == SF_NOTIFY_PREPROC_HEADERS ||
                        type == SF_NOTIFY_URL_MAP || type == SF_NOTIFY_AUTHENTICATION ||
                        type == SF_NOTIFY_AUTH_COMPLETE;
  if (!manifest_settings().filterFailClosed || !beforeResponse) return SF_STATUS_REQ_NEXT_NOTIFICATION;
  std::string body = "503 Service Unavailable\nThe filter could not answer.\n";
  std::string headers =
      "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\nRetry-After: 5\r\n\r\n";
  pfc->ServerSupportFunction(pfc, SF_REQ_TYPE(SF_REQ_SEND_RESPONSE_HEADER),
                             const_cast<char*>("503 Service Unavailable"), reinterpret_cast<ULONG_PTR>(headers.c_str()),
                             0);
  DWORD n = DWORD(body.size());
  pfc->WriteClient(pfc, body.data(), &n, 0);
  return SF_STATUS_REQ_FINISHED;
}

void reply_query(Worker& w, uint32_t id, PHTTP_FILTER_CONTEXT pfc, DWORD type, void* pv, std::string_view payload) {
  msg::FilterCall call;
  if (!channel::decode(payload, call)) {
    log_line("a worker sent a malformed FilterCall message; answering it with an error");
    call.op = 0;
  }
  auto op = FilterQuery(call.op);
  std::string name(call.name);
  bool found = false;
  DWORD err = 0;
  std::string value;
  if (op == FilterQuery::GetHeader) {
    GetHeaderFn get = header_reader(type, pv);
    if (get) value = read_header(pfc, get, name, found);
    err = found ? 0 : (get ? DWORD(ERROR_INVALID_INDEX) : DWORD(ERROR_INVALID_PARAMETER));
  } else if (op == FilterQuery::GetServerVariable) {
    value = read_variable(pfc, name, found, err);
  } else {
    err = ERROR_INVALID_PARAMETER;
  }
  msg::FilterCallReply reply;
  reply.callId = call.callId;
  reply.ok = found;
  reply.error = err;
  reply.out = value;
  std::string frame;
  channel::encode(frame, id, reply);
  w.send(frame);
}

}  // namespace
}  // namespace isapi::bridge

using namespace isapi::bridge;

ISAPI_EXPORT BOOL WINAPI GetFilterVersion(HTTP_FILTER_VERSION* pVer) {
  const ManifestSettings& s = manifest_settings();
  if (s.filterFlags == 0) {
    // IIS unloads a filter whose GetFilterVersion fails; say why in the bridge's log.
    std::fprintf(
        stderr,
        "node-isapi: this bridge's script exports no filter (__FilterFactory__), so it cannot be loaded as one\n");
    return FALSE;
  }
  pVer->dwFilterVersion = HTTP_FILTER_REVISION;
  std::snprintf(pVer->lpszFilterDesc, sizeof pVer->lpszFilterDesc, "node-isapi filter");
  // pywin32's rule: END_OF_NET_SESSION is always on, to release per-connection state.
  pVer->dwFlags = s.filterFlags | SF_NOTIFY_END_OF_NET_SESSION;
  std::string error;
  return acquire_pool(Role::Filter, false, error) ? TRUE : FALSE;
}

ISAPI_EXPORT DWORD WINAPI HttpFilterProc(HTTP_FILTER_CONTEXT* pfc, DWORD type, VOID* pv) {
  WorkerPool* pool = current_pool();
  if (!pool) return SF_STATUS_REQ_NEXT_NOTIFICATION;
  if (!pfc->pFilterContext) pfc->pFilterContext = reinterpret_cast<void*>(uintptr_t(g_nextConnection++));
  uint32_t connection = uint32_t(reinterpret_cast<uintptr_t>(pfc->pFilterContext));
  const bool endOfSession = type == SF_NOTIFY_END_OF_NET_SESSION;
  const int timeoutMs = manifest_settings().filterTimeoutMs;

  // A connection's first notification may come before any worker is ready: wait for one
  // within the notification's deadline.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  std::shared_ptr<Worker> worker = pool->worker_for_connection(connection);
  while (!worker && !endOfSession && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    worker = pool->worker_for_connection(connection);
  }
  if (!worker) return endOfSession ? SF_STATUS_REQ_NEXT_NOTIFICATION : on_failure(pfc, type, "no worker is ready");

  uint32_t id = g_nextNotification++;
  if (id < 0x80000000u) id |= 0x80000000u;
  std::string frame;
  {
    msg::FilterNotify notify;
    notify.connection = connection;
    notify.notification = type;
    notify.wantsReply = !endOfSession;
    std::vector<std::string> fields = fields_of(pfc, type, pv);
    for (auto& f : fields) notify.fields_.push_back(f);
    std::vector<std::pair<std::string, std::string>> vars;
    if (!endOfSession) {
      for (const char* name : kFilterVars) {
        bool found;
        DWORD err;
        std::string v = read_variable(pfc, name, found, err);
        if (found) vars.emplace_back(name, std::move(v));
      }
    }
    for (auto& [k, v] : vars) notify.vars.emplace_back(k, v);
    isapi::channel::encode(frame, id, notify);
  }
  if (endOfSession) {
    worker->send(frame);  // the worker drops the connection's FilterContext; nothing to wait for
    return SF_STATUS_REQ_NEXT_NOTIFICATION;
  }

  auto wait = std::make_shared<FilterWait>();
  worker->await_filter(id, wait);
  if (!worker->send(frame)) {
    worker->forget_filter(id);
    return on_failure(pfc, type, "the worker's channel is closed");
  }
  for (;;) {
    std::pair<Msg, std::string> next;
    {
      std::unique_lock<std::mutex> lock(wait->mu);
      if (!wait->cv.wait_until(lock, deadline, [&] { return wait->dead || !wait->frames.empty(); })) {
        lock.unlock();
        worker->forget_filter(id);
        return on_failure(pfc, type, "the worker did not answer in time");
      }
      if (wait->frames.empty()) {
        lock.unlock();
        worker->forget_filter(id);
        return on_failure(pfc, type, "the worker exited");
      }
      next = std::move(wait->frames.front());
      wait->frames.pop_front();
    }
    if (next.first == Msg::FilterCall) {
      reply_query(*worker, id, pfc, type, pv, next.second);
      continue;
    }
    worker->forget_filter(id);
    msg::FilterReply reply;
    if (!isapi::channel::decode(next.second, reply)) {
      log_line("a worker sent a malformed FilterReply message (the request fails with 500)");
      return SF_STATUS_REQ_ERROR;
    }
    // Checked before any is applied: a reply that could split a header is refused whole,
    // and the request fails (500) instead.
    for (const isapi::channel::ChangeItem& c : reply.changes) {
      std::string problem = filter_change_problem(FilterChange(c.op), c.a, c.b);
      if (!problem.empty()) {
        log_line("refused a filter's changes (the request fails with 500): " + problem);
        return SF_STATUS_REQ_ERROR;
      }
    }
    for (const isapi::channel::ChangeItem& c : reply.changes)
      apply_change(pfc, type, pv, FilterChange(c.op), std::string(c.a), std::string(c.b));
    return reply.status ? reply.status : SF_STATUS_REQ_NEXT_NOTIFICATION;
  }
}

ISAPI_EXPORT BOOL WINAPI TerminateFilter(DWORD dwFlags) {
  release_pool(Role::Filter, dwFlags == HSE_TERM_MUST_UNLOAD ? 2000 : 10000);
  return TRUE;
}
