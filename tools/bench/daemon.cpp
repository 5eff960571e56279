// daemon.cpp - the `daemon` suite: what the device daemon costs against the in-process emulator.
//
// A process has one runtime and one backend, so the suite measures in child processes of
// h20-bench itself (started with H20_BENCH_ROLE=<role>, see run_daemon_role), some with
// H20_DRIVER=emu and some with H20_DRIVER=daemon, and compares:
//  - allocation round trip: h20Malloc + h20Free of 1 MiB (in-process vs a request to h20d);
//  - launch + synchronise and enqueue: `h20-bench launch` run in a child on each backend (the
//    issue's target: daemon mode within 1.2x of in-process);
//  - IPC open + close: h20IpcOpenMemHandle + h20IpcCloseMemHandle of another process's 64 MiB
//    buffer, each pair a full import (mapped and released);
//  - event wait across processes: the time from the moment a kernel in process A finishes (it
//    stamps the clock last) to the start of a kernel in process B whose stream waited for the
//    interprocess event A recorded after it; the same within one process (two streams, an
//    ordinary event) for comparison;
//  - copy from an imported buffer: h20Memcpy device-to-host of another process's 64 MiB buffer,
//    against memcpy between host buffers of the same size.
// The daemon is the one at H20_DAEMON_SOCKET when that is set; otherwise the suite starts a
// private h20d (--h20d, else the h20d installed beside h20-bench or built in the same tree) on a
// temporary socket and stops it afterwards.
#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "bench.hpp"

extern char** environ;

namespace h20::bench {
namespace {

constexpr std::size_t kCopyBytes = std::size_t{64} << 20;
constexpr std::size_t kAllocBytes = std::size_t{1} << 20;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- the children ----------------------------------------------------------------------------

// A child of h20-bench in a role, talking over its stdin and stdout in "key=value" lines.
class Worker {
 public:
  Worker(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    std::vector<std::string> entries;
    for (char** e = environ; *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (!eq || !env.count(std::string(*e, static_cast<std::size_t>(eq - *e))))
        entries.emplace_back(*e);
    }
    for (const auto& [k, v] : env)
      entries.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& e : entries)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> a = argv;
    for (auto& s : a)
      args.push_back(s.data());
    args.push_back(nullptr);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw BenchError("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    const int rc = posix_spawn(&pid_, a[0].c_str(), &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    toChild_ = in[1];
    fromChild_ = out[0];
    if (rc != 0) throw BenchError(fmt::format("cannot start {}: {}", a[0], std::strerror(rc)));
  }
  ~Worker() {
    close(toChild_);
    close(fromChild_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void send(const std::string& line) {
    const std::string l = line + "\n";
    if (write(toChild_, l.data(), l.size()) != static_cast<ssize_t>(l.size()))
      throw BenchError("a benchmark child process stopped reading");
  }
  // The value of the child's next "key=..." line (other lines are kept for value()).
  std::string await(const std::string& key, int timeoutMs = 120000) {
    for (;;) {
      if (auto it = values_.find(key); it != values_.end()) {
        std::string v = it->second;
        values_.erase(it);
        return v;
      }
      pollfd p{fromChild_, POLLIN, 0};
      char buf[4096];
      ssize_t n = 0;
      if (poll(&p, 1, timeoutMs) <= 0 || (n = read(fromChild_, buf, sizeof buf)) <= 0)
        throw BenchError(fmt::format("a benchmark child process ended without reporting {}{}", key,
                                     error_.empty() ? "" : ": " + error_));
      partial_.append(buf, static_cast<std::size_t>(n));
      for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
        const std::string line = partial_.substr(0, nl);
        partial_.erase(0, nl + 1);
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        if (line.compare(0, eq, "error") == 0) error_ = line.substr(eq + 1);
        values_[line.substr(0, eq)] = line.substr(eq + 1);
      }
    }
  }
  double number(const std::string& key) { return std::stod(await(key)); }
  // Everything the child printed before its exit (for `h20-bench launch --json`).
  std::string drain() {
    std::string all = partial_;
    char buf[4096];
    for (ssize_t n; (n = read(fromChild_, buf, sizeof buf)) > 0;)
      all.append(buf, static_cast<std::size_t>(n));
    return all;
  }

 private:
  pid_t pid_ = -1;
  int toChild_ = -1, fromChild_ = -1;
  std::string partial_, error_;
  std::map<std::string, std::string> values_;
};

void say(const std::string& key, const std::string& value) {
  std::printf("%s=%s\n", key.c_str(), value.c_str());
  std::fflush(stdout);
}
void say(const std::string& key, double value) {
  say(key, fmt::format("{}", value));
}

std::string read_line() {
  std::string line;
  char c;
  while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n')
    line.push_back(c);
  return line;
}

std::string to_hex(const void* p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i)
    s += fmt::format("{:02x}", static_cast<const unsigned char*>(p)[i]);
  return s;
}
void from_hex(const std::string& hex, void* p, std::size_t n) {
  if (hex.size() != 2 * n) throw BenchError("malformed handle from the benchmark's parent");
  for (std::size_t i = 0; i < n; ++i)
    static_cast<unsigned char*>(p)[i] =
        static_cast<unsigned char>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
}

// Shared by the two processes of the event latency: a go flag and the time A's kernel finished.
struct SyncWords {
  std::atomic<std::int64_t> go;
  std::atomic<std::int64_t> t0;
};

struct GateArgs {
  SyncWords* sync;
  std::int64_t iteration;
};
// Spins until the go flag reaches the iteration, then stamps t0: the last thing before the event.
void gate_kernel(const h20KernelContext*, const void* args) {
  GateArgs a;
  std::memcpy(&a, args, sizeof a);
  while (a.sync->go.load(std::memory_order_acquire) < a.iteration)
    std::this_thread::yield();
  a.sync->t0.store(now_ns(), std::memory_order_release);
}
struct StampArgs {
  std::int64_t* t1;
};
void stamp_kernel(const h20KernelContext*, const void* args) {
  StampArgs a;
  std::memcpy(&a, args, sizeof a);
  *a.t1 = now_ns();
}

// Role "alloc": h20Malloc + h20Free of 1 MiB, `reps` pairs (after a warm-up).
void role_alloc(int reps) {
  std::vector<double> us;
  for (int i = -10; i < reps; ++i) {
    void* p = nullptr;
    const auto t0 = Clock::now();
    H20_BENCH_CHECK(h20Malloc(&p, kAllocBytes));
    H20_BENCH_CHECK(h20Free(p));
    if (i >= 0) us.push_back(seconds_since(t0) * 1e6);
  }
  say("alloc_us", median(us));
}

// Role "event_local": the event-wait latency between two streams of one process.
void role_event_local(int reps) {
  SyncWords* sync = nullptr;
  H20_BENCH_CHECK(h20Malloc(reinterpret_cast<void**>(&sync), sizeof(SyncWords)));
  new (sync) SyncWords{};
  h20Stream_t a = nullptr, b = nullptr;
  h20Event_t ev = nullptr;
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&a, h20StreamNonBlocking));
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&b, h20StreamNonBlocking));
  H20_BENCH_CHECK(h20EventCreateWithFlags(&ev, h20EventDisableTiming));
  std::vector<double> us;
  std::int64_t t1 = 0;
  for (std::int64_t i = 1; i <= reps + 10; ++i) {
    GateArgs g{sync, i};
    const h20Dim3 one{1, 1, 1};
    H20_BENCH_CHECK(h20LaunchKernel(gate_kernel, one, one, &g, sizeof g, 0, a));
    H20_BENCH_CHECK(h20EventRecord(ev, a));
    H20_BENCH_CHECK(h20StreamWaitEvent(b, ev, 0));
    StampArgs s{&t1};
    H20_BENCH_CHECK(h20LaunchKernel(stamp_kernel, one, one, &s, sizeof s, 0, b));
    sync->go.store(i, std::memory_order_release);
    H20_BENCH_CHECK(h20StreamSynchronize(b));
    if (i > 10) us.push_back(static_cast<double>(t1 - sync->t0.load()) / 1e3);
  }
  say("event_local_us", median(us));
}

// Role "exporter": a 64 MiB buffer, the sync words and an interprocess event for the importer;
// then "gate <i>" enqueues the gated kernel and records the event; "exit" ends.
void role_exporter() {
  void* buffer = nullptr;
  SyncWords* sync = nullptr;
  H20_BENCH_CHECK(h20Malloc(&buffer, kCopyBytes));
  H20_BENCH_CHECK(h20Memset(buffer, 0x3c, kCopyBytes));  // every page backed
  H20_BENCH_CHECK(h20Malloc(reinterpret_cast<void**>(&sync), sizeof(SyncWords)));
  new (sync) SyncWords{};
  H20_BENCH_CHECK(h20DeviceSynchronize());
  h20Event_t ev = nullptr;
  h20Stream_t s = nullptr;
  H20_BENCH_CHECK(h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming));
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&s, h20StreamNonBlocking));
  h20IpcMemHandle_t hb{}, hs{};
  h20IpcEventHandle_t he{};
  H20_BENCH_CHECK(h20IpcGetMemHandle(&hb, buffer));
  H20_BENCH_CHECK(h20IpcGetMemHandle(&hs, sync));
  H20_BENCH_CHECK(h20IpcGetEventHandle(&he, ev));
  say("buffer", to_hex(&hb, sizeof hb));
  say("sync", to_hex(&hs, sizeof hs));
  say("event", to_hex(&he, sizeof he));
  for (std::string line; (line = read_line()).rfind("gate ", 0) == 0;) {
    GateArgs g{sync, std::stoll(line.substr(5))};
    const h20Dim3 one{1, 1, 1};
    H20_BENCH_CHECK(h20LaunchKernel(gate_kernel, one, one, &g, sizeof g, 0, s));
    H20_BENCH_CHECK(h20EventRecord(ev, s));
    say("recorded", static_cast<double>(g.iteration));
  }
  H20_BENCH_CHECK(h20StreamSynchronize(s));
}

// Role "importer": opens the exporter's handles (three lines on stdin) and measures IPC open +
// close, the copy from the imported buffer, and (driven by "go <i>" lines, each after the
// exporter recorded record i) the event wait across the processes.
void role_importer(int reps) {
  h20IpcMemHandle_t hb{}, hs{};
  h20IpcEventHandle_t he{};
  from_hex(read_line(), &hb, sizeof hb);
  from_hex(read_line(), &hs, sizeof hs);
  from_hex(read_line(), &he, sizeof he);
  std::vector<double> us;
  for (int i = -5; i < reps; ++i) {
    void* p = nullptr;
    const auto t0 = Clock::now();
    H20_BENCH_CHECK(h20IpcOpenMemHandle(&p, hb, h20IpcMemLazyEnablePeerAccess));
    H20_BENCH_CHECK(h20IpcCloseMemHandle(p));
    if (i >= 0) us.push_back(seconds_since(t0) * 1e6);
  }
  say("ipc_open_close_us", median(us));

  void* buffer = nullptr;
  H20_BENCH_CHECK(h20IpcOpenMemHandle(&buffer, hb, h20IpcMemLazyEnablePeerAccess));
  std::vector<unsigned char> host(kCopyBytes, 1), other(kCopyBytes, 2);
  std::vector<double> copy, memcpyRate;
  for (int i = -1; i < std::max(3, reps / 20); ++i) {
    auto t0 = Clock::now();
    H20_BENCH_CHECK(h20Memcpy(host.data(), buffer, kCopyBytes, h20MemcpyDeviceToHost));
    const double c = kCopyBytes / seconds_since(t0) / 1e9;
    t0 = Clock::now();
    std::memcpy(other.data(), host.data(), kCopyBytes);
    const double m = kCopyBytes / seconds_since(t0) / 1e9;
    if (i >= 0) copy.push_back(c), memcpyRate.push_back(m);
  }
  if (host[kCopyBytes - 1] != 0x3c) throw BenchError("the imported buffer did not read back");
  say("copy_gbps", median(copy));
  say("memcpy_gbps", median(memcpyRate));
  H20_BENCH_CHECK(h20IpcCloseMemHandle(buffer));

  SyncWords* sync = nullptr;
  h20Event_t ev = nullptr;
  h20Stream_t s = nullptr;
  H20_BENCH_CHECK(
      h20IpcOpenMemHandle(reinterpret_cast<void**>(&sync), hs, h20IpcMemLazyEnablePeerAccess));
  H20_BENCH_CHECK(h20IpcOpenEventHandle(&ev, he));
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&s, h20StreamNonBlocking));
  say("ready", 1);
  std::vector<double> wait;
  std::int64_t t1 = 0;
  for (std::string line; (line = read_line()).rfind("go ", 0) == 0;) {
    const std::int64_t i = std::stoll(line.substr(3));
    const h20Dim3 one{1, 1, 1};
    StampArgs st{&t1};
    H20_BENCH_CHECK(h20StreamWaitEvent(s, ev, 0));  // record i is pending: its kernel is gated
    H20_BENCH_CHECK(h20LaunchKernel(stamp_kernel, one, one, &st, sizeof st, 0, s));
    sync->go.store(i, std::memory_order_release);  // releases the exporter's kernel
    H20_BENCH_CHECK(h20StreamSynchronize(s));
    if (i > 10) wait.push_back(static_cast<double>(t1 - sync->t0.load()) / 1e3);
    say("done", static_cast<double>(i));
  }
  say("event_ipc_us", median(wait));
}

// ---- the parent --------------------------------------------------------------------------------

std::string self_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw BenchError("cannot find h20-bench's own path");
  return std::string(buf, static_cast<std::size_t>(n));
}

bool executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

// An h20d of the suite's own, on a temporary socket; stopped (SIGTERM) when it goes.
class PrivateDaemon {
 public:
  explicit PrivateDaemon(const std::string& h20d) {
    char tmpl[] = "/tmp/h20-bench-XXXXXX";
    if (!mkdtemp(tmpl)) throw BenchError("cannot create a temporary folder for h20d's socket");
    dir_ = tmpl;
    socket_ = dir_ + "/h20d.sock";
    std::vector<std::string> a = {h20d, "--socket", socket_, "--log-level", "error"};
    std::vector<char*> args;
    for (auto& s : a)
      args.push_back(s.data());
    args.push_back(nullptr);
    if (const int rc = posix_spawn(&pid_, h20d.c_str(), nullptr, nullptr, args.data(), environ))
      throw BenchError(fmt::format("cannot start {}: {}", h20d, std::strerror(rc)));
    for (int i = 0; i < 2000; ++i) {
      struct stat st {};
      if (::stat(socket_.c_str(), &st) == 0) return;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    throw BenchError(fmt::format("{} did not start serving {}", h20d, socket_));
  }
  ~PrivateDaemon() {
    ::kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    ::unlink(socket_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& socket() const { return socket_; }

 private:
  pid_t pid_ = -1;
  std::string dir_, socket_;
};

struct DaemonConfig {
  std::string h20d;
};

// The summary figures of `h20-bench launch --json` run on one backend.
std::map<std::string, double> launch_figures(const Options& o,
                                             const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {self_path(), "launch", "--json"};
  if (o.quick) argv.push_back("--quick");
  if (o.repetitions > 0) argv.push_back(fmt::format("--reps={}", o.repetitions));
  Worker w(argv, env);
  const std::string out = w.drain();
  std::map<std::string, double> figures;
  const auto doc =
      nlohmann::json::parse(out.substr(std::min(out.size(), out.find('{'))), nullptr, false);
  if (doc.is_discarded() || !doc.contains("summary"))
    throw BenchError("`h20-bench launch --json` in a child process printed no report");
  for (const auto& row : doc["summary"])
    figures[row["key"].get<std::string>()] = row["value"].get<double>();
  return figures;
}

void run_daemon(const DaemonConfig& cfg, const Options& o, Report& report) {
  std::optional<PrivateDaemon> own;
  std::string socket;
  if (const char* s = std::getenv("H20_DAEMON_SOCKET"); s && *s && cfg.h20d.empty()) {
    socket = s;
  } else {
    std::string h20d = cfg.h20d;
    if (h20d.empty()) {
      const std::string dir = self_path().substr(0, self_path().rfind('/'));
      for (const std::string& c : {dir + "/h20d", dir + "/../../driver_shim/h20d"})
        if (executable(c)) h20d = c;
    }
    if (h20d.empty())
      throw BenchError(
          "no h20d found beside h20-bench: pass --h20d PATH, or start h20d and set "
          "H20_DAEMON_SOCKET");
    own.emplace(h20d);
    socket = own->socket();
  }
  const std::map<std::string, std::string> emu = {{"H20_DRIVER", "emu"}};
  const std::map<std::string, std::string> daemon = {{"H20_DRIVER", "daemon"},
                                                     {"H20_DAEMON_SOCKET", socket}};
  auto role = [&](const char* name, std::map<std::string, std::string> env) {
    env["H20_BENCH_ROLE"] = name;
    env["H20_BENCH_REPS"] = std::to_string(o.reps(200, 20));
    return std::make_unique<Worker>(std::vector<std::string>{self_path()}, env);
  };

  const double allocEmu = role("alloc", emu)->number("alloc_us");
  const double allocDaemon = role("alloc", daemon)->number("alloc_us");
  const auto launchEmu = launch_figures(o, emu);
  const auto launchDaemon = launch_figures(o, daemon);
  const double eventLocal = role("event_local", emu)->number("event_local_us");

  auto exporter = role("exporter", daemon);
  auto importer = role("importer", daemon);
  for (const char* key : {"buffer", "sync", "event"})
    importer->send(exporter->await(key));
  const double ipcOpenClose = importer->number("ipc_open_close_us");
  const double copy = importer->number("copy_gbps");
  const double memcpyRate = importer->number("memcpy_gbps");
  importer->await("ready");
  const int waits = o.reps(200, 20) + 10;
  for (int i = 1; i <= waits; ++i) {
    exporter->send(fmt::format("gate {}", i));
    exporter->await("recorded");
    importer->send(fmt::format("go {}", i));
    importer->await("done");
  }
  exporter->send("exit");
  importer->send("exit");
  const double eventIpc = importer->number("event_ipc_us");

  const double syncRatio = launchDaemon.at("launch_sync_us") / launchEmu.at("launch_sync_us");
  const double enqRatio = launchDaemon.at("enqueue_us") / launchEmu.at("enqueue_us");
  report.add_summary({"launch + synchronise, daemon / in-process", "daemon_launch_sync_ratio",
                      syncRatio, "x", 2, "<= 1.2x", syncRatio <= 1.2, "-", "-"});
  report.add_summary({"asynchronous enqueue, daemon / in-process", "daemon_enqueue_ratio", enqRatio,
                      "x", 2, "<= 1.2x", enqRatio <= 1.2, "-", "-"});
  Table& t = report.add_table("Device daemon",
                              {"measurement", "in-process", "daemon", "daemon / in-process"},
                              {false, true, true, true});
  auto row = [&](const char* what, const char* key, double local, double remote, const char* unit,
                 int decimals) {
    auto cell = [&](double v) {
      return v < 0 ? std::string("-") : fmt::format("{:.{}f} {}", v, decimals, unit);
    };
    t.rows.push_back({what, cell(local), cell(remote),
                      local > 0 && remote > 0 ? fmt::format("{:.2f}x", remote / local) : "-"});
    t.json.push_back(
        {{"measurement", key}, {"unit", unit}, {"in_process", local}, {"daemon", remote}});
  };
  row("h20Malloc + h20Free, 1 MiB", "alloc_free", allocEmu, allocDaemon, "us", 2);
  row("launch + synchronise", "launch_sync", launchEmu.at("launch_sync_us"),
      launchDaemon.at("launch_sync_us"), "us", 2);
  row("enqueue, per launch", "enqueue", launchEmu.at("enqueue_us"), launchDaemon.at("enqueue_us"),
      "us", 3);
  row("event record + query", "event_record_query", launchEmu.at("event_record_query_us"),
      launchDaemon.at("event_record_query_us"), "us", 3);
  row("h20IpcOpenMemHandle + h20IpcCloseMemHandle, 64 MiB", "ipc_open_close", -1, ipcOpenClose,
      "us", 1);
  row("event wait: kernel end -> waiting kernel start (two streams / two processes)", "event_wait",
      eventLocal, eventIpc, "us", 1);
  row("copy 64 MiB: memcpy (in-process) / h20Memcpy D2H of an imported buffer", "copy_gbps",
      memcpyRate, copy, "GB/s", 2);
  t.notes.push_back(fmt::format(
      "Each column measured in its own child process ({}; daemon at {}). Medians of {} samples "
      "(launch rows: `h20-bench launch` run on each backend). The event wait is the time from a "
      "kernel's last clock read in one process to a kernel's first one in the other, whose stream "
      "waited for the interprocess event recorded after the first (in-process: two streams and "
      "an ordinary event).",
      "H20_DRIVER=emu / H20_DRIVER=daemon", socket, o.reps(200, 20)));
}

}  // namespace

int run_daemon_role(const char* role) {
  const char* r = std::getenv("H20_BENCH_REPS");
  const int reps = r ? std::max(1, std::atoi(r)) : 100;
  try {
    const std::string name = role;
    if (name == "alloc")
      role_alloc(reps);
    else if (name == "event_local")
      role_event_local(reps);
    else if (name == "exporter")
      role_exporter();
    else if (name == "importer")
      role_importer(reps);
    else
      throw BenchError(fmt::format("unknown role '{}'", name));
    return 0;
  } catch (const std::exception& e) {
    say("error", e.what());
    return 1;
  }
}

Suite make_daemon_suite() {
  auto cfg = std::make_shared<DaemonConfig>();
  return Suite{"daemon",
               "The device daemon against the in-process emulator: allocation, launch, enqueue, "
               "IPC open/close, event wait across processes, copy from an imported buffer",
               false,
               [cfg](CLI::App& sub) {
                 sub.add_option("--h20d", cfg->h20d,
                                "h20d to start privately (default: H20_DAEMON_SOCKET's daemon "
                                "if set, else the h20d beside h20-bench)");
               },
               [cfg](const Options& o, Report& r) { run_daemon(*cfg, o, r); }};
}

}  // namespace h20::bench
