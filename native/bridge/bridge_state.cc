#include "bridge_state.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "bridge_log.h"
#include "platform/process.h"

namespace isapi::bridge {

namespace {

std::mutex g_mu;
std::unique_ptr<WorkerPool> g_pool;
std::atomic<WorkerPool*> g_current{nullptr};
int g_roles = 0;
ManifestSettings g_settings;
bool g_settingsRead = false;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  int n = std::atoi(v);
  return n > 0 ? n : fallback;
}

#ifdef _WIN32
constexpr char kSep = '\\';
const char* const kExeSuffix = ".exe";
#else
constexpr char kSep = '/';
const char* const kExeSuffix = "";
#endif

std::string dirname_of(const std::string& p) {
  size_t i = p.find_last_of("/\\");
  return i == std::string::npos ? "." : p.substr(0, i);
}

// `_hello.so` → `hello`: the pywin32 convention (the loader strips the leading underscore).
std::string script_name_for(const std::string& bridgePath) {
  std::string base = bridgePath.substr(bridgePath.find_last_of("/\\") + 1);
  size_t dot = base.find_last_of('.');
  if (dot != std::string::npos) base = base.substr(0, dot);
  if (!base.empty() && base[0] == '_') base = base.substr(1);
  return base;
}

// A 32-bit IIS application pool loads a 32-bit bridge, but the workers are always x64 Node (a
// 32-bit Node would need node-win-x86 and give up the address space). A process cannot load a
// DLL of the other bitness, so the worker cannot load this bridge as its addon: `isapi pack
// --target win-ia32` puts the x64 build of the same code beside it, under this name (mirrored
// by packer/pack.ts: nativeFilesFor). The channel between them is bitness-neutral (fixed-width
// little-endian frames over a named pipe opened by name), and the Ready message's protocol
// version catches an addon from another release.
#if defined(_WIN32) && !defined(_WIN64)
constexpr bool kWorkerLoadsOtherBuild = true;
#else
constexpr bool kWorkerLoadsOtherBuild = false;
#endif

std::string worker_addon_for(const std::string& bridgePath, const std::string& dir, const std::string& name) {
  return kWorkerLoadsOtherBuild ? dir + kSep + "_" + name + ".x64.node" : bridgePath;
}

PoolConfig make_config() {
  PoolConfig cfg;
  cfg.bridgePath = this_module_path();
  std::string dir = dirname_of(cfg.bridgePath);
  std::string name = script_name_for(cfg.bridgePath);
  cfg.workerAddon = worker_addon_for(cfg.bridgePath, dir, name);
  cfg.workerExe = dir + kSep + name + kExeSuffix;
  cfg.appOfflinePath = dir + kSep + "app_offline.htm";
  std::string logDir = dir + kSep + "logs";
  cfg.logPath = logDir + kSep + name + ".log";
  make_directory(logDir);
  cfg.workers = env_int("ISAPI_WORKERS", processor_count());
  cfg.startupTimeoutMs = env_int("ISAPI_STARTUP_TIMEOUT_MS", 30000);
  cfg.requestTimeoutMs = env_int("ISAPI_REQUEST_TIMEOUT_MS", 120000);
  cfg.memoryLimitBytes = size_t(std::max(0, env_int("ISAPI_WORKER_MEMORY_LIMIT_MB", 0))) << 20;
  cfg.appName = name;
  cfg.pingTimeoutMs = env_int("ISAPI_PING_TIMEOUT_MS", 10000);
  cfg.shutdownTimeoutMs = env_int("ISAPI_SHUTDOWN_TIMEOUT_MS", 10000);
  cfg.pingIntervalMs = std::max(50, std::min(1000, cfg.pingTimeoutMs / 4));
  cfg.rapidFailsPerMinute = env_int("ISAPI_RAPID_FAILS_PER_MINUTE", 10);
  cfg.rapidFailCooldownMs = env_int("ISAPI_RAPID_FAIL_COOLDOWN_MS", 60000);
  const char* detailed = std::getenv("ISAPI_DETAILED_ERRORS");
  cfg.detailedErrors = detailed && std::string(detailed) == "1";
  return cfg;
}

void read_settings_locked() {
  if (g_settingsRead) return;
  g_settingsRead = true;
  std::string bridge = this_module_path();
  g_settings = read_manifest_settings(dirname_of(bridge) + kSep + script_name_for(bridge) + ".manifest.json");
}

}  // namespace

const ManifestSettings& manifest_settings() {
  std::lock_guard<std::mutex> lock(g_mu);
  read_settings_locked();
  return g_settings;
}

WorkerPool* current_pool() { return g_current.load(); }

WorkerPool* acquire_pool(Role role, bool waitForReady, std::string& error) {
  std::lock_guard<std::mutex> lock(g_mu);
  read_settings_locked();
  if (!g_pool) {
    PoolConfig cfg = make_config();
    log_open(cfg.logPath);
    log_line("loading " + cfg.bridgePath + ": " + std::to_string(cfg.workers) + " worker(s) of " + cfg.workerExe +
             (cfg.workerAddon != cfg.bridgePath ? " with the addon " + cfg.workerAddon : std::string()));
    auto pool = std::make_unique<WorkerPool>(cfg);
    if (!pool->start(waitForReady, error)) {
      // Kept loaded: the pool answers 503 at once and keeps retrying with backoff.
      std::string tail = log_tail(2000);
      std::fprintf(
          stderr,
          "node-isapi: %s could not start its worker %s: %s\n"
          "  requests get 503 until a worker starts; the bridge retries on its own and picks up a redeployed script.\n"
          "  what to do: read the worker's output below (full log: %s)\n%s\n",
          cfg.bridgePath.c_str(), cfg.workerExe.c_str(), error.c_str(), cfg.logPath.c_str(), tail.c_str());
      log_line("no worker is ready yet: " + error + "; answering 503 and retrying");
    }
    g_pool = std::move(pool);
    g_current = g_pool.get();
  }
  g_roles |= int(role);
  return g_pool.get();
}

void release_pool(Role role, int drainMs) {
  std::unique_ptr<WorkerPool> pool;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_roles &= ~int(role);
    if (g_roles != 0) return;
    g_current = nullptr;
    pool = std::move(g_pool);
  }
  if (pool) pool->stop(drainMs);
}

}  // namespace isapi::bridge
