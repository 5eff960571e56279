// h20d.cpp - the H20 device daemon: serves the emulated chips to every process of its user.
//
//   h20d [--socket PATH] [--devices N] [--topology NAME|FILE] [--memory-budget SIZE]
//        [--log-level off|error|warning|info|debug]
//
// Runs in the foreground, logs to stderr, stops cleanly on SIGTERM or SIGINT (removing its
// socket). Clients select it with H20_DRIVER=daemon (and H20_DAEMON_SOCKET when the socket is not
// the default one). Exit status: 0 after a clean stop, 1 when it cannot serve, 2 for bad options.
#include "daemon/protocol.hpp"
#include "daemon/server.hpp"
#include "emu/topology.hpp"

#include <h20/h20_runtime.h>

#include <h20_base/byte_size.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <map>

int main(int argc, char** argv) {
  using h20::daemon::LogLevel;
  CLI::App app{
      "h20d: the H20 device daemon. Serves the emulated chips to every process of this "
      "user (clients set H20_DRIVER=daemon)."};
  app.set_version_flag(
      "--version", fmt::format("h20d {}.{}.{} (protocol {})", H20_VERSION_MAJOR, H20_VERSION_MINOR,
                               H20_VERSION_PATCH, h20::daemon::kProtocolVersion));
  h20::daemon::ServerConfig config;
  std::string budget;
  std::string level = "info";
  app.add_option(
      "--socket", config.socketPath,
      fmt::format("Unix socket to serve on (default {})", h20::daemon::defaultSocketPath()));
  app.add_option("--devices", config.chips, "Number of emulated chips")
      ->check(CLI::Range(1, 64))
      ->default_val(8);
  app.add_option("--topology", config.topology,
                 "Chip topology: switch, mesh, ring, pairs or a JSON topology file")
      ->default_val("switch");
  app.add_option("--memory-budget", budget,
                 "Host memory that may back device memory, for all clients together (e.g. 8GiB; "
                 "default: half of the host's memory)");
  app.add_flag("--allow-fault-injection", config.allowFaultInjection,
               "Let clients raise chip-level faults (for tests of fault handling)");
  app.add_option("--log-level", level, "off, error, warning, info or debug")
      ->check(CLI::IsMember({"off", "error", "warning", "info", "debug"}))
      ->default_val("info");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here with status 0; every bad option with 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (!budget.empty()) {
    const auto bytes = h20::base::parseByteSize(budget);
    if (bytes && *bytes > 0) config.memoryBudget = *bytes;
  }
  if (!budget.empty() && config.memoryBudget == 0) {
    std::fprintf(stderr, "h20d: --memory-budget '%s' is not a positive size (e.g. 8GiB, 512MiB)\n",
                 budget.c_str());
    return 2;
  }
  static const std::map<std::string, LogLevel> levels = {{"off", LogLevel::off},
                                                         {"error", LogLevel::error},
                                                         {"warning", LogLevel::warning},
                                                         {"info", LogLevel::info},
                                                         {"debug", LogLevel::debug}};
  config.logLevel = levels.at(level);
  std::signal(SIGPIPE, SIG_IGN);
  // Every allocation and event holds a descriptor in the daemon: use all the descriptors the
  // system allows this process, not the usual soft limit of 1024.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  h20::daemon::Server server(config);
  std::string error;
  if (!server.start(&error)) {
    std::fprintf(stderr, "h20d: %s\n", error.c_str());
    return 1;
  }
  server.run();
  return 0;
}
