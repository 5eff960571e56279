// log.cpp - stderr logging with a process-wide level (set once from the configuration).
#include "core/log.hpp"

#include <atomic>
#include <cstdio>

namespace h20::rt {

namespace {
std::atomic<LogLevel> gLevel{LogLevel::error};
const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "error";
    case LogLevel::warning:
      return "warning";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
    default:
      return "";
  }
}
}  // namespace

void setLogLevel(LogLevel level) {
  gLevel.store(level, std::memory_order_relaxed);
}
LogLevel logLevel() {
  return gLevel.load(std::memory_order_relaxed);
}

void logMessage(LogLevel level, std::string_view message) {
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "h20 %s: %.*s\n", levelName(level), static_cast<int>(message.size()),
               message.data());
}

}  // namespace h20::rt
