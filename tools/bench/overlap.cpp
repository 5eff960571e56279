// overlap.cpp - the `overlap` suite: do independent streams really run concurrently?
//
// Two one-block, compute-bound kernels (a dependent floating-point chain that no compiler can
// shorten) are issued on one stream - they must run one after the other - and then one on each of
// two non-blocking streams, where an engine that runs streams concurrently finishes both in the
// time of one. The ratio serial / two-stream time is the overlap: 2.0 is perfect, 1.0 none. The
// kernel length is calibrated at start so that one kernel takes about --kernel-ms milliseconds.
// Needs two free host cores to reach 2.0; on a loaded machine expect less.
#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "bench.hpp"

namespace h20::bench {
namespace {

struct OverlapConfig {
  double kernelMs = 0;  // 0: the default (40 ms, 5 ms with --quick)
};

struct SpinArgs {
  std::uint64_t iterations;
  double* out;
};

void spin_kernel(const h20KernelContext*, const void* argp) {
  const auto* a = static_cast<const SpinArgs*>(argp);
  double x = 1.0, y = 0.5;
  for (std::uint64_t i = 0; i < a->iterations; ++i) {
    x = x * 0.9999999 + y;
    y = y * 0.9999999 + 1e-7;
  }
  *a->out = x + y;  // device memory is written, so the loop is not dead code
}

double time_kernels(h20Stream_t first, h20Stream_t second, std::uint64_t iterations, double* out) {
  const h20Dim3 one{1, 1, 1};
  SpinArgs a{iterations, out};
  SpinArgs b{iterations, out + 1};
  auto t0 = Clock::now();
  H20_BENCH_CHECK(h20LaunchKernel(spin_kernel, one, one, &a, sizeof a, 0, first));
  if (second) H20_BENCH_CHECK(h20LaunchKernel(spin_kernel, one, one, &b, sizeof b, 0, second));
  H20_BENCH_CHECK(h20StreamSynchronize(first));
  if (second) H20_BENCH_CHECK(h20StreamSynchronize(second));
  return seconds_since(t0);
}

void run_overlap(const OverlapConfig& cfg, const Options& o, Report& report) {
  const double targetMs = cfg.kernelMs > 0 ? cfg.kernelMs : (o.quick ? 5.0 : 40.0);
  const int reps = o.reps(7, 3);

  H20_BENCH_CHECK(h20SetDevice(o.device));
  h20Stream_t a = nullptr, b = nullptr;
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&a, h20StreamNonBlocking));
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&b, h20StreamNonBlocking));
  double* out = nullptr;
  H20_BENCH_CHECK(h20Malloc(reinterpret_cast<void**>(&out), 2 * sizeof(double)));

  // Calibrate: scale a probe run to the wanted kernel length (two rounds, the first one warms up).
  std::uint64_t iterations = 1 << 18;
  for (int round = 0; round < 2; ++round) {
    std::vector<double> probe;
    for (int i = 0; i < 3; ++i)
      probe.push_back(time_kernels(a, nullptr, iterations, out));
    double ms = std::max(median(probe) * 1e3, 1e-3);
    iterations = std::max<std::uint64_t>(
        1000, static_cast<std::uint64_t>(static_cast<double>(iterations) * targetMs / ms));
  }

  std::vector<double> single, serial, parallel, ratios;
  for (int r = 0; r < reps; ++r) {
    double one = time_kernels(a, nullptr, iterations, out);
    // Alternate the order so that a drift in machine load does not favour either form.
    double ser, par;
    if (r % 2 == 0) {
      ser = time_kernels(a, a, iterations, out);
      par = time_kernels(a, b, iterations, out);
    } else {
      par = time_kernels(a, b, iterations, out);
      ser = time_kernels(a, a, iterations, out);
    }
    single.push_back(one * 1e3);
    serial.push_back(ser * 1e3);
    parallel.push_back(par * 1e3);
    ratios.push_back(ser / par);
  }
  H20_BENCH_CHECK(h20Free(out));
  H20_BENCH_CHECK(h20StreamDestroy(a));
  H20_BENCH_CHECK(h20StreamDestroy(b));

  double ratio = median(serial) / median(parallel);
  report.add_summary({"two streams vs one stream, two one-block compute kernels", "overlap_ratio",
                      ratio, "x", 2, ">= 1.9x", ratio >= 1.9, "1.95x", "1.0x"});
  Table& t = report.add_table("Stream overlap",
                              {"measurement", "median (ms)", "best rep (ms)", "worst rep (ms)"},
                              {false, true, true, true});
  auto add = [&](const char* what, const std::vector<double>& v) {
    t.rows.push_back({what, fmt::format("{:.2f}", median(v)), fmt::format("{:.2f}", min_of(v)),
                      fmt::format("{:.2f}", max_of(v))});
  };
  add("one kernel", single);
  add("two kernels, one stream", serial);
  add("two kernels, two streams", parallel);
  t.rows.push_back({"overlap = one stream / two streams", fmt::format("{:.2f}x", ratio),
                    fmt::format("{:.2f}x", max_of(ratios)),
                    fmt::format("{:.2f}x", min_of(ratios))});
  t.json = {{"iterations", iterations},
            {"single_ms", single},
            {"serial_ms", serial},
            {"parallel_ms", parallel},
            {"ratio", ratio}};
  t.notes.push_back(
      fmt::format("{} repetitions; kernel calibrated to about {:.0f} ms ({} "
                  "iterations of a dependent FP chain).",
                  reps, targetMs, iterations));
}

}  // namespace

Suite make_overlap_suite() {
  auto cfg = std::make_shared<OverlapConfig>();
  return Suite{"overlap",
               "Two streams each running a one-block compute-bound kernel vs both on one stream",
               true,
               [cfg](CLI::App& sub) {
                 sub.add_option("--kernel-ms", cfg->kernelMs,
                                "Length of one kernel in milliseconds (default 40, 5 with --quick)")
                     ->check(CLI::PositiveNumber);
               },
               [cfg](const Options& o, Report& r) { run_overlap(*cfg, o, r); }};
}

}  // namespace h20::bench
