// layer_api.cpp - the C API of the layer operations of include/h20/kda.h (h20kdaShortConv,
// h20kdaRmsNorm, h20kdaLinear): argument checks, work decomposition and launch of the kernels of
// kernels/kda/core/layer_ops.hpp and linear.hpp. Uses only the public runtime API.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <h20_base/enum_value.hpp>

#include "api_util.hpp"
#include "h20/kda.h"
#include "kda_core.hpp"
#include "layer_ops.hpp"
#include "linear.hpp"

namespace {

using h20::base::rawEnum;
using h20::kda::Activation;
using h20::kda::ConvItem;
using h20::kda::ConvProblem;
using h20::kda::DType;
using h20::kda::NormProblem;
using namespace h20::kda::api;

constexpr int kMaxChannels = 65536;
// Widest channel slab of one convolution block (bounds its scratch: 2 W x slab floats).
constexpr int kMaxConvSlab = 1024;

// A row width: a multiple of the SIMD quantum in [quantum, kMaxChannels].
void checkWidth(const char* fn, const char* name, int d) {
  const int q = h20::kda::kHeadDimQuantum;
  if (d < q || d > kMaxChannels || d % q != 0)
    invalid(fn, "{} {} is not a multiple of {} in [{}, {}]", name, d, q, q, kMaxChannels);
}

// A row stride: 0 means `width`; otherwise at least `width`.
std::int64_t rowStride(const char* fn, const char* name, std::int64_t stride, std::int64_t width) {
  if (stride == 0) return width;
  if (stride < width)
    invalid(fn, "{} {} is less than the row's {} elements (0 means {})", name, stride, width,
            width);
  return stride;
}

// A tensor of `rows` rows of `width` elements, `stride` apart.
Tensor rowsTensor(const char* fn, const char* name, const void* ptr, std::int64_t rows,
                  std::int64_t width, std::int64_t stride, DType t, const char* typeName) {
  const std::int64_t eb = static_cast<std::int64_t>(h20::kda::dtypeBytes(t));
  const std::size_t elements = mulChecked(fn, {rows - 1, stride}) + std::size_t(width);
  const std::string shape = fmt::format("[rows, {}] = [{}, {}] {}, rows {} elements apart", width,
                                        rows, width, typeName, stride);
  return Tensor{name, ptr, mulChecked(fn, {std::int64_t(elements), eb}), shape, std::size_t(eb)};
}

// `written` and every tensor of `read` lie in device memory of `device`, and `written` overlaps
// none of them, except `alias` (one of `read`, or null) when it is at the same address: an
// operation that reads each element before it writes it may run in place.
void checkWritten(const char* fn, int device, const Tensor& written,
                  const std::vector<const Tensor*>& read, const Tensor* alias = nullptr) {
  for (const Tensor* t : read)
    checkDeviceTensor(fn, *t, device);
  for (const Tensor* t : read)
    if (t != alias || t->ptr != written.ptr) checkNoOverlap(fn, written, *t);
  checkDeviceTensor(fn, written, device);
}

// ---- short convolution ------------------------------------------------------------------------

struct ConvKernelArgs {
  ConvProblem problem;
  const std::int64_t* cuSeqlens;   // null: fixed length
  std::int64_t* plan;              // varlen only
  std::int64_t seqLen;             // T per row, or total tokens
  const std::int32_t* stateSlots;  // null: slot = sequence
  int numStateSlots;
  int slabWidth;
  int slabs;  // per sequence
  int isa;
  std::size_t scratchBytes;
};
static_assert(sizeof(ConvKernelArgs) <= H20_MAX_KERNEL_ARGS_BYTES);

// One block per (sequence rank, channel slab).
void convKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const ConvKernelArgs*>(raw);
  const std::int64_t rank = ctx->blockIdx.x / a.slabs;
  const int slab = static_cast<int>(ctx->blockIdx.x % a.slabs);
  ConvItem it;
  it.channelBegin = slab * a.slabWidth;
  it.channelEnd = std::min(a.problem.channels, it.channelBegin + a.slabWidth);
  if (a.cuSeqlens != nullptr) {
    if (!planEntry(a.plan, rank, &it.tokenBegin, &it.tokenEnd, &it.slot)) return;
  } else {
    it.tokenBegin = rank * a.seqLen;
    it.tokenEnd = it.tokenBegin + a.seqLen;
    it.slot = rank;
  }
  if (a.stateSlots != nullptr) {
    const std::int64_t seq = it.slot;
    it.slot = a.stateSlots[seq];
    if (it.slot < 0 || it.slot >= a.numStateSlots) {
      if (slab == 0)
        reportFault(ctx, fmt::format("h20kdaShortConv: stateSlots[{}] = {} is outside [0, {}) "
                                     "(numStateSlots)",
                                     seq, it.slot, a.numStateSlots));
      return;
    }
  }
  void* scratch = blockScratch(ctx, a.scratchBytes);
  if (scratch == nullptr) {
    reportFault(ctx, fmt::format("h20kdaShortConv: out of host memory for {} bytes of block "
                                 "scratch",
                                 a.scratchBytes));
    return;
  }
  h20::kda::runShortConv(static_cast<h20::kda::Isa>(a.isa), a.problem, it, scratch);
}

void shortConv(const h20kdaShortConvArgs* in, h20Stream_t stream) {
  const char* fn = "h20kdaShortConv";
  const h20kdaShortConvArgs a =
      copyArgs(fn, in, sizeof(h20kdaShortConvArgs), "h20kdaShortConvArgs");
  if (a.batch <= 0) invalid(fn, "batch {} must be positive", a.batch);
  if (a.seqLen <= 0) invalid(fn, "seqLen {} must be positive", a.seqLen);
  checkWidth(fn, "channels", a.channels);
  if (a.width < 1 || a.width > h20::kda::kMaxConvWidth)
    invalid(fn, "width {} is outside [1, {}]", a.width, h20::kda::kMaxConvWidth);
  const DType io = checkDtype(fn, "dtype", rawEnum(a.dtype));
  const DType st = checkDtype(fn, "stateDtype", rawEnum(a.stateDtype));
  const int act = rawEnum(a.activation);
  if (act != H20_KDA_ACT_NONE && act != H20_KDA_ACT_SILU)
    invalid(fn, "activation {} is not H20_KDA_ACT_NONE (0) or H20_KDA_ACT_SILU (1)", act);
  int numSeqs = a.batch;
  if (a.cuSeqlens != nullptr) {
    if (a.batch != 1) invalid(fn, "batch {} must be 1 when cuSeqlens is given", a.batch);
    if (a.numSeqs <= 0) invalid(fn, "numSeqs {} must be positive with cuSeqlens", a.numSeqs);
    numSeqs = a.numSeqs;
  }
  if (a.numStateSlots < 0) invalid(fn, "numStateSlots {} is negative", a.numStateSlots);
  const int slots = a.numStateSlots == 0 ? numSeqs : a.numStateSlots;
  if (a.stateSlots == nullptr && slots < numSeqs)
    invalid(fn, "numStateSlots {} is less than the {} sequences without stateSlots", slots,
            numSeqs);
  requireNonNull(fn, "x", a.x);
  requireNonNull(fn, "weight", a.weight);
  requireNonNull(fn, "out", a.out);
  const std::int64_t D = a.channels, W = a.width;
  const std::int64_t rows = std::int64_t(a.batch) * a.seqLen;
  const std::int64_t xStride = rowStride(fn, "xStride", a.xStride, D);
  const std::int64_t outStride = rowStride(fn, "outStride", a.outStride, D);
  const std::int64_t eb = static_cast<std::int64_t>(h20::kda::dtypeBytes(io));
  const std::int64_t sb = static_cast<std::int64_t>(h20::kda::dtypeBytes(st));
  const char* ioName = dtypeName(rawEnum(a.dtype));
  const Tensor x = rowsTensor(fn, "x", a.x, rows, D, xStride, io, ioName);
  const Tensor out = rowsTensor(fn, "out", a.out, rows, D, outStride, io, ioName);
  const Tensor weight{"weight", a.weight, mulChecked(fn, {D, W, eb}),
                      fmt::format("[D, W] = [{}, {}] {}", D, W, ioName), std::size_t(eb)};
  const Tensor bias{"bias", a.bias, mulChecked(fn, {D, eb}),
                    fmt::format("[D] = [{}] {}", D, ioName), std::size_t(eb)};
  const std::string stateShape = fmt::format("[S, W-1, D] = [{}, {}, {}] {}", slots, W - 1, D,
                                             dtypeName(rawEnum(a.stateDtype)));
  const std::size_t stateBytes = mulChecked(fn, {slots, W - 1, D, sb});
  const Tensor init{"initialState", a.initialState, stateBytes, stateShape, std::size_t(sb)};
  const Tensor fin{"finalState", a.finalState, stateBytes, stateShape, std::size_t(sb)};
  const Tensor cu{"cuSeqlens", a.cuSeqlens, mulChecked(fn, {numSeqs + 1, 8}),
                  fmt::format("[N+1] = [{}] int64", numSeqs + 1), 8};
  const Tensor slotsT{"stateSlots", a.stateSlots, mulChecked(fn, {numSeqs, 4}),
                      fmt::format("[N] = [{}] int32", numSeqs), 4};

  const DeviceInfo dev = streamDevice(fn, stream);
  std::vector<const Tensor*> read = {&x, &weight};
  if (a.bias != nullptr) read.push_back(&bias);
  if (a.initialState != nullptr) read.push_back(&init);
  if (a.cuSeqlens != nullptr) read.push_back(&cu);
  if (a.stateSlots != nullptr) read.push_back(&slotsT);
  checkWritten(fn, dev.device, out, read);
  if (a.finalState != nullptr) {
    // In place (finalState == initialState) is fine: each block reads its slab first.
    read.push_back(&out);
    checkWritten(fn, dev.device, fin, read, &init);
  }

  ConvKernelArgs ka{};
  ConvProblem& p = ka.problem;
  p.channels = a.channels;
  p.width = a.width;
  p.io = io;
  p.stateType = st;
  p.activation = act == H20_KDA_ACT_SILU ? Activation::kSilu : Activation::kNone;
  p.xStride = xStride;
  p.outStride = outStride;
  p.x = a.x;
  p.weight = a.weight;
  p.bias = a.bias;
  p.out = a.out;
  p.initialState = a.initialState;
  p.finalState = a.finalState;
  ka.cuSeqlens = a.cuSeqlens;
  ka.seqLen = a.seqLen;
  ka.stateSlots = a.stateSlots;
  ka.numStateSlots = slots;
  // Channel slabs: enough blocks for every worker (4 per worker), at most kMaxConvSlab wide.
  const int q = h20::kda::kHeadDimQuantum;
  const std::int64_t want = std::max<std::int64_t>(1, (4LL * dev.workers + numSeqs - 1) / numSeqs);
  const std::int64_t slabs =
      std::clamp<std::int64_t>(want, (D + kMaxConvSlab - 1) / kMaxConvSlab, D / q);
  ka.slabWidth = static_cast<int>(((D + slabs - 1) / slabs + q - 1) / q * q);
  ka.slabs = static_cast<int>((D + ka.slabWidth - 1) / ka.slabWidth);
  ka.isa = static_cast<int>(h20::kda::defaultIsa());
  ka.scratchBytes = (h20::kda::shortConvWorkspaceBytes(a.width, ka.slabWidth) + 63) / 64 * 64;
  const std::size_t shared = ka.scratchBytes <= dev.sharedMemOptin ? ka.scratchBytes : 0;
  const unsigned blocks =
      gridSize(fn, std::int64_t(numSeqs) * ka.slabs, dev, "sequences x channel slabs");
  auto launch = [&] {
    return h20LaunchKernel(&convKernel, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &ka, sizeof(ka),
                           shared, stream);
  };
  if (a.cuSeqlens != nullptr) {
    launchWithVarlenPlan(fn, a.cuSeqlens, numSeqs, a.seqLen, stream, [&](std::int64_t* plan) {
      ka.plan = plan;
      return launch();
    });
  } else {
    checkRuntime(fn, "h20LaunchKernel", launch());
  }
}

// ---- RMSNorm ----------------------------------------------------------------------------------

struct NormKernelArgs {
  NormProblem problem;
  std::int64_t rows;
  std::int64_t rowsPerBlock;
  int isa;
};
static_assert(sizeof(NormKernelArgs) <= H20_MAX_KERNEL_ARGS_BYTES);

void normKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const NormKernelArgs*>(raw);
  const std::int64_t r0 = std::int64_t(ctx->blockIdx.x) * a.rowsPerBlock;
  h20::kda::runRmsNorm(static_cast<h20::kda::Isa>(a.isa), a.problem, r0,
                       std::min(a.rows, r0 + a.rowsPerBlock));
}

void rmsNorm(const h20kdaRmsNormArgs* in, h20Stream_t stream) {
  const char* fn = "h20kdaRmsNorm";
  const h20kdaRmsNormArgs a = copyArgs(fn, in, sizeof(h20kdaRmsNormArgs), "h20kdaRmsNormArgs");
  if (a.rows <= 0) invalid(fn, "rows {} must be positive", a.rows);
  if (a.numHeads <= 0) invalid(fn, "numHeads {} must be positive", a.numHeads);
  checkWidth(fn, "headDim", a.headDim);
  const DType io = checkDtype(fn, "dtype", rawEnum(a.dtype));
  const int act = rawEnum(a.gateActivation);
  if (act != H20_KDA_ACT_NONE && act != H20_KDA_ACT_SILU && act != H20_KDA_ACT_SIGMOID)
    invalid(fn,
            "gateActivation {} is not H20_KDA_ACT_NONE, H20_KDA_ACT_SILU or H20_KDA_ACT_SIGMOID",
            act);
  if (!std::isfinite(a.eps) || a.eps < 0.0f) invalid(fn, "eps {} is not finite and >= 0", a.eps);
  requireNonNull(fn, "x", a.x);
  requireNonNull(fn, "out", a.out);
  const std::int64_t width = std::int64_t(a.numHeads) * a.headDim;
  const std::int64_t xStride = rowStride(fn, "xStride", a.xStride, width);
  const std::int64_t gateStride = rowStride(fn, "gateStride", a.gateStride, width);
  const std::int64_t outStride = rowStride(fn, "outStride", a.outStride, width);
  const std::int64_t eb = static_cast<std::int64_t>(h20::kda::dtypeBytes(io));
  const char* ioName = dtypeName(rawEnum(a.dtype));
  const Tensor x = rowsTensor(fn, "x", a.x, a.rows, width, xStride, io, ioName);
  const Tensor gate = rowsTensor(fn, "gate", a.gate, a.rows, width, gateStride, io, ioName);
  const Tensor out = rowsTensor(fn, "out", a.out, a.rows, width, outStride, io, ioName);
  const Tensor weight{"weight", a.weight, mulChecked(fn, {a.headDim, eb}),
                      fmt::format("[headDim] = [{}] {}", a.headDim, ioName), std::size_t(eb)};
  const Tensor bias = sameShape(weight, "bias", a.bias);

  const DeviceInfo dev = streamDevice(fn, stream);
  std::vector<const Tensor*> read = {&x};
  if (a.gate != nullptr) read.push_back(&gate);
  if (a.weight != nullptr) read.push_back(&weight);
  if (a.bias != nullptr) read.push_back(&bias);
  // In place (out == x with the same stride) is fine: each head is read before it is written.
  checkWritten(fn, dev.device, out, read, outStride == xStride ? &x : nullptr);

  NormKernelArgs ka{};
  NormProblem& p = ka.problem;
  p.numHeads = a.numHeads;
  p.headDim = a.headDim;
  p.io = io;
  p.eps = a.eps;
  p.gateActivation = static_cast<Activation>(act);
  p.xStride = xStride;
  p.gateStride = gateStride;
  p.outStride = outStride;
  p.x = a.x;
  p.gate = a.gate;
  p.weight = a.weight;
  p.bias = a.bias;
  p.out = a.out;
  ka.rows = a.rows;
  // About 4 blocks per worker.
  const std::int64_t target = 4LL * dev.workers;
  ka.rowsPerBlock = std::max<std::int64_t>(1, (a.rows + target - 1) / target);
  ka.isa = static_cast<int>(h20::kda::defaultIsa());
  const unsigned blocks =
      gridSize(fn, (a.rows + ka.rowsPerBlock - 1) / ka.rowsPerBlock, dev, "row ranges");
  checkRuntime(fn, "h20LaunchKernel",
               h20LaunchKernel(&normKernel, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &ka,
                               sizeof(ka), 0, stream));
}

// ---- projections -------------------------------------------------------------------------------

struct LinearKernelArgs {
  h20::kda::LinearProblem problem;
  std::int64_t tileRows;
  int tileCols;
  int colTiles;
};
static_assert(sizeof(LinearKernelArgs) <= H20_MAX_KERNEL_ARGS_BYTES);

void linearKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const LinearKernelArgs*>(raw);
  const std::int64_t r0 = std::int64_t(ctx->blockIdx.x / a.colTiles) * a.tileRows;
  const int c0 = int(ctx->blockIdx.x % a.colTiles) * a.tileCols;
  const std::string error =
      h20::kda::runLinearTile(a.problem, r0, std::min(a.problem.rows, r0 + a.tileRows), c0,
                              std::min(a.problem.outFeatures, c0 + a.tileCols));
  if (!error.empty()) reportFault(ctx, "h20kdaLinear: " + error);
}

void linear(const h20kdaLinearArgs* in, h20Stream_t stream) {
  const char* fn = "h20kdaLinear";
  const h20kdaLinearArgs a = copyArgs(fn, in, sizeof(h20kdaLinearArgs), "h20kdaLinearArgs");
  if (!h20::kda::linearAvailable())
    throw ApiError{h20ErrorNotSupported,
                   fmt::format("{}: {}", fn, h20::kda::linearUnavailableReason())};
  if (a.rows <= 0) invalid(fn, "rows {} must be positive", a.rows);
  if (a.inFeatures <= 0) invalid(fn, "inFeatures {} must be positive", a.inFeatures);
  if (a.outFeatures <= 0) invalid(fn, "outFeatures {} must be positive", a.outFeatures);
  const DType io = checkDtype(fn, "dtype", rawEnum(a.dtype));
  requireNonNull(fn, "x", a.x);
  requireNonNull(fn, "weight", a.weight);
  requireNonNull(fn, "out", a.out);
  const std::int64_t K = a.inFeatures, N = a.outFeatures;
  const std::int64_t xStride = rowStride(fn, "xStride", a.xStride, K);
  const std::int64_t outStride = rowStride(fn, "outStride", a.outStride, N);
  const std::int64_t eb = static_cast<std::int64_t>(h20::kda::dtypeBytes(io));
  const char* ioName = dtypeName(rawEnum(a.dtype));
  const Tensor x = rowsTensor(fn, "x", a.x, a.rows, K, xStride, io, ioName);
  const Tensor out = rowsTensor(fn, "out", a.out, a.rows, N, outStride, io, ioName);
  const Tensor weight{"weight", a.weight, mulChecked(fn, {N, K, eb}),
                      fmt::format("[N, K] = [{}, {}] {}", N, K, ioName), std::size_t(eb)};
  const Tensor bias{"bias", a.bias, mulChecked(fn, {N, eb}),
                    fmt::format("[N] = [{}] {}", N, ioName), std::size_t(eb)};
  const DeviceInfo dev = streamDevice(fn, stream);
  std::vector<const Tensor*> read = {&x, &weight};
  if (a.bias != nullptr) read.push_back(&bias);
  checkWritten(fn, dev.device, out, read);

  LinearKernelArgs ka{};
  h20::kda::LinearProblem& p = ka.problem;
  p.rows = a.rows;
  p.inFeatures = a.inFeatures;
  p.outFeatures = a.outFeatures;
  p.io = io;
  p.xStride = xStride;
  p.outStride = outStride;
  p.x = a.x;
  p.weight = a.weight;
  p.bias = a.bias;
  p.out = a.out;
  // Tiles of up to 256 rows x 512 columns, narrower until there are 4 per worker (down to 64
  // columns): every tile reads all of K, so wide tiles reuse the x rows best.
  ka.tileRows = std::min<std::int64_t>(a.rows, 256);
  ka.tileCols = static_cast<int>(std::min<std::int64_t>(N, 512));
  const std::int64_t rowTiles = (a.rows + ka.tileRows - 1) / ka.tileRows;
  while (ka.tileCols > 64 && rowTiles * ((N + ka.tileCols - 1) / ka.tileCols) < 4LL * dev.workers)
    ka.tileCols /= 2;
  ka.colTiles = static_cast<int>((N + ka.tileCols - 1) / ka.tileCols);
  const unsigned blocks = gridSize(fn, rowTiles * ka.colTiles, dev, "output tiles");
  checkRuntime(fn, "h20LaunchKernel",
               h20LaunchKernel(&linearKernel, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &ka,
                               sizeof(ka), 0, stream));
}

}  // namespace

extern "C" {

H20_API h20Error_t h20kdaLinear(const h20kdaLinearArgs* args, h20Stream_t stream) {
  return guarded("h20kdaLinear", [&] { linear(args, stream); });
}

H20_API h20Error_t h20kdaShortConv(const h20kdaShortConvArgs* args, h20Stream_t stream) {
  return guarded("h20kdaShortConv", [&] { shortConv(args, stream); });
}

H20_API h20Error_t h20kdaRmsNorm(const h20kdaRmsNormArgs* args, h20Stream_t stream) {
  return guarded("h20kdaRmsNorm", [&] { rmsNorm(args, stream); });
}

}  // extern "C"
