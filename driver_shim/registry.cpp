// registry.cpp - the driver backends by name: the one place that chooses between them.
#include "driver.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace h20::driver {

namespace {
struct Backend {
  const char* name;
  std::unique_ptr<Driver> (*create)(const DriverConfig&, Status*);
};
const Backend kBackends[] = {
    {"emu", [](const DriverConfig& c, Status* s) { return createEmulator(c.emu, s); }},
    {"daemon", [](const DriverConfig& c, Status* s) { return createDaemonClient(c.daemon, s); }},
};
}  // namespace

const std::vector<std::string>& driverNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& b : kBackends)
      n.emplace_back(b.name);
    return n;
  }();
  return names;
}

std::unique_ptr<Driver> createDriver(const DriverConfig& config, Status* status) {
  for (const auto& b : kBackends)
    if (config.backend == b.name) return b.create(config, status);
  *status = {h20ErrorInitializationError,
             fmt::format("H20_DRIVER='{}' is not a driver (one of: {})", config.backend,
                         fmt::join(driverNames(), ", "))};
  return nullptr;
}

}  // namespace h20::driver
