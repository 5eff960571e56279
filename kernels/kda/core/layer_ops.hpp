// layer_ops.hpp - the operations around the KDA core in a Kimi-Linear KDA layer: the causal
// depthwise short convolution (with its per-sequence state) and the (gated) RMSNorm, as pure
// compute on host-addressable arrays, like kda_core.hpp.
//
// Owns their problem descriptions, their per-ISA entry points (compiled from layer_kernels.inc
// into each ISA unit next to the KDA kernels) and their fp64 references (the tests' oracles). The
// C API layer (kernels/kda/api) checks arguments, decomposes the work and launches; the unit tests
// call in here directly.
//
// Layouts (row-major; "row" = token): x, out [tokens, D] with rows `xStride` / `outStride`
// elements apart; the convolution's weight [D, W] (PyTorch's depthwise Conv1d weight [D, 1, W]),
// bias [D]; its states [slots, W-1, D]: the last W-1 inputs of a sequence, oldest first.
#ifndef H20_KERNELS_KDA_CORE_LAYER_OPS_HPP_
#define H20_KERNELS_KDA_CORE_LAYER_OPS_HPP_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kda_core.hpp"

namespace h20::kda {

// Activations (values match h20kdaActivation).
enum class Activation : int { kNone = 0, kSilu = 1, kSigmoid = 2 };

// Widest convolution the kernels take.
inline constexpr int kMaxConvWidth = 16;

// y[t, d] = act(bias[d] + sum_j weight[d, j] x[t - (W-1) + j, d]) over one sequence, where the
// inputs before its first token come from its initial state (zeros without one).
struct ConvProblem {
  int channels = 0;                           // D: a multiple of kHeadDimQuantum
  int width = 0;                              // W in [1, kMaxConvWidth]
  DType io = DType::kF32;                     // of x, weight, bias, out
  DType stateType = DType::kF32;              // of initialState and finalState
  Activation activation = Activation::kNone;  // kNone or kSilu
  std::int64_t xStride = 0, outStride = 0;    // elements from one token's row to the next
  const void* x = nullptr;
  const void* weight = nullptr;  // [D, W]
  const void* bias = nullptr;    // [D] or null
  void* out = nullptr;
  const void* initialState = nullptr;  // [slots, W-1, D] or null (zeros)
  void* finalState = nullptr;          // [slots, W-1, D] or null; may alias initialState
};

// Channels [channelBegin, channelEnd) (multiples of kHeadDimQuantum) of the sequence of tokens
// [tokenBegin, tokenEnd) whose states are in slot `slot`. The initial state is read before the
// final state is written, so one slab may update its state in place.
struct ConvItem {
  std::int64_t tokenBegin = 0, tokenEnd = 0, slot = 0;
  int channelBegin = 0, channelEnd = 0;
};

// y = act_g(gate) * (bias + weight * x / sqrt(mean(x^2) + eps)) per head (a group of `headDim`
// contiguous elements of a row), without the gate factor when gate is null; weight and bias are
// shared by the heads (null: 1 and 0).
struct NormProblem {
  int numHeads = 0;
  int headDim = 0;  // a multiple of kHeadDimQuantum
  DType io = DType::kF32;
  float eps = 0.0f;
  Activation gateActivation = Activation::kSigmoid;
  std::int64_t xStride = 0, gateStride = 0, outStride = 0;
  const void* x = nullptr;
  const void* gate = nullptr;    // [tokens, H * headDim] or null
  const void* weight = nullptr;  // [headDim] or null
  const void* bias = nullptr;    // [headDim] or null
  void* out = nullptr;           // may be x itself (same stride): each head is read first
};

// Bytes of 64-byte-aligned scratch runShortConv needs for a slab of `channels` channels.
std::size_t shortConvWorkspaceBytes(int width, int channels);
// Runs one item; `workspace` as runChunked's. Reentrant; never throws.
void runShortConv(Isa isa, const ConvProblem& p, const ConvItem& item, void* workspace);
// Rows [rowBegin, rowEnd), every head. Needs no scratch.
void runRmsNorm(Isa isa, const NormProblem& p, std::int64_t rowBegin, std::int64_t rowEnd);

// fp64 references over whole problems. The convolution: sequence n covers tokens
// [cuSeqlens[n], cuSeqlens[n+1]) and uses state slot n; out is [tokens, D] (dense) and
// finalState [N, W-1, D]. The norm: out is [rows, H * headDim] (dense).
void referenceShortConvF64(const ConvProblem& p, const std::vector<std::int64_t>& cuSeqlens,
                           std::vector<double>* out, std::vector<double>* finalState);
void referenceRmsNormF64(const NormProblem& p, std::int64_t rows, std::vector<double>* out);

namespace detail {
struct LayerKernels {
  void (*shortConv)(const ConvProblem& p, const ConvItem& item, void* workspace);
  void (*rmsNorm)(const NormProblem& p, std::int64_t rowBegin, std::int64_t rowEnd);
};
}  // namespace detail

}  // namespace h20::kda

namespace h20::kda::scalar {
extern const detail::LayerKernels kLayerKernels;
}
#if defined(__x86_64__)
namespace h20::kda::avx2 {
extern const detail::LayerKernels kLayerKernels;
}
namespace h20::kda::avx512 {
extern const detail::LayerKernels kLayerKernels;
}
#endif

#endif  // H20_KERNELS_KDA_CORE_LAYER_OPS_HPP_
