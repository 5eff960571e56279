// tool_runner.hpp - runs a tool as a child process and captures what it printed.
//
// The tools tests check programs from the outside, as a user or a script sees them: exit status,
// stdout and stderr. The child gets a clean device configuration (H20_EMU_DEVICES and
// H20_VISIBLE_DEVICES removed) plus whatever `env` adds, so the outer environment cannot change
// what a test expects.
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace h20::tools_test {

struct RunResult {
  int exitCode = -1;  // the child's exit status; -1 if it did not exit normally
  std::string out;
  std::string err;
};

// Runs `program args` through the shell with `env` ("NAME=value ...") set for the child.
RunResult run_tool(const std::string& program, const std::string& args,
                   const std::string& env = "");

// A command line for a parameterised test, with the name the test is registered under: readable,
// stable across builds and unique within its suite (letters, digits and underscores only, as
// GoogleTest requires). Register with INSTANTIATE_TEST_SUITE_P(..., ValuesIn(...), argsName) and
// discover with NO_PRETTY_VALUES, so that CTest's name is GoogleTest's.
struct NamedArgs {
  const char* name;
  const char* args;
};
// What GoogleTest prints for the parameter: the command line.
inline std::ostream& operator<<(std::ostream& os, const NamedArgs& a) {
  return os << '"' << a.args << '"';
}
inline std::string argsName(const testing::TestParamInfo<NamedArgs>& info) {
  return info.param.name;
}

std::vector<std::string> lines(const std::string& text);
std::vector<std::string> split_csv(const std::string& line);

}  // namespace h20::tools_test
