// POSIX implementation of platform/system.h.
#include <errno.h>
#include <signal.h>

#include <thread>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "system.h"

namespace isapi_host {

namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

char** Utf8Arguments(int*, char** argv) { return argv; }

FILE* OpenFileUtf8(const std::string& path, const char* mode) { return fopen(path.c_str(), mode); }

void PrepareProcess() {
  signal(SIGPIPE, SIG_IGN);
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited by every thread created afterwards
}

void WaitForTerminationSignal() {
  sigset_t set = TerminationSet();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
}

void StopWhenStdinCloses() {
  std::thread([] {
    char buf[256];
    for (;;) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    kill(getpid(), SIGTERM);  // blocked in every thread: WaitForTerminationSignal takes it
  }).detach();
}

void UtcTime(time_t t, struct tm* out) { gmtime_r(&t, out); }

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t FileReadAt(void* handle, void* buf, size_t n, uint64_t offset) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(handle));
  ssize_t r = pread(fd, buf, n, static_cast<off_t>(offset));
  return r < 0 ? -1 : static_cast<int64_t>(r);
}

}  // namespace isapi_host
