// Injected time: production uses the system clock, tests a manual one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace meridian {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch (UTC).
  virtual int64_t NowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
  static Clock& Instance();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Advance(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

// RFC 3339 UTC with milliseconds, e.g. 2026-11-25T10:00:00.000Z.
std::string FormatRfc3339(int64_t unix_ms);

}  // namespace meridian
