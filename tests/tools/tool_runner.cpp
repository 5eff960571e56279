// tool_runner.cpp - child-process runner for the tools tests (popen for stdout, a temporary file
// for stderr, so the two streams stay apart).
#include "tool_runner.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace h20::tools_test {

RunResult run_tool(const std::string& program, const std::string& args, const std::string& env) {
  char errPath[] = "/tmp/h20_tools_test_XXXXXX";
  int fd = mkstemp(errPath);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  close(fd);

  std::string cmd = "env -u H20_EMU_DEVICES -u H20_VISIBLE_DEVICES " + env + " '" + program + "' " +
                    args + " 2>'" + errPath + "'";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0)
    r.out.append(buf.data(), n);
  int status = pclose(p);
  r.exitCode = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;

  std::ifstream errFile(errPath);
  std::stringstream ss;
  ss << errFile.rdbuf();
  r.err = ss.str();
  std::remove(errPath);
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = line.find(", ", start);
    out.push_back(
        line.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 2;
  }
  return out;
}

}  // namespace h20::tools_test
