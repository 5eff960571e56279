// linear.hpp - the projections of a KDA layer: y = x W^T + bias (PyTorch's Linear) on oneDNN's
// matmul, one tile per call on the calling thread (the device's worker runs it; oneDNN is kept
// to that one thread, so it never starts a thread pool of its own beside the engine's).
//
// Owns the problem description, the cache of oneDNN primitives (one per tile shape, created on
// first use and shared by every thread: primitives may run concurrently), and the fp64
// reference. Built with oneDNN when CMake finds it (H20_KDA_HAVE_DNNL); otherwise
// linearAvailable() is false and the API layer says why.
#ifndef H20_KERNELS_KDA_CORE_LINEAR_HPP_
#define H20_KERNELS_KDA_CORE_LINEAR_HPP_

#include <cstdint>
#include <string>
#include <vector>

#include "kda_core.hpp"

namespace h20::kda {

struct LinearProblem {
  std::int64_t rows = 0;  // M
  int inFeatures = 0;     // K
  int outFeatures = 0;    // N
  DType io = DType::kBF16;
  std::int64_t xStride = 0, outStride = 0;  // elements between rows
  const void* x = nullptr;                  // [M, K]
  const void* weight = nullptr;             // [N, K]
  const void* bias = nullptr;               // [N] or null
  void* out = nullptr;                      // [M, N]
};

// Whether this build has the oneDNN path, and if not, why.
bool linearAvailable();
std::string linearUnavailableReason();

// Computes rows [r0, r1) x columns [c0, c1) of the output on the calling thread. Returns "" or
// what failed (oneDNN's status). Thread-safe.
std::string runLinearTile(const LinearProblem& p, std::int64_t r0, std::int64_t r1, int c0, int c1);

// The whole output in fp64 ([M, N], dense).
void referenceLinearF64(const LinearProblem& p, std::vector<double>* out);

}  // namespace h20::kda

#endif  // H20_KERNELS_KDA_CORE_LINEAR_HPP_
