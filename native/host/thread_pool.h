// Fixed-size pool of worker threads (the threads that call HttpExtensionProc, like IIS's).
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
  explicit ThreadPool(int threads);
  ~ThreadPool();  // detaches the threads: the process exits without joining them
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Post(std::function<void()> task);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
};

}  // namespace isapi_host
