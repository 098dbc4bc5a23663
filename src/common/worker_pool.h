// A fixed pool of worker threads with a bounded queue: the place for blocking work
// (storage, password hashing, synchronous calls to other regions), never an event loop.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace meridian {

class WorkerPool {
 public:
  // `name` names its threads (at most 15 characters).
  WorkerPool(int threads, size_t max_queued, std::string name = "worker");
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False when the queue is full (the caller answers 429) or the pool is stopping.
  [[nodiscard]] bool TryPost(std::function<void()> task);
  // Runs what is queued, then joins the threads.
  void Stop();
  size_t queued() const;

 private:
  void Loop();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t max_queued_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace meridian
