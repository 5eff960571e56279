// kda_api.cpp - the C API of include/h20/kda.h: argument checks, work decomposition and launch.
//
// Owns everything between the caller and the KDA core: checking every argument (values, device
// memory, sizes, overlaps) and naming the culprit in the thread's message; deciding the grid
// ((sequence, value head, value slab) blocks, longest sequences first) and each block's scratch;
// the kernels the runtime runs per block, which turn a block index into a core work item; and the
// varlen planning kernel that checks cuSeqlens on the device side and orders sequences. It uses
// only the public runtime API (h20_runtime.h); it includes nothing from runtime/ or driver_shim/.
#include "h20/kda.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <h20_base/enum_value.hpp>

#include "api_util.hpp"
#include "kda_core.hpp"

namespace {

// The caller's enum fields (dtype, stateDtype, gateMode, algorithm) may hold any int, as C lets
// them: they are read only through rawEnum, as ints, and range-checked before any conversion.
using h20::base::rawEnum;
using h20::kda::DType;
using h20::kda::Problem;
using h20::kda::WorkItem;
using namespace h20::kda::api;

void checkHeadDim(const char* fn, const char* name, int d) {
  if (d < h20::kda::kHeadDimQuantum || d > h20::kda::kMaxHeadDim ||
      d % h20::kda::kHeadDimQuantum != 0) {
    invalid(fn, "{} {} is not a multiple of {} in [{}, {}]", name, d, h20::kda::kHeadDimQuantum,
            h20::kda::kHeadDimQuantum, h20::kda::kMaxHeadDim);
  }
}

// Checks the gate fields shared by prefill and decode; returns the gate.
h20::kda::Gate checkGate(const char* fn, int mode, float lowerBound, float scale) {
  if (mode != H20_KDA_GATE_LOWER_BOUND && mode != H20_KDA_GATE_SOFTPLUS) {
    invalid(fn, "gateMode {} is not H20_KDA_GATE_LOWER_BOUND (0) or H20_KDA_GATE_SOFTPLUS (1)",
            mode);
  }
  if (mode == H20_KDA_GATE_LOWER_BOUND && !(lowerBound >= -5.0f && lowerBound < 0.0f)) {
    invalid(fn, "lowerBound {} is outside [-5, 0) (required by H20_KDA_GATE_LOWER_BOUND)",
            lowerBound);
  }
  if (!std::isfinite(scale)) invalid(fn, "scale {} is not finite", scale);
  return mode == H20_KDA_GATE_SOFTPLUS ? h20::kda::Gate::kSoftplus : h20::kda::Gate::kLowerBound;
}

// ---- launch configuration -------------------------------------------------------------------

// Scratch of the widest value slab; blocks use their shared memory when it is large enough and
// a per-thread buffer otherwise.
struct Scratch {
  std::size_t bytes = 0;
  std::size_t sharedMemBytes = 0;
};

Scratch planScratch(int K, int V, int heads, int splits, const DeviceInfo& dev) {
  int widest = 0;
  for (int j = 0; j < splits; ++j) {
    int b, e;
    h20::kda::valueSlab(V, splits, j, &b, &e);
    widest = std::max(widest, e - b);
  }
  Scratch s;
  s.bytes = (h20::kda::workspaceBytes(K, widest, heads) + 63) / 64 * 64;
  s.sharedMemBytes = s.bytes <= dev.sharedMemOptin ? s.bytes : 0;
  return s;
}

// ---- kernels --------------------------------------------------------------------------------

struct PrefillKernelArgs {
  Problem problem;
  const std::int64_t* cuSeqlens;  // null: fixed length
  std::int64_t* plan;             // varlen only
  std::int64_t seqLen;            // T per row, or total tokens
  int numSeqs;
  int headGroup;  // value heads per block
  int valueSplits;
  int algorithm;
  int isa;
  std::size_t scratchBytes;
};
static_assert(sizeof(PrefillKernelArgs) <= H20_MAX_KERNEL_ARGS_BYTES);

// One block per (sequence rank, value head group, value slab); consecutive blocks share a
// sequence.
void prefillKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const PrefillKernelArgs*>(raw);
  const std::int64_t perSeq = std::int64_t(a.problem.numValueHeads / a.headGroup) * a.valueSplits;
  const std::int64_t block = ctx->blockIdx.x;
  const std::int64_t rank = block / perSeq;
  const int rem = static_cast<int>(block % perSeq);
  WorkItem w;
  w.valueHead = rem / a.valueSplits * a.headGroup;
  w.headCount = a.headGroup;
  h20::kda::valueSlab(a.problem.headDimV, a.valueSplits, rem % a.valueSplits, &w.vBegin, &w.vEnd);
  if (a.cuSeqlens != nullptr) {
    if (!planEntry(a.plan, rank, &w.tokenBegin, &w.tokenEnd, &w.stateIndex)) return;
  } else {
    w.tokenBegin = rank * a.seqLen;
    w.tokenEnd = w.tokenBegin + a.seqLen;
    w.stateIndex = rank;
  }
  void* scratch = blockScratch(ctx, a.scratchBytes);
  if (scratch == nullptr) {
    reportFault(ctx, fmt::format("h20kdaPrefill: out of host memory for {} bytes of block scratch",
                                 a.scratchBytes));
    return;
  }
  const auto isa = static_cast<h20::kda::Isa>(a.isa);
  if (a.algorithm == H20_KDA_ALGO_RECURRENT) {
    h20::kda::runRecurrent(isa, a.problem, w, scratch);
  } else {
    h20::kda::runChunked(isa, a.problem, w, scratch);
  }
}

struct DecodeKernelArgs {
  Problem problem;
  const std::int32_t* stateSlots;
  int numSeqs;
  int numStateSlots;
  int headGroup;
  int valueSplits;
  int isa;
  std::size_t scratchBytes;
};
static_assert(sizeof(DecodeKernelArgs) <= H20_MAX_KERNEL_ARGS_BYTES);

void decodeKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const DecodeKernelArgs*>(raw);
  const std::int64_t perSeq = std::int64_t(a.problem.numValueHeads / a.headGroup) * a.valueSplits;
  const std::int64_t n = ctx->blockIdx.x / perSeq;
  const int rem = static_cast<int>(ctx->blockIdx.x % perSeq);
  WorkItem w;
  w.tokenBegin = n;
  w.tokenEnd = n + 1;
  w.valueHead = rem / a.valueSplits * a.headGroup;
  w.headCount = a.headGroup;
  h20::kda::valueSlab(a.problem.headDimV, a.valueSplits, rem % a.valueSplits, &w.vBegin, &w.vEnd);
  w.stateIndex = a.stateSlots != nullptr ? a.stateSlots[n] : n;
  if (w.stateIndex < 0 || w.stateIndex >= a.numStateSlots) {
    reportFault(ctx, fmt::format("h20kdaDecode: stateSlots[{}] = {} is outside [0, {}) "
                                 "(numStateSlots)",
                                 n, w.stateIndex, a.numStateSlots));
    return;
  }
  void* scratch = blockScratch(ctx, a.scratchBytes);
  if (scratch == nullptr) {
    reportFault(ctx, fmt::format("h20kdaDecode: out of host memory for {} bytes of block scratch",
                                 a.scratchBytes));
    return;
  }
  h20::kda::runRecurrent(static_cast<h20::kda::Isa>(a.isa), a.problem, w, scratch);
}

struct SharedFields {
  int numValueHeads = 0;  // numValueHeads, or numHeads where it is 0
  DType io{}, stateType{};
  h20::kda::Gate gate{};
};

template <class Args>
SharedFields checkShared(const char* fn, const Args& a) {
  if (a.numHeads <= 0) invalid(fn, "numHeads {} must be positive", a.numHeads);
  if (a.numValueHeads < 0) invalid(fn, "numValueHeads {} is negative", a.numValueHeads);
  SharedFields f;
  f.numValueHeads = a.numValueHeads == 0 ? a.numHeads : a.numValueHeads;
  if (f.numValueHeads % a.numHeads != 0) {
    invalid(fn, "numValueHeads {} is not a multiple of numHeads {}", f.numValueHeads, a.numHeads);
  }
  checkHeadDim(fn, "headDimK", a.headDimK);
  checkHeadDim(fn, "headDimV", a.headDimV);
  f.io = checkDtype(fn, "dtype", rawEnum(a.dtype));
  f.stateType = checkDtype(fn, "stateDtype", rawEnum(a.stateDtype));
  f.gate = checkGate(fn, rawEnum(a.gateMode), a.lowerBound, a.scale);
  return f;
}

// The problem fields prefill and decode arguments share; the states are set by the caller.
template <class Args>
Problem problemOf(const Args& a, const SharedFields& f) {
  Problem p;
  p.numHeads = a.numHeads;
  p.numValueHeads = f.numValueHeads;
  p.headDimK = a.headDimK;
  p.headDimV = a.headDimV;
  p.io = f.io;
  p.stateType = f.stateType;
  p.gate = f.gate;
  p.lowerBound = a.lowerBound;
  p.scale = a.scale;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.g = a.g;
  p.beta = a.beta;
  p.out = a.out;
  p.aLog = a.A_log;
  p.dtBias = a.dtBias;
  return p;
}

// q, k, v, g, beta, out, A_log and the optional dtBias of a prefill or decode call, checked
// non-NULL (dtBias may be) and described with their shapes. The leading dimensions are {B, T} for
// prefill and {N, 1} for decode, named `rowNames` ("B,T" or "N,1") in messages.
struct IoTensors {
  Tensor q, k, v, g, beta, out, aLog, dtBias;

  // Every tensor given lies in device memory of `device`.
  void checkOnDevice(const char* fn, int device) const {
    for (const Tensor* t : {&q, &k, &v, &g, &beta, &out, &aLog})
      checkDeviceTensor(fn, *t, device);
    if (dtBias.ptr != nullptr) checkDeviceTensor(fn, dtBias, device);
  }
};

template <class Args>
IoTensors ioTensors(const char* fn, const Args& a, const SharedFields& f, std::int64_t r0,
                    std::int64_t r1, const char* rowNames) {
  requireNonNull(fn, "q", a.q);
  requireNonNull(fn, "k", a.k);
  requireNonNull(fn, "v", a.v);
  requireNonNull(fn, "g", a.g);
  requireNonNull(fn, "beta", a.beta);
  requireNonNull(fn, "out", a.out);
  requireNonNull(fn, "A_log", a.A_log);
  const std::int64_t H = a.numHeads, HV = f.numValueHeads, K = a.headDimK, V = a.headDimV;
  const std::int64_t eb = static_cast<std::int64_t>(h20::kda::dtypeBytes(f.io));
  const char* io = dtypeName(rawEnum(a.dtype));
  auto tensor = [&](const char* name, const void* ptr, std::int64_t d2, std::int64_t d3,
                    const char* dims) {
    const std::int64_t inner = d3 > 0 ? d2 * d3 : d2;
    const std::string shape =
        d3 > 0 ? fmt::format("[{},{}] = [{}, {}, {}, {}] {}", rowNames, dims, r0, r1, d2, d3, io)
               : fmt::format("[{},{}] = [{}, {}, {}] {}", rowNames, dims, r0, r1, d2, io);
    return Tensor{name, ptr, mulChecked(fn, {r0, r1, inner, eb}), shape, std::size_t(eb)};
  };
  IoTensors t;
  t.q = tensor("q", a.q, H, K, "H,K");
  t.k = sameShape(t.q, "k", a.k);
  t.v = tensor("v", a.v, HV, V, "HV,V");
  t.g = tensor("g", a.g, HV, K, "HV,K");
  t.beta = tensor("beta", a.beta, HV, 0, "HV");
  t.out = sameShape(t.v, "out", a.out);
  t.aLog =
      Tensor{"A_log", a.A_log, mulChecked(fn, {HV, 4}), fmt::format("[HV] = [{}] fp32", HV), 4};
  t.dtBias = Tensor{"dtBias", a.dtBias, mulChecked(fn, {HV, K, 4}),
                    fmt::format("[HV,K] = [{}, {}] fp32", HV, K), 4};
  return t;
}

// ---- prefill --------------------------------------------------------------------------------

constexpr std::size_t kPrefillMinSize = offsetof(h20kdaPrefillArgs, numSeqs) + sizeof(int);
constexpr std::size_t kDecodeMinSize = offsetof(h20kdaDecodeArgs, numStateSlots) + sizeof(int);

void prefill(const h20kdaPrefillArgs* in, h20Stream_t stream) {
  const char* fn = "h20kdaPrefill";
  const h20kdaPrefillArgs a = copyArgs(fn, in, kPrefillMinSize, "h20kdaPrefillArgs");
  const int algorithm = a.structSize >= offsetof(h20kdaPrefillArgs, algorithm) + sizeof(a.algorithm)
                            ? rawEnum(a.algorithm)
                            : H20_KDA_ALGO_DEFAULT;

  if (a.batch <= 0) invalid(fn, "batch {} must be positive", a.batch);
  if (a.seqLen <= 0) invalid(fn, "seqLen {} must be positive", a.seqLen);
  const SharedFields shared = checkShared(fn, a);
  const int HV = shared.numValueHeads;
  const DType st = shared.stateType;
  int numSeqs = a.batch;
  if (a.cuSeqlens != nullptr) {
    if (a.batch != 1) invalid(fn, "batch {} must be 1 when cuSeqlens is given", a.batch);
    if (a.numSeqs <= 0) invalid(fn, "numSeqs {} must be positive with cuSeqlens", a.numSeqs);
    numSeqs = a.numSeqs;
  }
  if (algorithm != H20_KDA_ALGO_DEFAULT && algorithm != H20_KDA_ALGO_CHUNKED &&
      algorithm != H20_KDA_ALGO_RECURRENT) {
    invalid(fn, "algorithm {} is not an h20kdaAlgorithm", algorithm);
  }
  const IoTensors tensors = ioTensors(fn, a, shared, a.batch, a.seqLen, "B,T");
  const Tensor &q = tensors.q, &k = tensors.k, &v = tensors.v, &g = tensors.g, &beta = tensors.beta,
               &out = tensors.out, &aLog = tensors.aLog;
  const std::int64_t K = a.headDimK, V = a.headDimV;
  const std::int64_t sb = static_cast<std::int64_t>(h20::kda::dtypeBytes(st));
  const std::string stateShape = fmt::format("[N,HV,V,K] = [{}, {}, {}, {}] {}", numSeqs, HV, V, K,
                                             dtypeName(rawEnum(a.stateDtype)));
  const std::size_t stateBytes = mulChecked(fn, {numSeqs, HV, V, K, sb});
  const DeviceInfo dev = streamDevice(fn, stream);
  const int device = dev.device;
  tensors.checkOnDevice(fn, device);
  const Tensor init{"initialState", a.initialState, stateBytes, stateShape, std::size_t(sb)};
  const Tensor fin{"finalState", a.finalState, stateBytes, stateShape, std::size_t(sb)};
  if (a.initialState != nullptr) checkDeviceTensor(fn, init, device);
  if (a.finalState != nullptr) checkDeviceTensor(fn, fin, device);
  const Tensor cu{"cuSeqlens", a.cuSeqlens, mulChecked(fn, {numSeqs + 1, 8}),
                  fmt::format("[N+1] = [{}] int64", numSeqs + 1), 8};
  if (a.cuSeqlens != nullptr) checkDeviceTensor(fn, cu, device);

  for (const Tensor* t : {&q, &k, &v, &g, &beta, &aLog})
    checkNoOverlap(fn, out, *t);
  if (a.dtBias != nullptr) checkNoOverlap(fn, out, tensors.dtBias);
  if (a.initialState != nullptr) checkNoOverlap(fn, out, init);
  if (a.cuSeqlens != nullptr) checkNoOverlap(fn, out, cu);
  if (a.finalState != nullptr) {
    checkNoOverlap(fn, fin, out);
    for (const Tensor* t : {&q, &k, &v, &g, &beta, &aLog})
      checkNoOverlap(fn, fin, *t);
    if (a.cuSeqlens != nullptr) checkNoOverlap(fn, fin, cu);
    // In place (finalState == initialState) is fine: each block reads its slab before writing
    // it. A partial overlap is not.
    if (a.initialState != nullptr && a.initialState != a.finalState) checkNoOverlap(fn, fin, init);
  }

  PrefillKernelArgs ka{};
  Problem& p = ka.problem;
  p = problemOf(a, shared);
  p.initialState = a.initialState;
  p.finalState = a.finalState;
  ka.cuSeqlens = a.cuSeqlens;
  ka.seqLen = a.seqLen;
  ka.numSeqs = numSeqs;
  ka.headGroup = h20::kda::chooseHeadGroup(numSeqs, HV, dev.workers);
  ka.valueSplits = h20::kda::chooseValueSplits(std::int64_t(numSeqs) * (HV / ka.headGroup),
                                               dev.workers, a.headDimV);
  ka.algorithm =
      algorithm == H20_KDA_ALGO_RECURRENT ? H20_KDA_ALGO_RECURRENT : H20_KDA_ALGO_CHUNKED;
  ka.isa = static_cast<int>(h20::kda::defaultIsa());
  const Scratch scratch = planScratch(a.headDimK, a.headDimV, ka.headGroup, ka.valueSplits, dev);
  ka.scratchBytes = scratch.bytes;
  const unsigned blocks = gridSize(fn, std::int64_t(numSeqs) * (HV / ka.headGroup) * ka.valueSplits,
                                   dev, "sequences x value heads x value slabs");

  const h20Dim3 one{1, 1, 1};
  auto launch = [&] {
    return h20LaunchKernel(&prefillKernel, h20Dim3{blocks, 1, 1}, one, &ka, sizeof(ka),
                           scratch.sharedMemBytes, stream);
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

// ---- decode ---------------------------------------------------------------------------------

void decode(const h20kdaDecodeArgs* in, h20Stream_t stream) {
  const char* fn = "h20kdaDecode";
  const h20kdaDecodeArgs a = copyArgs(fn, in, kDecodeMinSize, "h20kdaDecodeArgs");
  if (a.numSeqs <= 0) invalid(fn, "numSeqs {} must be positive", a.numSeqs);
  const SharedFields shared = checkShared(fn, a);
  const int HV = shared.numValueHeads;
  const DType st = shared.stateType;
  if (a.numStateSlots < 0) invalid(fn, "numStateSlots {} is negative", a.numStateSlots);
  const int slots = a.numStateSlots == 0 ? a.numSeqs : a.numStateSlots;
  if (a.stateSlots == nullptr && slots < a.numSeqs) {
    invalid(fn, "numStateSlots {} is less than numSeqs {} without stateSlots", slots, a.numSeqs);
  }
  requireNonNull(fn, "state", a.state);
  const IoTensors tensors = ioTensors(fn, a, shared, a.numSeqs, 1, "N,1");
  const Tensor &q = tensors.q, &k = tensors.k, &v = tensors.v, &g = tensors.g, &beta = tensors.beta,
               &out = tensors.out, &aLog = tensors.aLog;
  const std::int64_t N = a.numSeqs, K = a.headDimK, V = a.headDimV;
  const std::int64_t sb = static_cast<std::int64_t>(h20::kda::dtypeBytes(st));
  const Tensor state{"state", a.state, mulChecked(fn, {slots, HV, V, K, sb}),
                     fmt::format("[numStateSlots,HV,V,K] = [{}, {}, {}, {}] {}", slots, HV, V, K,
                                 dtypeName(rawEnum(a.stateDtype))),
                     std::size_t(sb)};
  const DeviceInfo dev = streamDevice(fn, stream);
  const int device = dev.device;
  tensors.checkOnDevice(fn, device);
  checkDeviceTensor(fn, state, device);
  const Tensor slotsT{"stateSlots", a.stateSlots, mulChecked(fn, {N, 4}),
                      fmt::format("[N] = [{}] int32", N), 4};
  if (a.stateSlots != nullptr) checkDeviceTensor(fn, slotsT, device);
  for (const Tensor* t : {&q, &k, &v, &g, &beta, &aLog, &state})
    checkNoOverlap(fn, out, *t);
  for (const Tensor* t : {&q, &k, &v, &g, &beta, &aLog})
    checkNoOverlap(fn, state, *t);
  if (a.stateSlots != nullptr) {
    checkNoOverlap(fn, out, slotsT);
    checkNoOverlap(fn, state, slotsT);
  }

  DecodeKernelArgs ka{};
  Problem& p = ka.problem;
  p = problemOf(a, shared);
  p.initialState = a.state;  // updated in place
  p.finalState = a.state;
  ka.stateSlots = a.stateSlots;
  ka.numSeqs = a.numSeqs;
  ka.numStateSlots = slots;
  ka.headGroup = h20::kda::chooseHeadGroup(N, HV, dev.workers);
  ka.valueSplits = h20::kda::chooseValueSplits(N * (HV / ka.headGroup), dev.workers, a.headDimV);
  ka.isa = static_cast<int>(h20::kda::defaultIsa());
  const Scratch scratch = planScratch(a.headDimK, a.headDimV, ka.headGroup, ka.valueSplits, dev);
  ka.scratchBytes = scratch.bytes;
  const unsigned blocks = gridSize(fn, N * (HV / ka.headGroup) * ka.valueSplits, dev,
                                   "sequences x value heads x value slabs");
  checkRuntime(fn, "h20LaunchKernel",
               h20LaunchKernel(&decodeKernel, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &ka,
                               sizeof(ka), scratch.sharedMemBytes, stream));
}

}  // namespace

extern "C" {

H20_API h20Error_t h20kdaPrefill(const h20kdaPrefillArgs* args, h20Stream_t stream) {
  return guarded("h20kdaPrefill", [&] { prefill(args, stream); });
}

H20_API h20Error_t h20kdaDecode(const h20kdaDecodeArgs* args, h20Stream_t stream) {
  return guarded("h20kdaDecode", [&] { decode(args, stream); });
}

H20_API const char* h20kdaGetLastErrorMessage(void) {
  return tlsLastError.c_str();
}

H20_API const char* h20kdaGetIsaName(void) {
  return h20::kda::isaName(h20::kda::defaultIsa());
}

}  // extern "C"
