// child_process.hpp - run part of a test in a fresh child process with its own environment.
//
// The runtime reads its configuration (H20_VISIBLE_DEVICES, H20_EMU_DEVICES,
// H20_EMU_MEMORY_BUDGET, ...) once, at initialisation, so tests of that configuration must run in
// a new process. The mechanism: a test binary registers child scenarios with H20_CHILD_SCENARIO
// and is linked with h20_test_main (test_main.cpp). RunChild re-executes the binary
// (/proc/self/exe) with H20_TEST_CHILD_SCENARIO=<name> and the requested environment; the child's
// main then runs only that scenario (no GoogleTest) and exits with its return value. A scenario
// reports what it observed with Emit(key, value) lines on stdout, and the parent test asserts on
// them, so the expectations stay in the parent test where they are readable.
//
// Child processes start without H20_VISIBLE_DEVICES, H20_EMU_DEVICES and H20_EMU_MEMORY_BUDGET
// unless the call sets them, so the CI environment cannot change what a child sees.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace h20test {

// Environment changes for a child: a value sets the variable (possibly to ""), nullopt unsets it.
using EnvChanges = std::map<std::string, std::optional<std::string>>;

struct ChildResult {
  int exitCode = -1;   // exit status, or 128 + signal number when killed by a signal
  std::string output;  // stdout and stderr, interleaved
  std::map<std::string, std::string> values;  // the child's Emit lines

  // The emitted value of `key`, or "<missing KEY>".
  std::string Value(const std::string& key) const;
  // The emitted value of `key` as an int, or INT_MIN when absent or not a number.
  int IntValue(const std::string& key) const;
};

// Runs scenario `name` in a child process with `env` applied on top of this process's
// environment. Never throws; a failure to start is reported as exitCode -1 with a message.
ChildResult RunChild(const std::string& name, const EnvChanges& env = {});

// In a child scenario: prints "H20CHILD key=value" on stdout (flushed at once).
void Emit(const std::string& key, const std::string& value);
void Emit(const std::string& key, long long value);

using ChildScenarioFn = int (*)();
// Registers a scenario; used by H20_CHILD_SCENARIO at static-initialisation time.
bool RegisterChildScenario(const char* name, ChildScenarioFn fn);
// Runs the scenario named by H20_TEST_CHILD_SCENARIO if set: returns its exit code; returns -1
// when this process is not a child.
int MaybeRunChildScenario();

}  // namespace h20test

// Defines a child scenario: `int body()` whose return value is the child's exit code.
#define H20_CHILD_SCENARIO(name)                                         \
  static int h20ChildScenario_##name();                                  \
  [[maybe_unused]] static const bool h20ChildScenarioRegistered_##name = \
      ::h20test::RegisterChildScenario(#name, &h20ChildScenario_##name); \
  static int h20ChildScenario_##name()
