#include "common/clock.h"

#include <algorithm>
#include <chrono>

#include <fmt/compile.h>
#include <fmt/format.h>

namespace meridian {

int64_t SystemClock::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Clock& SystemClock::Instance() {
  static SystemClock clock;
  return clock;
}

std::string FormatRfc3339(int64_t unix_ms) {
  // Calendar arithmetic, not gmtime_r: glibc's takes a process-wide lock, and orders and log
  // entries format several times per purchase.
  using namespace std::chrono;
  // RFC 3339 has four-digit years: 0001-01-01 to 9999-12-31 (also keeps the arithmetic in range).
  unix_ms = std::clamp<int64_t>(unix_ms, -62'135'596'800'000, 253'402'300'799'999);
  const sys_time<milliseconds> t{milliseconds(unix_ms)};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{floor<milliseconds>(t - day)};
  return fmt::format(FMT_COMPILE("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z"),
                     static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()), hms.hours().count(), hms.minutes().count(),
                     hms.seconds().count(), hms.subseconds().count());
}

}  // namespace meridian
