// Blocking on an operation that answers through a callback: for callers that may wait (tests,
// workers with nothing else to do), so each asynchronous operation has one implementation.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

namespace meridian {

// Calls `start(done)` and returns the value passed to `done`, from whichever thread calls it.
template <typename T, typename Start>
T Await(Start&& start) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<T> result;
  std::forward<Start>(start)([&](T value) {
    std::lock_guard lock(mu);
    result.emplace(std::move(value));
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return result.has_value(); });
  return std::move(*result);
}

}  // namespace meridian
