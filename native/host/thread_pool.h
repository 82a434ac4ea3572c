// Pools of threads. The request pool is fixed-size (the threads that call HttpExtensionProc,
// like IIS's). The I/O pool is elastic: it runs the extensions' asynchronous reads and writes,
// each of which may wait on a slow client until the I/O timeout, so it grows a thread whenever
// none is idle (up to a cap) and lets extra threads go after a while idle. A client that stops
// reading or sending then never holds a thread that other requests need.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace isapi_host {

class ThreadPool {
 public:
  // `threads` start at once; with maxThreads > threads, more start on demand (and exit idle).
  explicit ThreadPool(int threads, int maxThreads = 0);
  ~ThreadPool();  // detaches the threads: the process exits without joining them
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Post(std::function<void()> task);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Run(bool extra);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  int max_ = 0;
  int extra_ = 0;  // on-demand threads running (guarded by mu_)
  int idle_ = 0;   // threads waiting for a task (guarded by mu_)
};

}  // namespace isapi_host
