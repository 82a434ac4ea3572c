#include "process.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <chrono>
#include <unistd.h>

extern char** environ;

namespace isapi::bridge {

// glibc's malloc defaults suit short programs, not a worker that streams large bodies through
// 64 KiB pieces for weeks: it keeps freed blocks in the main heap (only its top is given back)
// and gives each busy thread an arena of its own (up to 8 per core). A 50 MiB transfer left
// 16-20 MiB of free blocks resident in an Express worker, plus five thread arenas. Two arenas
// serve all threads, and free space over 4 MiB at the top of the heap is returned. Blocks of
// 1 MiB and more are mapped and unmapped; the streaming pieces (64-256 KiB) stay in the heap
// and are reused: mapping each one (a threshold of 32 KiB, issue 7) cost a page fault per
// 4 KiB of every body and held uploads to 0.4 GB/s against Node's 0.7 (issue 17); peak and
// after-transfer RSS measured the same both ways. The arena limit must be known before the
// first thread starts, so it is given as the environment, not by mallopt() in the worker.
// An environment that already tunes malloc is left alone.
static const char kMallocTunables[] =
    "GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=4194304";

static bool tunes_malloc(const std::string& kv) {
  return kv.rfind("GLIBC_TUNABLES=", 0) == 0 || kv.rfind("MALLOC_", 0) == 0;
}

bool Process::spawn(const SpawnOptions& opts, std::string& error) {
  std::vector<std::string> envStore;
  bool mallocTuned = false;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    mallocTuned |= tunes_malloc(kv);
    bool overridden = false;
    for (auto& [k, v] : opts.env) overridden |= kv.rfind(k + "=", 0) == 0;
    if (!overridden) envStore.push_back(std::move(kv));
  }
  for (auto& [k, v] : opts.env) envStore.push_back(k + "=" + v);
  if (!mallocTuned) envStore.push_back(kMallocTunables);
  std::vector<char*> envp;
  for (auto& s : envStore) envp.push_back(s.data());
  envp.push_back(nullptr);

  close_output();
  int pipeFds[2] = {-1, -1};
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    error = std::string("cannot create the worker's output pipe: ") + std::strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipeFds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipeFds[1], 2);
  // dup2 onto fd 3 clears close-on-exec for the worker's end only; every other descriptor the
  // web server holds is CLOEXEC or closed in the child.
  posix_spawn_file_actions_adddup2(&fa, opts.channelHandle, 3);
  if (opts.boardHandle >= 0) posix_spawn_file_actions_adddup2(&fa, opts.boardHandle, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // Ctrl+C in a terminal reaches the host, which stops workers itself

  char* argv[] = {const_cast<char*>(opts.executable.c_str()), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, opts.executable.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(pipeFds[1]);
  if (rc != 0) {
    ::close(pipeFds[0]);
    error = "cannot start worker " + opts.executable + ": " + std::strerror(rc);
    return false;
  }
  output_ = pipeFds[0];
  pid_ = pid;
  exited_ = false;
  return true;
}

long Process::read_output(char* buf, size_t size) {
  if (output_ < 0) return -1;
  for (;;) {
    ssize_t n = ::read(output_, buf, size);
    if (n < 0 && errno == EINTR) continue;
    return long(n);
  }
}

void Process::close_output() {
  if (output_ >= 0) ::close(output_);
  output_ = -1;
}

void Process::kill() {
  if (running()) ::kill(pid_t(pid_), SIGKILL);
}

bool Process::wait(int timeoutMs) {
  if (pid_ <= 0 || exited_) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_t(pid_), &status, WNOHANG);
    if (r == pid_t(pid_)) {
      exited_ = true;
      if (WIFEXITED(status)) exitDescription_ = "exit code " + std::to_string(WEXITSTATUS(status));
      else if (WIFSIGNALED(status)) exitDescription_ = "signal " + std::to_string(WTERMSIG(status));
      else exitDescription_ = "status " + std::to_string(status);
      return true;
    }
    if (r < 0 && errno == ECHILD) {
      exited_ = true;
      exitDescription_ = "reaped elsewhere";
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

size_t Process::private_memory() const {
  if (!running()) return 0;
  // statm: size resident shared ... in pages; shared counts the file-backed resident pages.
  std::string path = "/proc/" + std::to_string(pid_) + "/statm";
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return 0;
  unsigned long size = 0, resident = 0, shared = 0;
  int n = std::fscanf(f, "%lu %lu %lu", &size, &resident, &shared);
  std::fclose(f);
  if (n != 3 || resident < shared) return 0;
  return size_t(resident - shared) * size_t(::sysconf(_SC_PAGESIZE));
}

std::string this_module_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&this_module_path), &info) && info.dli_fname) {
    char resolved[4096];
    if (realpath(info.dli_fname, resolved)) return resolved;
    return info.dli_fname;
  }
  return {};
}

int processor_count() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

void make_directory(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') ::mkdir(dir.substr(0, i).c_str(), 0755);
  }
}

}  // namespace isapi::bridge
