#include "common/log.h"

#include <mutex>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/json.h"

namespace meridian::log {
namespace {
std::mutex g_mu;
std::string g_component = "meridian";
Level g_min = Level::kInfo;
std::shared_ptr<spdlog::logger> g_logger;

std::shared_ptr<spdlog::logger> Logger() {
  std::lock_guard lock(g_mu);
  if (!g_logger) {
    g_logger = spdlog::stderr_logger_mt("meridian");
    g_logger->set_pattern("%v");
    g_logger->flush_on(spdlog::level::warn);
  }
  return g_logger;
}

std::string_view LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

spdlog::level::level_enum SpdLevel(Level l) {
  switch (l) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}
}  // namespace

void Init(std::string component, Level min_level) {
  auto logger = Logger();
  std::lock_guard lock(g_mu);
  g_component = std::move(component);
  g_min = min_level;
  logger->set_level(SpdLevel(min_level));
}

void Event(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (level < g_min) return;
  Json line = {{"ts", FormatRfc3339(SystemClock::Instance().NowMs())},
               {"level", LevelName(level)},
               {"event", event}};
  {
    std::lock_guard lock(g_mu);
    line["component"] = g_component;
  }
  for (const auto& [k, v] : fields) line[std::string(k)] = v;
  Logger()->log(SpdLevel(level), DumpJson(line));
}

}  // namespace meridian::log
