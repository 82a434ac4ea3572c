// The ISAPI entry points. The web server (IIS, or isapi-host) calls these; the requests are
// answered by worker processes (see worker_pool.h). Nothing here runs JavaScript.
#include <atomic>
#include <iterator>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "bridge_exports.h"
#include "bridge_state.h"
#include "isapi.h"
#include "wire.h"

namespace isapi::bridge {
namespace {

std::atomic<uint32_t> g_nextId{1};

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
  std::string error;
  // A script that fails to start does not fail the load: the web server stays up, requests get
  // 503 with the reason, and the bridge retries (and recovers once a fixed script is deployed).
  return acquire_pool(Role::Extension, true, error) ? TRUE : FALSE;
}

ISAPI_EXPORT DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK* ecb) {
  WorkerPool* pool = current_pool();
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
  using isapi::channel::kPrefetchedVariables;  // the schema names them (messages.h)
  std::string values[std::size(kPrefetchedVariables)];
  for (size_t i = 0; i < std::size(kPrefetchedVariables); ++i) {
    bool found = false;
    values[i] = get_var(ecb, kPrefetchedVariables[i], found);
    if (found) begin.vars.emplace_back(kPrefetchedVariables[i], values[i]);
  }
  begin.preloaded = std::string_view(reinterpret_cast<const char*>(ecb->lpbData), ecb->cbAvailable);
  isapi::channel::encode(req->beginFrame, req->id, begin);
  // The rest of the body is read asynchronously once the worker has taken the request
  // (request_io.cc): this thread never waits for the client or the worker.
  req->chunkedBody = ecb->cbTotalBytes == 0xFFFFFFFFu;
  req->bodyLeft =
      req->chunkedBody ? UINT64_MAX : (ecb->cbTotalBytes > ecb->cbAvailable ? ecb->cbTotalBytes - ecb->cbAvailable : 0);
  req->bodySent = ecb->cbAvailable;
  // Its body streams only after Taken: the worker must say it (elsewhere the taken board does).
  if (req->bodyLeft > 0) isapi::channel::set_frame_flags(req->beginFrame, 0, isapi::channel::kFrameWantsTaken);

  pool->dispatch(req);
  return HSE_STATUS_PENDING;
}

ISAPI_EXPORT BOOL WINAPI TerminateExtension(DWORD dwFlags) {
  release_pool(Role::Extension, dwFlags == HSE_TERM_MUST_UNLOAD ? 2000 : 10000);
  return TRUE;
}
