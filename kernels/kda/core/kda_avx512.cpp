// kda_avx512.cpp - the KDA kernels compiled for AVX-512 (F, BW, VL, DQ).
//
// Owns the instantiation of kda_kernels.inc and layer_kernels.inc for the AVX-512 traits
// (simd_avx512.inc). Every header is included before the target region,
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
// (maybe-)uninitialized once they are inlined at -O3 (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define H20_KDA_ISA_NS avx512

namespace h20::kda::avx512 {
namespace {
#include "simd_avx512.inc"
}  // namespace
}  // namespace h20::kda::avx512

#include "kda_kernels.inc"
#include "layer_kernels.inc"

#pragma GCC pop_options
