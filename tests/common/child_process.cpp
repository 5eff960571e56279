// child_process.cpp - re-executes the test binary as a child running one scenario (see
// child_process.hpp). Uses posix_spawn (safe in a multi-threaded parent, unlike fork followed by
// arbitrary code) with stdout and stderr redirected into a pipe that the parent drains.
#include "child_process.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

extern char** environ;

namespace h20test {

namespace {

constexpr const char* kScenarioVar = "H20_TEST_CHILD_SCENARIO";
constexpr const char* kEmitPrefix = "H20CHILD ";

std::map<std::string, ChildScenarioFn>& Registry() {
  static std::map<std::string, ChildScenarioFn> registry;
  return registry;
}

std::string EnvName(const char* entry) {
  const char* eq = std::strchr(entry, '=');
  return eq ? std::string(entry, eq) : std::string(entry);
}

}  // namespace

std::string ChildResult::Value(const std::string& key) const {
  auto it = values.find(key);
  return it == values.end() ? "<missing " + key + ">" : it->second;
}

int ChildResult::IntValue(const std::string& key) const {
  auto it = values.find(key);
  if (it == values.end()) return INT_MIN;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') return INT_MIN;
  return static_cast<int>(v);
}

ChildResult RunChild(const std::string& name, const EnvChanges& env) {
  ChildResult result;

  EnvChanges changes = {{"H20_VISIBLE_DEVICES", std::nullopt},
                        {"H20_EMU_DEVICES", std::nullopt},
                        {"H20_EMU_MEMORY_BUDGET", std::nullopt}};
  for (const auto& [k, v] : env)
    changes[k] = v;
  changes[kScenarioVar] = name;

  std::vector<std::string> entries;
  for (char** e = environ; e && *e; ++e) {
    if (changes.count(EnvName(*e)) == 0) entries.emplace_back(*e);
  }
  for (const auto& [k, v] : changes) {
    if (v) entries.push_back(k + "=" + *v);
  }
  std::vector<char*> envp;
  for (auto& s : entries)
    envp.push_back(s.data());
  envp.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.output = std::string("pipe2 failed: ") + std::strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);

  std::string exe = "/proc/self/exe";
  char* argv[] = {exe.data(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    result.output = std::string("posix_spawn failed: ") + std::strerror(rc);
    return result;
  }

  char buf[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      result.output.append(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  close(fds[0]);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exitCode = 128 + WTERMSIG(status);
  }

  std::istringstream lines(result.output);
  std::string line;
  const std::string prefix = kEmitPrefix;
  while (std::getline(lines, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string kv = line.substr(prefix.size());
    const auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    result.values[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return result;
}

void Emit(const std::string& key, const std::string& value) {
  std::printf("%s%s=%s\n", kEmitPrefix, key.c_str(), value.c_str());
  std::fflush(stdout);
}

void Emit(const std::string& key, long long value) {
  Emit(key, std::to_string(value));
}

bool RegisterChildScenario(const char* name, ChildScenarioFn fn) {
  Registry()[name] = fn;
  return true;
}

int MaybeRunChildScenario() {
  const char* name = std::getenv(kScenarioVar);
  if (name == nullptr) return -1;
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    std::fprintf(stderr, "unknown child scenario '%s'\n", name);
    return 99;
  }
  return it->second();
}

}  // namespace h20test
