// main.cpp - h20-bench: the runtime's performance figures, measured through the public C API.
//
// Owns the command line (one subcommand per suite, plus `all`, the default, and `ccl`, which hands
// its arguments to the collectives benchmark) and the report's header describing the machine,
// since figures without the machine they came from mean little. The suites themselves live in one
// file each; see bench.hpp for how to add one. `all` runs the single-device suites; the multi-chip
// ones (p2p, ccl) run when named. Results go to stdout as markdown tables (or JSON with --json);
// progress to stderr.
//
// Exit status: 0 when every suite ran (whatever the figures), 1 when the runtime failed, 2 for bad
// arguments. Timings never decide the exit status: they depend on the machine.
#include <h20/h20_runtime.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "bench.hpp"

namespace h20::bench {
namespace {

// An argument that is well-formed but wrong for this machine (exit 2, like a parse error).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string version_string(int v) {
  return fmt::format("{}.{}.{}", v / 1000, (v % 1000) / 10, v % 10);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown CPU";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  if (!(in >> a >> b >> c)) return "unknown";
  return fmt::format("{:.2f} {:.2f} {:.2f}", a, b, c);
}

// Share of the host's CPU time that was idle over `window`, from /proc/stat; -1 if unreadable.
// The load average lags by a minute; this says whether the machine is quiet right now.
double idle_percent(std::chrono::milliseconds window) {
  auto sample = [](double& idle, double& total) {
    std::ifstream in("/proc/stat");
    std::string cpu;
    double v[8] = {};
    if (!(in >> cpu) || cpu != "cpu") return false;
    for (double& x : v)
      if (!(in >> x)) return false;
    idle = v[3] + v[4];  // idle + iowait
    total = 0;
    for (double x : v)
      total += x;
    return true;
  };
  double i0 = 0, t0 = 0, i1 = 0, t1 = 0;
  if (!sample(i0, t0)) return -1;
  std::this_thread::sleep_for(window);
  if (!sample(i1, t1) || t1 <= t0) return -1;
  return 100.0 * (i1 - i0) / (t1 - t0);
}

// --load N: N child processes that spin on the CPU while the suites run, so that the figures of
// a loaded host can be measured on purpose rather than by accident. The children inherit the
// process's CPU affinity and are left to the scheduler; they die with h20-bench (SIGKILL on the
// parent's exit, PR_SET_PDEATHSIG should it be killed itself).
class BackgroundLoad {
 public:
  explicit BackgroundLoad(int processes) {
    const pid_t parent = getpid();
    for (int i = 0; i < processes; ++i) {
      const pid_t pid = fork();
      if (pid < 0) {
        stop();
        throw BenchError(
            fmt::format("--load {}: fork failed: {}", processes, std::strerror(errno)));
      }
      if (pid == 0) {
        // The child only spins: nothing here may take a lock the parent's threads held at fork.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        for (;;)
          asm volatile("" ::: "memory");
      }
      children_.push_back(pid);
    }
  }
  ~BackgroundLoad() { stop(); }
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

 private:
  void stop() {
    for (pid_t pid : children_)
      kill(pid, SIGKILL);
    for (pid_t pid : children_)
      waitpid(pid, nullptr, 0);
    children_.clear();
  }
  std::vector<pid_t> children_;
};

// `multiDevice`: the suites to run measure every device (p2p, ccl), not --device.
void describe_machine(const Options& o, bool multiDevice, Report& report) {
  int rt = 0, drv = 0, count = 0;
  H20_BENCH_CHECK(h20RuntimeGetVersion(&rt));
  H20_BENCH_CHECK(h20DriverGetVersion(&drv));
  H20_BENCH_CHECK(h20GetDeviceCount(&count));
  if (o.device < 0 || o.device >= count)
    throw UsageError(
        fmt::format("--device {}: {} device(s) visible (0..{})", o.device, count, count - 1));
  h20DeviceProp p{};
  H20_BENCH_CHECK(h20GetDeviceProperties(&p, o.device));
  unsigned cpus = std::thread::hardware_concurrency();
  std::string load = load_average();
  double idle = idle_percent(std::chrono::milliseconds(o.quick ? 100 : 500));
  std::string model = cpu_model();
  const char* topology = std::getenv("H20_EMU_TOPOLOGY");
  report.set_header(fmt::format(
      "# h20-bench {}.{}.{}\n\nruntime {}, driver {}; {} x {} ({} host worker threads each), "
      "H20_EMU_TOPOLOGY={}, measuring {}; host: {}, {} CPUs, {:.0f}% idle just before the run "
      "(load average {}); {}{} run",
      H20_VERSION_MAJOR, H20_VERSION_MINOR, H20_VERSION_PATCH, version_string(rt),
      version_string(drv), count, p.name, p.hostWorkerThreads,
      topology && *topology ? topology : "(unset: switch)",
      multiDevice ? fmt::format("all {} devices", count) : fmt::format("device {}", o.device),
      model, cpus, idle, load,
      o.load > 0 ? fmt::format("{} busy-looping process{} alongside (--load); ", o.load,
                               o.load == 1 ? "" : "es")
                 : std::string(),
      o.quick ? "quick (smoke test, not a measurement)" : "full"));
  report.set_machine({{"runtime_version", version_string(rt)},
                      {"driver_version", version_string(drv)},
                      {"devices", count},
                      {"device", o.device},
                      {"topology", topology && *topology ? topology : ""},
                      {"device_name", p.name},
                      {"host_worker_threads", p.hostWorkerThreads},
                      {"cpu_model", model},
                      {"cpus", cpus},
                      {"load_average", load},
                      {"idle_percent_before", idle},
                      {"background_load", o.load},
                      {"quick", o.quick}});
}

// Runs `body`; a UsageError is a bad argument (exit status 2), any other failure exit status 1,
// each reported on stderr. 0 when body returns.
template <class Body>
int exit_status(Body body) {
  try {
    body();
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "h20-bench: %s\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h20-bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace
}  // namespace h20::bench

int main(int argc, char** argv) {
  using namespace h20::bench;
  Options o;
  if (const char* role = std::getenv("H20_BENCH_ROLE")) return run_daemon_role(role);
  std::vector<Suite> suites = {make_launch_suite(), make_copy_suite(), make_overlap_suite(),
                               make_idle_suite(),   make_p2p_suite(),  make_daemon_suite()};

  CLI::App app{
      "h20-bench: measure the H20 runtime's launch, copy, overlap and idle costs, peer-to-peer "
      "copies and collectives.",
      "h20-bench"};
  app.footer(
      "Without a subcommand the single-device suites run (same as `all`); p2p and ccl run when "
      "named. Figures are medians over repetitions after a warm-up.\nExamples:\n"
      "  h20-bench            # full run, markdown tables\n"
      "  h20-bench --quick    # smoke test: every path, a few seconds\n"
      "  h20-bench copy --sizes 64M,1G --json\n"
      "  h20-bench launch --load 1   # with one core kept busy by another process\n"
      "  h20-bench p2p --size 16M\n"
      "  h20-bench daemon     # the device daemon against the in-process emulator\n"
      "  h20-bench ccl -b 8 -e 64M -f 2   # options after ccl: see h20-bench ccl --help");
  app.fallthrough();  // global options are accepted after the subcommand too
  app.require_subcommand(0, 1);
  app.add_flag("--quick", o.quick,
               "Short run proving every path works (CI); figures not meaningful");
  app.add_flag("--json", o.json, "Print the results as JSON instead of markdown");
  app.add_option("-d,--device", o.device,
                 "Device to measure by the single-device suites (default 0)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--reps", o.repetitions, "Repetitions per measurement (default: per suite)")
      ->check(CLI::PositiveNumber);
  app.add_option("--load", o.load,
                 "Keep N busy-looping processes running alongside the suites (a loaded host on "
                 "purpose; default 0)")
      ->check(CLI::Range(0, 256));

  std::vector<std::pair<CLI::App*, const Suite*>> subs;
  for (const Suite& s : suites) {
    CLI::App* sub = app.add_subcommand(s.name, s.help);
    if (s.addOptions) s.addOptions(*sub);
    subs.emplace_back(sub, &s);
  }
  app.add_subcommand("all",
                     "Run the single-device suites: launch, copy, overlap, idle (the default)");
  // Everything after `ccl` belongs to the collectives benchmark, whose options (-d datatype, -n
  // iterations, ...) differ from h20-bench's: stop parsing there and hand the rest over verbatim,
  // --help included.
  CLI::App* ccl = app.add_subcommand(
      "ccl",
      "Collectives across all devices (libh20ccl), nccl-tests tables; the arguments after `ccl` "
      "go to the collectives benchmark: see `h20-bench ccl --help`");
  ccl->prefix_command();
  ccl->fallthrough(false);
  ccl->set_help_flag();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "h20-bench: %s\nRun with --help for more information.\n", e.what());
    return 2;
  }

  if (ccl->parsed()) {
    std::vector<std::string> args = ccl->remaining();
    auto has = [&args](std::string_view x, std::string_view y = {}) {
      return std::find_if(args.begin(), args.end(),
                          [&](const std::string& a) { return a == x || a == y; }) != args.end();
    };
    const bool help = has("-h", "--help");
    if (o.json || has("--json")) {
      std::fprintf(stderr,
                   "h20-bench: ccl prints nccl-tests tables; --json is not supported for it\n"
                   "Run with --help for more information.\n");
      return 2;
    }
    o.quick = o.quick || has("--quick");  // given after `ccl`: the header should say so too
    Report report;
    std::optional<BackgroundLoad> load;
    // The benchmark's own help needs no device (and no second of idle measurement).
    if (const int rc = exit_status([&] {
          if (help) return;
          describe_machine(o, true, report);
          load.emplace(o.load);
        }))
      return rc;
    return run_ccl(o, report.header(), std::move(args));
  }

  std::vector<const Suite*> chosen;
  for (auto& [sub, suite] : subs)
    if (sub->parsed()) chosen.push_back(suite);
  if (chosen.empty())
    for (const Suite& s : suites)
      if (s.inAll) chosen.push_back(&s);
  const bool multiDevice =
      std::all_of(chosen.begin(), chosen.end(), [](const Suite* s) { return s->name == "p2p"; });

  Report report;
  if (const int rc = exit_status([&] {
        describe_machine(o, multiDevice, report);  // before the load: the host as it was
        BackgroundLoad load(o.load);
        for (const Suite* s : chosen) {
          std::fprintf(stderr, "h20-bench: running %s...\n", s->name.c_str());
          s->run(o, report);
        }
      }))
    return rc;
  if (o.json)
    report.print_json();
  else
    report.print_markdown();
  return 0;
}
