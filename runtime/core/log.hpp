// log.hpp - the runtime's log: one line per message on stderr, filtered by H20_LOG_LEVEL.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace h20::rt {

enum class LogLevel { off = 0, error = 1, warning = 2, info = 3, debug = 4 };

void setLogLevel(LogLevel level);
LogLevel logLevel();
void logMessage(LogLevel level, std::string_view message);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (level <= logLevel()) logMessage(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace h20::rt
