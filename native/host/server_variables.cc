#include "server_variables.h"

#include <cstring>
#include <functional>
#include <unordered_map>

#include "http_util.h"
#include "isapi.h"
#include "connection.h"
#include "http_parser.h"
#include "server.h"
#include "vdir_map.h"

namespace isapi_host {

namespace {

// SERVER_SOFTWARE: "Microsoft-IIS/10.0" is what some code parses; this host says what it is.
constexpr const char* kServerSoftware = "isapi-host/0.1";

std::string Upper(const std::string& s) {
  std::string r = s;
  for (char& c : r)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return r;
}

// Header name as a CGI variable suffix: upper case, '-' → '_'.
std::string CgiName(const std::string& header) {
  std::string r = Upper(header);
  for (char& c : r)
    if (c == '-') c = '_';
  return r;
}

std::string Utf8ToUtf16Le(const std::string& s) {
  std::string out;
  out.reserve(s.size() * 2 + 2);
  auto put = [&out](uint32_t u) {
    out.push_back(static_cast<char>(u & 0xff));
    out.push_back(static_cast<char>((u >> 8) & 0xff));
  };
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xe0) == 0xc0) {
      cp = c & 0x1f;
      len = 2;
    } else if ((c & 0xf0) == 0xe0) {
      cp = c & 0x0f;
      len = 3;
    } else if ((c & 0xf8) == 0xf0) {
      cp = c & 0x07;
      len = 4;
    } else {
      put(0xfffd);
      i++;
      continue;
    }
    if (i + len > s.size()) {
      put(0xfffd);
      i++;
      continue;
    }
    bool ok = true;
    for (size_t k = 1; k < len; k++) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (!ok) {
      put(0xfffd);
      i++;
      continue;
    }
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      put(0xd800 + (cp >> 10));
      put(0xdc00 + (cp & 0x3ff));
    } else {
      put(cp);
    }
  }
  put(0);
  return out;
}

const HttpRequestHead& H(const VarSource& r) {
  static const HttpRequestHead empty;
  return r.head ? *r.head : empty;
}

std::string ServerName(const VarSource& r) {
  std::string host = H(r).host;
  if (host.empty()) return r.conn->local.addr;
  if (host[0] == '[') {
    size_t close = host.find(']');
    return close == std::string::npos ? host : host.substr(0, close + 1);
  }
  size_t colon = host.find(':');
  return colon == std::string::npos ? host : host.substr(0, colon);
}

std::string AllHttp(const VarSource& r) {
  std::string s;
  for (const auto& h : H(r).headers) s += "HTTP_" + CgiName(h.name) + ":" + h.value + "\r\n";
  return s;
}

using Getter = std::function<std::string(const VarSource&)>;

const std::unordered_map<std::string, Getter>& Table() {
  static const std::unordered_map<std::string, Getter> table = {
      {"REQUEST_METHOD", [](const VarSource& r) { return H(r).method; }},
      {"URL", [](const VarSource& r) { return H(r).path; }},
      {"QUERY_STRING", [](const VarSource& r) { return H(r).query; }},
      {"PATH_INFO", [](const VarSource& r) { return H(r).path; }},
      {"PATH_TRANSLATED", [](const VarSource& r) { return r.path_translated ? *r.path_translated : std::string(); }},
      {"SCRIPT_NAME", [](const VarSource& r) { return r.vdir ? r.vdir->prefix : H(r).path; }},
      {"SCRIPT_TRANSLATED",
       [](const VarSource& r) {
         return r.vdir ? r.vdir->library : (r.path_translated ? *r.path_translated : std::string());
       }},
      {"CONTENT_TYPE",
       [](const VarSource& r) {
         std::string v;
         return H(r).FindHeader("Content-Type", &v) ? v : std::string();
       }},
      {"CONTENT_LENGTH",
       [](const VarSource& r) {
         return H(r).has_content_length ? std::to_string(H(r).content_length) : std::string("0");
       }},
      {"REMOTE_ADDR", [](const VarSource& r) { return r.conn->peer.addr; }},
      {"REMOTE_HOST", [](const VarSource& r) { return r.conn->peer.addr; }},
      {"REMOTE_PORT", [](const VarSource& r) { return std::to_string(r.conn->peer.port); }},
      {"LOCAL_ADDR", [](const VarSource& r) { return r.conn->local.addr; }},
      {"SERVER_NAME", ServerName},
      {"SERVER_PORT", [](const VarSource& r) { return std::to_string(r.conn->local.port); }},
      {"SERVER_PORT_SECURE", [](const VarSource&) { return std::string("0"); }},
      {"SERVER_PROTOCOL", [](const VarSource& r) { return H(r).version; }},
      {"HTTP_VERSION", [](const VarSource& r) { return H(r).version; }},
      {"SERVER_SOFTWARE", [](const VarSource&) { return std::string(kServerSoftware); }},
      {"GATEWAY_INTERFACE", [](const VarSource&) { return std::string("CGI/1.1"); }},
      {"HTTPS", [](const VarSource&) { return std::string("off"); }},
      {"INSTANCE_ID", [](const VarSource&) { return std::string("1"); }},
      {"INSTANCE_NAME", [](const VarSource&) { return std::string("isapi-host"); }},
      {"INSTANCE_META_PATH", [](const VarSource&) { return std::string("/LM/W3SVC/1"); }},
      {"APPL_MD_PATH",
       [](const VarSource& r) { return "/LM/W3SVC/1/ROOT" + (r.vdir ? r.vdir->prefix : std::string()); }},
      {"APPL_PHYSICAL_PATH",
       [](const VarSource& r) { return r.vdir ? r.vdir->physical_dir : r.server->static_root(); }},
      {"APP_POOL_ID", [](const VarSource&) { return std::string("isapi-host"); }},
      {"AUTH_TYPE", [](const VarSource& r) { return r.auth ? r.auth->type : std::string(); }},
      {"AUTH_USER", [](const VarSource& r) { return r.auth ? r.auth->user : std::string(); }},
      {"AUTH_PASSWORD", [](const VarSource& r) { return r.auth ? r.auth->password : std::string(); }},
      {"REMOTE_USER", [](const VarSource& r) { return r.auth ? r.auth->user : std::string(); }},
      {"LOGON_USER", [](const VarSource& r) { return r.auth ? r.auth->user : std::string(); }},
      {"UNMAPPED_REMOTE_USER", [](const VarSource& r) { return r.auth ? r.auth->user : std::string(); }},
      {"ALL_HTTP", AllHttp},
      {"ALL_RAW", [](const VarSource& r) { return H(r).raw_headers; }},
      {"HTTP_URL",
       [](const VarSource& r) { return H(r).query.empty() ? H(r).raw_path : H(r).raw_path + "?" + H(r).query; }},
      {"UNENCODED_URL",
       [](const VarSource& r) { return H(r).query.empty() ? H(r).raw_path : H(r).raw_path + "?" + H(r).query; }},
      {"CACHE_URL", [](const VarSource& r) { return H(r).query.empty() ? H(r).path : H(r).path + "?" + H(r).query; }},
      {"HTTPS_KEYSIZE", [](const VarSource&) { return std::string(); }},
      {"HTTPS_SECRETKEYSIZE", [](const VarSource&) { return std::string(); }},
      {"HTTPS_SERVER_ISSUER", [](const VarSource&) { return std::string(); }},
      {"HTTPS_SERVER_SUBJECT", [](const VarSource&) { return std::string(); }},
      {"CERT_COOKIE", [](const VarSource&) { return std::string(); }},
      {"CERT_FLAGS", [](const VarSource&) { return std::string(); }},
      {"CERT_ISSUER", [](const VarSource&) { return std::string(); }},
      {"CERT_KEYSIZE", [](const VarSource&) { return std::string(); }},
      {"CERT_SECRETKEYSIZE", [](const VarSource&) { return std::string(); }},
      {"CERT_SERIALNUMBER", [](const VarSource&) { return std::string(); }},
      {"CERT_SERVER_ISSUER", [](const VarSource&) { return std::string(); }},
      {"CERT_SERVER_SUBJECT", [](const VarSource&) { return std::string(); }},
      {"CERT_SUBJECT", [](const VarSource&) { return std::string(); }},
  };
  return table;
}

bool LookupUtf8(const VarSource& r, const std::string& name, std::string* value) {
  std::string upper = Upper(name);
  const auto& table = Table();
  auto it = table.find(upper);
  if (it != table.end()) {
    *value = it->second(r);
    return true;
  }
  if (upper.compare(0, 5, "HTTP_") == 0 && upper.size() > 5) {
    // '_' in the requested name matches '-' (or '_') in the header name; repeats joined ", ".
    std::string want = CgiName(upper.substr(5));
    bool found = false;
    for (const auto& h : H(r).headers) {
      if (CgiName(h.name) != want) continue;
      if (found) *value += ", ";
      *value += h.value;
      found = true;
    }
    return found;
  }
  if (upper.compare(0, 7, "HEADER_") == 0 && upper.size() > 7) {
    return H(r).FindHeader(name.substr(7), value);
  }
  return false;
}

}  // namespace

bool LookupServerVariable(const VarSource& r, const char* name, std::string* value, uint32_t* err) {
  std::string n = name;
  value->clear();
  if (n.size() > 8 && Upper(n.substr(0, 8)) == "UNICODE_") {
    std::string utf8;
    if (!LookupUtf8(r, n.substr(8), &utf8)) {
      *err = ERROR_INVALID_INDEX;
      return false;
    }
    *value = Utf8ToUtf16Le(utf8);
    return true;
  }
  if (!LookupUtf8(r, n, value)) {
    *err = ERROR_INVALID_INDEX;
    return false;
  }
  value->push_back('\0');
  return true;
}

BOOL CopyServerVariable(const VarSource& r, LPSTR name, LPVOID buffer, LPDWORD size) {
  if (!name || !size) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  std::string value;
  uint32_t err = 0;
  if (!LookupServerVariable(r, name, &value, &err)) {
    SetLastError(err);
    return FALSE;
  }
  // value already holds the terminating NUL (one byte, or two for UNICODE_ variables).
  DWORD needed = static_cast<DWORD>(value.size());
  if (!buffer || *size < needed) {
    *size = needed;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  memcpy(buffer, value.data(), needed);
  *size = needed;
  return TRUE;
}

}  // namespace isapi_host
