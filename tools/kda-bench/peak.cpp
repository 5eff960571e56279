// peak.cpp - measures the device's fp32 FMA and bf16 dot-product peaks by running kernels bound
// by them.
//
// Owns the peak kernels (AVX-512, AVX2+FMA and portable variants, chosen from the CPU's features
// at run time) and the timing loop. The kernel runs through h20LaunchKernel on the same worker
// threads that run the KDA kernels, so the percentage the benchmark reports compares like with
// like. Each block keeps 16 independent accumulator chains, enough to hide the FMA latency on
// current x86 cores.
#include "peak.hpp"

#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace h20::kdabench {
namespace {

struct PeakArgs {
  long iterations;
  float* sink;  // one float per block, so the work cannot be optimised away
};

constexpr int kChains = 16;

#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12 flags its own placeholders inside the AVX-512 reduction intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void peakAvx512(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const PeakArgs*>(raw);
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm512_set1_ps(0.001f * float(i));
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.0001f);
  for (long it = 0; it < a.iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i)
    s = _mm512_add_ps(s, acc[i]);
  a.sink[ctx->blockIdx.x] = _mm512_reduce_add_ps(s);
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16")
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void peakBf16Dot(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const PeakArgs*>(raw);
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm512_set1_ps(0.001f * float(i));
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (long it = 0; it < a.iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i)
    s = _mm512_add_ps(s, acc[i]);
  a.sink[ctx->blockIdx.x] = _mm512_reduce_add_ps(s);
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
void peakAvx2(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const PeakArgs*>(raw);
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm256_set1_ps(0.001f * float(i));
  const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.0001f);
  for (long it = 0; it < a.iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i)
    s = _mm256_add_ps(s, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = 0;
  for (float l : lanes)
    total += l;
  a.sink[ctx->blockIdx.x] = total;
}
#pragma GCC pop_options

void peakPortable(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const PeakArgs*>(raw);
  float acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = 0.001f * float(i);
  for (long it = 0; it < a.iterations; ++it) {
    for (int i = 0; i < kChains; ++i)
      acc[i] = acc[i] * 0.999f + 0.0001f;
  }
  float total = 0;
  for (float x : acc)
    total += x;
  a.sink[ctx->blockIdx.x] = total;
}

struct Variant {
  h20KernelFn fn;
  int flopsPerChainStep;  // FLOP of one instruction of one chain
  const char* isa;
};

Variant bestVariant(PeakKind kind) {
  if (kind == PeakKind::bf16Dot) {
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))
      return {&peakBf16Dot, 64, "avx512_bf16"};
    return {nullptr, 0, "none"};
  }
  if (__builtin_cpu_supports("avx512f")) return {&peakAvx512, 32, "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {&peakAvx2, 16, "avx2"};
  }
  return {&peakPortable, 2, "scalar"};
}

}  // namespace

h20Error_t measurePeak(h20Stream_t stream, int workers, double seconds, PeakKind kind,
                       PeakResult* result) {
  const Variant v = bestVariant(kind);
  const unsigned blocks = static_cast<unsigned>(std::max(1, workers));
  result->flopsPerSecond = 0;
  result->isa = v.isa;
  result->threads = static_cast<int>(blocks);
  if (v.fn == nullptr) return h20Success;
  float* sink = nullptr;
  h20Error_t err = h20Malloc(reinterpret_cast<void**>(&sink), blocks * sizeof(float));
  if (err != h20Success) return err;
  h20Event_t start = nullptr, stop = nullptr;
  h20EventCreate(&start);
  h20EventCreate(&stop);
  auto timed = [&](long iterations, double* ms) {
    const PeakArgs args{iterations, sink};
    h20Error_t e = h20EventRecord(start, stream);
    if (e == h20Success) {
      e = h20LaunchKernel(v.fn, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &args, sizeof(args), 0,
                          stream);
    }
    if (e == h20Success) e = h20EventRecord(stop, stream);
    if (e == h20Success) e = h20EventSynchronize(stop);
    float elapsed = 0;
    if (e == h20Success) e = h20EventElapsedTime(&elapsed, start, stop);
    *ms = elapsed;
    return e;
  };
  // Calibrate the iteration count to about `seconds` per run, then keep the best of three runs
  // (the machine may be shared: the best run is the closest to what the hardware can do).
  long iterations = 1 << 16;
  double ms = 0;
  err = timed(iterations, &ms);
  for (int i = 0; i < 8 && err == h20Success && ms < 1000.0 * seconds / 4; ++i) {
    iterations *= ms > 0.5 ? std::max(2L, static_cast<long>(1000.0 * seconds / ms)) : 16;
    err = timed(iterations, &ms);
  }
  double best = 0;
  for (int run = 0; run < 3 && err == h20Success; ++run) {
    err = timed(iterations, &ms);
    const double flops = double(v.flopsPerChainStep) * kChains * double(iterations) * blocks;
    if (ms > 0) best = std::max(best, flops / (ms * 1e-3));
  }
  h20EventDestroy(start);
  h20EventDestroy(stop);
  h20Free(sink);
  result->flopsPerSecond = best;
  return err;
}

}  // namespace h20::kdabench
