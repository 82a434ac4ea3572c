#include "bridge_log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace isapi::bridge {

namespace {
std::mutex g_mu;
std::string g_path;
}

void log_open(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_path = path;
}

const std::string& log_path() { return g_path; }

void log_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_path.empty()) return;
  // Opened per line in append mode: workers append to the same file through their own handles.
  FILE* f = std::fopen(g_path.c_str(), "ab");
  if (!f) return;
  std::time_t t = std::time(nullptr);
  std::tm tm{};
#ifdef _WIN32
  gmtime_s(&tm, &t);
#else
  gmtime_r(&t, &tm);
#endif
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(f, "%s [bridge] %s\n", stamp, line.c_str());
  std::fclose(f);
}

std::string log_tail(size_t maxBytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  FILE* f = std::fopen(g_path.c_str(), "rb");
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
