#include "working_set.h"

#include <windows.h>
#define PSAPI_VERSION 2  // K32GetProcessMemoryInfo from kernel32: no psapi.dll import
#include <psapi.h>

namespace isapi::bridge {

static size_t working_set_bytes() {
  PROCESS_MEMORY_COUNTERS pmc{};
  pmc.cb = sizeof pmc;
  return GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc) ? pmc.WorkingSetSize : 0;
}

size_t release_startup_pages() {
  const size_t before = working_set_bytes();
  const DWORD readOnly = PAGE_READONLY | PAGE_EXECUTE | PAGE_EXECUTE_READ;
  MEMORY_BASIC_INFORMATION mbi;
  for (char* p = nullptr; VirtualQuery(p, &mbi, sizeof mbi) == sizeof mbi && mbi.RegionSize;
       p = static_cast<char*>(mbi.BaseAddress) + mbi.RegionSize) {
    // Only image pages still shared with the file: written copy-on-write pages are private
    // (PAGE_READWRITE/PAGE_WRITECOPY) and are left alone.
    if (mbi.State == MEM_COMMIT && mbi.Type == MEM_IMAGE && (mbi.Protect & readOnly) && !(mbi.Protect & PAGE_GUARD)) {
      // VirtualUnlock on pages that are not locked removes them from the working set (and
      // reports ERROR_NOT_LOCKED): the documented way to trim one range rather than everything.
      VirtualUnlock(mbi.BaseAddress, mbi.RegionSize);
    }
  }
  const size_t after = working_set_bytes();
  return before > after ? before - after : 0;
}

}  // namespace isapi::bridge
