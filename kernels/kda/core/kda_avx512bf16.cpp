// kda_avx512bf16.cpp - the KDA kernels compiled for AVX-512 with AVX512_BF16.
//
// Owns the instantiation of kda_kernels.inc with the bf16 dot-product path switched on
// (H20_KDA_BF16_DOT): with bf16 inputs, the chunked kernel's three products against the state run
// on vdpbf16ps; everything else is the AVX-512 code (simd_avx512.inc). The layer operations have
// no such form and run the AVX-512 unit's code. Every header is included before the target region,
// so only code defined in this file is compiled for these instructions; dispatch.cpp calls it
// only when the CPU reports them.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kda_core.hpp"
#include "kda_isa.hpp"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,bmi,bmi2")
// See kda_avx512.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define H20_KDA_ISA_NS avx512bf16
#define H20_KDA_BF16_DOT 1

namespace h20::kda::avx512bf16 {
namespace {
#include "simd_avx512.inc"
}  // namespace
}  // namespace h20::kda::avx512bf16

#include "kda_kernels.inc"

#pragma GCC pop_options
