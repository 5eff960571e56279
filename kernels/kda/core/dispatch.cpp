// dispatch.cpp - ISA selection, kernel dispatch and work decomposition of the KDA core.
//
// Owns the one place where H20_KDA_ISA is read, the CPU feature checks that decide which ISA
// tables may run, and the pure planning functions (value splits, varlen ordering and checks)
// shared by the C API layer and the tests. The kernels themselves live in the ISA units.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>

#include <fmt/format.h>

#include "kda_core.hpp"
#include "kda_isa.hpp"

namespace h20::kda {
namespace {

const detail::IsaKernels& tableFor(Isa isa) {
#if H20_KDA_HAVE_X86_SIMD
  if (isa == Isa::kAvx512Bf16 && isaSupported(Isa::kAvx512Bf16)) return avx512bf16::kKernels;
  if (isa >= Isa::kAvx512 && isaSupported(Isa::kAvx512)) return avx512::kKernels;
  if (isa >= Isa::kAvx2 && isaSupported(Isa::kAvx2)) return avx2::kKernels;
#endif
  (void)isa;
  return scalar::kKernels;
}

Isa computeDefaultIsa() {
  const Isa best = detectIsa();
  const char* env = std::getenv("H20_KDA_ISA");
  if (env == nullptr || *env == '\0') return best;
  const std::optional<Isa> wanted = parseIsa(env);
  if (!wanted) {
    std::fprintf(
        stderr,
        "h20 kernels: ignoring H20_KDA_ISA=%s (expected scalar, avx2, avx512 or avx512bf16)\n",
        env);
    return best;
  }
  if (*wanted > best) {
    std::fprintf(stderr, "h20 kernels: H20_KDA_ISA=%s is not supported by this CPU; using %s\n",
                 env, isaName(best));
    return best;
  }
  return *wanted;
}

}  // namespace

Isa detectIsa() {
#if H20_KDA_HAVE_X86_SIMD
  // libgcc's checks include the OS's XCR0 state, so a kernel without AVX-512 context switching
  // reports no AVX-512.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return __builtin_cpu_supports("avx512bf16") ? Isa::kAvx512Bf16 : Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

Isa defaultIsa() {
  static const Isa isa = computeDefaultIsa();
  return isa;
}

bool isaSupported(Isa isa) {
  return isa <= detectIsa();
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512bf16";
  }
  return "unknown";
}

std::optional<Isa> parseIsa(std::string_view name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx512bf16") return Isa::kAvx512Bf16;
  return std::nullopt;
}

std::size_t workspaceBytes(int headDimK, int vWidth, int heads) {
  return 4 * std::max(detail::chunkWorkspaceFloats(headDimK, vWidth, heads),
                      detail::recurrentWorkspaceFloats(headDimK, vWidth, heads));
}

void runChunked(Isa isa, const Problem& p, const WorkItem& w, void* workspace) {
  tableFor(isa).chunked(p, w, workspace);
}

void runRecurrent(Isa isa, const Problem& p, const WorkItem& w, void* workspace) {
  tableFor(isa).recurrent(p, w, workspace);
}

void convertToBf16(Isa isa, const float* src, std::uint16_t* dst, std::size_t n) {
  tableFor(isa).toBf16(src, dst, n);
}

void convertFromBf16(Isa isa, const std::uint16_t* src, float* dst, std::size_t n) {
  tableFor(isa).fromBf16(src, dst, n);
}

int chooseHeadGroup(std::int64_t numSeqs, int numValueHeads, int workers) {
  int group = 1;
  while (group * 2 <= kMaxHeadGroup && numValueHeads % (group * 2) == 0 &&
         numSeqs * (numValueHeads / (group * 2)) >= 4 * std::int64_t(workers)) {
    group *= 2;
  }
  return group;
}

int chooseValueSplits(std::int64_t items, int workers, int headDimV) {
  const int maxSplits = std::max(1, headDimV / kHeadDimQuantum);
  int splits = 1;
  while (items * splits < workers && splits * 2 <= maxSplits)
    splits *= 2;
  return splits;
}

void valueSlab(int headDimV, int splits, int index, int* begin, int* end) {
  const int units = headDimV / kHeadDimQuantum;
  *begin = units * index / splits * kHeadDimQuantum;
  *end = units * (index + 1) / splits * kHeadDimQuantum;
}

bool planVarlen(const std::int64_t* cu, int numSeqs, std::int64_t totalTokens, std::int32_t* order,
                std::string* error) {
  if (cu[0] != 0) {
    *error = fmt::format("cuSeqlens[0] is {}; it must be 0", cu[0]);
    return false;
  }
  for (int n = 0; n < numSeqs; ++n) {
    if (cu[n + 1] < cu[n]) {
      *error = fmt::format(
          "cuSeqlens[{}] = {} is less than cuSeqlens[{}] = {}; boundaries must be non-decreasing",
          n + 1, cu[n + 1], n, cu[n]);
      return false;
    }
  }
  if (cu[numSeqs] != totalTokens) {
    *error = fmt::format(
        "cuSeqlens[{}] (the last entry, numSeqs = {}) is {}; it must equal the total token "
        "count seqLen = {}",
        numSeqs, numSeqs, cu[numSeqs], totalTokens);
    return false;
  }
  std::iota(order, order + numSeqs, 0);
  std::stable_sort(order, order + numSeqs, [cu](std::int32_t a, std::int32_t b) {
    return cu[a + 1] - cu[a] > cu[b + 1] - cu[b];
  });
  return true;
}

}  // namespace h20::kda
