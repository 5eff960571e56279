// peak.hpp - the fp32 FMA peak of the device's worker threads, measured by a kernel.
#ifndef H20_TOOLS_KDA_BENCH_PEAK_HPP_
#define H20_TOOLS_KDA_BENCH_PEAK_HPP_

#include <h20/h20_runtime.h>

namespace h20::kdabench {

struct PeakResult {
  double flopsPerSecond = 0;  // best of three runs
  const char* isa = "";       // the instruction set the peak kernel used
  int threads = 0;            // blocks run at once (one per worker thread)
};

// Runs an FMA-bound kernel with one block per worker for about `seconds` per run on `stream`
// (of the current device) and reports the best rate. Blocks until done; returns the first
// runtime error.
h20Error_t measurePeak(h20Stream_t stream, int workers, double seconds, PeakResult* result);

}  // namespace h20::kdabench

#endif  // H20_TOOLS_KDA_BENCH_PEAK_HPP_
