// Sending files and vectors as a response body: HSE_REQ_TRANSMIT_FILE and HSE_REQ_VECTOR_SEND.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "filters.h"
#include "http_util.h"
#include "platform/system.h"
#include "request_context.h"
#include "server.h"
#include "server_variables.h"
#include "url_path.h"
#include "vdir_map.h"

namespace isapi_host {

#ifndef HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER
#define HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER 0
#endif
#ifndef HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE
#define HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE 1
#endif

BOOL RequestContext::VectorSend(void* p) {
  HSE_RESPONSE_VECTOR* v = static_cast<HSE_RESPONSE_VECTOR*>(p);
  if (!v || (v->nElementCount && !v->lpElementArray)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  PFN_HSE_IO_COMPLETION cb;
  void* cb_ctx;
  if (!CompletionFor(v->dwFlags & HSE_IO_ASYNC, &cb, &cb_ctx)) return FALSE;
  for (DWORD i = 0; i < v->nElementCount; i++) {
    DWORD t = v->lpElementArray[i].ElementType;
    if (t != HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER && t != HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return FALSE;
    }
  }
  bool ok = true;
  DWORD total = 0;
  if (v->dwFlags & HSE_IO_SEND_HEADERS) {
    const char* hdr = v->pszHeaders ? v->pszHeaders : "";
    ok = SendHeaders(v->pszStatus, v->pszStatus ? strlen(v->pszStatus) : 0, hdr, strlen(hdr), false, true) != FALSE;
  }
  for (DWORD i = 0; ok && i < v->nElementCount; i++) {
    const HSE_VECTOR_ELEMENT& el = v->lpElementArray[i];
    if (el.ElementType == HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE) {
      DWORD err = 0;
      ok = SendFileRange(el.pvContext, el.cbOffset, el.cbSize, &total, &err);
      continue;
    }
    DWORD n = static_cast<DWORD>(el.cbSize);
    ok = WriteClient(el.pvContext, &n, HSE_IO_SYNC) != FALSE;
    total += n;
  }
  if (v->dwFlags & (HSE_IO_DISCONNECT_AFTER_SEND)) close_requested_ = true;
  if (cb) {
    PostCompletion(cb, cb_ctx, ok ? total : 0, ok ? 0 : ERROR_NETNAME_DELETED);
    return TRUE;
  }
  return ok ? TRUE : FALSE;
}

bool RequestContext::SendFileRange(void* handle, uint64_t offset, uint64_t length, DWORD* total, DWORD* err) {
  if (!handle || handle == reinterpret_cast<void*>(static_cast<intptr_t>(-1))) {
    *err = ERROR_INVALID_PARAMETER;
    return false;
  }
  std::vector<char> buf(65536);
  while (length > 0) {
    size_t want = length < buf.size() ? static_cast<size_t>(length) : buf.size();
    int64_t n = FileReadAt(handle, buf.data(), want, offset);
    if (n < 0) {
      *err = ERROR_READ_FAULT;
      return false;
    }
    if (n == 0) break;  // end of file
    DWORD w = static_cast<DWORD>(n);
    if (!WriteClient(buf.data(), &w, HSE_IO_SYNC)) {
      *err = GetLastError();
      return false;
    }
    *total += w;
    offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  return true;
}

BOOL RequestContext::TransmitFile(HSE_TF_INFO* tf) {
  if (!tf) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  // Copy everything: with HSE_IO_ASYNC the extension's structure may be gone when the job runs.
  HSE_TF_INFO t = *tf;
  std::string status = t.pszStatusCode ? t.pszStatusCode : "";
  std::string head_bytes =
      t.pHead && t.HeadLength ? std::string(static_cast<char*>(t.pHead), t.HeadLength) : std::string();
  if (t.pHead && !t.HeadLength && (t.dwFlags & HSE_IO_SEND_HEADERS))
    head_bytes = static_cast<char*>(t.pHead);  // headers given as a string without a length
  std::string tail = t.pTail && t.TailLength ? std::string(static_cast<char*>(t.pTail), t.TailLength) : std::string();
  PFN_HSE_IO_COMPLETION cb = t.pfnHseIO;
  void* cb_ctx = t.pContext;
  if (!cb) RegisteredCompletion(&cb, &cb_ctx);
  bool async = (t.dwFlags & HSE_IO_ASYNC) != 0;
  if (async && !cb) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!t.hFile || t.hFile == reinterpret_cast<HANDLE>(static_cast<intptr_t>(-1))) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  auto job = [this, t, status, head_bytes, tail](DWORD* total) -> DWORD {
    DWORD err = 0;
    *total = 0;
    if (t.dwFlags & HSE_IO_SEND_HEADERS) {
      if (!SendHeaders(status.empty() ? nullptr : status.c_str(), status.size(), head_bytes.data(), head_bytes.size(),
                       false, true))
        return GetLastError();
    } else if (!head_bytes.empty()) {
      DWORD n = static_cast<DWORD>(head_bytes.size());
      if (!WriteClient(const_cast<char*>(head_bytes.data()), &n, HSE_IO_SYNC)) return GetLastError();
      *total += n;
    }
    uint64_t length = t.BytesToWrite ? t.BytesToWrite : ~0ull;  // 0: the whole file
    if (!SendFileRange(t.hFile, t.Offset, length, total, &err)) return err;
    if (!tail.empty()) {
      DWORD n = static_cast<DWORD>(tail.size());
      if (!WriteClient(const_cast<char*>(tail.data()), &n, HSE_IO_SYNC)) return GetLastError();
      *total += n;
    }
    if (t.dwFlags & HSE_IO_DISCONNECT_AFTER_SEND) close_requested_ = true;
    return 0;
  };
  if (async) {
    AddRef();
    server->io_pool().Post([this, job, cb, cb_ctx] {
      DWORD total = 0;
      DWORD err = job(&total);
      cb(&ecb, cb_ctx, total, err);
      Release();
    });
    return TRUE;
  }
  DWORD total = 0;
  DWORD err = job(&total);
  if (err) {
    SetLastError(err);
    return FALSE;
  }
  return TRUE;
}

}  // namespace isapi_host
