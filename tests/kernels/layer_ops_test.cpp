// layer_ops_test.cpp - the layer operations around KDA (kernels/kda/core/layer_ops.hpp and their
// C API h20kdaShortConv / h20kdaRmsNorm): every ISA against the fp64 reference over a table of
// shapes, the convolution's state continuing a sequence split at every position, and through the
// runtime: results, decode steps continuing a prefill, in-place use, argument errors that leave
// the output untouched, and cuSeqlens faults at synchronisation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "h20/h20_runtime.h"
#include "h20/kda.h"
#include "kda_test_util.hpp"
#include "layer_ops.hpp"
#include "linear.hpp"

namespace h20::kda::test {
namespace {

std::vector<Isa> supportedIsas() {
  std::vector<Isa> r;
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (isaSupported(i)) r.push_back(i);
  return r;
}

// bf16-representable normal values (so that bf16 and fp32 runs read the same numbers).
std::vector<std::uint8_t> randomTensor(DType t, std::size_t n, std::uint64_t seed,
                                       float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> b;
  fillTensor(&b, t, n, rng, 0.0f, stddev);
  return b;
}

// The whole tensor's relative RMS error against the fp64 reference and its worst row (the row's
// largest error over the reference's RMS: rowErrors), so that one bad row cannot hide in the
// average. fp32 data: 1e-6 RMS, 2e-5 per row. bf16 data: 5e-3 RMS (flash-linear-attention's
// metric), and per row twice the rounding of the largest element (a bf16 result is within 2^-9
// of its value), i.e. 2^-8 max|ref| / RMS(ref); a wrong row is off by O(1).
void expectClose(const std::vector<double>& x, const std::vector<double>& ref,
                 std::size_t rowLength, DType io, const std::string& what) {
  const Accuracy a = compare(x, ref);
  const std::vector<double> rows = rowErrors(x, ref, rowLength);
  std::size_t worst = 0;
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (std::isnan(rows[r]) || rows[r] > rows[worst]) worst = r;
  double maxAbs = 0, sumSq = 0;
  for (double v : ref) {
    maxAbs = std::max(maxAbs, std::fabs(v));
    sumSq += v * v;
  }
  const double rms = std::sqrt(sumSq / double(std::max<std::size_t>(ref.size(), 1)));
  const bool bf16 = io == DType::kBF16;
  const double rowLimit = bf16 ? std::ldexp(maxAbs / std::max(rms, 1e-300), -8) : 2e-5;
  EXPECT_TRUE(a.allFinite) << what;
  EXPECT_LE(a.relRmse, bf16 ? 5e-3 : 1e-6) << what;
  EXPECT_LE(rows[worst], rowLimit) << what << ": row " << worst;
  if (std::getenv("H20_TEST_PRINT_ERRORS"))
    std::printf("%s: rms %.2e, worst row %.2e (limit %.2e)\n", what.c_str(), a.relRmse, rows[worst],
                rowLimit);
}

// ---- the convolution on host arrays -----------------------------------------------------------

struct ConvCase {
  std::vector<std::int64_t> lens;  // sequences
  int D = 64, W = 4;
  DType io = DType::kF32, state = DType::kF32;
  bool silu = true, bias = true, initial = true;
};

struct HostConv {
  ConvCase c;
  std::vector<std::uint8_t> x, weight, bias, out, initial, final;
  std::vector<std::int64_t> cu{0};
  ConvProblem p;
  std::int64_t tokens() const { return cu.back(); }
};

HostConv makeConv(const ConvCase& c, std::uint64_t seed) {
  HostConv h;
  h.c = c;
  for (auto l : c.lens)
    h.cu.push_back(h.cu.back() + l);
  const std::size_t N = c.lens.size(), D = std::size_t(c.D), W = std::size_t(c.W);
  h.x = randomTensor(c.io, std::size_t(h.tokens()) * D, seed);
  h.weight = randomTensor(c.io, D * W, seed + 1, 0.5f);
  h.bias = randomTensor(c.io, D, seed + 2, 0.1f);
  h.initial = randomTensor(c.state, N * (W - 1) * D, seed + 3);
  h.out.assign(std::size_t(h.tokens()) * D * dtypeBytes(c.io), 0xff);
  h.final.assign(N * (W - 1) * D * dtypeBytes(c.state), 0xff);
  ConvProblem& p = h.p;
  p.channels = c.D;
  p.width = c.W;
  p.io = c.io;
  p.stateType = c.state;
  p.activation = c.silu ? Activation::kSilu : Activation::kNone;
  p.xStride = p.outStride = c.D;
  p.x = h.x.data();
  p.weight = h.weight.data();
  p.bias = c.bias ? h.bias.data() : nullptr;
  p.out = h.out.data();
  p.initialState = c.initial ? h.initial.data() : nullptr;
  p.finalState = h.final.data();
  return h;
}

// Runs every sequence in channel slabs of `slab` (as the API's blocks would).
void runConv(Isa isa, const HostConv& h, int slab = 32) {
  std::vector<float> ws(shortConvWorkspaceBytes(h.c.W, slab) / sizeof(float) + 16);
  for (std::size_t n = 0; n + 1 < h.cu.size(); ++n)
    for (int c0 = 0; c0 < h.c.D; c0 += slab) {
      ConvItem it{h.cu[n], h.cu[n + 1], std::int64_t(n), c0, std::min(h.c.D, c0 + slab)};
      runShortConv(isa, h.p, it, ws.data());
    }
}

std::vector<ConvCase> convTable() {
  std::vector<ConvCase> t;
  for (std::int64_t len : {1, 2, 3, 15, 16, 17, 63, 64, 65, 300}) {
    ConvCase c;
    c.lens = {len};
    t.push_back(c);
    c.io = DType::kBF16;
    c.initial = len % 2 == 0;
    t.push_back(c);
  }
  ConvCase v;  // varlen with empty sequences, odd width, no bias, no activation, bf16 state
  v.lens = {0, 5, 0, 17, 1, 64, 0};
  v.W = 3;
  v.D = 80;
  v.silu = false;
  v.bias = false;
  v.state = DType::kBF16;
  v.io = DType::kBF16;
  t.push_back(v);
  ConvCase w1;  // width 1: no state at all
  w1.lens = {7, 9};
  w1.W = 1;
  w1.D = 16;
  t.push_back(w1);
  ConvCase wide;
  wide.lens = {40};
  wide.W = 16;
  wide.D = 256;
  t.push_back(wide);
  return t;
}

TEST(ShortConvCore, EveryIsaMatchesTheFp64ReferenceOverTheTable) {
  int cases = 0;
  for (const ConvCase& c : convTable()) {
    HostConv h = makeConv(c, 100 + cases++);
    std::vector<double> refOut, refState;
    referenceShortConvF64(h.p, h.cu, &refOut, &refState);
    for (Isa isa : supportedIsas()) {
      SCOPED_TRACE(::testing::Message()
                   << isaName(isa) << " case " << cases << " D=" << c.D << " W=" << c.W
                   << " tokens " << h.tokens() << (c.io == DType::kBF16 ? " bf16" : " fp32"));
      std::fill(h.out.begin(), h.out.end(), 0xff);
      std::fill(h.final.begin(), h.final.end(), 0xff);
      runConv(isa, h);
      expectClose(toDouble(h.out, c.io), refOut, std::size_t(c.D), c.io,
                  std::string("conv ") + isaName(isa));
      // The state is the last inputs themselves: exact.
      EXPECT_EQ(toDouble(h.final, c.state), refState);
    }
  }
}

// A sequence run in two parts, the second starting from the first's final state, gives the same
// bits as the whole sequence, wherever it is split (also inside the first W-1 tokens).
TEST(ShortConvCore, ASplitSequenceContinuesExactlyAtEveryPosition) {
  for (std::int64_t len : {1, 3, 9, 37}) {
    ConvCase c;
    c.lens = {len};
    HostConv whole = makeConv(c, 7 + len);
    for (Isa isa : supportedIsas()) {
      runConv(isa, whole);
      for (std::int64_t s = 0; s <= len; ++s) {
        SCOPED_TRACE(::testing::Message() << isaName(isa) << " len " << len << " split " << s);
        HostConv part = makeConv(c, 7 + len);  // same inputs
        // First part: tokens [0, s) from the initial state into `mid`.
        std::vector<std::uint8_t> mid(part.final.size(), 0xff);
        std::vector<float> ws(shortConvWorkspaceBytes(c.W, c.D) / sizeof(float));
        ConvProblem p1 = part.p;
        p1.finalState = mid.data();
        runShortConv(isa, p1, ConvItem{0, s, 0, 0, c.D}, ws.data());
        // Second part: tokens [s, len) from `mid`, in place.
        ConvProblem p2 = part.p;
        p2.initialState = mid.data();
        p2.finalState = mid.data();
        runShortConv(isa, p2, ConvItem{s, len, 0, 0, c.D}, ws.data());
        EXPECT_EQ(part.out, whole.out);
        EXPECT_EQ(mid, whole.final);
      }
    }
  }
}

// ---- RMSNorm on host arrays -------------------------------------------------------------------

struct NormCase {
  std::int64_t rows = 3;
  int H = 4, dim = 64;
  DType io = DType::kF32;
  bool gate = true, weight = true, bias = false;
  Activation act = Activation::kSigmoid;
  std::int64_t pad = 0;  // extra elements per row (strides)
  float eps = 1e-6f;
};

struct HostNorm {
  NormCase c;
  std::vector<std::uint8_t> x, gate, weight, bias, out;
  NormProblem p;
};

HostNorm makeNorm(const NormCase& c, std::uint64_t seed) {
  HostNorm h;
  h.c = c;
  const std::int64_t width = std::int64_t(c.H) * c.dim, stride = width + c.pad;
  const std::size_t n = std::size_t(c.rows * stride);
  h.x = randomTensor(c.io, n, seed, 2.0f);
  h.gate = randomTensor(c.io, n, seed + 1, 2.0f);
  h.weight = randomTensor(c.io, std::size_t(c.dim), seed + 2);
  h.bias = randomTensor(c.io, std::size_t(c.dim), seed + 3, 0.1f);
  h.out.assign(n * dtypeBytes(c.io), 0xff);
  NormProblem& p = h.p;
  p.numHeads = c.H;
  p.headDim = c.dim;
  p.io = c.io;
  p.eps = c.eps;
  p.gateActivation = c.act;
  p.xStride = p.gateStride = p.outStride = stride;
  p.x = h.x.data();
  p.gate = c.gate ? h.gate.data() : nullptr;
  p.weight = c.weight ? h.weight.data() : nullptr;
  p.bias = c.bias ? h.bias.data() : nullptr;
  p.out = h.out.data();
  return h;
}

// The output's rows without the padding.
std::vector<double> denseRows(const std::vector<std::uint8_t>& buf, DType t, const NormCase& c) {
  const std::int64_t width = std::int64_t(c.H) * c.dim, stride = width + c.pad;
  std::vector<double> r;
  for (std::int64_t row = 0; row < c.rows; ++row)
    for (std::int64_t i = 0; i < width; ++i)
      r.push_back(loadElement(buf.data(), t, std::size_t(row * stride + i)));
  return r;
}

std::vector<NormCase> normTable() {
  std::vector<NormCase> t;
  for (DType io : {DType::kF32, DType::kBF16}) {
    NormCase kimi;  // Kimi-Linear's output norm: 32 heads of 128, sigmoid gate, weight
    kimi.rows = 17;
    kimi.H = 32;
    kimi.dim = 128;
    kimi.io = io;
    t.push_back(kimi);
    NormCase plain;  // the layer's input RMSNorm: one row of 2304, no gate
    plain.rows = 5;
    plain.H = 1;
    plain.dim = 2304;
    plain.gate = false;
    plain.eps = 1e-5f;
    plain.io = io;
    t.push_back(plain);
    NormCase silu;  // swish gate, bias, padded rows, no weight
    silu.rows = 64;
    silu.H = 2;
    silu.dim = 16;
    silu.act = Activation::kSilu;
    silu.bias = true;
    silu.weight = false;
    silu.pad = 16;
    silu.io = io;
    t.push_back(silu);
    NormCase linear;  // gate taken as it is
    linear.rows = 1;
    linear.act = Activation::kNone;
    linear.io = io;
    t.push_back(linear);
  }
  return t;
}

TEST(RmsNormCore, EveryIsaMatchesTheFp64ReferenceOverTheTable) {
  int cases = 0;
  for (const NormCase& c : normTable()) {
    HostNorm h = makeNorm(c, 500 + cases++);
    std::vector<double> ref;
    referenceRmsNormF64(h.p, c.rows, &ref);
    for (Isa isa : supportedIsas()) {
      SCOPED_TRACE(::testing::Message() << isaName(isa) << " case " << cases);
      std::fill(h.out.begin(), h.out.end(), 0xff);
      runRmsNorm(isa, h.p, 0, c.rows);
      expectClose(denseRows(h.out, c.io, c), ref, std::size_t(c.dim), c.io,
                  std::string("norm ") + isaName(isa));
      // Padding between rows is never written.
      const std::size_t eb = dtypeBytes(c.io);
      const std::int64_t width = std::int64_t(c.H) * c.dim;
      for (std::int64_t row = 0; c.pad > 0 && row < c.rows; ++row)
        EXPECT_EQ(h.out[std::size_t(row * (width + c.pad) + width) * eb], 0xff);
    }
  }
}

// ---- projections on host arrays ---------------------------------------------------------------

struct LinearCase {
  std::int64_t M = 5;
  int K = 33, N = 70;
  DType io = DType::kBF16;
  bool bias = true;
  std::int64_t pad = 0;  // extra elements per row of x and out
};

struct HostLinear {
  LinearCase c;
  std::vector<std::uint8_t> x, weight, bias, out;
  LinearProblem p;
};

HostLinear makeLinear(const LinearCase& c, std::uint64_t seed) {
  HostLinear h;
  h.c = c;
  h.x = randomTensor(c.io, std::size_t(c.M * (c.K + c.pad)), seed);
  h.weight = randomTensor(c.io, std::size_t(c.N) * c.K, seed + 1, 0.05f);
  h.bias = randomTensor(c.io, std::size_t(c.N), seed + 2);
  h.out.assign(std::size_t(c.M * (c.N + c.pad)) * dtypeBytes(c.io), 0xff);
  LinearProblem& p = h.p;
  p.rows = c.M;
  p.inFeatures = c.K;
  p.outFeatures = c.N;
  p.io = c.io;
  p.xStride = c.K + c.pad;
  p.outStride = c.N + c.pad;
  p.x = h.x.data();
  p.weight = h.weight.data();
  p.bias = c.bias ? h.bias.data() : nullptr;
  p.out = h.out.data();
  return h;
}

std::vector<double> linearOut(const HostLinear& h) {
  std::vector<double> r;
  for (std::int64_t m = 0; m < h.c.M; ++m)
    for (int n = 0; n < h.c.N; ++n)
      r.push_back(loadElement(h.out.data(), h.c.io, std::size_t(m * (h.c.N + h.c.pad) + n)));
  return r;
}

std::vector<LinearCase> linearTable() {
  std::vector<LinearCase> t;
  for (DType io : {DType::kBF16, DType::kF32}) {
    LinearCase odd;  // odd sizes, padded rows
    odd.io = io;
    odd.pad = 3;
    t.push_back(odd);
    LinearCase one;  // decode: one token, no bias
    one.M = 1;
    one.K = 2304;
    one.N = 32;
    one.bias = false;
    one.io = io;
    t.push_back(one);
    LinearCase deep;  // o_proj's depth: tiles of one primitive run on every worker at once
    deep.M = 96;
    deep.K = 4096;
    deep.N = 640;
    deep.bias = false;
    deep.io = io;
    t.push_back(deep);
    LinearCase tall;  // more rows than a tile
    tall.M = 300;
    tall.K = 128;
    tall.N = 600;
    tall.io = io;
    t.push_back(tall);
  }
  return t;
}

TEST(LinearCore, TilesMatchTheFp64Reference) {
  if (!linearAvailable()) GTEST_SKIP() << linearUnavailableReason();
  int seed = 0;
  for (const LinearCase& c : linearTable()) {
    HostLinear h = makeLinear(c, 300 + seed++);
    std::vector<double> ref;
    referenceLinearF64(h.p, &ref);
    // Uneven tiles, as the API's last row and column tiles are.
    for (std::int64_t r0 = 0; r0 < c.M; r0 += 256)
      for (int c0 = 0; c0 < c.N; c0 += 64)
        ASSERT_EQ(runLinearTile(h.p, r0, std::min(c.M, r0 + 256), c0, std::min(c.N, c0 + 64)), "");
    expectClose(linearOut(h), ref, std::size_t(c.N), c.io, "linear case " + std::to_string(seed));
    // The padding after each output row is never written.
    const std::size_t eb = dtypeBytes(c.io);
    for (std::int64_t m = 0; c.pad > 0 && m < c.M; ++m)
      EXPECT_EQ(h.out[std::size_t(m * (c.N + c.pad) + c.N) * eb], 0xff);
  }
}

// ---- through the runtime ----------------------------------------------------------------------

struct DeviceFree {
  void operator()(void* p) const { h20Free(p); }
};
using DevicePtr = std::unique_ptr<void, DeviceFree>;

template <class T>
DevicePtr upload(const std::vector<T>& host) {
  void* p = nullptr;
  EXPECT_EQ(h20Malloc(&p, std::max<std::size_t>(host.size() * sizeof(T), 1)), h20Success);
  if (!host.empty()) h20Memcpy(p, host.data(), host.size() * sizeof(T), h20MemcpyHostToDevice);
  return DevicePtr(p);
}
template <class T>
void download(const DevicePtr& d, std::vector<T>* host) {
  h20Memcpy(host->data(), d.get(), host->size() * sizeof(T), h20MemcpyDeviceToHost);
}

h20DataType h20Type(DType t) {
  return t == DType::kF32 ? H20_R_32F : H20_R_16BF;
}

// A HostConv on the device, with its arguments (one varlen call, or B fixed-length rows).
struct DeviceConv {
  DevicePtr x, weight, bias, out, initial, final, cu;
  h20kdaShortConvArgs args{};
  explicit DeviceConv(const HostConv& h, bool varlen = true)
      : x(upload(h.x)),
        weight(upload(h.weight)),
        bias(upload(h.bias)),
        out(upload(h.out)),
        initial(upload(h.initial)),
        final(upload(h.final)),
        cu(upload(h.cu)) {
    args.structSize = sizeof(args);
    args.batch = varlen ? 1 : int(h.c.lens.size());
    args.seqLen = int(varlen ? h.tokens() : h.c.lens[0]);
    args.channels = h.c.D;
    args.width = h.c.W;
    args.dtype = h20Type(h.c.io);
    args.x = x.get();
    args.weight = weight.get();
    args.bias = h.c.bias ? bias.get() : nullptr;
    args.out = out.get();
    args.activation = h.c.silu ? H20_KDA_ACT_SILU : H20_KDA_ACT_NONE;
    args.initialState = h.c.initial ? initial.get() : nullptr;
    args.finalState = final.get();
    args.stateDtype = h20Type(h.c.state);
    args.cuSeqlens = varlen ? static_cast<const std::int64_t*>(cu.get()) : nullptr;
    args.numSeqs = varlen ? int(h.c.lens.size()) : 0;
  }
};

class LayerApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(h20SetDevice(0), h20Success);
    ASSERT_EQ(h20StreamCreate(&stream_), h20Success);
  }
  void TearDown() override { h20StreamDestroy(stream_); }
  h20Stream_t stream_ = nullptr;
};

TEST_F(LayerApi, ShortConvMatchesTheReferenceFixedAndVarlen) {
  for (bool varlen : {false, true}) {
    ConvCase c;
    c.lens =
        varlen ? std::vector<std::int64_t>{0, 33, 1, 0, 70} : std::vector<std::int64_t>{50, 50};
    c.D = 128;
    c.io = DType::kBF16;
    HostConv h = makeConv(c, 900);
    std::vector<double> refOut, refState;
    referenceShortConvF64(h.p, h.cu, &refOut, &refState);
    DeviceConv d(h, varlen);
    ASSERT_EQ(h20kdaShortConv(&d.args, stream_), h20Success) << h20kdaGetLastErrorMessage();
    ASSERT_EQ(h20StreamSynchronize(stream_), h20Success) << h20GetLastErrorMessage();
    download(d.out, &h.out);
    download(d.final, &h.final);
    expectClose(toDouble(h.out, c.io), refOut, std::size_t(c.D), c.io,
                varlen ? "conv api varlen" : "conv api fixed");
    EXPECT_EQ(toDouble(h.final, c.state), refState);
  }
}

// Prefill of T tokens, then decode steps (seqLen 1, the state updated in place) for two
// sequences, equals the prefill of the whole sequences.
TEST_F(LayerApi, ShortConvDecodeStepsContinueAPrefill) {
  ConvCase c;
  c.lens = {12, 12};
  HostConv whole = makeConv(c, 42);
  DeviceConv dw(whole, false);
  ASSERT_EQ(h20kdaShortConv(&dw.args, stream_), h20Success) << h20kdaGetLastErrorMessage();
  const int T = 12, prefix = 9, D = c.D;
  // The same tokens, rearranged: prefix tokens of both rows, then one step per remaining token.
  const std::size_t eb = dtypeBytes(c.io), row = std::size_t(D) * eb;
  std::vector<std::uint8_t> first(2 * prefix * row);
  for (int n = 0; n < 2; ++n)
    std::memcpy(first.data() + n * prefix * row, whole.x.data() + n * T * row, prefix * row);
  DevicePtr xPrefix = upload(first);
  DevicePtr state = upload(whole.initial);
  DevicePtr out = upload(std::vector<std::uint8_t>(2 * row, 0));
  h20kdaShortConvArgs a = dw.args;
  a.seqLen = prefix;
  a.x = xPrefix.get();
  DevicePtr prefixOut = upload(std::vector<std::uint8_t>(first.size(), 0));
  a.out = prefixOut.get();
  a.initialState = state.get();
  a.finalState = state.get();
  ASSERT_EQ(h20kdaShortConv(&a, stream_), h20Success) << h20kdaGetLastErrorMessage();
  std::vector<std::uint8_t> got(2 * row), want(2 * row);
  for (int t = prefix; t < T; ++t) {
    std::vector<std::uint8_t> step(2 * row);
    for (int n = 0; n < 2; ++n)
      std::memcpy(step.data() + n * row, whole.x.data() + (n * T + t) * row, row);
    DevicePtr xs = upload(step);
    a.seqLen = 1;
    a.x = xs.get();
    a.out = out.get();
    ASSERT_EQ(h20kdaShortConv(&a, stream_), h20Success) << h20kdaGetLastErrorMessage();
    ASSERT_EQ(h20StreamSynchronize(stream_), h20Success);
    download(out, &got);
    download(dw.out, &whole.out);
    for (int n = 0; n < 2; ++n)
      std::memcpy(want.data() + n * row, whole.out.data() + (n * T + t) * row, row);
    EXPECT_EQ(got, want) << "token " << t;
  }
  std::vector<std::uint8_t> s(whole.final.size());
  download(state, &s);
  download(dw.final, &whole.final);
  EXPECT_EQ(s, whole.final);
}

// States in a pool: sequence n uses slot stateSlots[n], read and written in place; the other
// slots are left alone, and the results equal those of states by sequence.
TEST_F(LayerApi, ShortConvStateSlotsPickTheirStatesFromAPool) {
  ConvCase c;
  c.lens = {9, 9};
  HostConv h = makeConv(c, 21);
  DeviceConv bySeq(h, false);
  ASSERT_EQ(h20kdaShortConv(&bySeq.args, stream_), h20Success) << h20kdaGetLastErrorMessage();
  // A pool of 5 slots; sequence 0 in slot 3, sequence 1 in slot 1.
  const std::size_t slotBytes = std::size_t(c.W - 1) * c.D * dtypeBytes(c.state);
  std::vector<std::uint8_t> pool(5 * slotBytes, 0x5a);
  std::memcpy(pool.data() + 3 * slotBytes, h.initial.data(), slotBytes);
  std::memcpy(pool.data() + 1 * slotBytes, h.initial.data() + slotBytes, slotBytes);
  DevicePtr poolDev = upload(pool);
  DevicePtr slots = upload(std::vector<std::int32_t>{3, 1});
  DevicePtr out = upload(h.out);
  h20kdaShortConvArgs a = bySeq.args;
  a.out = out.get();
  a.initialState = a.finalState = poolDev.get();
  a.stateSlots = static_cast<const std::int32_t*>(slots.get());
  a.numStateSlots = 5;
  ASSERT_EQ(h20kdaShortConv(&a, stream_), h20Success) << h20kdaGetLastErrorMessage();
  ASSERT_EQ(h20StreamSynchronize(stream_), h20Success) << h20GetLastErrorMessage();
  std::vector<std::uint8_t> want(h.out.size()), got(h.out.size()), fin(h.final.size()),
      after(pool.size());
  download(bySeq.out, &want);
  download(out, &got);
  download(bySeq.final, &fin);
  download(poolDev, &after);
  EXPECT_EQ(got, want);
  EXPECT_EQ(0, std::memcmp(after.data() + 3 * slotBytes, fin.data(), slotBytes));
  EXPECT_EQ(0, std::memcmp(after.data() + 1 * slotBytes, fin.data() + slotBytes, slotBytes));
  for (int untouched : {0, 2, 4})
    EXPECT_EQ(0, std::memcmp(after.data() + untouched * slotBytes,
                             pool.data() + untouched * slotBytes, slotBytes))
        << "slot " << untouched;
}

TEST_F(LayerApi, ShortConvReportsASlotOutsideThePoolAtSynchronize) {
  {
    ConvCase c;
    c.lens = {4, 4};
    HostConv h = makeConv(c, 5);
    DeviceConv d(h, false);
    DevicePtr slots = upload(std::vector<std::int32_t>{0, 2});
    d.args.stateSlots = static_cast<const std::int32_t*>(slots.get());
    d.args.numStateSlots = 2;
    ASSERT_EQ(h20kdaShortConv(&d.args, stream_), h20Success) << h20kdaGetLastErrorMessage();
    EXPECT_EQ(h20StreamSynchronize(stream_), h20ErrorLaunchFailure);
    EXPECT_NE(std::string(h20GetLastErrorMessage()).find("stateSlots[1] = 2 is outside [0, 2)"),
              std::string::npos)
        << h20GetLastErrorMessage();
  }
  ASSERT_EQ(h20DeviceReset(), h20Success);
  ASSERT_EQ(h20StreamCreate(&stream_), h20Success);
}

// A bad argument returns h20ErrorInvalidValue naming it, and nothing is written.
TEST_F(LayerApi, ShortConvRefusesBadArgumentsNamingThemAndWritesNothing) {
  ConvCase c;
  c.lens = {20};
  HostConv h = makeConv(c, 3);
  DeviceConv d(h, false);
  DevicePtr small = upload(std::vector<std::uint8_t>(64, 0));
  struct Bad {
    const char* what;
    void (*apply)(h20kdaShortConvArgs*, void* small);
  };
  const Bad bad[] = {
      {"structSize", [](h20kdaShortConvArgs* a, void*) { a->structSize = 8; }},
      {"batch", [](h20kdaShortConvArgs* a, void*) { a->batch = 0; }},
      {"seqLen", [](h20kdaShortConvArgs* a, void*) { a->seqLen = -1; }},
      {"channels", [](h20kdaShortConvArgs* a, void*) { a->channels = 24; }},
      {"width", [](h20kdaShortConvArgs* a, void*) { a->width = 17; }},
      {"width", [](h20kdaShortConvArgs* a, void*) { a->width = 0; }},
      {"dtype", [](h20kdaShortConvArgs* a, void*) { a->dtype = H20_R_16F; }},
      {"stateDtype", [](h20kdaShortConvArgs* a, void*) { a->stateDtype = H20_R_16F; }},
      {"activation", [](h20kdaShortConvArgs* a, void*) { a->activation = H20_KDA_ACT_SIGMOID; }},
      {"x is NULL", [](h20kdaShortConvArgs* a, void*) { a->x = nullptr; }},
      {"weight is NULL", [](h20kdaShortConvArgs* a, void*) { a->weight = nullptr; }},
      {"xStride", [](h20kdaShortConvArgs* a, void*) { a->xStride = 63; }},
      {"outStride", [](h20kdaShortConvArgs* a, void*) { a->outStride = 1; }},
      {"x (", [](h20kdaShortConvArgs* a, void*) { a->xStride = 1 << 20; }},  // past its end
      {"weight (", [](h20kdaShortConvArgs* a, void* s) { a->weight = s; }},
      {"finalState (", [](h20kdaShortConvArgs* a, void* s) { a->finalState = s; }},
      {"x (",
       [](h20kdaShortConvArgs* a, void*) {
         a->x = static_cast<const char*>(a->x) + 1;  // misaligned
       }},
      {"overlaps", [](h20kdaShortConvArgs* a, void*) { a->out = const_cast<void*>(a->x); }},
      {"overlaps", [](h20kdaShortConvArgs* a, void*) { a->finalState = a->out; }},
      {"numSeqs",
       [](h20kdaShortConvArgs* a, void*) {
         a->cuSeqlens = static_cast<const std::int64_t*>(a->weight);
         a->numSeqs = 0;
       }},
      {"numStateSlots -1", [](h20kdaShortConvArgs* a, void*) { a->numStateSlots = -1; }},
      {"numStateSlots 1 is less",
       [](h20kdaShortConvArgs* a, void*) {
         a->batch = 2;
         a->seqLen = 10;
         a->numStateSlots = 1;
       }},
      {"must be 1 when cuSeqlens",
       [](h20kdaShortConvArgs* a, void*) {
         a->cuSeqlens = static_cast<const std::int64_t*>(a->weight);
         a->numSeqs = 1;
         a->batch = 2;
       }},
  };
  for (const Bad& b : bad) {
    h20kdaShortConvArgs a = d.args;
    b.apply(&a, small.get());
    EXPECT_EQ(h20kdaShortConv(&a, stream_), h20ErrorInvalidValue) << b.what;
    EXPECT_NE(std::string(h20kdaGetLastErrorMessage()).find(b.what), std::string::npos)
        << b.what << ": " << h20kdaGetLastErrorMessage();
  }
  EXPECT_EQ(h20kdaShortConv(nullptr, stream_), h20ErrorInvalidValue);
  ASSERT_EQ(h20StreamSynchronize(stream_), h20Success);
  std::vector<std::uint8_t> out(h.out.size()), fin(h.final.size());
  download(d.out, &out);
  download(d.final, &fin);
  EXPECT_EQ(out, h.out);  // still the sentinel
  EXPECT_EQ(fin, h.final);
}

// The blocks skip their work when the planning kernel finds cuSeqlens invalid; the fault leaves
// the device faulted (so the output cannot be read back), hence a reset per case.
TEST_F(LayerApi, ShortConvReportsBadCuSeqlensAtSynchronize) {
  const std::vector<std::vector<std::int64_t>> bad = {
      {1, 10, 20}, {0, 25, 20}, {0, 10, 19}, {0, -5, 20}};
  for (const auto& cuHost : bad) {
    {
      ConvCase c;
      c.lens = {10, 10};
      HostConv h = makeConv(c, 8);
      DeviceConv d(h, true);
      DevicePtr cu = upload(cuHost);
      d.args.cuSeqlens = static_cast<const std::int64_t*>(cu.get());
      d.args.numSeqs = int(cuHost.size()) - 1;
      // The planning kernel may fault before the main kernel is enqueued; the faulted device
      // then refuses that launch, so the fault may also come back from the call itself.
      const h20Error_t enqueued = h20kdaShortConv(&d.args, stream_);
      std::string message = h20kdaGetLastErrorMessage();
      if (enqueued == h20Success) {
        EXPECT_EQ(h20StreamSynchronize(stream_), h20ErrorLaunchFailure);
        message = h20GetLastErrorMessage();
      } else {
        EXPECT_EQ(enqueued, h20ErrorLaunchFailure);
      }
      EXPECT_NE(message.find("h20kdaShortConv: cuSeqlens"), std::string::npos) << message;
    }
    ASSERT_EQ(h20DeviceReset(), h20Success);
    ASSERT_EQ(h20StreamCreate(&stream_), h20Success);
  }
}

struct DeviceNorm {
  DevicePtr x, gate, weight, bias, out;
  h20kdaRmsNormArgs args{};
  explicit DeviceNorm(const HostNorm& h)
      : x(upload(h.x)),
        gate(upload(h.gate)),
        weight(upload(h.weight)),
        bias(upload(h.bias)),
        out(upload(h.out)) {
    args.structSize = sizeof(args);
    args.rows = h.c.rows;
    args.numHeads = h.c.H;
    args.headDim = h.c.dim;
    args.dtype = h20Type(h.c.io);
    args.x = x.get();
    args.xStride = h.p.xStride;
    args.gate = h.c.gate ? gate.get() : nullptr;
    args.gateStride = h.p.gateStride;
    args.gateActivation = static_cast<h20kdaActivation>(h.c.act);
    args.weight = h.c.weight ? weight.get() : nullptr;
    args.bias = h.c.bias ? bias.get() : nullptr;
    args.eps = h.c.eps;
    args.out = out.get();
    args.outStride = h.p.outStride;
  }
};

TEST_F(LayerApi, RmsNormMatchesTheReferenceOutOfPlaceAndInPlace) {
  int seed = 0;
  for (const NormCase& c : normTable()) {
    HostNorm h = makeNorm(c, 700 + seed++);
    std::vector<double> ref;
    referenceRmsNormF64(h.p, c.rows, &ref);
    for (bool inPlace : {false, true}) {
      DeviceNorm d(h);
      if (inPlace) d.args.out = const_cast<void*>(d.args.x);
      ASSERT_EQ(h20kdaRmsNorm(&d.args, stream_), h20Success) << h20kdaGetLastErrorMessage();
      ASSERT_EQ(h20StreamSynchronize(stream_), h20Success);
      std::vector<std::uint8_t> out(h.out.size());
      download(inPlace ? d.x : d.out, &out);
      expectClose(denseRows(out, c.io, c), ref, std::size_t(c.dim), c.io,
                  "norm api case " + std::to_string(seed) + (inPlace ? " in place" : ""));
    }
  }
}

TEST_F(LayerApi, RmsNormRefusesBadArgumentsNamingThemAndWritesNothing) {
  NormCase c;
  HostNorm h = makeNorm(c, 1);
  DeviceNorm d(h);
  struct Bad {
    const char* what;
    void (*apply)(h20kdaRmsNormArgs*);
  };
  const Bad bad[] = {
      {"structSize", [](h20kdaRmsNormArgs* a) { a->structSize = 0; }},
      {"rows", [](h20kdaRmsNormArgs* a) { a->rows = 0; }},
      {"numHeads", [](h20kdaRmsNormArgs* a) { a->numHeads = -2; }},
      {"headDim", [](h20kdaRmsNormArgs* a) { a->headDim = 100; }},
      {"dtype", [](h20kdaRmsNormArgs* a) { a->dtype = static_cast<h20DataType>(77); }},
      {"gateActivation",
       [](h20kdaRmsNormArgs* a) { a->gateActivation = static_cast<h20kdaActivation>(3); }},
      {"eps", [](h20kdaRmsNormArgs* a) { a->eps = -1.0f; }},
      {"eps", [](h20kdaRmsNormArgs* a) { a->eps = NAN; }},
      {"x is NULL", [](h20kdaRmsNormArgs* a) { a->x = nullptr; }},
      {"out is NULL", [](h20kdaRmsNormArgs* a) { a->out = nullptr; }},
      {"gateStride", [](h20kdaRmsNormArgs* a) { a->gateStride = 5; }},
      {"x (", [](h20kdaRmsNormArgs* a) { a->rows = 1000; }},  // past the allocation
      {"overlaps", [](h20kdaRmsNormArgs* a) { a->out = const_cast<void*>(a->gate); }},
      {"overlaps",
       [](h20kdaRmsNormArgs* a) {  // in place only at the same address
         a->rows = 2;
         a->out = static_cast<char*>(const_cast<void*>(a->x)) + a->xStride * sizeof(float);
       }},
  };
  for (const Bad& b : bad) {
    h20kdaRmsNormArgs a = d.args;
    b.apply(&a);
    EXPECT_EQ(h20kdaRmsNorm(&a, stream_), h20ErrorInvalidValue) << b.what;
    EXPECT_NE(std::string(h20kdaGetLastErrorMessage()).find(b.what), std::string::npos)
        << b.what << ": " << h20kdaGetLastErrorMessage();
  }
  ASSERT_EQ(h20StreamSynchronize(stream_), h20Success);
  std::vector<std::uint8_t> out(h.out.size()), x(h.x.size());
  download(d.out, &out);
  download(d.x, &x);
  EXPECT_EQ(out, h.out);
  EXPECT_EQ(x, h.x);
}

TEST_F(LayerApi, LinearMatchesTheReferenceAndRefusesBadArguments) {
  if (!linearAvailable()) {
    h20kdaLinearArgs a{};
    a.structSize = sizeof(a);
    EXPECT_EQ(h20kdaLinear(&a, stream_), h20ErrorNotSupported);
    GTEST_SKIP() << linearUnavailableReason();
  }
  for (const LinearCase& c : linearTable()) {
    HostLinear h = makeLinear(c, 77);
    std::vector<double> ref;
    referenceLinearF64(h.p, &ref);
    DevicePtr x = upload(h.x), w = upload(h.weight), b = upload(h.bias), o = upload(h.out);
    h20kdaLinearArgs a{};
    a.structSize = sizeof(a);
    a.rows = c.M;
    a.inFeatures = c.K;
    a.outFeatures = c.N;
    a.dtype = h20Type(c.io);
    a.x = x.get();
    a.xStride = h.p.xStride;
    a.weight = w.get();
    a.bias = c.bias ? b.get() : nullptr;
    a.out = o.get();
    a.outStride = h.p.outStride;
    ASSERT_EQ(h20kdaLinear(&a, stream_), h20Success) << h20kdaGetLastErrorMessage();
    ASSERT_EQ(h20StreamSynchronize(stream_), h20Success) << h20GetLastErrorMessage();
    std::vector<std::uint8_t> before = h.out;
    download(o, &h.out);
    expectClose(linearOut(h), ref, std::size_t(c.N), c.io, "linear api");
    // Bad arguments: named, nothing written.
    const std::pair<const char*, void (*)(h20kdaLinearArgs*)> bad[] = {
        {"rows", [](h20kdaLinearArgs* v) { v->rows = 0; }},
        {"inFeatures", [](h20kdaLinearArgs* v) { v->inFeatures = -1; }},
        {"outFeatures", [](h20kdaLinearArgs* v) { v->outFeatures = 0; }},
        {"dtype", [](h20kdaLinearArgs* v) { v->dtype = H20_R_16F; }},
        {"weight is NULL", [](h20kdaLinearArgs* v) { v->weight = nullptr; }},
        {"xStride", [](h20kdaLinearArgs* v) { v->xStride = v->inFeatures - 1; }},
        {"weight (",
         [](h20kdaLinearArgs* v) {
           v->outFeatures += 1000;
           v->outStride = 0;
         }},
        {"overlaps", [](h20kdaLinearArgs* v) { v->out = const_cast<void*>(v->x); }},
        {"structSize", [](h20kdaLinearArgs* v) { v->structSize = 1; }},
    };
    std::vector<std::uint8_t> sentinel(h.out.size(), 0xee);
    h20Memcpy(o.get(), sentinel.data(), sentinel.size(), h20MemcpyHostToDevice);
    for (const auto& [what, apply] : bad) {
      h20kdaLinearArgs v = a;
      apply(&v);
      EXPECT_EQ(h20kdaLinear(&v, stream_), h20ErrorInvalidValue) << what;
      EXPECT_NE(std::string(h20kdaGetLastErrorMessage()).find(what), std::string::npos)
          << what << ": " << h20kdaGetLastErrorMessage();
    }
    ASSERT_EQ(h20StreamSynchronize(stream_), h20Success);
    download(o, &h.out);
    EXPECT_EQ(h.out, sentinel);
  }
}

}  // namespace
}  // namespace h20::kda::test
