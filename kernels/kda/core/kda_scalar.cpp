// kda_scalar.cpp - the KDA kernels in portable scalar C++ (one lane).
//
// Owns the scalar traits and the instantiation of kda_kernels.inc for them: the path every x86-64
// CPU can run, and the fallback when H20_KDA_ISA=scalar. Built with the project's baseline flags
// only (no target region), so the compiler may still auto-vectorise it with SSE2.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kda_core.hpp"
#include "kda_isa.hpp"
#include "layer_ops.hpp"

#define H20_KDA_ISA_NS scalar

namespace h20::kda::scalar {
namespace {

struct Simd {
  using V = float;
  static constexpr int W = 1;
  static constexpr int kGemmMR = 4;
  static constexpr int kGemmNV = 4;

  static V zero() { return 0.0f; }
  static V set1(float x) { return x; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V x) { *p = x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V min(V a, V b) { return b < a ? b : a; }
  static V max(V a, V b) { return b > a ? b : a; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V fnmadd(V a, V b, V c) { return c - a * b; }
  static float reduce(V x) { return x; }
  static float reduceMin(V x) { return x; }
  static V selectEqZero(V d, V ifZero, V otherwise) { return d == 0.0f ? ifZero : otherwise; }
  // Same saturation as the SIMD paths: no denormal results.
  static V exp(V x) { return x < -87.336544f ? 0.0f : std::exp(std::min(x, 88.0f)); }
  static V log(V x) { return std::log(x); }
  static V loadBf16(const std::uint16_t* p) { return bf16ToFloat(*p); }
  static void storeBf16(std::uint16_t* p, V x) { *p = floatToBf16(x); }
  // dst (W x W, row stride ldd) = the transpose of src (row stride lds).
  static void transposeTile(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd) {
    (void)lds;
    (void)ldd;
    *dst = *src;
  }
};

}  // namespace
}  // namespace h20::kda::scalar

#include "kda_kernels.inc"
#include "layer_kernels.inc"
