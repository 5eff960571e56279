// daemon_harness.hpp - real processes for the device daemon's tests: an h20d of the test's own
// (fresh socket, its own memory accounting) and children of the test binary that run scenarios
// against it, talking to the test over pipes.
//
// A child is this binary re-executed with H20_TEST_CHILD_SCENARIO (see child_process.hpp), with
// H20_DRIVER=daemon and the daemon's socket in its environment. It reports with Emit() lines on
// stdout ("H20CHILD key=value"), and reads requests from the test as lines on stdin.
#pragma once

#include "child_process.hpp"

#include <h20/h20_runtime.h>

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace h20test {

class Daemon {
 public:
  // Starts h20d (H20D_PATH) with `args` on `socket` (default: a socket in a new 0700 temporary
  // folder, removed afterwards) and waits until it serves. ok() is false (with the log in log())
  // when it did not start.
  // launcher: a command h20d runs under (e.g. {"prlimit", "--nofile=40:40"}).
  explicit Daemon(std::vector<std::string> args = {}, std::string socket = "",
                  std::vector<std::string> launcher = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  bool ok() const { return ok_; }
  const std::string& socket() const { return socket_; }
  const std::string& folder() const { return dir_; }
  pid_t pid() const { return pid_; }
  // Sends `sig` and waits for the daemon to exit; returns its exit code (128 + signal if killed).
  int stop(int sig);
  bool running() const;
  // What h20d printed so far.
  std::string log() const;
  // The environment a client of this daemon runs with.
  EnvChanges clientEnv() const;

 private:
  std::string dir_, socket_, logPath_;
  pid_t pid_ = -1;
  bool ok_ = false;
  int exit_ = -1;
};

// Runs argv[0] with `argv` to completion: exit code and output (stdout and stderr).
ChildResult RunCommand(const std::vector<std::string>& argv,
                       std::chrono::milliseconds bound = std::chrono::seconds(20));
// Runs h20d with `args` to completion (for option and startup tests).
ChildResult RunDaemonCommand(const std::vector<std::string>& args,
                             std::chrono::milliseconds bound = std::chrono::seconds(20));

class Child {
 public:
  Child(const std::string& scenario, const EnvChanges& env);
  ~Child();  // kills the child if it is still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Waits (bounded) for the child's Emit of `key` and returns its value; nullopt on timeout or
  // exit. Values emitted earlier are kept, so keys may be awaited in any order.
  std::optional<std::string> Await(const std::string& key,
                                   std::chrono::milliseconds bound = std::chrono::seconds(20));
  // Sends one line to the child's stdin.
  void Send(const std::string& line);
  // Waits (bounded) for the child to exit; its exit code (128 + signal when killed), -1 on
  // timeout.
  int Wait(std::chrono::milliseconds bound = std::chrono::seconds(30));
  void Kill(int sig);
  // Everything the child printed so far.
  const std::string& Output() const { return output_; }

 private:
  bool Pump(std::chrono::milliseconds bound);
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string output_, partial_;
  std::map<std::string, std::string> values_;
  int exit_ = -1;
  bool reaped_ = false;
};

// In a child: reads one line from stdin (without the newline); "" at EOF.
std::string ReadLine();

// Hex text of a handle's bytes, and back.
std::string ToHex(const void* bytes, std::size_t n);
bool FromHex(const std::string& hex, void* bytes, std::size_t n);

}  // namespace h20test
