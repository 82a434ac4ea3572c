// Process-level OS services: termination signals, time conversion. system_posix.cc / system_win.cc.
#pragma once
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace isapi_host {

// Must be called before any thread starts: termination signals are then only seen by
// WaitForTerminationSignal(); SIGPIPE is ignored; stdout/stderr write "\n" as is (no CRLF
// translation on Windows), so the "listening" line is byte-identical on every platform.
void PrepareProcess();
// The command-line arguments in UTF-8. On Windows main()'s argv is in the ANSI code page, so a
// library path such as C:\inetpub\fü\_x.dll would not survive; this rereads the command line
// as UTF-16 (GetCommandLineW) and converts it. Elsewhere: argv as given.
char** Utf8Arguments(int* argc, char** argv);
// Blocks until SIGINT or SIGTERM (Ctrl+C / console close on Windows), or until standard input
// closes once StopWhenStdinCloses() was called.
void WaitForTerminationSignal();
// Makes the end of standard input a termination request (a thread reads it to its end). Under
// Wine a POSIX signal ends a Windows program without its console handler running, so `isapi
// serve --wine` stops the host by closing the host's stdin instead.
void StopWhenStdinCloses();
void UtcTime(time_t t, struct tm* out);
// fopen for a UTF-8 path. Every path in the host is UTF-8 (Utf8Arguments); on Windows a narrow
// fopen reads it in the ANSI code page, so C:\inetpub\fü\ would not open: _wfopen there.
FILE* OpenFileUtf8(const std::string& path, const char* mode);
// Monotonic milliseconds.
int64_t MonotonicMs();
// Reads up to n bytes at offset from an open file (HSE_REQ_TRANSMIT_FILE, VECTOR_SEND file
// elements). The handle is what the extension passed as a HANDLE: a file descriptor cast to a
// pointer on POSIX, a Win32 file HANDLE on Windows. Bytes read, 0 at the end, -1 on error.
int64_t FileReadAt(void* handle, void* buf, size_t n, uint64_t offset);

}  // namespace isapi_host
