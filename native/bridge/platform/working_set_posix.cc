#include "working_set.h"

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#endif

namespace isapi::bridge {

#ifdef __linux__
namespace {
struct Mapping {
  unsigned long start = 0, end = 0;
  bool candidate = false;  // file-backed and not writable
  size_t rss = 0;          // KiB resident
  size_t anonymous = 0;    // KiB copied-on-write: private data, must never be dropped
};
}  // namespace

size_t release_startup_pages() {
  FILE* f = std::fopen("/proc/self/smaps", "re");
  if (!f) return 0;
  std::vector<Mapping> maps;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long start, end, offset, inode;
    char perms[8], dev[16];
    if (std::sscanf(line, "%lx-%lx %7s %lx %15s %lu", &start, &end, perms, &offset, dev, &inode) == 6) {
      Mapping m;
      m.start = start;
      m.end = end;
      m.candidate = inode != 0 && perms[1] != 'w';
      maps.push_back(m);
    } else if (!maps.empty() && std::strncmp(line, "Rss:", 4) == 0) {
      maps.back().rss = std::strtoul(line + 4, nullptr, 10);
    } else if (!maps.empty() && std::strncmp(line, "Anonymous:", 10) == 0) {
      maps.back().anonymous = std::strtoul(line + 10, nullptr, 10);
    }
  }
  std::fclose(f);
  size_t released = 0;
  for (const Mapping& m : maps) {
    // A read-only mapping can still hold private copies (relocated data made read-only after
    // the dynamic linker wrote it): MADV_DONTNEED would revert those to the file's bytes.
    if (!m.candidate || m.anonymous != 0 || m.rss == 0) continue;
    if (::madvise(reinterpret_cast<void*>(m.start), m.end - m.start, MADV_DONTNEED) == 0) released += m.rss * 1024;
  }
  return released;
}
#else
size_t release_startup_pages() { return 0; }
#endif

}  // namespace isapi::bridge
