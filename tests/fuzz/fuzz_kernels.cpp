// fuzz_kernels.cpp - the fuzzer's kernels and host function (see fuzz_kernels.hpp).
#include "fuzz_kernels.hpp"

#include "c_callers.h"

#include <chrono>
#include <cstring>
#include <thread>

namespace h20fuzz {

namespace {

KernelArgs ReadArgs(const void* args) {
  KernelArgs a;
  std::memcpy(&a, args, sizeof a);
  return a;
}

// Block 0 sleeps, counts itself and checks that the h20 API refuses calls from a kernel; every
// block counts itself.
void Enter(const h20KernelContext* ctx, const KernelArgs& a) {
  if (ctx->blockIdx.x == 0) {
    if (a.spinUs) std::this_thread::sleep_for(std::chrono::microseconds(a.spinUs));
    int device = -1;
    if (a.record)
      a.record->apiResult.store(a.noApiCall ? static_cast<int>(h20ErrorNotPermitted)
                                            : static_cast<int>(h20GetDevice(&device)));
  }
  if (a.record) a.record->runs.fetch_add(1);
}

}  // namespace

void TransformKernel(const h20KernelContext* ctx, const void* args) {
  const KernelArgs a = ReadArgs(args);
  Enter(ctx, a);
  std::size_t begin = 0, end = 0;
  ChunkOf(a.count, ctx->gridDim.x, ctx->blockIdx.x, &begin, &end);
  if (a.useShared) {
    // Stage the chunk through the block's shared memory (sized by the launch to hold it).
    auto* shared = static_cast<std::uint8_t*>(ctx->sharedMem);
    if (!shared || ctx->sharedMemBytes < end - begin ||
        (reinterpret_cast<std::uintptr_t>(shared) & 63u) != 0) {
      if (a.record) a.record->sharedBad.store(1);
      return;
    }
    std::memcpy(shared, a.src + begin, end - begin);
    for (std::size_t i = begin; i < end; ++i)
      a.dst[i] = TransformByte(shared[i - begin], a.salt, i);
    return;
  }
  for (std::size_t i = begin; i < end; ++i)
    a.dst[i] = TransformByte(a.src[i], a.salt, i);
}

void ChecksumKernel(const h20KernelContext* ctx, const void* args) {
  const KernelArgs a = ReadArgs(args);
  Enter(ctx, a);
  std::size_t begin = 0, end = 0;
  ChunkOf(a.count, ctx->gridDim.x, ctx->blockIdx.x, &begin, &end);
  const std::uint64_t h = Fnv1a(a.src + begin, end - begin) ^ a.salt;
  std::memcpy(a.dst + 8u * ctx->blockIdx.x, &h, sizeof h);
}

void FaultKernel(const h20KernelContext* ctx, const void* args) {
  FaultKernelArgs a;
  std::memcpy(&a, args, sizeof a);
  if (ctx->blockIdx.x == a.faultBlock)
    h20test_ReportFault(ctx, a.code, "injected by the API fuzzer");
}

void HostCopyFn(void* userData) {
  auto* a = static_cast<HostCopyArgs*>(userData);
  if (a->spinUs) std::this_thread::sleep_for(std::chrono::microseconds(a->spinUs));
  int device = -1;
  a->record.apiResult.store(a->noApiCall ? static_cast<int>(h20ErrorNotPermitted)
                                         : static_cast<int>(h20GetDevice(&device)));
  if (a->n) std::memmove(a->dst, a->src, a->n);
  a->record.runs.fetch_add(1);
}

}  // namespace h20fuzz
