// Starting and supervising a worker process. Portable interface; process_posix.cc and
// process_win.cc (CreateProcess + kill-on-close job object) implement it.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "transport.h"

namespace isapi::bridge {

struct SpawnOptions {
  std::string executable;
  std::vector<std::pair<std::string, std::string>> env;  // added to the bridge's environment
  channel::NativeHandle channelHandle;                   // inherited by the worker, and only it
  // The taken board's handle (channel/taken_board.h), inherited too; invalid when there is none.
  channel::NativeHandle boardHandle = channel::Endpoint::invalid();
};

class Process {
 public:
  bool spawn(const SpawnOptions& opts, std::string& error);
  // Hard stop (SIGKILL / TerminateProcess).
  void kill();
  // Waits up to timeoutMs for exit; true when it has exited. Reaps it.
  bool wait(int timeoutMs);
  // A human-readable exit description once wait() returned true ("exit code 1", "signal 9").
  std::string exit_description() const { return exitDescription_; }
  long pid() const { return pid_; }
  // The process's own memory in bytes, as a memory limit should count it: Linux, its resident
  // anonymous pages (not the executable's shared file pages); Windows, its private bytes (what
  // IIS's "Private Memory Limit" counts for w3wp). 0 when unknown.
  size_t private_memory() const;
  bool running() const { return pid_ > 0 && !exited_; }
  // The worker's stdout and stderr, merged, through a pipe only the bridge reads (so output
  // is always drained, and the log can be rotated: no other process holds it open).
  // Blocks; <= 0 once every writer has gone (the worker and anything it started exited).
  long read_output(char* buf, size_t size);
  void close_output();

 private:
  long pid_ = -1;
  bool exited_ = false;
  std::string exitDescription_;
#ifdef _WIN32
  void* process_ = nullptr;
  void* output_ = nullptr;
#else
  int output_ = -1;
#endif
};

// The directory and file name of the module (DLL/.so) that contains this code.
std::string this_module_path();
// Number of logical processors.
int processor_count();
// Makes sure dir exists (parents too).
void make_directory(const std::string& dir);
}  // namespace isapi::bridge
