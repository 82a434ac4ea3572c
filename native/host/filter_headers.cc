// Header editing during a notification: GetHeader / SetHeader / AddHeader of PREPROC_HEADERS,
// AUTH_COMPLETE and SEND_RESPONSE (the request's head, or the response's headers and status),
// and SetRequestUrl, which a changed "url" pseudo header goes through.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "filters.h"
#include "http_util.h"

namespace isapi_host {

namespace {

// Copies a value (plus NUL) with the GetServerVariable buffer protocol.
BOOL CopyOut(const std::string& value, LPVOID buffer, LPDWORD size) {
  DWORD needed = static_cast<DWORD>(value.size() + 1);
  if (!buffer || *size < needed) {
    *size = needed;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(buffer, value.c_str(), needed);
  *size = needed;
  return TRUE;
}

}  // namespace

BOOL FilterSession::GetHeader(LPSTR name_in, LPVOID buffer, LPDWORD size) {
  if (!name_in || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string name = name_in;
  bool colon = !name.empty() && name.back() == ':';
  if (colon) name.pop_back();
  if (cur_resp_) {  // SEND_RESPONSE
    if (!colon && IEquals(name, "status")) return CopyOut(*cur_status_, buffer, size);
    std::string v;
    bool found = false;
    for (const HttpHeader& h : *cur_resp_) {
      if (!IEquals(h.name, name)) continue;
      if (found) v += ", ";
      v += h.value;
      found = true;
    }
    if (!found) {
      SetLastError(ERROR_INVALID_INDEX);
      return FALSE;
    }
    return CopyOut(v, buffer, size);
  }
  if (!cur_req_) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!colon) {
    if (IEquals(name, "method")) return CopyOut(cur_req_->method, buffer, size);
    if (IEquals(name, "url")) return CopyOut(cur_req_->target, buffer, size);
    if (IEquals(name, "version")) return CopyOut(cur_req_->version, buffer, size);
  }
  std::string v;
  if (!cur_req_->FindHeader(name, &v)) {
    SetLastError(ERROR_INVALID_INDEX);
    return FALSE;
  }
  return CopyOut(v, buffer, size);
}

BOOL FilterSession::SetHeader(LPSTR name_in, LPSTR value_in, bool add) {
  if (!name_in || !*name_in) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::lock_guard<std::recursive_mutex> lock(dispatch_mu_);
  std::string name = name_in;
  std::string value = value_in ? value_in : "";
  if (value.find_first_of("\r\n") != std::string::npos) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  bool colon = name.back() == ':';
  if (colon) name.pop_back();
  std::vector<HttpHeader>* list = nullptr;
  if (cur_resp_) {
    if (!colon && IEquals(name, "status")) {
      int code = atoi(value.c_str());
      if (code < 100 || code > 999) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
      }
      *cur_status_ = value.size() <= 3 ? StatusLineText(code) : value;
      return TRUE;
    }
    list = cur_resp_;
  } else if (cur_req_) {
    if (!colon && !add) {
      if (IEquals(name, "url")) {
        if (value.empty() || !SetRequestUrl(cur_req_, value)) {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        return TRUE;
      }
      if (IEquals(name, "method")) {
        if (value.empty()) {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        cur_req_->method = value;
        return TRUE;
      }
      if (IEquals(name, "version")) {
        if (value != "HTTP/1.0" && value != "HTTP/1.1") {
          SetLastError(ERROR_INVALID_PARAMETER);
          return FALSE;
        }
        cur_req_->version = value;
        cur_req_->minor_version = value[7] - '0';
        return TRUE;
      }
    }
    list = &cur_req_->headers;
  } else {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (add) {
    if (!value.empty()) list->push_back(HttpHeader{name, value});
  } else {
    bool replaced = false;
    for (auto it = list->begin(); it != list->end();) {
      if (!IEquals(it->name, name)) {
        ++it;
      } else if (!replaced && !value.empty()) {
        it->value = value;
        replaced = true;
        ++it;
      } else {
        it = list->erase(it);
      }
    }
    if (!replaced && !value.empty()) list->push_back(HttpHeader{name, value});
  }
  if (cur_req_ && list == &cur_req_->headers) {
    // Keep the derived facts in step: ALL_RAW and the Host.
    std::string raw;
    for (const HttpHeader& h : cur_req_->headers) raw += h.name + ": " + h.value + "\r\n";
    cur_req_->raw_headers = raw;
    if (IEquals(name, "Host")) {
      std::string host;
      cur_req_->host = cur_req_->FindHeader("Host", &host) ? host : std::string();
    }
  }
  return TRUE;
}

bool SetRequestUrl(HttpRequestHead* head, const std::string& url) {
  if (url.empty() || url[0] != '/') return false;
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f) return false;
  size_t q = url.find('?');
  std::string raw_path = url.substr(0, q);
  std::string path;
  if (!PercentDecode(raw_path, &path)) return false;
  head->target = url;
  head->raw_path = raw_path;
  head->path = path;
  head->query = q == std::string::npos ? "" : url.substr(q + 1);
  return true;
}

}  // namespace isapi_host
