// kda_core.hpp - the pure compute of the KDA kernels, independent of the runtime.
//
// Owns the problem description that every KDA kernel works from (plain pointers into host-
// addressable memory, element types, gate parameters), the work decomposition (sequence, value
// head, value slab), the ISA selection, and the entry points of the kernels: the fp64 reference
// (the oracle of the tests), the fp32 per-token recurrence (the benchmark baseline and the decode
// step) and the chunkwise-parallel kernel (the fast path). It does not own memory, launch, or
// validate caller input: the C API layer (kernels/kda/api) does that before calling in here, and
// the unit tests call in here directly on host arrays.
//
// Layouts (row-major, as in include/h20/kda.h): q, k [tokens, H, K]; v, out [tokens, HV, V];
// g [tokens, HV, K]; beta [tokens, HV]; states [slots, HV, V, K]; A_log [HV]; dtBias [HV, K].
// Tokens of all sequences are flattened: a sequence is a token range [tokenBegin, tokenEnd).
#ifndef H20_KERNELS_KDA_CORE_KDA_CORE_HPP_
#define H20_KERNELS_KDA_CORE_KDA_CORE_HPP_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace h20::kda {

// Element types of the tensors a kernel reads and writes (values match h20DataType).
enum class DType : int { kF32 = 0, kBF16 = 1 };
// Gate activations (values match h20kdaGateMode).
enum class Gate : int { kLowerBound = 0, kSoftplus = 1 };
// Instruction-set levels of the SIMD kernels, lowest first. kAvx512Bf16 is AVX-512 plus
// AVX512_BF16: with bf16 inputs the chunked kernel's state products run on vdpbf16ps (bf16
// operands, fp32 sums); everything else is the AVX-512 code.
enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3 };

// Tokens per chunk of the chunkwise kernel. With the lower-bound gate (a >= -5 per token) the
// within-chunk decay is at least e^-80, so the factorised exponents, centred on half of it, stay
// within e^+-40 (see kda_kernels.inc).
inline constexpr int kChunk = 16;
// Head dimensions are multiples of this (the SIMD width of the widest ISA) up to kMaxHeadDim.
inline constexpr int kHeadDimQuantum = 16;
inline constexpr int kMaxHeadDim = 256;
// Most value heads one work item advances in lockstep (their states must fit in L2 together).
inline constexpr int kMaxHeadGroup = 4;

// What a kernel needs to know about one prefill or decode problem. Pointers are host-addressable
// (the emulated device's memory is host memory); none is owned. Trivially copyable: the API
// layer copies it into the launch arguments.
struct Problem {
  int numHeads = 0;               // H: heads of q and k
  int numValueHeads = 0;          // HV: heads of v, g, beta, out and the states; a multiple of H
  int headDimK = 0;               // K
  int headDimV = 0;               // V
  DType io = DType::kF32;         // of q, k, v, g, beta, out
  DType stateType = DType::kF32;  // of initialState and finalState
  Gate gate = Gate::kLowerBound;
  float lowerBound = -5.0f;  // lower-bound gate only
  float scale = 1.0f;        // output scale
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* g = nullptr;
  const void* beta = nullptr;
  void* out = nullptr;
  const float* aLog = nullptr;         // [HV]
  const float* dtBias = nullptr;       // [HV, K] or null
  const void* initialState = nullptr;  // [slots, HV, V, K] or null (zero state)
  void* finalState = nullptr;          // [slots, HV, V, K] or null (not written); may alias
                                       // initialState (decode updates the state in place)
};

// One unit of work: the tokens of one sequence, value heads [valueHead, valueHead + headCount)
// and value columns [vBegin, vEnd). Heads and value columns are independent in the recurrence,
// so splitting along either is exact.
struct WorkItem {
  std::int64_t tokenBegin = 0;
  std::int64_t tokenEnd = 0;
  std::int64_t stateIndex = 0;  // slot of initialState / finalState
  int valueHead = 0;
  int headCount = 1;  // 1..kMaxHeadGroup
  int vBegin = 0;
  int vEnd = 0;
};

// ---- ISA selection --------------------------------------------------------------------------

// The best level this CPU supports (and this build compiled).
Isa detectIsa();
// The level the kernels use by default: H20_KDA_ISA (scalar|avx2|avx512|avx512bf16) if set, clamped
// to what the CPU supports, else detectIsa(). Read once per process; thread-safe.
Isa defaultIsa();
bool isaSupported(Isa isa);
const char* isaName(Isa isa);
std::optional<Isa> parseIsa(std::string_view name);

// ---- kernels on one work item ---------------------------------------------------------------

// Bytes of 64-byte-aligned scratch the kernels need for a work item of `heads` value heads whose
// value slab is `vWidth` columns wide (the maximum of the chunked and the recurrent kernel).
std::size_t workspaceBytes(int headDimK, int vWidth, int heads = 1);

// Runs the chunkwise-parallel kernel on one work item. `workspace` must hold workspaceBytes()
// bytes, 64-byte aligned, and be private to the caller. Reentrant; never throws.
void runChunked(Isa isa, const Problem& p, const WorkItem& w, void* workspace);
// Runs the fp32 per-token recurrence on one work item (same contract as runChunked).
void runRecurrent(Isa isa, const Problem& p, const WorkItem& w, void* workspace);

// Bulk conversions with the ISA's SIMD code (round to nearest even; the tests compare them with
// floatToBf16 below).
void convertToBf16(Isa isa, const float* src, std::uint16_t* dst, std::size_t n);
void convertFromBf16(Isa isa, const std::uint16_t* src, float* dst, std::size_t n);

// ---- work decomposition ---------------------------------------------------------------------

// Value heads per work item: the largest power of two <= kMaxHeadGroup dividing numValueHeads
// that still leaves at least 4 work items per worker (so the grid balances), else 1.
int chooseHeadGroup(std::int64_t numSeqs, int numValueHeads, int workers);
// Number of value slabs per (sequence, head) so that `items` (= N * HV) work items cover
// `workers` workers: 1 when items >= workers, otherwise the smallest power of two that does,
// capped so that every slab is at least kHeadDimQuantum columns wide.
int chooseValueSplits(std::int64_t items, int workers, int headDimV);
// Value columns [begin, end) of slab `index` of `splits` (multiples of kHeadDimQuantum).
void valueSlab(int headDimV, int splits, int index, int* begin, int* end);

// Checks varlen boundaries (cu[0] == 0, non-decreasing, cu[n] == totalTokens) and writes the
// sequence indices ordered longest first (ties by index) to `order`. On failure returns false and
// describes the first violation in `error`. Reads exactly numSeqs + 1 entries of cu.
bool planVarlen(const std::int64_t* cu, int numSeqs, std::int64_t totalTokens, std::int32_t* order,
                std::string* error);

// ---- reference ------------------------------------------------------------------------------

// The per-token recurrence in fp64 over a whole problem: sequence n covers tokens
// [cuSeqlens[n], cuSeqlens[n+1]) and uses state slot n. Inputs are read with p's element types;
// out is [tokens, HV, V] and finalState [N, HV, V, K] (both resized). The oracle of the tests.
void referenceF64(const Problem& p, const std::vector<std::int64_t>& cuSeqlens,
                  std::vector<double>* out, std::vector<double>* finalState);

// ---- bf16 -----------------------------------------------------------------------------------

// Round-to-nearest-even fp32 -> bf16; NaN stays a (quiet) NaN with its sign.
inline std::uint16_t floatToBf16(float f) {
  std::uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16ToFloat(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
// Reads element i of a tensor of type t as float.
inline float loadElement(const void* base, DType t, std::size_t i) {
  return t == DType::kF32 ? static_cast<const float*>(base)[i]
                          : bf16ToFloat(static_cast<const std::uint16_t*>(base)[i]);
}
inline void storeElement(void* base, DType t, std::size_t i, float value) {
  if (t == DType::kF32) {
    static_cast<float*>(base)[i] = value;
  } else {
    static_cast<std::uint16_t*>(base)[i] = floatToBf16(value);
  }
}
inline std::size_t dtypeBytes(DType t) {
  return t == DType::kF32 ? 4 : 2;
}

}  // namespace h20::kda

#endif  // H20_KERNELS_KDA_CORE_KDA_CORE_HPP_
