#include "http_parser.h"

#include <cctype>
#include <cstring>

namespace isapi_host {

namespace {

bool IsTchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsFieldValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool IEquals(const std::string& a, const char* b) {
  size_t n = strlen(b);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) b++;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
  return s.substr(b, e - b);
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9112 §3.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ], uri-host an IP-literal
// ("[" IPv6 or IPvFuture "]"), an IPv4 address or a reg-name (unreserved, pct-encoded,
// sub-delims). Anything else is a 400: a Host such as "a b" or "a/b@c" reaching HTTP_HOST would
// let a client forge links the application builds from it.
bool IsValidHost(const std::string& h) {
  size_t i = 0;
  if (!h.empty() && h[0] == '[') {
    size_t close = h.find(']');
    if (close == std::string::npos || close == 1) return false;
    for (size_t k = 1; k < close; k++) {
      unsigned char c = static_cast<unsigned char>(h[k]);
      if (!(isxdigit(c) || c == ':' || c == '.' || ((c | 0x20) == 'v'))) return false;
    }
    i = close + 1;
  } else {
    for (; i < h.size() && h[i] != ':'; i++) {
      unsigned char c = static_cast<unsigned char>(h[i]);
      if (isalnum(c) || strchr("-._~!$&'()*+,;=", c)) continue;
      if (c == '%' && i + 2 < h.size() && isxdigit(static_cast<unsigned char>(h[i + 1])) &&
          isxdigit(static_cast<unsigned char>(h[i + 2]))) {
        i += 2;
        continue;
      }
      return false;
    }
  }
  if (i == h.size()) return true;
  if (h[i] != ':') return false;
  for (size_t k = i + 1; k < h.size(); k++)
    if (h[k] < '0' || h[k] > '9') return false;
  return true;
}

// Parses the comma-separated tokens of a Connection header.
void ParseConnectionTokens(const std::string& v, bool* close, bool* keep_alive) {
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find(',', i);
    if (j == std::string::npos) j = v.size();
    std::string tok = Trim(v.substr(i, j - i));
    if (IEquals(tok, "close")) *close = true;
    if (IEquals(tok, "keep-alive")) *keep_alive = true;
    i = j + 1;
  }
}

}  // namespace

bool HttpRequestHead::FindHeader(const std::string& name, std::string* value) const {
  bool found = false;
  for (const auto& h : headers) {
    if (IEquals(h.name, name.c_str())) {
      if (found) {
        *value += ", ";
        *value += h.value;
      } else {
        *value = h.value;
      }
      found = true;
    }
  }
  return found;
}

HeadScan ScanRequestHead(const char* data, size_t len, size_t max_line, size_t max_header) {
  HeadScan r;
  // A bare LF would never form the CRLFCRLF terminator: reject it now instead of timing out.
  for (const char* p = static_cast<const char*>(memchr(data, '\n', len)); p;
       p = static_cast<const char*>(memchr(p + 1, '\n', len - static_cast<size_t>(p + 1 - data)))) {
    if (p == data || p[-1] != '\r') {
      r.kind = HeadScan::kError;
      r.status = 400;
      return r;
    }
    if (p + 2 < data + len && p[1] == '\r' && p[2] == '\n') break;  // end of head: stop checking
  }
  const char* nl = static_cast<const char*>(memchr(data, '\n', len));
  if (!nl) {
    if (len > max_line) {
      r.kind = HeadScan::kError;
      r.status = 414;
    }
    return r;
  }
  size_t line_len = static_cast<size_t>(nl - data) + 1;  // including CRLF
  if (line_len > max_line + 2) {
    r.kind = HeadScan::kError;
    r.status = 414;
    return r;
  }
  // The head ends at the first empty line. The request line's own CRLF may be the first half of
  // the terminator (no headers).
  size_t start = line_len >= 2 ? line_len - 2 : 0;
  const char* end = nullptr;
  for (size_t i = start; i + 3 < len; i++) {
    if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n') {
      end = data + i + 4;
      break;
    }
  }
  if (!end) {
    if (len - line_len > max_header) {
      r.kind = HeadScan::kError;
      r.status = 431;
    }
    return r;
  }
  size_t head_len = static_cast<size_t>(end - data);
  if (head_len - line_len > max_header + 2) {
    r.kind = HeadScan::kError;
    r.status = 431;
    return r;
  }
  r.kind = HeadScan::kComplete;
  r.head_len = head_len;
  return r;
}

bool PercentDecode(const std::string& in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int h = HexVal(in[i + 1]), l = HexVal(in[i + 2]);
      if (h < 0 || l < 0) return false;
      char d = static_cast<char>(h * 16 + l);
      if (d == 0) return false;
      out->push_back(d);
      i += 2;
    } else {
      out->push_back(c);
    }
  }
  return true;
}

bool HasDotDotSegment(const std::string& path) {
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find_first_of("/\\", i);
    if (j == std::string::npos) j = path.size();
    if (j - i == 2 && path[i] == '.' && path[i + 1] == '.') return true;
    i = j + 1;
  }
  return false;
}

int ParseRequestHead(const char* data, size_t len, HttpRequestHead* head) {
  // Every line must end with CRLF; no bare CR or LF anywhere.
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\r' && (i + 1 >= len || data[i + 1] != '\n')) return 400;
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) return 400;
  }
  const char* p = data;
  const char* end = data + len;
  const char* eol = static_cast<const char*>(memchr(p, '\r', static_cast<size_t>(end - p)));
  if (!eol) return 400;

  // ---- request line: method SP request-target SP HTTP-version
  const char* sp1 = static_cast<const char*>(memchr(p, ' ', static_cast<size_t>(eol - p)));
  if (!sp1 || sp1 == p) return 400;
  head->method.assign(p, sp1);
  for (unsigned char c : head->method)
    if (!IsTchar(c)) return 400;
  const char* t = sp1 + 1;
  const char* sp2 = static_cast<const char*>(memchr(t, ' ', static_cast<size_t>(eol - t)));
  if (!sp2 || sp2 == t) return 400;
  head->target.assign(t, sp2);
  head->version.assign(sp2 + 1, eol);
  const std::string& v = head->version;
  if (v.size() != 8 || v.compare(0, 5, "HTTP/") != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
      v[7] > '9')
    return 400;
  for (unsigned char c : head->target)
    if (c <= 0x20 || c >= 0x7f) return 400;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return 505;
  head->minor_version = v[7] - '0';

  // request-target: origin-form, absolute-form (http[s]://authority/path) or "*" for OPTIONS.
  std::string tgt = head->target;
  std::string authority;
  bool has_authority = false;
  if (tgt.find('#') != std::string::npos) return 400;
  if (tgt[0] == '/') {
    // origin-form
  } else if (tgt == "*") {
    if (head->method != "OPTIONS") return 400;
  } else {
    size_t scheme_end = tgt.find("://");
    if (scheme_end == std::string::npos) return 400;
    std::string scheme = tgt.substr(0, scheme_end);
    if (!IEquals(scheme, "http") && !IEquals(scheme, "https")) return 400;
    size_t auth_start = scheme_end + 3;
    size_t path_start = tgt.find_first_of("/?", auth_start);
    authority = tgt.substr(auth_start, path_start == std::string::npos ? std::string::npos : path_start - auth_start);
    if (authority.empty() || !IsValidHost(authority)) return 400;
    has_authority = true;
    tgt = path_start == std::string::npos ? "/" : tgt.substr(path_start);
    if (tgt[0] == '?') tgt = "/" + tgt;
  }
  size_t q = tgt.find('?');
  head->raw_path = tgt.substr(0, q);
  head->query = q == std::string::npos ? "" : tgt.substr(q + 1);
  if (head->raw_path == "*") {
    head->path = "*";
  } else if (!PercentDecode(head->raw_path, &head->path)) {
    return 400;
  }

  // ---- header fields
  p = eol + 2;
  const char* headers_begin = p;
  int host_count = 0;
  int te_count = 0;
  bool conn_close = false, conn_keep_alive = false;
  std::string expect;
  bool has_expect = false;
  while (p < end) {
    const char* le = static_cast<const char*>(memchr(p, '\r', static_cast<size_t>(end - p)));
    if (!le) return 400;
    if (le == p) {  // the blank line
      head->raw_headers.assign(headers_begin, p);
      break;
    }
    if (*p == ' ' || *p == '\t') return 400;  // obs-fold
    const char* colon = p;
    while (colon < le && IsTchar(static_cast<unsigned char>(*colon))) colon++;
    if (colon == p || colon == le || *colon != ':') return 400;  // empty name, WS before colon
    HttpHeader h;
    h.name.assign(p, colon);
    for (const char* c = colon + 1; c < le; c++)
      if (!IsFieldValueChar(static_cast<unsigned char>(*c))) return 400;
    h.value = Trim(std::string(colon + 1, le));

    if (IEquals(h.name, "host")) {
      host_count++;
      if (!IsValidHost(h.value)) return 400;
      head->host = h.value;
    } else if (IEquals(h.name, "content-length")) {
      if (h.value.empty() || h.value.size() > 18) return 400;
      uint64_t n = 0;
      for (char c : h.value) {
        if (c < '0' || c > '9') return 400;
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (head->has_content_length && n != head->content_length) return 400;
      head->has_content_length = true;
      head->content_length = n;
    } else if (IEquals(h.name, "transfer-encoding")) {
      te_count++;
      if (!IEquals(h.value, "chunked")) return 400;
      head->chunked = true;
    } else if (IEquals(h.name, "connection")) {
      ParseConnectionTokens(h.value, &conn_close, &conn_keep_alive);
    } else if (IEquals(h.name, "expect")) {
      has_expect = true;
      expect = h.value;
    }
    head->headers.push_back(std::move(h));
    p = le + 2;
  }
  if (te_count > 1) return 400;
  if (head->chunked && head->has_content_length) return 400;
  if (head->chunked && head->minor_version == 0) return 400;
  if (host_count > 1) return 400;
  if (head->minor_version == 1 && host_count == 0 && !has_authority) return 400;
  if (has_authority) {
    // RFC 9112 §3.2.2: the target's authority replaces the Host header (HTTP_HOST, HEADER_Host
    // and ALL_HTTP say the same as SERVER_NAME); ALL_RAW keeps the bytes as sent.
    head->host = authority;
    bool replaced = false;
    for (HttpHeader& hh : head->headers)
      if (IEquals(hh.name, "host")) {
        hh.value = authority;
        replaced = true;
      }
    if (!replaced) head->headers.push_back(HttpHeader{"Host", authority});
  }
  head->keep_alive = head->minor_version == 1 ? !conn_close : (conn_keep_alive && !conn_close);
  if (has_expect) {
    if (!IEquals(expect, "100-continue")) return 417;
    head->expect_continue = head->minor_version == 1;
  }
  return 0;
}

ChunkedDecoder::Result ChunkedDecoder::Feed(const char* in, size_t in_len, char* out, size_t out_cap, size_t* consumed,
                                            size_t* produced) {
  size_t i = 0, o = 0;
  while (i < in_len && state_ != kStateDone) {
    char c = in[i];
    switch (state_) {
      case kSize: {
        int h = HexVal(c);
        if (h >= 0) {
          if (++size_digits_ > 15) return kError;
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
          i++;
        } else if (size_digits_ == 0) {
          return kError;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = kExt;
          line_len_ = 0;
          i++;
        } else if (c == '\r') {
          state_ = kSizeLf;
          i++;
        } else {
          return kError;
        }
        break;
      }
      case kExt:  // chunk extensions are ignored
        if (c == '\r') {
          state_ = kSizeLf;
        } else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t') || ++line_len_ > 4096) {
          return kError;
        }
        i++;
        break;
      case kSizeLf:
        if (c != '\n') return kError;
        i++;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = kTrailer;
          trailer_line_empty_ = true;
        } else {
          state_ = kData;
        }
        break;
      case kData: {
        if (o == out_cap) goto out;
        size_t n = in_len - i;
        if (n > remaining_) n = static_cast<size_t>(remaining_);
        if (n > out_cap - o) n = out_cap - o;
        memcpy(out + o, in + i, n);
        o += n;
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = kDataCr;
        break;
      }
      case kDataCr:
        if (c != '\r') return kError;
        state_ = kDataLf;
        i++;
        break;
      case kDataLf:
        if (c != '\n') return kError;
        state_ = kSize;
        i++;
        break;
      case kTrailer:
        if (++trailer_bytes_ > max_trailer_) return kError;
        if (c == '\r') {
          state_ = kTrailerLf;
        } else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t')) {
          return kError;
        } else {
          trailer_line_empty_ = false;
        }
        i++;
        break;
      case kTrailerLf:
        if (c != '\n') return kError;
        i++;
        if (trailer_line_empty_) {
          state_ = kStateDone;
        } else {
          state_ = kTrailer;
          trailer_line_empty_ = true;
        }
        break;
      case kStateDone: break;
    }
  }
out:
  *consumed = i;
  *produced = o;
  return state_ == kStateDone ? kDone : kContinue;
}

}  // namespace isapi_host
