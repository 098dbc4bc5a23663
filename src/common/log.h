// Structured logs: one JSON object per line. Only operational facts are logged (route
// templates, status codes, regions, counts); personal values are wrapped in Redacted<T>
// whose every formatting prints "[redacted]", so they cannot be logged by accident.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace meridian {

template <typename T>
struct Redacted {
  T value;
};

namespace log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Call once per process: `component` is added to every line (e.g. the region name).
void Init(std::string component, Level min_level = Level::kInfo);

using Field = std::pair<std::string_view, std::string>;
void Event(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  Event(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  Event(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  Event(Level::kError, event, fields);
}

}  // namespace log
}  // namespace meridian

template <typename T>
struct fmt::formatter<meridian::Redacted<T>> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const meridian::Redacted<T>&, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("[redacted]", ctx);
  }
};
