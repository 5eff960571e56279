// kda_avx512.cpp - the KDA kernels compiled for AVX-512 (F, BW, VL, DQ).
//
// Owns the AVX-512 SIMD traits (16 fp32 lanes: arithmetic, exp/log, bf16 conversion) and the
// instantiation of kda_kernels.inc for them. Every header is included before the target region,
// so only code defined in this file is compiled for AVX-512; dispatch.cpp calls it only when the
// CPU reports the features.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kda_core.hpp"
#include "kda_isa.hpp"
#include "layer_ops.hpp"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsics headers as
// maybe-uninitialized once they are inlined at -O3 (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define H20_KDA_ISA_NS avx512

namespace h20::kda::avx512 {
namespace {

struct Simd {
  using V = __m512;
  static constexpr int W = 16;
  // GEMM register tile: 8 rows x 2 vectors = 16 accumulators of the 32 zmm registers.
  static constexpr int kGemmMR = 8;
  static constexpr int kGemmNV = 2;

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V x) { _mm512_storeu_ps(p, x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // Operand order makes a NaN in `b` propagate (the instructions return their second operand).
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static float reduce(V x) { return _mm512_reduce_add_ps(x); }
  static float reduceMin(V x) { return _mm512_reduce_min_ps(x); }
  static V selectEqZero(V d, V ifZero, V otherwise) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, zero(), _CMP_EQ_OQ), otherwise, ifZero);
  }

  // e^x with Cephes' expf range reduction and polynomial (about 1 ulp); 0 below -87.34 (no
  // denormals), finite (about 1.7e38) above 88; NaN propagates.
  static V exp(V x) {
    const V lo = set1(-87.336544f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    const V xc = _mm512_min_ps(set1(88.0f), _mm512_max_ps(lo, x));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(xc, set1(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, set1(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V p = set1(1.9875691500e-4f);
    p = fmadd(p, r, set1(1.3981999507e-3f));
    p = fmadd(p, r, set1(8.3334519073e-3f));
    p = fmadd(p, r, set1(4.1665795894e-2f));
    p = fmadd(p, r, set1(1.6666665459e-1f));
    p = fmadd(p, r, set1(5.0000001201e-1f));
    p = fmadd(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set1(1.0f)));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mask_blend_ps(under, _mm512_mul_ps(p, _mm512_castsi512_ps(e)), zero());
  }

  // Natural log of positive normal x (Cephes logf).
  static V log(V x) {
    const __m512i bits = _mm512_castps_si512(x);
    V e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126)));
    V m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)),
                                              _mm512_set1_epi32(0x3f000000)));
    // m in [0.5, 1): fold to [sqrt(1/2), sqrt(2)) around 1.
    const __mmask16 small = _mm512_cmp_ps_mask(m, set1(0.707106781186547524f), _CMP_LT_OQ);
    e = _mm512_mask_sub_ps(e, small, e, set1(1.0f));
    m = _mm512_mask_add_ps(m, small, m, m);
    const V f = _mm512_sub_ps(m, set1(1.0f));
    const V z = _mm512_mul_ps(f, f);
    V y = set1(7.0376836292e-2f);
    y = fmadd(y, f, set1(-1.1514610310e-1f));
    y = fmadd(y, f, set1(1.1676998740e-1f));
    y = fmadd(y, f, set1(-1.2420140846e-1f));
    y = fmadd(y, f, set1(1.4249322787e-1f));
    y = fmadd(y, f, set1(-1.6668057665e-1f));
    y = fmadd(y, f, set1(2.0000714765e-1f));
    y = fmadd(y, f, set1(-2.4999993993e-1f));
    y = fmadd(y, f, set1(3.3333331174e-1f));
    y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
    y = fmadd(e, set1(-2.12194440e-4f), y);
    y = fnmadd(set1(0.5f), z, y);
    return fmadd(e, set1(0.693359375f), _mm512_add_ps(f, y));
  }

  static V loadBf16(const std::uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  // Round to nearest even; NaN becomes a quiet NaN.
  static void storeBf16(std::uint16_t* p, V x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  }
};

}  // namespace
}  // namespace h20::kda::avx512

#include "kda_kernels.inc"
#include "layer_kernels.inc"

#pragma GCC pop_options
