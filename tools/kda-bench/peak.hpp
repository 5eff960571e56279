// peak.hpp - the fp32 FMA and bf16 dot-product peaks of the device's worker threads, measured
// by kernels.
#ifndef H20_TOOLS_KDA_BENCH_PEAK_HPP_
#define H20_TOOLS_KDA_BENCH_PEAK_HPP_

#include <h20/h20_runtime.h>

namespace h20::kdabench {

struct PeakResult {
  double flopsPerSecond = 0;  // best of three runs
  const char* isa = "";       // the instruction set the peak kernel used
  int threads = 0;            // blocks run at once (one per worker thread)
};

// What the peak kernel runs: fp32 FMAs (vfmadd231ps: 2 FLOP per lane), or bf16 dot products
// with fp32 accumulation (AVX512_BF16 vdpbf16ps: 2 products, 4 FLOP per fp32 lane).
enum class PeakKind { fp32Fma, bf16Dot };

// Runs a kernel bound by `kind` with `blocks` blocks (at most one per worker run at once) for
// about `seconds` per run on `stream` (of the current device) and reports the best rate.
// flopsPerSecond is 0 (isa "none") for bf16Dot on a CPU without AVX512_BF16. Blocks until
// done; returns the first runtime error.
h20Error_t measurePeak(h20Stream_t stream, int blocks, double seconds, PeakKind kind,
                       PeakResult* result);

}  // namespace h20::kdabench

#endif  // H20_TOOLS_KDA_BENCH_PEAK_HPP_
