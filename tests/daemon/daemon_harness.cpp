// daemon_harness.cpp - h20d and scenario children as real processes (see daemon_harness.hpp).
#include "daemon_harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace h20test {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args)
    v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

std::vector<std::string> Environment(const EnvChanges& changes) {
  std::vector<std::string> entries;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    const std::string name =
        eq ? std::string(*e, static_cast<std::size_t>(eq - *e)) : std::string(*e);
    if (changes.count(name) == 0) entries.emplace_back(*e);
  }
  for (const auto& [k, v] : changes)
    if (v) entries.push_back(k + "=" + *v);
  return entries;
}

// Waits for `pid` up to `bound`; the exit code (128 + signal), or -1 if still running.
int Reap(pid_t pid, std::chrono::milliseconds bound) {
  const auto end = Clock::now() + bound;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0 && errno != EINTR) return -2;
    if (Clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

Daemon::Daemon(std::vector<std::string> args, std::string socket,
               std::vector<std::string> launcher) {
  char tmpl[] = "/tmp/h20d-test-XXXXXX";
  if (!mkdtemp(tmpl)) return;
  dir_ = tmpl;
  socket_ = socket.empty() ? dir_ + "/h20d.sock" : socket;
  logPath_ = dir_ + "/h20d.log";
  std::vector<std::string> argv = launcher;
  for (const char* a : {H20D_PATH, "--socket", socket_.c_str(), "--log-level", "debug"})
    argv.emplace_back(a);
  argv.insert(argv.end(), args.begin(), args.end());
  auto av = Argv(argv);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  const int rc = posix_spawnp(&pid_, argv[0].c_str(), &actions, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return;
  }
  // Serving once the log says so (a stale socket file may be there before).
  const auto end = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < end) {
    if (log().find(" on " + socket_) != std::string::npos) {
      ok_ = true;
      return;
    }
    if (!running()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Daemon::~Daemon() {
  if (running()) stop(SIGTERM);
  std::remove(logPath_.c_str());
  if (socket_.compare(0, dir_.size() + 1, dir_ + "/") == 0) std::remove(socket_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

bool Daemon::running() const {
  if (pid_ <= 0 || exit_ != -1) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    const_cast<Daemon*>(this)->exit_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int Daemon::stop(int sig) {
  if (!running()) return exit_;
  ::kill(pid_, sig);
  int code = Reap(pid_, std::chrono::seconds(20));
  if (code == -1) {
    ::kill(pid_, SIGKILL);
    code = Reap(pid_, std::chrono::seconds(20));
  }
  exit_ = code;
  return code;
}

std::string Daemon::log() const {
  std::ifstream f(logPath_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

EnvChanges Daemon::clientEnv() const {
  return {{"H20_DRIVER", "daemon"}, {"H20_DAEMON_SOCKET", socket_}, {"H20_LOG_LEVEL", "off"}};
}

ChildResult RunDaemonCommand(const std::vector<std::string>& args,
                             std::chrono::milliseconds bound) {
  std::vector<std::string> argv = {H20D_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, bound);
}

ChildResult RunCommand(const std::vector<std::string>& command, std::chrono::milliseconds bound) {
  ChildResult result;
  std::vector<std::string> argv = command;
  auto av = Argv(argv);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return result;
  }
  const auto end = Clock::now() + bound;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    pollfd p{fds[0], POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  result.exitCode = Reap(pid, std::chrono::milliseconds(100));
  if (result.exitCode == -1) {
    ::kill(pid, SIGKILL);
    Reap(pid, std::chrono::seconds(5));
  }
  return result;
}

Child::Child(const std::string& scenario, const EnvChanges& env) {
  EnvChanges changes = {{"H20_VISIBLE_DEVICES", std::nullopt},
                        {"H20_EMU_DEVICES", std::nullopt},
                        {"H20_EMU_MEMORY_BUDGET", std::nullopt},
                        {"H20_TEST_CHILD_SCENARIO", scenario}};
  for (const auto& [k, v] : env)
    changes[k] = v;
  auto entries = Environment(changes);
  std::vector<char*> envp;
  for (auto& e : entries)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  int toChild[2], fromChild[2];
  if (pipe2(toChild, O_CLOEXEC) != 0) return;
  if (pipe2(fromChild, O_CLOEXEC) != 0) {
    close(toChild[0]);
    close(toChild[1]);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, toChild[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDERR_FILENO);
  std::vector<std::string> argv = {"/proc/self/exe"};
  auto av = Argv(argv);
  const int rc = posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, av.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(toChild[0]);
  close(fromChild[1]);
  in_ = toChild[1];
  out_ = fromChild[0];
  if (rc != 0) pid_ = -1;
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    Reap(pid_, std::chrono::seconds(10));
  }
  if (in_ >= 0) close(in_);
  if (out_ >= 0) close(out_);
}

bool Child::Pump(std::chrono::milliseconds bound) {
  if (out_ < 0) return false;
  pollfd p{out_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(bound.count())) <= 0) return true;
  char buf[4096];
  const ssize_t n = read(out_, buf, sizeof buf);
  if (n <= 0) {
    close(out_);
    out_ = -1;
    return false;
  }
  output_.append(buf, static_cast<std::size_t>(n));
  partial_.append(buf, static_cast<std::size_t>(n));
  for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
    const std::string line = partial_.substr(0, nl);
    partial_.erase(0, nl + 1);
    static const std::string prefix = "H20CHILD ";
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    const auto eq = line.find('=', prefix.size());
    if (eq != std::string::npos)
      values_[line.substr(prefix.size(), eq - prefix.size())] = line.substr(eq + 1);
  }
  return true;
}

std::optional<std::string> Child::Await(const std::string& key, std::chrono::milliseconds bound) {
  const auto end = Clock::now() + bound;
  for (;;) {
    if (auto it = values_.find(key); it != values_.end()) return it->second;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (!Pump(std::min(left, std::chrono::milliseconds(100)))) {
      if (auto it = values_.find(key); it != values_.end()) return it->second;
      return std::nullopt;
    }
  }
}

void Child::Send(const std::string& line) {
  const std::string l = line + "\n";
  if (in_ >= 0 && write(in_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) {
    close(in_);
    in_ = -1;
  }
}

int Child::Wait(std::chrono::milliseconds bound) {
  if (reaped_) return exit_;
  if (pid_ <= 0) return -1;
  const auto end = Clock::now() + bound;
  while (Pump(std::chrono::milliseconds(10)) && Clock::now() < end) {
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
  exit_ = Reap(pid_, std::max(left, std::chrono::milliseconds(1)));
  reaped_ = exit_ != -1;
  return exit_;
}

void Child::Kill(int sig) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

std::string ReadLine() {
  std::string line;
  char c;
  while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n')
    line.push_back(c);
  return line;
}

std::string ToHex(const void* bytes, std::size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  const auto* b = static_cast<const unsigned char*>(bytes);
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(digits[b[i] >> 4]);
    s.push_back(digits[b[i] & 15]);
  }
  return s;
}

bool FromHex(const std::string& hex, void* bytes, std::size_t n) {
  if (hex.size() != 2 * n) return false;
  auto* b = static_cast<unsigned char*>(bytes);
  for (std::size_t i = 0; i < n; ++i) {
    unsigned v = 0;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return false;
    b[i] = static_cast<unsigned char>(v);
  }
  return true;
}

}  // namespace h20test
