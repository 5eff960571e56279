// fuzz_kernels.hpp - the device work of the API fuzzer: kernels, host functions and the byte
// transforms they apply, shared by the device code and the shadow model so both compute the
// same bytes.
//
// Owns: the transform kernel (dst[i] = f(src[i], salt, i), in place allowed), the checksum kernel
// (one FNV-1a hash per block over its chunk of the source, written as 8 bytes per block), the
// fault kernel (one block reports a fault), the host function (copies host bytes in stream
// order) and the records they leave for the fuzzer to check (blocks run, what an h20 call made
// from inside returned). It does not own any model state (fuzz_world.hpp).
#pragma once

#include <h20/h20_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace h20fuzz {

// The byte the transform kernel writes for source byte `v` at index `i` of its range.
inline std::uint8_t TransformByte(std::uint8_t v, std::uint32_t salt, std::size_t i) {
  const std::uint32_t x = v * 167u + salt + static_cast<std::uint32_t>(i) * 13u;
  return static_cast<std::uint8_t>(x ^ (salt >> 8) ^ (x >> 11));
}

// FNV-1a, 64-bit.
inline std::uint64_t Fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// The chunk [begin, end) of an n-byte range that block `b` of `blocks` covers.
inline void ChunkOf(std::size_t n, std::uint32_t blocks, std::uint32_t b, std::size_t* begin,
                    std::size_t* end) {
  const std::size_t per = (n + blocks - 1) / blocks;
  *begin = per * b < n ? per * b : n;
  *end = *begin + per < n ? *begin + per : n;
}

// What a launch or host function observed, checked by the fuzzer once the work has completed.
struct WorkRecord {
  std::atomic<int> runs{0};        // blocks (kernel) or invocations (host function)
  std::atomic<int> apiResult{-1};  // what h20GetDevice returned inside (must be NotPermitted)
  std::atomic<int> sharedBad{0};   // shared memory missing or misaligned
};

// Arguments of the transform and checksum kernels. Zero-initialise: the launch inspects every
// 8-byte word (padding included) for other devices' addresses.
struct KernelArgs {  // (the fuzzer's own: not the driver's)
  const std::uint8_t* src;
  std::uint8_t* dst;
  std::uint64_t count;
  WorkRecord* record;
  std::uint32_t salt;
  std::uint32_t spinUs;  // block 0 sleeps this long first: widens the windows of ordering bugs
  std::uint32_t useShared;
  std::uint32_t noApiCall;  // 1: skip the h20 call from inside (H20_FUZZ_NO_INNER_CALLS)
};

void TransformKernel(const h20KernelContext* ctx, const void* args);
void ChecksumKernel(const h20KernelContext* ctx, const void* args);

struct FaultKernelArgs {
  std::uint32_t faultBlock;
  std::int32_t code;
};
void FaultKernel(const h20KernelContext* ctx, const void* args);

// Host function: copies `n` bytes from src to dst (host memory), counts its runs and records what
// an h20 call made from inside returned.
struct HostCopyArgs {
  void* dst;
  const void* src;
  std::size_t n;
  std::uint32_t spinUs;
  std::uint32_t noApiCall;
  WorkRecord record;
};
void HostCopyFn(void* userData);

}  // namespace h20fuzz
