// server.hpp - h20d's server: the chips' memory, sessions, IPC capabilities and the process list,
// served over a Unix socket with a Boost.Asio event loop.
//
// One thread runs the loop, so the server's state needs no locks. Each connection is a session;
// what a session allocated or imported is released when it closes (EOF, error, or a frame that
// breaks the protocol), except memory that another session still imports, which lives until the
// last importer closes it. Execution is not here: clients run their own kernels on the memory
// they map (see local_driver.hpp).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace h20::daemon {

enum class LogLevel { off, error, warning, info, debug };

struct ServerConfig {
  std::string socketPath;  // empty: defaultSocketPath()
  int chips = 8;           // 1..64
  std::string topology = "switch";
  std::size_t memoryBudget = 0;  // host memory that may back device memory; 0: half of the host's
  LogLevel logLevel = LogLevel::info;
  // Accept RAISE_FAULT requests (tests): a chip-level fault for every process on the chip.
  bool allowFaultInjection = false;
};

class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Validates the configuration, creates the socket's folder (0700), reclaims a stale socket file
  // and listens. False with *error (a message for the user) when it cannot serve.
  bool start(std::string* error);
  // Serves until SIGTERM/SIGINT or stop(); then closes every session and removes the socket.
  void run();
  // Thread-safe.
  void stop();
  const std::string& socketPath() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace h20::daemon
