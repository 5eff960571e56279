// kernels.hpp - the device kernels of the collectives: an element-wise reduction of up to
// H20_CCL_MAX_RANKS sources into one destination, each with its own element type.
//
// A ring step reduces the rank's own chunk with the fp32 partial sum taken from its predecessor;
// the direct algorithm reduces one chunk of every rank at once. Both are one kernel, so the
// arithmetic (fp32 accumulation, rounding to the nearest even 16-bit value once, at the store)
// lives in exactly one place. The kernels do not know about ranks, streams or events.
#pragma once

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <cstddef>
#include <cstdint>

namespace h20::ccl {

// Element types the kernels read and write: the public h20DataType values (fp32 partial sums are
// H20_R_32F).
inline std::size_t elementSize(h20DataType type) {
  return type == H20_R_32F ? 4 : 2;
}

// Arguments of the reduction kernel (copied by h20LaunchKernel). Every word that is not a pointer
// is small, so the runtime's scan for peer pointers in the arguments never mistakes one for an
// address.
struct ReduceArgs {
  void* dst = nullptr;
  const void* src[H20_CCL_MAX_RANKS] = {};
  std::uint64_t count = 0;     // elements
  std::uint64_t perBlock = 0;  // elements per block
  std::uint32_t nsrc = 0;
  std::uint8_t op = 0;  // h20cclRedOp
  std::uint8_t dstType = 0;
  std::uint8_t srcType[H20_CCL_MAX_RANKS] = {};
};

// dst[i] = op(src[0][i], ..., src[nsrc-1][i]) for i < count, accumulated in fp32 in source order
// and converted to dstType once. dst may alias a source exactly (same address), not partially.
// Enqueues the kernel on `stream` (whose device must be current when the stream is a special
// handle). count 0 enqueues nothing.
h20Error_t launchReduce(const ReduceArgs& args, h20Stream_t stream);

// The same reduction run by the calling thread (the transports between processes reduce on the
// host, inside the host function that runs a rank's part of a collective).
void reduceOnHost(const ReduceArgs& args);

// Host versions of the conversions, for tests of the library's own arithmetic.
float bf16ToFloat(std::uint16_t v);
std::uint16_t floatToBf16(float v);

}  // namespace h20::ccl
