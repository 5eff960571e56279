// kernels.cpp - the reduction kernel (see kernels.hpp).
//
// Each block handles a contiguous range of elements in tiles: the first source is converted into
// an fp32 tile, every further source is converted and combined into it, and the tile is converted
// to the destination type and stored. The loops over a tile are specialised per (operation,
// type), so the compiler vectorises them; the switches run once per tile.
#include "kernels.hpp"

#include <algorithm>
#include <cstring>

namespace h20::ccl {

namespace {

constexpr std::size_t kTile = 2048;
// Elements per block: large enough to amortise the per-block call, small enough that a chunk of
// a few MiB still spreads over the emulator's workers.
constexpr std::uint64_t kPerBlock = 16 * kTile;

inline float fromBits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline std::uint32_t toBits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float loadBf16(std::uint16_t v) {
  return fromBits(static_cast<std::uint32_t>(v) << 16);
}
// Round to nearest, ties to even; NaNs stay (quiet) NaNs of the same sign.
inline std::uint16_t storeBf16(float f) {
  const std::uint32_t u = toBits(f);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

struct Sum {
  static float apply(float a, float b) { return a + b; }
};
struct Max {
  static float apply(float a, float b) { return a < b ? b : a; }
};
struct Min {
  static float apply(float a, float b) { return b < a ? b : a; }
};

void load(std::uint8_t type, const void* src, std::size_t n, float* acc) {
  switch (type) {
    case H20_R_32F:
      std::memcpy(acc, src, n * sizeof(float));
      break;
    case H20_R_16BF: {
      const auto* p = static_cast<const std::uint16_t*>(src);
      for (std::size_t j = 0; j < n; ++j)
        acc[j] = loadBf16(p[j]);
      break;
    }
    default: {
      const auto* p = static_cast<const _Float16*>(src);
      for (std::size_t j = 0; j < n; ++j)
        acc[j] = static_cast<float>(p[j]);
      break;
    }
  }
}

template <class Op>
void combine(std::uint8_t type, const void* src, std::size_t n, float* acc) {
  switch (type) {
    case H20_R_32F: {
      const auto* p = static_cast<const float*>(src);
      for (std::size_t j = 0; j < n; ++j)
        acc[j] = Op::apply(acc[j], p[j]);
      break;
    }
    case H20_R_16BF: {
      const auto* p = static_cast<const std::uint16_t*>(src);
      for (std::size_t j = 0; j < n; ++j)
        acc[j] = Op::apply(acc[j], loadBf16(p[j]));
      break;
    }
    default: {
      const auto* p = static_cast<const _Float16*>(src);
      for (std::size_t j = 0; j < n; ++j)
        acc[j] = Op::apply(acc[j], static_cast<float>(p[j]));
      break;
    }
  }
}

void store(std::uint8_t type, void* dst, std::size_t n, const float* acc) {
  switch (type) {
    case H20_R_32F:
      std::memcpy(dst, acc, n * sizeof(float));
      break;
    case H20_R_16BF: {
      auto* p = static_cast<std::uint16_t*>(dst);
      for (std::size_t j = 0; j < n; ++j)
        p[j] = storeBf16(acc[j]);
      break;
    }
    default: {
      auto* p = static_cast<_Float16*>(dst);
      for (std::size_t j = 0; j < n; ++j)
        p[j] = static_cast<_Float16>(acc[j]);
      break;
    }
  }
}

const unsigned char* at(const void* base, std::uint8_t type, std::uint64_t index) {
  return static_cast<const unsigned char*>(base) +
         index * elementSize(static_cast<h20DataType>(type));
}

// Elements [begin, end) of the reduction.
void reduceRange(const ReduceArgs& a, std::uint64_t begin, std::uint64_t end) {
  alignas(64) float acc[kTile];
  for (std::uint64_t t = begin; t < end; t += kTile) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kTile, end - t));
    load(a.srcType[0], at(a.src[0], a.srcType[0], t), n, acc);
    for (std::uint32_t s = 1; s < a.nsrc; ++s) {
      const auto* p = at(a.src[s], a.srcType[s], t);
      switch (a.op) {
        case h20cclMax:
          combine<Max>(a.srcType[s], p, n, acc);
          break;
        case h20cclMin:
          combine<Min>(a.srcType[s], p, n, acc);
          break;
        default:
          combine<Sum>(a.srcType[s], p, n, acc);
          break;
      }
    }
    store(a.dstType, const_cast<unsigned char*>(at(a.dst, a.dstType, t)), n, acc);
  }
}

void reduceKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const ReduceArgs*>(raw);
  const std::uint64_t begin = static_cast<std::uint64_t>(ctx->blockIdx.x) * a.perBlock;
  reduceRange(a, begin, std::min(a.count, begin + a.perBlock));
}

}  // namespace

h20Error_t launchReduce(const ReduceArgs& args, h20Stream_t stream) {
  if (args.count == 0) return h20Success;
  ReduceArgs a = args;
  a.perBlock = kPerBlock;
  const std::uint64_t blocks = (a.count + kPerBlock - 1) / kPerBlock;
  const h20Dim3 grid{static_cast<unsigned>(blocks), 1, 1};
  const h20Dim3 block{256, 1, 1};
  return h20LaunchKernel(&reduceKernel, grid, block, &a, sizeof a, 0, stream);
}

void reduceOnHost(const ReduceArgs& args) {
  reduceRange(args, 0, args.count);
}

float bf16ToFloat(std::uint16_t v) {
  return loadBf16(v);
}
std::uint16_t floatToBf16(float v) {
  return storeBf16(v);
}

}  // namespace h20::ccl
