#include "bridge_log.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#ifdef _WIN32
#include <windows.h>

#include "utf8_win.h"
#endif

namespace isapi::bridge {

namespace {

std::mutex g_mu;
std::string g_path;
FILE* g_file = nullptr;
uint64_t g_size = 0;
uint64_t g_cap = 10u << 20;
int g_generations = 5;

#ifdef _WIN32
using win::widen;
// Paths are UTF-8 inside the bridge; the narrow CRT functions would read them in the ANSI
// code page and fail for a folder such as C:\inetpub\fü.
FILE* open_file(const std::string& path, const wchar_t* mode) { return _wfopen(widen(path).c_str(), mode); }
bool rename_file(const std::string& from, const std::string& to) {
  return MoveFileExW(widen(from).c_str(), widen(to).c_str(), MOVEFILE_REPLACE_EXISTING) != 0;
}
void remove_file(const std::string& path) { DeleteFileW(widen(path).c_str()); }
#define MODE(m) L##m
#else
FILE* open_file(const std::string& path, const char* mode) { return std::fopen(path.c_str(), mode); }
bool rename_file(const std::string& from, const std::string& to) { return std::rename(from.c_str(), to.c_str()) == 0; }
void remove_file(const std::string& path) { std::remove(path.c_str()); }
#define MODE(m) m
#endif

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int n = v && *v ? std::atoi(v) : 0;
  return n > 0 ? n : fallback;
}

// <dir>/<name>.log → <dir>/<name>.<n>.log
std::string generation(int n) {
  if (n == 0) return g_path;
  size_t dot = g_path.rfind('.');
  size_t sep = g_path.find_last_of("/\\");
  if (dot == std::string::npos || (sep != std::string::npos && dot < sep)) return g_path + "." + std::to_string(n);
  return g_path.substr(0, dot) + "." + std::to_string(n) + g_path.substr(dot);
}

void open_locked() {
  g_file = open_file(g_path, MODE("ab"));
  g_size = 0;
  if (g_file && std::fseek(g_file, 0, SEEK_END) == 0) {
    long pos = std::ftell(g_file);
    g_size = pos > 0 ? uint64_t(pos) : 0;
  }
}

void rotate_locked() {
  std::fclose(g_file);
  g_file = nullptr;
  remove_file(generation(g_generations - 1));
  for (int i = g_generations - 2; i >= 0; --i) rename_file(generation(i), generation(i + 1));
  open_locked();
}

std::string stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
#ifdef _WIN32
  gmtime_s(&tm, &t);
#else
  gmtime_r(&t, &tm);
#endif
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void write_locked(const std::string& text) {
  if (!g_file) return;
  std::fwrite(text.data(), 1, text.size(), g_file);
  std::fflush(g_file);  // a crash of the web server must not lose the lines that explain it
  g_size += text.size();
  if (g_size >= g_cap && g_generations > 1) rotate_locked();
}

}  // namespace

void log_open(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_file) std::fclose(g_file);
  g_path = path;
  g_cap = uint64_t(env_int("ISAPI_LOG_MAX_MB", 10)) << 20;
  if (const char* kb = std::getenv("ISAPI_LOG_MAX_KB"); kb && std::atoi(kb) > 0) g_cap = uint64_t(std::atoi(kb)) << 10;
  g_generations = env_int("ISAPI_LOG_FILES", 5);
  open_locked();
}

const std::string& log_path() { return g_path; }

void log_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mu);
  write_locked(stamp() + " [bridge] " + line + "\n");
}

void log_worker_output(int slot, std::string_view lines) {
  std::string prefix = stamp() + " [worker " + std::to_string(slot) + "] ";
  std::string text;
  size_t start = 0;
  while (start < lines.size()) {
    size_t nl = lines.find('\n', start);
    size_t end = nl == std::string_view::npos ? lines.size() : nl;
    std::string_view line = lines.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    text += prefix;
    text += line;
    text += '\n';
    start = end + 1;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  write_locked(text);
}

std::string log_tail(size_t maxBytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  FILE* f = open_file(g_path, MODE("rb"));
  if (!f) return {};
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  long start = size > long(maxBytes) ? size - long(maxBytes) : 0;
  std::fseek(f, start, SEEK_SET);
  std::string out(size_t(size - start), '\0');
  size_t n = std::fread(out.data(), 1, out.size(), f);
  out.resize(n);
  std::fclose(f);
  return out;
}

}  // namespace isapi::bridge
