// launch.cpp - the `launch` suite: what a kernel launch, and an event, cost the host.
//
// Everything runs on a stream created with h20StreamCreateWithFlags(h20StreamNonBlocking) on one
// device, with an empty one-block kernel (grid 1, block 1, no arguments):
//  - round trip: h20LaunchKernel followed by h20StreamSynchronize, each pair timed on its own;
//    the latency a program pays when it waits for every launch.
//  - enqueue: a batch of launches issued back to back, the batch's time divided by its length,
//    then one h20StreamSynchronize (not timed); the cost of keeping the device fed. The stream's
//    worker runs the kernels meanwhile, so on a small host this includes the competition for
//    cores.
//  - event record + query: a batch of h20EventRecord + h20EventQuery pairs on the same (otherwise
//    idle) stream, timed like the enqueue; the cost of polling for completion. Measured for an
//    event from h20EventCreate (timing) and one created with h20EventDisableTiming.
// A repetition's figure is the median of its samples (round trip) or the batch time per
// operation (batches); the headline is the median over repetitions, after an untimed warm-up.
// Every figure also comes with p50, p99 and mean over all samples: for the batches a sample is
// the mean per operation over a chunk of kChunk operations, short enough to show a slow stretch
// and long enough that the clock's own cost (two reads per chunk) stays out of the figure.
#include <fmt/format.h>

#include "bench.hpp"

namespace h20::bench {
namespace {

constexpr int kChunk = 100;  // operations per timed sample within a batch

struct Latency {
  std::vector<double> perRep;   // microseconds: the figure of each repetition
  std::vector<double> samples;  // microseconds: every sample of every repetition
  int opsPerRep = 0;
};

Latency measure_round_trip(h20Stream_t s, int reps, int samples, int warmup) {
  const h20Dim3 one{1, 1, 1};
  for (int i = 0; i < warmup; ++i) {
    H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
    H20_BENCH_CHECK(h20StreamSynchronize(s));
  }
  Latency r;
  r.opsPerRep = samples;
  std::vector<double> times(static_cast<std::size_t>(samples));
  for (int rep = 0; rep < reps; ++rep) {
    for (int i = 0; i < samples; ++i) {
      auto t0 = Clock::now();
      H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
      H20_BENCH_CHECK(h20StreamSynchronize(s));
      times[static_cast<std::size_t>(i)] = seconds_since(t0) * 1e6;
    }
    r.perRep.push_back(median(times));
    r.samples.insert(r.samples.end(), times.begin(), times.end());
  }
  return r;
}

// `reps` batches of `batch` calls of `op` (after one untimed batch), each followed by an untimed
// h20StreamSynchronize of `s`; timed in chunks of kChunk calls.
template <class Op>
Latency measure_batches(h20Stream_t s, int reps, int batch, Op&& op) {
  Latency r;
  r.opsPerRep = batch;
  for (int rep = -1; rep < reps; ++rep) {  // rep -1 is the warm-up
    std::vector<double> chunks;
    auto start = Clock::now();
    for (int done = 0; done < batch;) {
      const int n = std::min(kChunk, batch - done);
      auto t0 = Clock::now();
      for (int i = 0; i < n; ++i)
        op();
      chunks.push_back(seconds_since(t0) * 1e6 / n);
      done += n;
    }
    double us = seconds_since(start) * 1e6 / batch;
    H20_BENCH_CHECK(h20StreamSynchronize(s));
    if (rep < 0) continue;
    r.perRep.push_back(us);
    r.samples.insert(r.samples.end(), chunks.begin(), chunks.end());
  }
  return r;
}

// h20EventQuery answers h20ErrorNotReady while the marker is pending: a result, not a failure.
void query(h20Event_t e) {
  const h20Error_t rc = h20EventQuery(e);
  if (rc != h20ErrorNotReady) check(rc, "h20EventQuery(e)");
}

void run_launch(const Options& o, Report& report) {
  H20_BENCH_CHECK(h20SetDevice(o.device));
  h20Stream_t s = nullptr;
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&s, h20StreamNonBlocking));
  h20Event_t timed = nullptr, untimed = nullptr;
  H20_BENCH_CHECK(h20EventCreate(&timed));
  H20_BENCH_CHECK(h20EventCreateWithFlags(&untimed, h20EventDisableTiming));

  const int reps = o.reps(7, 3);
  const int batch = o.quick ? 1000 : 20000;
  const h20Dim3 one{1, 1, 1};
  Latency rt = measure_round_trip(s, reps, o.quick ? 200 : 5000, o.quick ? 50 : 1000);
  Latency enq = measure_batches(s, reps, batch, [&] {
    H20_BENCH_CHECK(h20LaunchKernel(empty_kernel, one, one, nullptr, 0, 0, s));
  });
  Latency ev = measure_batches(s, reps, batch, [&] {
    H20_BENCH_CHECK(h20EventRecord(timed, s));
    query(timed);
  });
  Latency evUntimed = measure_batches(s, reps, batch, [&] {
    H20_BENCH_CHECK(h20EventRecord(untimed, s));
    query(untimed);
  });
  H20_BENCH_CHECK(h20EventDestroy(timed));
  H20_BENCH_CHECK(h20EventDestroy(untimed));
  H20_BENCH_CHECK(h20StreamDestroy(s));

  const Spread rtSpread = spread(rt.samples);
  const double rtMedian = median(rt.perRep);
  const double enqMedian = median(enq.perRep);
  const double evMedian = median(ev.perRep);
  report.add_summary({"empty-kernel launch + synchronise round trip", "launch_sync_us", rtMedian,
                      "us", 2, "<= 10 us", rtMedian <= 10.0, "~24 us", "~45 us"});
  report.add_summary({"empty-kernel launch + synchronise round trip, p99", "launch_sync_p99_us",
                      rtSpread.p99, "us", 2, "< 100 us", rtSpread.p99 < 100.0, "-", "-"});
  report.add_summary({"asynchronous enqueue, per launch", "enqueue_us", enqMedian, "us", 3,
                      "<= 0.15 us", enqMedian <= 0.15, "~0.6 us", "~0.1 us"});
  report.add_summary({"h20EventRecord + h20EventQuery, per pair", "event_record_query_us", evMedian,
                      "us", 3, "<= 0.15 us", evMedian <= 0.15, "-", "-"});

  Table& t = report.add_table("Launch",
                              {"measurement", "median (us)", "p50 (us)", "p99 (us)", "mean (us)",
                               "best rep (us)", "worst rep (us)", "reps x operations"},
                              {false, true, true, true, true, true, true, true});
  auto add = [&](const char* what, const char* key, const Latency& r, int decimals) {
    const Spread sp = spread(r.samples);
    auto us = [decimals](double v) { return fmt::format("{:.{}f}", v, decimals); };
    t.rows.push_back({what, us(median(r.perRep)), us(sp.p50), us(sp.p99), us(sp.mean),
                      us(min_of(r.perRep)), us(max_of(r.perRep)),
                      fmt::format("{} x {}", r.perRep.size(), r.opsPerRep)});
    t.json.push_back({{"measurement", key},
                      {"median_us", median(r.perRep)},
                      {"p50_us", sp.p50},
                      {"p99_us", sp.p99},
                      {"mean_us", sp.mean},
                      {"per_rep_us", r.perRep},
                      {"operations_per_rep", r.opsPerRep},
                      {"samples", sp.samples}});
  };
  add("h20LaunchKernel + h20StreamSynchronize", "launch_sync", rt, 2);
  add("h20LaunchKernel back to back", "enqueue", enq, 3);
  add("h20EventRecord + h20EventQuery (h20EventCreate)", "event_record_query", ev, 3);
  add("h20EventRecord + h20EventQuery (h20EventDisableTiming)", "event_record_query_untimed",
      evUntimed, 3);
  t.notes.push_back(fmt::format(
      "Empty one-block kernel on a created non-blocking stream. Round trip: each pair timed on "
      "its own; median = median over the {} repetitions of each one's median; p50, p99 and mean "
      "over all {} samples (p10 {:.2f} us, p90 {:.2f} us). Back-to-back rows: a batch of {} "
      "calls (pairs) per repetition, batch time / calls, then one untimed h20StreamSynchronize; "
      "p50, p99 and mean over chunks of {} calls (the mean per call within each).",
      reps, rtSpread.samples, percentile(rt.samples, 10), percentile(rt.samples, 90), batch,
      kChunk));
}

}  // namespace

Suite make_launch_suite() {
  return Suite{"launch",
               "Empty-kernel launch + synchronise round trip, asynchronous enqueue cost and "
               "event record + query cost",
               true,
               {},
               run_launch};
}

}  // namespace h20::bench
