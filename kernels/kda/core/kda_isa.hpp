// kda_isa.hpp - the per-ISA kernel tables (internal to the KDA core).
//
// Each ISA translation unit (kda_scalar.cpp, kda_avx2.cpp, kda_avx512.cpp, kda_avx512bf16.cpp)
// compiles kda_kernels.inc into its own namespace and exports one table of entry points;
// dispatch.cpp picks the table for the requested ISA. Nothing else crosses the ISA boundary.
#ifndef H20_KERNELS_KDA_CORE_KDA_ISA_HPP_
#define H20_KERNELS_KDA_CORE_KDA_ISA_HPP_

#include <cstddef>

#include "kda_core.hpp"

namespace h20::kda::detail {

// Workspace layouts, shared by every ISA: sizes in floats, each buffer rounded up to 16 floats
// (64 bytes) so that every buffer of a 64-byte-aligned workspace is 64-byte aligned.
inline std::size_t wsRound(std::size_t n) {
  return (n + 15) / 16 * 16;
}
// The last four buffers are the bf16 operands of the dot-product path (two bf16 per float).
inline std::size_t chunkWorkspaceFloats(int K, int Vs, int heads) {
  const std::size_t k = std::size_t(K), vs = std::size_t(Vs), c = kChunk;
  return wsRound(std::size_t(heads) * k * vs) + wsRound(2 * c * k) + wsRound(c * k) +
         wsRound(k * c) + wsRound(c * k) + wsRound(2 * c * c) + wsRound(2 * c * vs) +
         wsRound(c * vs) + wsRound(c * vs) + 2 * wsRound(k) + wsRound(c) +
         wsRound(std::size_t(heads) * k * vs / 2) + wsRound(c * k) + wsRound(c * k / 2) +
         wsRound(c * vs / 2);
}
inline std::size_t recurrentWorkspaceFloats(int K, int Vs, int heads) {
  const std::size_t k = std::size_t(K), vs = std::size_t(Vs);
  return wsRound(std::size_t(heads) * vs * k) + 4 * wsRound(k) + 2 * wsRound(vs);
}

struct IsaKernels {
  void (*chunked)(const Problem& p, const WorkItem& w, void* workspace);
  void (*recurrent)(const Problem& p, const WorkItem& w, void* workspace);
  void (*toBf16)(const float* src, std::uint16_t* dst, std::size_t n);
  void (*fromBf16)(const std::uint16_t* src, float* dst, std::size_t n);
};

}  // namespace h20::kda::detail

namespace h20::kda::scalar {
extern const detail::IsaKernels kKernels;
}
#if defined(__x86_64__)
#define H20_KDA_HAVE_X86_SIMD 1
namespace h20::kda::avx2 {
extern const detail::IsaKernels kKernels;
}
namespace h20::kda::avx512 {
extern const detail::IsaKernels kKernels;
}
namespace h20::kda::avx512bf16 {
extern const detail::IsaKernels kKernels;
}
#endif

#endif  // H20_KERNELS_KDA_CORE_KDA_ISA_HPP_
