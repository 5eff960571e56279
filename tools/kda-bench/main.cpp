// main.cpp - h20-kda-bench: FlashKDA's H20 prefill benchmark table, run on the emulated device.
//
// Owns the benchmark cases (FlashKDA's: T = 8192, D = 128, H in {96, 64}; fixed length, varlen
// [1300, 547, 2048, 963, 271, 3063] and varlen 1024 x 8; then T = 4096, H = 16 fixed and varlen
// 512 x 8, and fp32 inputs; bf16 inputs elsewhere, fp32 states, lower-bound gate -5), their
// timing through the public API (events around h20kdaPrefill on one stream,
// median of several runs after warm-up), and the markdown table. Everything goes through the C
// API of include/h20/kda.h and include/h20/h20_runtime.h, like an application.
//
// FLOP formula, per token and value head, with C = 16 the chunk length:
//   6*K*V          three K x V products per token: the chunk's keys and queries against the
//                  state entering the chunk, and the state update
//   + 2*C*(K + V)  the intra-chunk matrices (A and P, C x C over K, lower triangles) and the
//                  triangular solve and P*U (C x C over V)
// i.e. 106,496 FLOP for K = V = 128. The per-token baseline is charged the same amount of work,
// so GFLOP/s of the two compare directly.
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "peak.hpp"

namespace {

using h20::kdabench::PeakResult;

constexpr int kChunk = 16;

struct BenchError {
  std::string message;
};

void check(h20Error_t err, const char* what) {
  if (err == h20Success) return;
  const char* kdaMsg = h20kdaGetLastErrorMessage();
  const char* rtMsg = h20GetLastErrorMessage();
  throw BenchError{fmt::format("{} failed: {} ({})", what, h20GetErrorName(err),
                               kdaMsg[0] != '\0' ? kdaMsg : rtMsg)};
}

struct Case {
  std::string name;
  int heads;
  std::vector<std::int64_t> seqLens;  // empty: one fixed-length sequence of `tokens`
  std::int64_t tokens;
  bool fp32 = false;  // fp32 q/k/v/g/beta/out instead of bf16
};

std::vector<Case> cases(bool quick) {
  std::vector<Case> r;
  if (quick) {
    for (int h : {8}) {
      r.push_back({"fixed", h, {}, 1024});
      r.push_back({"varlen [163, 68, 256, 120, 34, 383]", h, {163, 68, 256, 120, 34, 383}, 1024});
      r.push_back({"varlen 128 x 8", h, std::vector<std::int64_t>(8, 128), 1024});
      r.push_back({"fixed fp32", h, {}, 1024, true});
    }
    return r;
  }
  // FlashKDA's cases (T = 8192, H = 96 and 64), then a smaller model's (T = 4096, H = 16), then
  // fp32 inputs and outputs.
  for (int h : {96, 64}) {
    r.push_back({"fixed", h, {}, 8192});
    r.push_back(
        {"varlen [1300, 547, 2048, 963, 271, 3063]", h, {1300, 547, 2048, 963, 271, 3063}, 8192});
    r.push_back({"varlen 1024 x 8", h, std::vector<std::int64_t>(8, 1024), 8192});
  }
  r.push_back({"fixed", 16, {}, 4096});
  r.push_back({"varlen 512 x 8", 16, std::vector<std::int64_t>(8, 512), 4096});
  r.push_back({"fixed fp32", 96, {}, 8192, true});
  r.push_back({"fixed fp32", 16, {}, 4096, true});
  return r;
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    check(h20Malloc(&ptr_, bytes), "h20Malloc");
  }
  ~DeviceBuffer() { h20Free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// splitmix64: fast, and good enough for benchmark inputs.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

std::uint16_t toBf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
float fromBf16(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Fills a device buffer with bf16 values uniform in [lo, hi).
void fillBf16(const DeviceBuffer& buf, Rng& rng, float lo, float hi) {
  std::vector<std::uint16_t> host(buf.bytes() / 2);
  for (auto& x : host)
    x = toBf16(lo + (hi - lo) * rng.uniform());
  check(h20Memcpy(buf.get(), host.data(), buf.bytes(), h20MemcpyHostToDevice), "h20Memcpy");
}

void fillF32(const DeviceBuffer& buf, Rng& rng, float lo, float hi) {
  std::vector<float> host(buf.bytes() / 4);
  for (auto& x : host)
    x = lo + (hi - lo) * rng.uniform();
  check(h20Memcpy(buf.get(), host.data(), buf.bytes(), h20MemcpyHostToDevice), "h20Memcpy");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Options {
  bool quick = false;
  int runs = 5;
  int warmup = 1;
  int baselineRuns = 3;
  bool baseline = true;
  int device = 0;
  std::string filter;  // run only cases whose "name H=<h>" contains this
};

struct Row {
  double ms = 0, baselineMs = 0, relDiff = NAN;
};

// Times one h20kdaPrefill with the given algorithm, in milliseconds (events on the stream).
double timeOnce(h20kdaPrefillArgs args, h20kdaAlgorithm algo, h20Stream_t stream, h20Event_t start,
                h20Event_t stop) {
  args.algorithm = algo;
  check(h20EventRecord(start, stream), "h20EventRecord");
  check(h20kdaPrefill(&args, stream), "h20kdaPrefill");
  check(h20EventRecord(stop, stream), "h20EventRecord");
  check(h20EventSynchronize(stop), "h20EventSynchronize");
  float elapsed = 0;
  check(h20EventElapsedTime(&elapsed, start, stop), "h20EventElapsedTime");
  return elapsed;
}

Row runCase(const Case& c, const Options& opt, h20Stream_t stream) {
  const int K = 128, V = 128, H = c.heads, HV = c.heads;
  const std::int64_t T = c.tokens;
  const int N = c.seqLens.empty() ? 1 : static_cast<int>(c.seqLens.size());
  Rng rng{0x5eed0000u + static_cast<std::uint64_t>(H)};
  const std::int64_t es = c.fp32 ? 4 : 2;
  DeviceBuffer q(T * H * K * es), k(T * H * K * es), v(T * HV * V * es), g(T * HV * K * es),
      beta(T * HV * es), out(T * HV * V * es), aLog(HV * 4), dtBias(HV * K * 4),
      init(std::size_t(N) * HV * V * K * 4), fin(std::size_t(N) * HV * V * K * 4), cu((N + 1) * 8);
  auto fill = [&](const DeviceBuffer& b, float lo, float hi) {
    c.fp32 ? fillF32(b, rng, lo, hi) : fillBf16(b, rng, lo, hi);
  };
  fill(q, -1.0f, 1.0f);
  fill(k, -1.0f, 1.0f);
  fill(v, -1.0f, 1.0f);
  fill(g, -3.0f, 3.0f);
  fill(beta, -2.0f, 2.0f);
  fillF32(aLog, rng, -1.0f, 1.0f);
  fillF32(dtBias, rng, -0.1f, 0.1f);
  fillF32(init, rng, -0.1f, 0.1f);
  std::vector<std::int64_t> cuHost{0};
  for (auto l : c.seqLens)
    cuHost.push_back(cuHost.back() + l);
  if (!c.seqLens.empty()) {
    check(h20Memcpy(cu.get(), cuHost.data(), cu.bytes(), h20MemcpyHostToDevice), "h20Memcpy");
  }

  h20kdaPrefillArgs a{};
  a.structSize = sizeof(a);
  a.batch = 1;
  a.seqLen = static_cast<int>(T);
  a.numHeads = H;
  a.numValueHeads = HV;
  a.headDimK = K;
  a.headDimV = V;
  a.dtype = c.fp32 ? H20_R_32F : H20_R_16BF;
  a.q = q.get();
  a.k = k.get();
  a.v = v.get();
  a.g = g.get();
  a.beta = beta.get();
  a.out = out.get();
  a.scale = 1.0f / std::sqrt(float(K));
  a.gateMode = H20_KDA_GATE_LOWER_BOUND;
  a.A_log = static_cast<const float*>(aLog.get());
  a.dtBias = static_cast<const float*>(dtBias.get());
  a.lowerBound = -5.0f;
  a.initialState = init.get();
  a.finalState = fin.get();
  a.stateDtype = H20_R_32F;
  a.cuSeqlens = c.seqLens.empty() ? nullptr : static_cast<const std::int64_t*>(cu.get());
  a.numSeqs = c.seqLens.empty() ? 0 : N;

  // Chunked and baseline runs alternate, so that both see the same share of a busy machine.
  h20Event_t start, stop;
  check(h20EventCreate(&start), "h20EventCreate");
  check(h20EventCreate(&stop), "h20EventCreate");
  for (int i = 0; i < opt.warmup; ++i)
    timeOnce(a, H20_KDA_ALGO_CHUNKED, stream, start, stop);
  std::vector<std::uint16_t> fast(out.bytes() / 2), slow(out.bytes() / 2);
  check(h20Memcpy(fast.data(), out.get(), out.bytes(), h20MemcpyDeviceToHost), "h20Memcpy");
  std::vector<double> chunkedMs, baselineMs;
  const int baselineRuns = opt.baseline ? opt.baselineRuns : 0;
  for (int i = 0; i < std::max(opt.runs, baselineRuns); ++i) {
    if (i < opt.runs) chunkedMs.push_back(timeOnce(a, H20_KDA_ALGO_CHUNKED, stream, start, stop));
    if (i < baselineRuns) {
      baselineMs.push_back(timeOnce(a, H20_KDA_ALGO_RECURRENT, stream, start, stop));
      if (i + 1 == baselineRuns) {
        check(h20Memcpy(slow.data(), out.get(), out.bytes(), h20MemcpyDeviceToHost), "h20Memcpy");
      }
    }
  }
  h20EventDestroy(start);
  h20EventDestroy(stop);
  Row row;
  row.ms = median(chunkedMs);
  if (opt.baseline) {
    row.baselineMs = median(baselineMs);
    // The outputs as 16-bit words: bf16 values, or the halves of fp32 ones.
    auto value = [&](const std::vector<std::uint16_t>& w, std::size_t i) -> double {
      if (!c.fp32) return fromBf16(w[i]);
      float f;
      std::memcpy(&f, &w[2 * i], 4);
      return f;
    };
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < fast.size() / (c.fp32 ? 2 : 1); ++i) {
      const double d = value(fast, i) - value(slow, i);
      err += d * d;
      norm += value(slow, i) * value(slow, i);
    }
    row.relDiff = std::sqrt(err / std::max(norm, 1e-300));
  }
  return row;
}

// The machine's peaks, on one worker and on all of them.
struct Peaks {
  PeakResult fmaOne, fmaAll, dotOne, dotAll;
};

Peaks measurePeaks(h20Stream_t stream, int workers, bool quick) {
  using h20::kdabench::PeakKind;
  const double seconds = quick ? 0.05 : 0.3;
  Peaks p;
  check(h20::kdabench::measurePeak(stream, 1, seconds, PeakKind::fp32Fma, &p.fmaOne),
        "measuring the FMA peak");
  check(h20::kdabench::measurePeak(stream, workers, seconds, PeakKind::fp32Fma, &p.fmaAll),
        "measuring the FMA peak");
  check(h20::kdabench::measurePeak(stream, 1, seconds, PeakKind::bf16Dot, &p.dotOne),
        "measuring the bf16 dot-product peak");
  check(h20::kdabench::measurePeak(stream, workers, seconds, PeakKind::bf16Dot, &p.dotAll),
        "measuring the bf16 dot-product peak");
  return p;
}

void printPeaks(const Peaks& p) {
  fmt::print(
      "fp32 FMA peak (measured, {}, best of 3): {:.1f} GFLOP/s on 1 thread, {:.1f} GFLOP/s on "
      "{} threads\n",
      p.fmaAll.isa, p.fmaOne.flopsPerSecond / 1e9, p.fmaAll.flopsPerSecond / 1e9, p.fmaAll.threads);
  if (p.dotAll.flopsPerSecond > 0) {
    fmt::print(
        "bf16 dot-product peak (measured, vdpbf16ps, best of 3): {:.1f} GFLOP/s on 1 thread, "
        "{:.1f} GFLOP/s on {} threads\n",
        p.dotOne.flopsPerSecond / 1e9, p.dotAll.flopsPerSecond / 1e9, p.dotAll.threads);
  } else {
    fmt::print("bf16 dot-product peak: this CPU has no AVX512_BF16\n");
  }
}

// A rate as a share of a peak ("-" without the peak).
std::string share(double gflops, const PeakResult& peak) {
  if (peak.flopsPerSecond <= 0) return "-";
  return fmt::format("{:.1f} %", 100.0 * gflops * 1e9 / peak.flopsPerSecond);
}

// The median time of `enqueue` on `stream` in milliseconds (events around it), after warm-up.
template <class Enqueue>
double timeMedian(const Options& opt, h20Stream_t stream, Enqueue enqueue) {
  h20Event_t start, stop;
  check(h20EventCreate(&start), "h20EventCreate");
  check(h20EventCreate(&stop), "h20EventCreate");
  std::vector<double> ms;
  for (int i = 0; i < opt.warmup + opt.runs; ++i) {
    check(h20EventRecord(start, stream), "h20EventRecord");
    enqueue();
    check(h20EventRecord(stop, stream), "h20EventRecord");
    check(h20EventSynchronize(stop), "h20EventSynchronize");
    float e = 0;
    check(h20EventElapsedTime(&e, start, stop), "h20EventElapsedTime");
    if (i >= opt.warmup) ms.push_back(e);
  }
  h20EventDestroy(start);
  h20EventDestroy(stop);
  return median(ms);
}

// The arguments of a bf16 projection of `rows` rows, K -> N.
h20kdaLinearArgs linearArgs(std::int64_t rows, int K, int N, const void* x, const void* w,
                            void* out) {
  h20kdaLinearArgs a{};
  a.structSize = sizeof(a);
  a.rows = rows;
  a.inFeatures = K;
  a.outFeatures = N;
  a.dtype = H20_R_16BF;
  a.x = x;
  a.weight = w;
  a.out = out;
  return a;
}

// `h20-kda-bench linear`: the projections of a Kimi-Linear KDA layer (hidden 2304, 32 heads of
// 128, low rank 128) over T tokens, bf16 with fp32 accumulation, 2*M*N*K FLOP each.
int runLinear(const Options& opt, std::int64_t T) {
  check(h20SetDevice(opt.device), "h20SetDevice");
  h20DeviceProp prop{};
  check(h20GetDeviceProperties(&prop, opt.device), "h20GetDeviceProperties");
  h20Stream_t stream;
  check(h20StreamCreate(&stream), "h20StreamCreate");
  const int workers = std::max(1, prop.hostWorkerThreads);
  const Peaks peaks = measurePeaks(stream, workers, opt.quick);
  fmt::print("# h20-kda-bench linear{}\n\n", opt.quick ? " (quick)" : "");
  fmt::print("device {}: {}, {} worker threads; h20kdaLinear (oneDNN matmul, one tile per block)\n",
             opt.device, prop.name, workers);
  printPeaks(peaks);
  fmt::print(
      "bf16 x, W and out, fp32 accumulation, M = {} tokens; median of {} after {} warm-up\n\n", T,
      opt.runs, opt.warmup);
  struct Shape {
    const char* name;
    int K, N;
  };
  const Shape shapes[] = {{"q/k/v proj", 2304, 4096},
                          {"gate/output-gate down", 2304, 128},
                          {"gate/output-gate up", 128, 4096},
                          {"beta proj", 2304, 32},
                          {"o_proj", 4096, 2304}};
  fmt::print("| projection | K | N | ms | GFLOP/s | % of bf16 peak | % of FMA peak |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|\n");
  Rng rng{0x11ea7u};
  for (const Shape& sh : shapes) {
    DeviceBuffer x(std::size_t(T) * sh.K * 2), w(std::size_t(sh.N) * sh.K * 2),
        out(std::size_t(T) * sh.N * 2);
    fillBf16(x, rng, -1.0f, 1.0f);
    fillBf16(w, rng, -0.05f, 0.05f);
    const h20kdaLinearArgs a = linearArgs(T, sh.K, sh.N, x.get(), w.get(), out.get());
    const double m =
        timeMedian(opt, stream, [&] { check(h20kdaLinear(&a, stream), "h20kdaLinear"); });
    const double gflops = 2.0 * double(T) * sh.N * sh.K / (m * 1e-3) / 1e9;
    fmt::print("| {} | {} | {} | {:.2f} | {:.1f} | {} | {} |\n", sh.name, sh.K, sh.N, m, gflops,
               share(gflops, peaks.dotAll), share(gflops, peaks.fmaAll));
    std::fflush(stdout);
  }
  check(h20StreamDestroy(stream), "h20StreamDestroy");
  return 0;
}

// `h20-kda-bench layer`: every operation of a Kimi-Linear KDA layer (hidden 2304, 32 heads of
// 128, conv 4, low rank 128) on one chip over T tokens, timed one by one (median each); the sum
// is the layer's time. bf16 activations and weights, as samples/kimi_linear_layer runs them.
int runLayer(const Options& opt, std::int64_t T) {
  constexpr int kHidden = 2304, kHeads = 32, kDim = 128, kProj = kHeads * kDim, kRank = 128;
  check(h20SetDevice(opt.device), "h20SetDevice");
  h20DeviceProp prop{};
  check(h20GetDeviceProperties(&prop, opt.device), "h20GetDeviceProperties");
  h20Stream_t stream;
  check(h20StreamCreate(&stream), "h20StreamCreate");
  fmt::print("# h20-kda-bench layer{}\n\n", opt.quick ? " (quick)" : "");
  fmt::print(
      "device {}: {}, {} worker threads; KDA kernels: {}\nKimi-Linear KDA layer: hidden {}, {} "
      "heads of {}, conv 4, rank {}; T = {} tokens, one sequence, bf16; median of {} after {} "
      "warm-up per operation\n\n",
      opt.device, prop.name, prop.hostWorkerThreads, h20kdaGetIsaName(), kHidden, kHeads, kDim,
      kRank, T, opt.runs, opt.warmup);
  Rng rng{0x1a7e5u};
  const std::size_t t = std::size_t(T);
  DeviceBuffer x(t * kHidden * 2), wqkv(std::size_t(kProj) * kHidden * 2),
      wLow(std::size_t(kRank) * kHidden * 2), wUp(std::size_t(kProj) * kRank * 2),
      wBeta(std::size_t(kHeads) * kHidden * 2), wo(std::size_t(kHidden) * kProj * 2),
      convW(std::size_t(kProj) * 4 * 2), normW(kDim * 2), aLog(kHeads * 4), dtBias(kProj * 4),
      a(t * kProj * 2), b(t * kProj * 2), low(t * kRank * 2), g(t * kProj * 2), og(t * kProj * 2),
      beta(t * kHeads * 2), o(t * kProj * 2), y(t * kHidden * 2);
  for (const DeviceBuffer* buf : {&x, &a, &b, &g, &og, &o})
    fillBf16(*buf, rng, -1.0f, 1.0f);
  for (const DeviceBuffer* buf : {&wqkv, &wLow, &wUp, &wBeta, &wo, &convW, &normW, &beta})
    fillBf16(*buf, rng, -0.05f, 0.05f);
  fillF32(aLog, rng, -1.0f, 1.0f);
  fillF32(dtBias, rng, -0.1f, 0.1f);

  struct Op {
    std::string name;
    int count;  // how many times the layer runs it
    double ms;
  };
  std::vector<Op> ops;
  auto lin = [&](const char* name, int count, int K, int N, const DeviceBuffer& in,
                 const DeviceBuffer& w, const DeviceBuffer& out) {
    const h20kdaLinearArgs la = linearArgs(T, K, N, in.get(), w.get(), out.get());
    ops.push_back({name, count, timeMedian(opt, stream, [&] {
                     check(h20kdaLinear(&la, stream), "h20kdaLinear");
                   })});
  };
  lin("q, k, v projections (2304 -> 4096)", 3, kHidden, kProj, x, wqkv, a);
  lin("gate, output gate down (2304 -> 128)", 2, kHidden, kRank, x, wLow, low);
  lin("gate, output gate up (128 -> 4096)", 2, kRank, kProj, low, wUp, g);
  lin("beta projection (2304 -> 32)", 1, kHidden, kHeads, x, wBeta, beta);
  h20kdaShortConvArgs c{};
  c.structSize = sizeof(c);
  c.batch = 1;
  c.seqLen = static_cast<int>(T);
  c.channels = kProj;
  c.width = 4;
  c.dtype = H20_R_16BF;
  c.x = a.get();
  c.weight = convW.get();
  c.out = b.get();
  c.activation = H20_KDA_ACT_SILU;
  c.stateDtype = H20_R_32F;
  ops.push_back({"short convolution + SiLU of q, k, v", 3, timeMedian(opt, stream, [&] {
                   check(h20kdaShortConv(&c, stream), "h20kdaShortConv");
                 })});
  h20kdaPrefillArgs k{};
  k.structSize = sizeof(k);
  k.batch = 1;
  k.seqLen = static_cast<int>(T);
  k.numHeads = kHeads;
  k.headDimK = k.headDimV = kDim;
  k.dtype = H20_R_16BF;
  k.q = a.get();
  k.k = b.get();
  k.v = b.get();
  k.g = g.get();
  k.beta = beta.get();
  k.out = o.get();
  k.scale = 1.0f / std::sqrt(float(kDim));
  k.gateMode = H20_KDA_GATE_SOFTPLUS;
  k.A_log = static_cast<const float*>(aLog.get());
  k.dtBias = static_cast<const float*>(dtBias.get());
  k.stateDtype = H20_R_32F;
  ops.push_back({"KDA prefill (softplus gate)", 1, timeMedian(opt, stream, [&] {
                   check(h20kdaPrefill(&k, stream), "h20kdaPrefill");
                 })});
  h20kdaRmsNormArgs n{};
  n.structSize = sizeof(n);
  n.rows = T;
  n.numHeads = kHeads;
  n.headDim = kDim;
  n.dtype = H20_R_16BF;
  n.x = o.get();
  n.gate = og.get();
  n.gateActivation = H20_KDA_ACT_SIGMOID;
  n.weight = normW.get();
  n.eps = 1e-5f;
  n.out = o.get();
  ops.push_back({"gated RMSNorm", 1, timeMedian(opt, stream, [&] {
                   check(h20kdaRmsNorm(&n, stream), "h20kdaRmsNorm");
                 })});
  lin("o_proj (4096 -> 2304)", 1, kProj, kHidden, o, wo, y);

  double total = 0;
  for (const Op& op : ops)
    total += op.count * op.ms;
  fmt::print("| operation | per layer | ms each | share |\n|---|---:|---:|---:|\n");
  for (const Op& op : ops)
    fmt::print("| {} | {}x | {:.2f} | {:.1f} % |\n", op.name, op.count, op.ms,
               100.0 * op.count * op.ms / total);
  fmt::print("| **layer** | | {:.1f} | {:.0f} tokens/s |\n", total, double(T) / (total * 1e-3));
  check(h20StreamDestroy(stream), "h20StreamDestroy");
  return 0;
}

// A copy of `bytes` split over the blocks: the copy bandwidth of the device's workers, the ceiling
// of a kernel that reads and writes as many bytes on all of them.
struct CopyArgs {
  const char* src;
  char* dst;
  std::size_t bytes;
  unsigned blocks;
};

void copyKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const CopyArgs*>(raw);
  const std::size_t per = (a.bytes / a.blocks + 63) / 64 * 64;
  const std::size_t begin = std::min(a.bytes, std::size_t(ctx->blockIdx.x) * per);
  const std::size_t end = std::min(a.bytes, begin + per);
  std::memcpy(a.dst + begin, a.src + begin, end - begin);
}

// `h20-kda-bench decode`: one h20kdaDecode step (one token for each of N sequences, states updated
// in place) is bound by reading and writing the fp32 states; its rate is compared with a
// device-to-device copy of as many bytes, timed in the same run.
int runDecode(const Options& opt) {
  constexpr int kDim = 128;
  constexpr int kBackToBack = 20;
  check(h20SetDevice(opt.device), "h20SetDevice");
  h20DeviceProp prop{};
  check(h20GetDeviceProperties(&prop, opt.device), "h20GetDeviceProperties");
  h20Stream_t stream;
  check(h20StreamCreate(&stream), "h20StreamCreate");
  fmt::print("# h20-kda-bench decode{}\n\n", opt.quick ? " (quick)" : "");
  fmt::print(
      "device {}: {}, {} worker threads; KDA kernels: {}\nK = V = {}, bf16 inputs, fp32 states "
      "in place; median of {} after {} warm-up. \"alone\": one step between synchronisations; "
      "\"in a row\": {} steps back to back, per step. state GB/s: the states' bytes (read once "
      "and written once) per second of a step in a row, against copies of as many bytes in a row: "
      "h20MemcpyAsync D2D, and a kernel copying on every worker (the ceiling of the step)\n\n",
      opt.device, prop.name, prop.hostWorkerThreads, h20kdaGetIsaName(), kDim, opt.runs, opt.warmup,
      kBackToBack);
  fmt::print(
      "| H | N | state MiB | µs alone | µs in a row | state GB/s | D2D copy GB/s | worker copy "
      "GB/s "
      "| % of worker copy |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  Rng rng{0xdec0de};
  const std::vector<int> heads = opt.quick ? std::vector<int>{16} : std::vector<int>{16, 96};
  const std::vector<int> batches =
      opt.quick ? std::vector<int>{1, 16} : std::vector<int>{1, 16, 64};
  for (int H : heads) {
    for (int N : batches) {
      const std::size_t n = std::size_t(N), h = std::size_t(H);
      const std::size_t stateBytes = n * h * kDim * kDim * 4;
      DeviceBuffer q(n * h * kDim * 2), k(n * h * kDim * 2), v(n * h * kDim * 2),
          g(n * h * kDim * 2), beta(n * h * 2), out(n * h * kDim * 2), aLog(h * 4),
          dtBias(h * kDim * 4), state(stateBytes), copyDst(stateBytes);
      for (const DeviceBuffer* b : {&q, &k, &v})
        fillBf16(*b, rng, -1.0f, 1.0f);
      fillBf16(g, rng, -3.0f, 3.0f);
      fillBf16(beta, rng, -2.0f, 2.0f);
      fillF32(aLog, rng, -1.0f, 1.0f);
      fillF32(dtBias, rng, -0.1f, 0.1f);
      fillF32(state, rng, -0.1f, 0.1f);
      h20kdaDecodeArgs a{};
      a.structSize = sizeof(a);
      a.numSeqs = N;
      a.numHeads = H;
      a.headDimK = a.headDimV = kDim;
      a.dtype = H20_R_16BF;
      a.q = q.get();
      a.k = k.get();
      a.v = v.get();
      a.g = g.get();
      a.beta = beta.get();
      a.out = out.get();
      a.scale = 1.0f / std::sqrt(float(kDim));
      a.gateMode = H20_KDA_GATE_LOWER_BOUND;
      a.A_log = static_cast<const float*>(aLog.get());
      a.dtBias = static_cast<const float*>(dtBias.get());
      a.lowerBound = -5.0f;
      a.state = state.get();
      a.stateDtype = H20_R_32F;
      auto step = [&] { check(h20kdaDecode(&a, stream), "h20kdaDecode"); };
      const double alone = timeMedian(opt, stream, step) * 1e3;
      const double inRow = timeMedian(opt, stream,
                                      [&] {
                                        for (int i = 0; i < kBackToBack; ++i)
                                          step();
                                      }) *
                           1e3 / kBackToBack;
      const double copy =
          timeMedian(opt, stream,
                     [&] {
                       for (int i = 0; i < kBackToBack; ++i)
                         check(h20MemcpyAsync(copyDst.get(), state.get(), stateBytes,
                                              h20MemcpyDeviceToDevice, stream),
                               "h20MemcpyAsync");
                     }) *
          1e3 / kBackToBack;
      const unsigned workers = static_cast<unsigned>(std::max(1, prop.hostWorkerThreads));
      const CopyArgs ca{static_cast<const char*>(state.get()), static_cast<char*>(copyDst.get()),
                        stateBytes, workers};
      const double workerCopy =
          timeMedian(opt, stream,
                     [&] {
                       for (int i = 0; i < kBackToBack; ++i)
                         check(h20LaunchKernel(&copyKernel, h20Dim3{workers, 1, 1},
                                               h20Dim3{1, 1, 1}, &ca, sizeof(ca), 0, stream),
                               "h20LaunchKernel");
                     }) *
          1e3 / kBackToBack;
      auto gbs = [&](double us) { return double(stateBytes) / (us * 1e-6) / 1e9; };
      fmt::print("| {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.0f} % |\n",
                 H, N, double(stateBytes) / (1 << 20), alone, inRow, gbs(inRow), gbs(copy),
                 gbs(workerCopy), 100.0 * workerCopy / inRow);
      std::fflush(stdout);
    }
  }
  check(h20StreamDestroy(stream), "h20StreamDestroy");
  return 0;
}

int run(const Options& opt) {
  check(h20SetDevice(opt.device), "h20SetDevice");
  h20DeviceProp prop{};
  check(h20GetDeviceProperties(&prop, opt.device), "h20GetDeviceProperties");
  h20Stream_t stream;
  check(h20StreamCreate(&stream), "h20StreamCreate");
  const int workers = std::max(1, prop.hostWorkerThreads);

  const Peaks peaks = measurePeaks(stream, workers, opt.quick);
  const PeakResult& peak = peaks.fmaAll;

  const int K = 128, V = 128;
  const double flopPerTokenHead = 6.0 * K * V + 2.0 * kChunk * (K + V);
  fmt::print("# h20-kda-bench{}\n\n", opt.quick ? " (quick)" : "");
  fmt::print("device {}: {}, {} worker threads; KDA kernels: {}\n", opt.device, prop.name, workers,
             h20kdaGetIsaName());
  printPeaks(peaks);
  fmt::print("FLOP per token and value head: 6*K*V + 2*C*(K+V), C = {} ({:.0f} for K = V = {})\n",
             kChunk, flopPerTokenHead, K);
  fmt::print(
      "bf16 inputs (fp32 where the case says so), fp32 states, lower-bound gate -5, D = {}; "
      "chunked kernel: median of {} "
      "after {} warm-up; per-token baseline: median of {}\n\n",
      K, opt.runs, opt.warmup, opt.baseline ? opt.baselineRuns : 0);

  fmt::print(
      "| case | H | T | ms | Mtoken·heads/s | GFLOP/s | % of FMA peak | % of bf16 peak | "
      "per-token ms | speedup | rel. diff |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Case& c : cases(opt.quick)) {
    if (!opt.filter.empty() &&
        fmt::format("{} H={}", c.name, c.heads).find(opt.filter) == std::string::npos) {
      continue;
    }
    const Row r = runCase(c, opt, stream);
    const double tokenHeads = double(c.tokens) * c.heads;
    const double flops = tokenHeads * flopPerTokenHead;
    const double gflops = flops / (r.ms * 1e-3) / 1e9;
    std::string base = "-", speedup = "-", diff = "-";
    if (opt.baseline) {
      base = fmt::format("{:.1f}", r.baselineMs);
      speedup = fmt::format("{:.2f}x", r.baselineMs / r.ms);
      diff = fmt::format("{:.1e}", r.relDiff);
    }
    fmt::print("| {} | {} | {} | {:.1f} | {:.2f} | {:.1f} | {:.1f} % | {} | {} | {} | {} |\n",
               c.name, c.heads, c.tokens, r.ms, tokenHeads / (r.ms * 1e-3) / 1e6, gflops,
               100.0 * gflops * 1e9 / peak.flopsPerSecond, share(gflops, peaks.dotAll), base,
               speedup, diff);
    std::fflush(stdout);
  }
  check(h20StreamDestroy(stream), "h20StreamDestroy");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"h20-kda-bench: KDA prefill throughput on the emulated H20 (FlashKDA's table)"};
  Options opt;
  int runs = -1, baselineRuns = -1;
  app.add_flag("--quick", opt.quick, "small shapes (H = 8, T = 1024) and few runs, for CI");
  app.add_option("--runs", runs, "timed runs of the chunked kernel per case (default 5, quick 3)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", opt.warmup, "untimed runs before timing")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--baseline-runs", baselineRuns,
                 "timed runs of the per-token baseline per case (default 3, quick 2)")
      ->check(CLI::PositiveNumber);
  app.add_flag("!--no-baseline", opt.baseline, "skip the per-token baseline");
  app.add_option("--device", opt.device, "device ordinal")->check(CLI::NonNegativeNumber);
  app.add_option("--filter", opt.filter,
                 "run only the cases whose \"<case> H=<heads>\" contains this text");
  std::int64_t linearTokens = 4096;
  CLI::App* linear =
      app.add_subcommand("linear", "the projections of a Kimi-Linear KDA layer (h20kdaLinear)");
  linear->add_option("--tokens", linearTokens, "M: tokens (default 4096, quick 256)")
      ->check(CLI::PositiveNumber);
  std::int64_t layerTokens = 4096;
  CLI::App* layer = app.add_subcommand(
      "layer", "every operation of a Kimi-Linear KDA layer, its share of the layer's time");
  layer->add_option("--tokens", layerTokens, "T: tokens (default 4096, quick 256)")
      ->check(CLI::PositiveNumber);
  CLI::App* decode = app.add_subcommand(
      "decode", "one decode step for batches of 1, 16 and 64 against the copy bandwidth");
  CLI11_PARSE(app, argc, argv);
  opt.runs = runs > 0 ? runs : (opt.quick ? 3 : 5);
  opt.baselineRuns = baselineRuns > 0 ? baselineRuns : (opt.quick ? 2 : 3);
  try {
    if (decode->parsed()) return runDecode(opt);
    if (layer->parsed())
      return runLayer(opt, opt.quick && layer->count("--tokens") == 0 ? 256 : layerTokens);
    if (linear->parsed())
      return runLinear(opt, opt.quick && linear->count("--tokens") == 0 ? 256 : linearTokens);
    return run(opt);
  } catch (const BenchError& e) {
    std::fprintf(stderr, "h20-kda-bench: %s\n", e.message.c_str());
    return 1;
  }
}
