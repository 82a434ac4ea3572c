// The ISAPI entry points. The web server (IIS, or isapi-host) calls these; the requests are
// answered by worker processes (see worker_pool.h). Nothing here runs JavaScript.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "bridge_log.h"
#include "isapi.h"
#include "platform/process.h"
#include "wire.h"
#include "worker_pool.h"

#ifdef _WIN32
#define ISAPI_EXPORT extern "C" __declspec(dllexport)
#else
#define ISAPI_EXPORT extern "C" __attribute__((visibility("default")))
#endif

namespace isapi::bridge {
namespace {

std::mutex g_mu;
std::unique_ptr<WorkerPool> g_pool;
std::atomic<uint32_t> g_nextId{1};

// Server variables sent with every request so the worker answers them without a round trip.
// HTTP_* and HEADER_* are derived from ALL_RAW on the worker side.
const char* const kPrefetched[] = {"URL",         "SCRIPT_NAME", "SERVER_PROTOCOL", "REMOTE_ADDR",
                                   "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT",     "HTTPS",
                                   "ALL_RAW"};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  int n = std::atoi(v);
  return n > 0 ? n : fallback;
}

std::string dirname_of(const std::string& p) {
  size_t i = p.find_last_of("/\\");
  return i == std::string::npos ? "." : p.substr(0, i);
}

// `_hello.so` → `hello`: the pywin32 convention (the loader strips the leading underscore).
std::string worker_name_for(const std::string& bridgePath) {
  std::string base = bridgePath.substr(bridgePath.find_last_of("/\\") + 1);
  size_t dot = base.find_last_of('.');
  if (dot != std::string::npos) base = base.substr(0, dot);
  if (!base.empty() && base[0] == '_') base = base.substr(1);
  return base;
}

std::string get_var(EXTENSION_CONTROL_BLOCK* ecb, const char* name, bool& found) {
  char stack[2048];
  DWORD size = sizeof stack;
  if (ecb->GetServerVariable(ecb->ConnID, const_cast<char*>(name), stack, &size)) {
    found = true;
    return std::string(stack, size ? size - 1 : 0);
  }
  found = false;
  if (GetLastError() != ERROR_INSUFFICIENT_BUFFER) return {};
  std::string big(size, '\0');
  if (!ecb->GetServerVariable(ecb->ConnID, const_cast<char*>(name), big.data(), &size)) return {};
  found = true;
  big.resize(size ? size - 1 : 0);
  return big;
}

}  // namespace
}  // namespace isapi::bridge

using namespace isapi::bridge;

ISAPI_EXPORT BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO* pVer) {
  pVer->dwExtensionVersion = MAKELONG(HSE_VERSION_MINOR, HSE_VERSION_MAJOR);
  std::snprintf(pVer->lpszExtensionDesc, sizeof pVer->lpszExtensionDesc, "node-isapi bridge");

  std::lock_guard<std::mutex> lock(g_mu);
  if (g_pool) return TRUE;
  PoolConfig cfg;
  cfg.bridgePath = this_module_path();
  std::string dir = dirname_of(cfg.bridgePath);
  std::string name = worker_name_for(cfg.bridgePath);
#ifdef _WIN32
  cfg.workerExe = dir + "\\" + name + ".exe";
  std::string logDir = dir + "\\logs";
  cfg.logPath = logDir + "\\" + name + ".log";
#else
  cfg.workerExe = dir + "/" + name;
  std::string logDir = dir + "/logs";
  cfg.logPath = logDir + "/" + name + ".log";
#endif
  make_directory(logDir);
  log_open(cfg.logPath);
  cfg.workers = env_int("ISAPI_WORKERS", processor_count());
  cfg.startupTimeoutMs = env_int("ISAPI_STARTUP_TIMEOUT_MS", 30000);
  cfg.requestTimeoutMs = env_int("ISAPI_REQUEST_TIMEOUT_MS", 120000);
  log_line("loading " + cfg.bridgePath + ": " + std::to_string(cfg.workers) + " worker(s) of " + cfg.workerExe);

  auto pool = std::make_unique<WorkerPool>(cfg);
  std::string error;
  if (!pool->start(error)) {
    std::string tail = log_tail(2000);
    std::fprintf(stderr,
                 "node-isapi: %s could not start its worker %s: %s\n"
                 "  what to do: read the worker's output below (full log: %s)\n%s\n",
                 cfg.bridgePath.c_str(), cfg.workerExe.c_str(), error.c_str(), cfg.logPath.c_str(),
                 tail.c_str());
    log_line("GetExtensionVersion failed: " + error);
    pool->stop(0);
    return FALSE;
  }
  g_pool = std::move(pool);
  return TRUE;
}

ISAPI_EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  WorkerPool* pool = g_pool.get();
  if (!pool) return HSE_STATUS_ERROR;
  auto req = std::make_shared<InflightRequest>(ecb, g_nextId.fetch_add(1));

  isapi::channel::RequestBegin begin;
  begin.method = ecb->lpszMethod;
  begin.query = ecb->lpszQueryString;
  begin.pathInfo = ecb->lpszPathInfo;
  begin.pathTranslated = ecb->lpszPathTranslated;
  begin.contentType = ecb->lpszContentType;
  begin.totalBytes = ecb->cbTotalBytes;
  begin.connId = req->id;
  std::string values[sizeof kPrefetched / sizeof *kPrefetched];
  for (size_t i = 0; i < sizeof kPrefetched / sizeof *kPrefetched; ++i) {
    bool found = false;
    values[i] = get_var(ecb, kPrefetched[i], found);
    if (found) begin.vars.emplace_back(kPrefetched[i], values[i]);
  }
  begin.preloaded = std::string_view(reinterpret_cast<const char*>(ecb->lpbData), ecb->cbAvailable);
  isapi::channel::encode_request(req->beginFrame, req->id, begin);

  pool->dispatch(req);
  if (ecb->cbTotalBytes > ecb->cbAvailable) pool->pump_body(req);
  return HSE_STATUS_PENDING;
}

ISAPI_EXPORT BOOL WINAPI TerminateExtension(DWORD dwFlags) {
  std::unique_ptr<WorkerPool> pool;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    pool = std::move(g_pool);
  }
  if (pool) pool->stop(dwFlags == HSE_TERM_MUST_UNLOAD ? 2000 : 10000);
  return TRUE;
}
