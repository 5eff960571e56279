// config.cpp - parsing of the runtime's environment variables (see config.hpp).
#include "core/config.hpp"

#include "core/error.hpp"

#include <h20_base/byte_size.hpp>

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>

namespace h20::rt {

namespace {

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b])))
    ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1])))
    --e;
  return s.substr(b, e - b);
}

std::optional<long long> parseInt(const std::string& text) {
  const std::string t = trim(text);
  long long v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

int intVariable(const EnvLookup& env, const char* name, int lo, int hi, int fallback) {
  const char* raw = env(name);
  if (!raw) return fallback;
  auto v = parseInt(raw);
  if (!v || *v < lo || *v > hi)
    fail(h20ErrorInitializationError, "{}='{}' is not an integer in [{}, {}]", name, raw, lo, hi);
  return static_cast<int>(*v);
}

}  // namespace

std::optional<std::size_t> parseByteSize(const std::string& text) {
  return base::parseByteSize(text);
}

std::vector<int> parseVisibleDevices(const std::string& spec, int chipCount) {
  std::vector<int> visible;
  std::size_t start = 0;
  while (start <= spec.size()) {
    std::size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    const std::string token = spec.substr(start, comma - start);
    auto v = parseInt(token);
    // As with CUDA_VISIBLE_DEVICES, the first invalid entry ends the list.
    if (!v || *v < 0 || *v >= chipCount ||
        std::find(visible.begin(), visible.end(), static_cast<int>(*v)) != visible.end())
      break;
    visible.push_back(static_cast<int>(*v));
    start = comma + 1;
  }
  return visible;
}

RuntimeConfig parseConfig(const EnvLookup& env) {
  RuntimeConfig c;
  if (const char* level = env("H20_LOG_LEVEL")) {
    std::string l = trim(level);
    std::transform(l.begin(), l.end(), l.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (l == "off" || l == "0" || l == "none")
      c.logLevel = LogLevel::off;
    else if (l == "error" || l == "1")
      c.logLevel = LogLevel::error;
    else if (l == "warning" || l == "warn" || l == "2")
      c.logLevel = LogLevel::warning;
    else if (l == "info" || l == "3")
      c.logLevel = LogLevel::info;
    else if (l == "debug" || l == "4")
      c.logLevel = LogLevel::debug;
    else
      fail(h20ErrorInitializationError,
           "H20_LOG_LEVEL='{}' is not one of off, error, warning, info, debug", level);
  }
  c.driver.emu.chips = intVariable(env, "H20_EMU_DEVICES", 1, 64, 8);
  c.driver.emu.workerThreads = intVariable(env, "H20_EMU_WORKERS", 1, 1024, 0);
  if (const char* budget = env("H20_EMU_MEMORY_BUDGET")) {
    auto bytes = parseByteSize(budget);
    if (!bytes || *bytes == 0)
      fail(h20ErrorInitializationError,
           "H20_EMU_MEMORY_BUDGET='{}' is not a positive size (e.g. 8GiB, 512MiB, 1048576)",
           budget);
    c.driver.emu.backingBudgetBytes = *bytes;
  }
  if (const char* visible = env("H20_VISIBLE_DEVICES")) c.visibleDevices = visible;
  if (const char* topology = env("H20_EMU_TOPOLOGY")) c.driver.emu.topology = topology;
  c.driver.daemon.workerThreads = c.driver.emu.workerThreads;
  if (const char* backend = env("H20_DRIVER")) {
    c.driver.backend = trim(backend);
    const auto& names = driver::driverNames();
    if (std::find(names.begin(), names.end(), c.driver.backend) == names.end())
      fail(h20ErrorInitializationError, "H20_DRIVER='{}' is not one of: {}", backend,
           fmt::join(names, ", "));
  }
  if (const char* socket = env("H20_DAEMON_SOCKET")) {
    if (trim(socket).empty())
      fail(h20ErrorInitializationError, "H20_DAEMON_SOCKET is set but empty");
    c.driver.daemon.socketPath = socket;
  }
  return c;
}

}  // namespace h20::rt
