// layer_ops.cpp - dispatch, scratch sizes and fp64 references of the layer operations
// (layer_ops.hpp); the kernels are in layer_kernels.inc, compiled per ISA.
#include "layer_ops.hpp"

#include <cmath>

#include "kda_isa.hpp"

namespace h20::kda {
namespace {

const detail::LayerKernels& layerTable(Isa isa) {
#if H20_KDA_HAVE_X86_SIMD
  // The layer operations have no bf16 dot-product form: AVX-512 + BF16 runs the AVX-512 code.
  if (isa >= Isa::kAvx512 && isaSupported(Isa::kAvx512)) return avx512::kLayerKernels;
  if (isa >= Isa::kAvx2 && isaSupported(Isa::kAvx2)) return avx2::kLayerKernels;
#endif
  (void)isa;
  return scalar::kLayerKernels;
}

double activate(Activation a, double x) {
  switch (a) {
    case Activation::kSilu:
      return x / (1.0 + std::exp(-x));
    case Activation::kSigmoid:
      return 1.0 / (1.0 + std::exp(-x));
    case Activation::kNone:
      break;
  }
  return x;
}

}  // namespace

std::size_t shortConvWorkspaceBytes(int width, int channels) {
  const std::size_t w = std::size_t(width), s = std::size_t(channels);
  return (2 * detail::wsRound(w * s) + detail::wsRound(s)) * sizeof(float);
}

void runShortConv(Isa isa, const ConvProblem& p, const ConvItem& item, void* workspace) {
  layerTable(isa).shortConv(p, item, workspace);
}

void runRmsNorm(Isa isa, const NormProblem& p, std::int64_t rowBegin, std::int64_t rowEnd) {
  layerTable(isa).rmsNorm(p, rowBegin, rowEnd);
}

void referenceShortConvF64(const ConvProblem& p, const std::vector<std::int64_t>& cuSeqlens,
                           std::vector<double>* out, std::vector<double>* finalState) {
  const std::size_t D = std::size_t(p.channels), W = std::size_t(p.width);
  const std::size_t N = cuSeqlens.size() - 1;
  out->assign(std::size_t(cuSeqlens.back()) * D, 0.0);
  finalState->assign(N * (W - 1) * D, 0.0);
  for (std::size_t n = 0; n < N; ++n) {
    const std::int64_t t0 = cuSeqlens[n], len = cuSeqlens[n + 1] - t0;
    // Input at position i of the sequence (negative: the initial state, or 0).
    auto input = [&](std::int64_t i, std::size_t d) -> double {
      if (i >= 0) return loadElement(p.x, p.io, std::size_t(t0 + i) * std::size_t(p.xStride) + d);
      const std::int64_t row = std::int64_t(W) - 1 + i;
      if (p.initialState == nullptr || row < 0) return 0.0;
      return loadElement(p.initialState, p.stateType, (n * (W - 1) + std::size_t(row)) * D + d);
    };
    for (std::int64_t i = 0; i < len; ++i) {
      for (std::size_t d = 0; d < D; ++d) {
        double acc = p.bias != nullptr ? loadElement(p.bias, p.io, d) : 0.0;
        for (std::size_t j = 0; j < W; ++j)
          acc += double(loadElement(p.weight, p.io, d * W + j)) *
                 input(i - std::int64_t(W) + 1 + std::int64_t(j), d);
        (*out)[std::size_t(t0 + i) * D + d] = activate(p.activation, acc);
      }
    }
    for (std::size_t j = 0; j + 1 < W; ++j)
      for (std::size_t d = 0; d < D; ++d)
        (*finalState)[(n * (W - 1) + j) * D + d] =
            input(len - std::int64_t(W) + 1 + std::int64_t(j), d);
  }
}

void referenceRmsNormF64(const NormProblem& p, std::int64_t rows, std::vector<double>* out) {
  const std::size_t H = std::size_t(p.numHeads), Dh = std::size_t(p.headDim);
  out->assign(std::size_t(rows) * H * Dh, 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::size_t h = 0; h < H; ++h) {
      const std::size_t xb = std::size_t(r) * std::size_t(p.xStride) + h * Dh;
      double ss = 0.0;
      for (std::size_t c = 0; c < Dh; ++c) {
        const double x = loadElement(p.x, p.io, xb + c);
        ss += x * x;
      }
      const double rstd = 1.0 / std::sqrt(ss / double(Dh) + double(p.eps));
      for (std::size_t c = 0; c < Dh; ++c) {
        double y = double(loadElement(p.x, p.io, xb + c)) * rstd;
        if (p.weight != nullptr) y *= loadElement(p.weight, p.io, c);
        if (p.bias != nullptr) y += loadElement(p.bias, p.io, c);
        if (p.gate != nullptr)
          y *= activate(
              p.gateActivation,
              loadElement(p.gate, p.io, std::size_t(r) * std::size_t(p.gateStride) + h * Dh + c));
        (*out)[(std::size_t(r) * H + h) * Dh + c] = y;
      }
    }
  }
}

}  // namespace h20::kda
