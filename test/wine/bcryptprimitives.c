// Wine 8 (Debian 12) has no bcryptprimitives.dll, which Go programs since Go 1.22 load at start
// for ProcessPrng; esbuild.exe is one, so under Wine it dies before main ("bcryptprimitives.dll
// not found"). Every Windows since 8 has it. test/wine/cli_windows.test.ts builds this stand-in
// into its private prefix's system32 (not on the PATH of what it tests), so the real esbuild.exe
// that npm installs on Windows runs under the CLI as it would there.
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
    if (!RtlGenRandom(data, n)) return FALSE;
    data += n;
    len -= n;
  }
  return TRUE;
}
