#include "thread_pool.h"

#include <chrono>

namespace isapi_host {

ThreadPool::ThreadPool(int threads, int maxThreads) {
  if (threads < 0) threads = 0;
  if (threads == 0 && maxThreads <= 0) threads = 1;
  max_ = maxThreads > threads ? maxThreads : threads;
  for (int i = 0; i < threads; i++) threads_.emplace_back([this] { Run(false); });
}

ThreadPool::~ThreadPool() {
  for (auto& t : threads_) t.detach();
}

void ThreadPool::Post(std::function<void()> task) {
  bool grow = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    if (idle_ < static_cast<int>(tasks_.size()) && static_cast<int>(threads_.size()) + extra_ < max_) {
      extra_++;
      grow = true;
    }
  }
  if (grow) std::thread([this] { Run(true); }).detach();
  else cv_.notify_one();
}

void ThreadPool::Run(bool extra) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    idle_++;
    bool got = true;
    if (extra) {
      got = cv_.wait_for(lock, std::chrono::seconds(30), [this] { return !tasks_.empty(); });
    } else {
      cv_.wait(lock, [this] { return !tasks_.empty(); });
    }
    idle_--;
    if (!got) {
      extra_--;
      return;  // idle long enough: an on-demand thread goes
    }
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace isapi_host
