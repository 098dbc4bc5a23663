#include "common/clock.h"

#include <algorithm>
#include <chrono>

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
  // Fixed-width digits written in place: fmt's padded fields cost several times as much, and
  // this runs three times per purchase.
  std::string out = "0000-00-00T00:00:00.000Z";
  auto put = [&out](size_t pos, size_t width, int64_t v) {
    for (size_t i = width; i-- > 0; v /= 10) out[pos + i] = static_cast<char>('0' + v % 10);
  };
  put(0, 4, static_cast<int>(ymd.year()));
  put(5, 2, static_cast<unsigned>(ymd.month()));
  put(8, 2, static_cast<unsigned>(ymd.day()));
  put(11, 2, hms.hours().count());
  put(14, 2, hms.minutes().count());
  put(17, 2, hms.seconds().count());
  put(20, 3, hms.subseconds().count());
  return out;
}

}  // namespace meridian
