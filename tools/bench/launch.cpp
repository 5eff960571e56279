// launch.cpp - the `launch` suite: what one kernel launch costs the host.
//
// Two figures, both with an empty one-block kernel on a non-blocking stream of one device:
//  - round trip: h20LaunchKernel followed by h20StreamSynchronize, each pair timed on its own;
//    the latency a program pays when it waits for every launch.
//  - enqueue: a batch of launches issued back to back, the batch's time divided by its length,
//    without waiting in between; the cost of keeping the device fed. The stream's worker runs
//    the kernels meanwhile, so on a small host this includes the competition for cores.
// Each repetition yields a median (round trip) or a mean per launch (enqueue); the report gives
// the median over repetitions, after a warm-up that is not counted.
#include <fmt/format.h>

#include "bench.hpp"

namespace h20::bench {
namespace {

struct LaunchResult {
  std::vector<double> perRep;  // microseconds
  int samplesPerRep = 0;
  std::vector<double> all;  // every sample of every repetition (round trip only)
};

// The p-th percentile (0..100) of v, nearest rank.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

LaunchResult measure_round_trip(h20Stream_t s, int reps, int samples, int warmup) {
  const h20Dim3 one{1, 1, 1};
  for (int i = 0; i < warmup; ++i) {
    H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
    H20_BENCH_CHECK(h20StreamSynchronize(s));
  }
  LaunchResult r;
  r.samplesPerRep = samples;
  std::vector<double> times(static_cast<std::size_t>(samples));
  for (int rep = 0; rep < reps; ++rep) {
    for (int i = 0; i < samples; ++i) {
      auto t0 = Clock::now();
      H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
      H20_BENCH_CHECK(h20StreamSynchronize(s));
      times[static_cast<std::size_t>(i)] = seconds_since(t0) * 1e6;
    }
    r.perRep.push_back(median(times));
    r.all.insert(r.all.end(), times.begin(), times.end());
  }
  return r;
}

LaunchResult measure_enqueue(h20Stream_t s, int reps, int batch) {
  const h20Dim3 one{1, 1, 1};
  LaunchResult r;
  r.samplesPerRep = batch;
  for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
    auto t0 = Clock::now();
    for (int i = 0; i < batch; ++i)
      H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
    double us = seconds_since(t0) * 1e6 / batch;
    H20_BENCH_CHECK(h20StreamSynchronize(s));
    if (rep >= 0) r.perRep.push_back(us);
  }
  return r;
}

void run_launch(const Options& o, Report& report) {
  H20_BENCH_CHECK(h20SetDevice(o.device));
  h20Stream_t s = nullptr;
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&s, h20StreamNonBlocking));

  const int reps = o.reps(7, 3);
  LaunchResult rt = measure_round_trip(s, reps, o.quick ? 200 : 5000, o.quick ? 50 : 1000);
  LaunchResult enq = measure_enqueue(s, reps, o.quick ? 1000 : 20000);
  H20_BENCH_CHECK(h20StreamDestroy(s));

  double rtMedian = median(rt.perRep);
  double enqMedian = median(enq.perRep);
  report.add_summary({"empty-kernel launch + synchronise round trip", "launch_sync_us", rtMedian,
                      "us", 2, "<= 10 us", rtMedian <= 10.0, "~24 us", "~45 us"});
  report.add_summary({"asynchronous enqueue, per launch", "enqueue_us", enqMedian, "us", 3,
                      "<= 0.5 us", enqMedian <= 0.5, "~0.6 us", "~0.1 us"});

  Table& t = report.add_table(
      "Launch", {"measurement", "median (us)", "best rep (us)", "worst rep (us)", "reps x samples"},
      {false, true, true, true, true});
  auto add = [&](const char* what, const char* key, const LaunchResult& r, int decimals) {
    t.rows.push_back({what, fmt::format("{:.{}f}", median(r.perRep), decimals),
                      fmt::format("{:.{}f}", min_of(r.perRep), decimals),
                      fmt::format("{:.{}f}", max_of(r.perRep), decimals),
                      fmt::format("{} x {}", r.perRep.size(), r.samplesPerRep)});
    t.json.push_back({{"measurement", key},
                      {"median_us", median(r.perRep)},
                      {"per_rep_us", r.perRep},
                      {"samples_per_rep", r.samplesPerRep}});
  };
  add("launch + h20StreamSynchronize (median of each rep's samples)", "launch_sync", rt, 2);
  add("h20LaunchKernel back to back (batch time / launches)", "enqueue", enq, 3);
  // A mean or median hides a slow mode that hits some runs or some samples; the spread shows it.
  t.notes.push_back(fmt::format(
      "Round trip over all {} samples: p10 {:.2f} us, p50 {:.2f} us, p90 {:.2f} us, p99 {:.2f} us.",
      rt.all.size(), percentile(rt.all, 10), percentile(rt.all, 50), percentile(rt.all, 90),
      percentile(rt.all, 99)));
  t.json.push_back({{"measurement", "launch_sync_percentiles"},
                    {"p10_us", percentile(rt.all, 10)},
                    {"p50_us", percentile(rt.all, 50)},
                    {"p90_us", percentile(rt.all, 90)},
                    {"p99_us", percentile(rt.all, 99)}});
}

}  // namespace

Suite make_launch_suite() {
  return Suite{"launch",
               "Empty-kernel launch + synchronise round trip and asynchronous enqueue cost",
               true,
               {},
               run_launch};
}

}  // namespace h20::bench
