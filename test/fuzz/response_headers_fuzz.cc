// libFuzzer target: how the host reads an extension's response header text (by length, NULs
// included) and decides the framing. Whatever passes the check must compose into a head with
// exactly one line per header: no CR or LF from a name or a value reaches the wire.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "http_util.h"

using namespace isapi_host;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  std::vector<HttpHeader> hv;
  bool ended = false;
  std::string bad;
  size_t off = ParseResponseHeaderLines(p, size, &hv, &ended, &bad);
  if (off > size) abort();
  ResponseFraming f = FramingOf(hv);
  if (f.content_length < -1) abort();
  if (!bad.empty() || !CheckResponseHeaderList(hv).empty()) return 0;
  std::string head = ComposeResponseHead("200 OK", hv, true, false);
  size_t lines = 0;
  for (size_t i = 0; i + 1 < head.size(); i++) {
    if (head[i] == '\r' && head[i + 1] != '\n') abort();  // a bare CR
    if (head[i + 1] == '\n' && head[i] != '\r') abort();  // a bare LF
    if (head[i] == '\r') lines++;
  }
  if (head.find('\0') != std::string::npos) abort();
  // Status line, Server, Date, the headers (Connection ones dropped) and the blank line.
  size_t expected = 4;
  for (const HttpHeader& h : hv)
    if (!IEquals(h.name, "Connection")) expected++;
  if (lines != expected) abort();
  return 0;
}
