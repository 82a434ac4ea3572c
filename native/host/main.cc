// isapi-host: a local ISAPI web server. Loads ISAPI extension libraries the way IIS does and
// serves HTTP/1.1. See --help.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "platform/system.h"
#include "server.h"

using isapi_host::Server;
using isapi_host::ServerConfig;

namespace {

const char kUsage[] =
    "usage: isapi-host [options]\n"
    "\n"
    "Serves HTTP/1.1 and runs ISAPI extensions (.so on Linux, .dll on Windows) like IIS.\n"
    "\n"
    "  --port N              port to listen on (default 8080; 0 = any free port)\n"
    "  --bind ADDR           address to listen on (default 127.0.0.1)\n"
    "  --vdir /path=LIB      map the URL prefix /path (and everything under it) to the ISAPI\n"
    "                        extension library LIB; repeatable; '/' maps every URL\n"
    "  --filter LIB          load the ISAPI filter library LIB for every request (global);\n"
    "                        repeatable: dispatch order is the filters' priority (HIGH, MEDIUM,\n"
    "                        LOW), ties in --filter order. A library given to both --filter and\n"
    "                        --vdir is loaded once and serves as both\n"
    "  --root DIR            serve static files from DIR for URLs no --vdir maps\n"
    "                        (default: those URLs get 404)\n"
    "  --access-log FILE     append a W3C extended log (IIS fields) to FILE\n"
    "  --threads N           threads calling HttpExtensionProc (default 2 x cores, at least 8)\n"
    "  --read-ahead BYTES    request body bytes pre-read into the ECB (default 49152)\n"
    "  --max-header-bytes N  largest request header section (default 16384; larger: 431)\n"
    "  --header-timeout-ms N time allowed to send a request head (default 30000; then 408)\n"
    "  --idle-timeout-ms N   keep-alive idle timeout (default 120000)\n"
    "  --stop-on-stdin-close stop gracefully when standard input reaches its end (the parent\n"
    "                        closed it, or died): for supervisors that cannot signal, e.g. Wine\n"
    "  --help                show this help\n"
    "\n"
    "GET /__isapi-host/health answers 200 \"healthy\", or 503 with every HSE_REQ_REPORT_UNHEALTHY\n"
    "report. Prints 'isapi-host listening on http://ADDR:PORT/' once ready. SIGINT/SIGTERM: stop\n"
    "accepting, wait up to 10 s for requests in flight, then TerminateExtension, TerminateFilter\n"
    "and exit.\n";

[[noreturn]] void Fail(const std::string& msg) {
  fprintf(stderr, "isapi-host: %s\n", msg.c_str());
  exit(1);
}

long long ParseNumber(const std::string& opt, const char* value, long long min, long long max) {
  char* end = nullptr;
  errno = 0;
  long long v = strtoll(value, &end, 10);
  if (!*value || *end || errno || v < min || v > max)
    Fail(opt + " expects a number from " + std::to_string(min) + " to " + std::to_string(max) + ", got '" + value +
         "' (see --help)");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  argv = isapi_host::Utf8Arguments(&argc, argv);
  ServerConfig cfg;
  bool stopOnStdinClose = false;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    size_t eq = arg.find('=');
    if (arg.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= argc) Fail(arg + " needs a value (see --help)");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--port") {
      cfg.port = static_cast<int>(ParseNumber(arg, next().c_str(), 0, 65535));
    } else if (arg == "--bind") {
      cfg.bind_addr = next();
    } else if (arg == "--vdir") {
      std::string spec = next();
      size_t e = spec.find('=');
      if (e == std::string::npos || e == 0 || e + 1 == spec.size())
        Fail("--vdir expects /url-prefix=library-path, got '" + spec + "'");
      cfg.vdirs.emplace_back(spec.substr(0, e), spec.substr(e + 1));
    } else if (arg == "--filter") {
      cfg.filters.push_back(next());
    } else if (arg == "--root") {
      cfg.root = next();
    } else if (arg == "--access-log") {
      cfg.access_log = next();
    } else if (arg == "--threads") {
      cfg.threads = static_cast<int>(ParseNumber(arg, next().c_str(), 1, 4096));
    } else if (arg == "--read-ahead") {
      cfg.read_ahead = static_cast<size_t>(ParseNumber(arg, next().c_str(), 0, 1 << 30));
    } else if (arg == "--max-header-bytes") {
      cfg.max_header_bytes = static_cast<size_t>(ParseNumber(arg, next().c_str(), 64, 1 << 24));
    } else if (arg == "--header-timeout-ms") {
      cfg.header_timeout_ms = static_cast<int>(ParseNumber(arg, next().c_str(), 100, 3600000));
    } else if (arg == "--stop-on-stdin-close") {
      stopOnStdinClose = true;
    } else if (arg == "--idle-timeout-ms") {
      cfg.keepalive_timeout_ms = static_cast<int>(ParseNumber(arg, next().c_str(), 100, 3600000));
    } else {
      Fail("unknown option '" + std::string(argv[i]) + "' (see --help)");
    }
  }

  // Before any thread exists (the pool, the loop, threads an extension starts): termination
  // signals are then delivered only to WaitForTerminationSignal.
  isapi_host::PrepareProcess();

  Server server(cfg);
  std::string err;
  if (!server.Start(&err)) Fail(err);
  printf("isapi-host listening on %s\n", server.ListenUrl().c_str());
  fflush(stdout);

  if (stopOnStdinClose) isapi_host::StopWhenStdinCloses();
  isapi_host::WaitForTerminationSignal();
  server.Shutdown();
  fflush(stdout);
  fflush(stderr);
  // Pool threads may still be parked (or blocked in an extension that ignored the grace period):
  // leave without running static destructors under them.
  std::_Exit(0);
}
