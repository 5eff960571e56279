// kda_avx2.cpp - the KDA kernels compiled for AVX2 + FMA.
//
// Owns the AVX2 SIMD traits (8 fp32 lanes: arithmetic, exp/log, bf16 conversion) and the
// instantiation of kda_kernels.inc for them. Every header is included before the target region,
// so only code defined in this file is compiled for AVX2; dispatch.cpp calls it only when the CPU
// reports AVX2 and FMA.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kda_core.hpp"
#include "kda_isa.hpp"
#include "layer_ops.hpp"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")

#define H20_KDA_ISA_NS avx2

namespace h20::kda::avx2 {
namespace {

struct Simd {
  using V = __m256;
  static constexpr int W = 8;
  // GEMM register tile: 4 rows x 2 vectors = 8 accumulators of the 16 ymm registers.
  static constexpr int kGemmMR = 4;
  static constexpr int kGemmNV = 2;

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V x) { _mm256_storeu_ps(p, x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static float reduce(V x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduceMin(V x) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static V selectEqZero(V d, V ifZero, V otherwise) {
    return _mm256_blendv_ps(otherwise, ifZero, _mm256_cmp_ps(d, zero(), _CMP_EQ_OQ));
  }

  // e^x (Cephes expf): 0 below -87.34, finite above 88, NaN propagates.
  static V exp(V x) {
    const V lo = set1(-87.336544f);
    const V under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    const V xc = _mm256_min_ps(set1(88.0f), _mm256_max_ps(lo, x));
    const V n = _mm256_round_ps(_mm256_mul_ps(xc, set1(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, set1(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V p = set1(1.9875691500e-4f);
    p = fmadd(p, r, set1(1.3981999507e-3f));
    p = fmadd(p, r, set1(8.3334519073e-3f));
    p = fmadd(p, r, set1(4.1665795894e-2f));
    p = fmadd(p, r, set1(1.6666665459e-1f));
    p = fmadd(p, r, set1(5.0000001201e-1f));
    p = fmadd(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set1(1.0f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  }

  // Natural log of positive normal x (Cephes logf).
  static V log(V x) {
    const __m256i bits = _mm256_castps_si256(x);
    V e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
    V m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                              _mm256_set1_epi32(0x3f000000)));
    const V small = _mm256_cmp_ps(m, set1(0.707106781186547524f), _CMP_LT_OQ);
    e = _mm256_sub_ps(e, _mm256_and_ps(small, set1(1.0f)));
    m = _mm256_add_ps(m, _mm256_and_ps(small, m));
    const V f = _mm256_sub_ps(m, set1(1.0f));
    const V z = _mm256_mul_ps(f, f);
    V y = set1(7.0376836292e-2f);
    y = fmadd(y, f, set1(-1.1514610310e-1f));
    y = fmadd(y, f, set1(1.1676998740e-1f));
    y = fmadd(y, f, set1(-1.2420140846e-1f));
    y = fmadd(y, f, set1(1.4249322787e-1f));
    y = fmadd(y, f, set1(-1.6668057665e-1f));
    y = fmadd(y, f, set1(2.0000714765e-1f));
    y = fmadd(y, f, set1(-2.4999993993e-1f));
    y = fmadd(y, f, set1(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, f), z);
    y = fmadd(e, set1(-2.12194440e-4f), y);
    y = fnmadd(set1(0.5f), z, y);
    return fmadd(e, set1(0.693359375f), _mm256_add_ps(f, y));
  }

  static V loadBf16(const std::uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  // Round to nearest even; NaN becomes a quiet NaN.
  static void storeBf16(std::uint16_t* p, V x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    // Every lane is <= 0xffff, so the unsigned-saturating pack is exact; it interleaves the
    // 128-bit halves, which the permute puts back in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }

  // dst (8 x 8, row stride ldd) = the transpose of src (row stride lds): pairs, then quads
  // within 128-bit lanes, then the lanes.
  static void transposeTile(const float* src, std::ptrdiff_t lds, float* dst, std::ptrdiff_t ldd) {
    V r[8], t[8];
    for (int i = 0; i < 8; ++i)
      r[i] = load(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; ++i) {
      store(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
      store(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
  }
};

}  // namespace
}  // namespace h20::kda::avx2

#include "kda_kernels.inc"
#include "layer_kernels.inc"

#pragma GCC pop_options
