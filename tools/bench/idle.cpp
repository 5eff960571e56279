// idle.cpp - the `idle` suite: CPU time an initialised but idle runtime burns.
//
// A runtime whose workers spin while waiting for work costs a core per spinning thread even when
// the application does nothing (HIP-CPU's scheduler costs a full core). This suite brings every
// visible device fully up - a stream, an event and a completed kernel on each, so worker threads
// exist - keeps them alive, sleeps, and reads the process's user + system CPU time
// (getrusage(RUSAGE_SELF), all threads) before and after. CPU seconds / wall seconds = cores.
#include <sys/resource.h>

#include <fmt/format.h>

#include <memory>
#include <thread>

#include "bench.hpp"

namespace h20::bench {
namespace {

struct IdleConfig {
  double seconds = 0;  // 0: the default (2 s, 0.3 s with --quick)
};

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

void run_idle(const IdleConfig& cfg, const Options& o, Report& report) {
  const double seconds = cfg.seconds > 0 ? cfg.seconds : (o.quick ? 0.3 : 2.0);
  int count = 0;
  H20_BENCH_CHECK(h20GetDeviceCount(&count));
  std::vector<h20Stream_t> streams(static_cast<std::size_t>(count));
  std::vector<h20Event_t> events(static_cast<std::size_t>(count));
  const h20Dim3 one{1, 1, 1};
  for (int d = 0; d < count; ++d) {
    auto i = static_cast<std::size_t>(d);
    H20_BENCH_CHECK(h20SetDevice(d));
    H20_BENCH_CHECK(h20StreamCreate(&streams[i]));
    H20_BENCH_CHECK(h20EventCreate(&events[i]));
    H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, streams[i]));
    H20_BENCH_CHECK(h20EventRecord(events[i], streams[i]));
  }
  for (int d = 0; d < count; ++d)
    H20_BENCH_CHECK(h20EventSynchronize(events[static_cast<std::size_t>(d)]));

  // Let anything that spins for a while after its last piece of work (a common latency trick)
  // settle, so the figure is the steady idle state.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto t0 = Clock::now();
  double cpu0 = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  double cpu = cpu_seconds() - cpu0;
  double wall = seconds_since(t0);
  double cores = cpu / wall;

  for (int d = 0; d < count; ++d) {
    auto i = static_cast<std::size_t>(d);
    H20_BENCH_CHECK(h20SetDevice(d));
    H20_BENCH_CHECK(h20EventDestroy(events[i]));
    H20_BENCH_CHECK(h20StreamDestroy(streams[i]));
  }

  report.add_summary({fmt::format("CPU used by an idle initialised process ({} devices)", count),
                      "idle_cores", cores, "cores", 3, "~0 cores", cores < 0.01, "0 cores",
                      "1 core"});
  Table& t = report.add_table("Idle", {"measurement", "value"}, {false, true});
  t.rows.push_back({"wall time slept (s)", fmt::format("{:.2f}", wall)});
  t.rows.push_back({"CPU time, user + system, all threads (ms)", fmt::format("{:.2f}", cpu * 1e3)});
  t.rows.push_back({"cores = CPU time / wall time", fmt::format("{:.4f}", cores)});
  t.json = {{"devices", count}, {"wall_s", wall}, {"cpu_s", cpu}, {"cores", cores}};
}

}  // namespace

Suite make_idle_suite() {
  auto cfg = std::make_shared<IdleConfig>();
  return Suite{"idle", "CPU time used by an idle process that has initialised the runtime", true,
               [cfg](CLI::App& sub) {
                 sub.add_option("--seconds", cfg->seconds,
                                "How long to stay idle (default 2, 0.3 with --quick)")
                     ->check(CLI::PositiveNumber);
               },
               [cfg](const Options& o, Report& r) { run_idle(*cfg, o, r); }};
}

}  // namespace h20::bench
