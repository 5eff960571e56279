// launch_test.cpp - kernel launch (h20LaunchKernel): every block of the grid runs exactly once,
// the context describes blockIdx/gridDim/blockDim/shared memory/device, shared memory is private
// to the block and aligned, arguments are copied at launch (up to H20_MAX_KERNEL_ARGS_BYTES),
// invalid launch configurations are rejected without running anything, and runtime calls from
// inside a kernel return h20ErrorNotPermitted. Faults reported by kernels are in fault_test.cpp.
#include "h20_test.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using h20test::BusyGate;
using LaunchKernel = h20test::CApiTest;
using KernelContext = h20test::CApiTest;

unsigned Linear(const h20KernelContext* ctx) {
  return ctx->blockIdx.x + ctx->gridDim.x * (ctx->blockIdx.y + ctx->gridDim.y * ctx->blockIdx.z);
}

// What one block saw of its context.
struct BlockRecord {
  h20Dim3 blockIdx;
  h20Dim3 gridDim;
  h20Dim3 blockDim;
  int device;
  int workerIndex;
  std::uint64_t sharedMem;
  std::uint64_t sharedMemBytes;
  int runs;
  int sharedIntact;
};

struct RecordArgs {
  BlockRecord* records;  // device memory, one per block
};

void RecordKernel(const h20KernelContext* ctx, const void* args) {
  RecordArgs a;
  std::memcpy(&a, args, sizeof a);
  BlockRecord& r = a.records[Linear(ctx)];
  r.blockIdx = ctx->blockIdx;
  r.gridDim = ctx->gridDim;
  r.blockDim = ctx->blockDim;
  r.device = ctx->device;
  r.workerIndex = ctx->workerIndex;
  r.sharedMem = reinterpret_cast<std::uintptr_t>(ctx->sharedMem);
  r.sharedMemBytes = ctx->sharedMemBytes;
  // Shared memory belongs to this block alone: fill it with the block's tag, let other blocks
  // run, and check that nobody else wrote to it.
  int intact = 1;
  if (ctx->sharedMem != nullptr) {
    auto* bytes = static_cast<unsigned char*>(ctx->sharedMem);
    const auto tag = static_cast<unsigned char>(Linear(ctx) * 7 + 1);
    std::memset(bytes, tag, ctx->sharedMemBytes);
    std::this_thread::yield();
    for (size_t i = 0; i < ctx->sharedMemBytes; ++i) {
      if (bytes[i] != tag) {
        intact = 0;
        break;
      }
    }
  }
  r.sharedIntact = intact;
  std::atomic_ref<int>(r.runs).fetch_add(1);
}

std::vector<BlockRecord> RunRecordKernel(h20Dim3 grid, h20Dim3 block, size_t shared,
                                         h20Stream_t stream) {
  const size_t n = size_t{grid.x} * grid.y * grid.z;
  BlockRecord* d = nullptr;
  std::vector<BlockRecord> host(n);
  EXPECT_EQ(h20Success, h20Malloc(reinterpret_cast<void**>(&d), n * sizeof(BlockRecord)));
  EXPECT_EQ(h20Success, h20MemsetAsync(d, 0, n * sizeof(BlockRecord), stream));
  const RecordArgs a{d};
  const h20Error_t rc = h20LaunchKernel(RecordKernel, grid, block, &a, sizeof a, shared, stream);
  EXPECT_EQ(h20Success, rc) << h20GetLastErrorMessage();
  EXPECT_EQ(h20Success, h20StreamSynchronize(stream)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20Success, h20Memcpy(host.data(), d, n * sizeof(BlockRecord), h20MemcpyDeviceToHost));
  EXPECT_EQ(h20Success, h20Free(d));
  return host;
}

TEST_F(LaunchKernel, RunsEveryBlockExactlyOnce) {
  const h20Dim3 grid{7, 5, 3}, block{32, 2, 1};
  const auto records = RunRecordKernel(grid, block, 0, nullptr);
  ASSERT_EQ(105u, records.size());
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        const BlockRecord& r = records[x + grid.x * (y + grid.y * z)];
        ASSERT_EQ(1, r.runs) << "block (" << x << "," << y << "," << z << ")";
        EXPECT_EQ(x, r.blockIdx.x);
        EXPECT_EQ(y, r.blockIdx.y);
        EXPECT_EQ(z, r.blockIdx.z);
      }
    }
  }
}

TEST_F(LaunchKernel, RunsEveryBlockOfALargeGridExactlyOnce) {
  constexpr unsigned kBlocks = 20000;
  int* counts = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&counts), kBlocks * sizeof(int)));
  H20_ASSERT_OK(h20Memset(counts, 0, kBlocks * sizeof(int)));
  struct CountArgs {
    int* counts;
  };
  const CountArgs a{counts};
  auto kernel = [](const h20KernelContext* ctx, const void* args) {
    CountArgs ca;
    std::memcpy(&ca, args, sizeof ca);
    std::atomic_ref<int>(ca.counts[ctx->blockIdx.x]).fetch_add(1);
  };
  H20_ASSERT_OK(
      h20LaunchKernel(kernel, h20Dim3{kBlocks, 1, 1}, h20Dim3{1, 1, 1}, &a, sizeof a, 0, nullptr));
  std::vector<int> host(kBlocks, -1);
  H20_ASSERT_OK(h20Memcpy(host.data(), counts, kBlocks * sizeof(int), h20MemcpyDeviceToHost));
  for (unsigned i = 0; i < kBlocks; ++i)
    ASSERT_EQ(1, host[i]) << "block " << i;
  H20_EXPECT_OK(h20Free(counts));
}

TEST_F(KernelContext, DescribesGridBlockAndDevice) {
  const int device = h20test::DeviceCount() - 1;
  H20_ASSERT_OK(h20SetDevice(device));
  const h20DeviceProp prop = h20test::Props(device);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  const h20Dim3 grid{3, 2, 2}, block{16, 4, 2};
  const auto records = RunRecordKernel(grid, block, 0, s);
  for (const BlockRecord& r : records) {
    EXPECT_EQ(1, r.runs);
    EXPECT_EQ(grid.x, r.gridDim.x);
    EXPECT_EQ(grid.y, r.gridDim.y);
    EXPECT_EQ(grid.z, r.gridDim.z);
    EXPECT_EQ(block.x, r.blockDim.x);
    EXPECT_EQ(block.y, r.blockDim.y);
    EXPECT_EQ(block.z, r.blockDim.z);
    EXPECT_EQ(device, r.device);
    EXPECT_GE(r.workerIndex, 0);
    EXPECT_LT(r.workerIndex, prop.hostWorkerThreads);
    EXPECT_EQ(0u, r.sharedMem) << "no shared memory was requested";
    EXPECT_EQ(0u, r.sharedMemBytes);
  }
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(KernelContext, SharedMemoryIsPrivateAlignedAndSized) {
  constexpr size_t kShared = 4096 + 24;
  const auto records = RunRecordKernel(h20Dim3{64, 1, 1}, h20Dim3{128, 1, 1}, kShared, nullptr);
  for (size_t i = 0; i < records.size(); ++i) {
    const BlockRecord& r = records[i];
    EXPECT_EQ(1, r.runs);
    EXPECT_NE(0u, r.sharedMem) << "block " << i;
    EXPECT_EQ(0u, r.sharedMem % 64) << "block " << i;
    EXPECT_EQ(kShared, r.sharedMemBytes);
    EXPECT_EQ(1, r.sharedIntact) << "block " << i << "'s shared memory was written by another";
  }
}

TEST_F(KernelContext, LargestOptInSharedMemoryIsUsable) {
  const h20DeviceProp prop = h20test::Props(0);
  const auto records =
      RunRecordKernel(h20Dim3{4, 1, 1}, h20Dim3{1, 1, 1}, prop.sharedMemPerBlockOptin, nullptr);
  for (const BlockRecord& r : records) {
    EXPECT_EQ(1, r.runs);
    EXPECT_EQ(prop.sharedMemPerBlockOptin, r.sharedMemBytes);
    EXPECT_EQ(1, r.sharedIntact);
  }
}

// Kernel: writes args->value[i] into out[i].
struct CopyArgs {
  int* out;
  int value[16];
};
void CopyArgsKernel(const h20KernelContext*, const void* args) {
  CopyArgs a;
  std::memcpy(&a, args, sizeof a);
  for (int i = 0; i < 16; ++i)
    a.out[i] = a.value[i];
}

TEST_F(LaunchKernel, CopiesArgumentsBeforeReturning) {
  int* out = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&out), 16 * sizeof(int)));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));  // the kernel below cannot run before the gate opens
  CopyArgs a{out, {}};
  for (int i = 0; i < 16; ++i)
    a.value[i] = 1000 + i;
  H20_ASSERT_OK(
      h20LaunchKernel(CopyArgsKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &a, sizeof a, 0, s));
  std::memset(&a, 0xFF, sizeof a);  // the caller reuses its argument buffer at once
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  int host[16];
  H20_ASSERT_OK(h20Memcpy(host, out, sizeof host, h20MemcpyDeviceToHost));
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(1000 + i, host[i]);
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_EXPECT_OK(h20Free(out));
}

// Kernel over the largest argument block: sums its bytes after the output pointer.
void SumArgsKernel(const h20KernelContext*, const void* args) {
  std::uint64_t* out = nullptr;
  std::memcpy(&out, args, sizeof out);
  const auto* bytes = static_cast<const unsigned char*>(args);
  std::uint64_t sum = 0;
  for (size_t i = sizeof out; i < H20_MAX_KERNEL_ARGS_BYTES; ++i)
    sum += bytes[i] * (i % 13 + 1);
  *out = sum;
}

TEST_F(LaunchKernel, AcceptsTheLargestArgumentBlock) {
  std::uint64_t* out = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&out), sizeof(std::uint64_t)));
  std::vector<unsigned char> args(H20_MAX_KERNEL_ARGS_BYTES);
  std::memcpy(args.data(), &out, sizeof out);
  std::uint64_t expected = 0;
  for (size_t i = sizeof out; i < args.size(); ++i) {
    args[i] = static_cast<unsigned char>(i * 31 + 7);
    expected += args[i] * (i % 13 + 1);
  }
  H20_ASSERT_OK(h20LaunchKernel(SumArgsKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, args.data(),
                                args.size(), 0, nullptr));
  std::uint64_t got = 0;
  H20_ASSERT_OK(h20Memcpy(&got, out, sizeof got, h20MemcpyDeviceToHost));
  EXPECT_EQ(expected, got);
  H20_EXPECT_OK(h20Free(out));
}

// Kernel: records whether its argument copy is aligned for any fundamental type.
void AlignKernel(const h20KernelContext*, const void* args) {
  int* out = nullptr;
  std::memcpy(&out, args, sizeof out);
  *out = (reinterpret_cast<std::uintptr_t>(args) % alignof(std::max_align_t)) == 0 ? 1 : 2;
}

TEST_F(LaunchKernel, ArgumentCopyIsSuitablyAligned) {
  // Kernels cast `args` to their argument struct; the copy must be aligned like malloc'ed memory.
  int* out = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&out), sizeof(int)));
  alignas(64) unsigned char buf[64 + sizeof(int*)];
  for (size_t offset : {1u, 3u, 8u}) {
    std::memcpy(buf + offset, &out, sizeof out);
    H20_ASSERT_OK(h20LaunchKernel(AlignKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, buf + offset,
                                  sizeof out, 0, nullptr));
    int got = 0;
    H20_ASSERT_OK(h20Memcpy(&got, out, sizeof got, h20MemcpyDeviceToHost));
    EXPECT_EQ(1, got) << "args passed at offset " << offset;
  }
  H20_EXPECT_OK(h20Free(out));
}

TEST_F(LaunchKernel, NullArgumentsWithZeroBytesAreAccepted) {
  std::atomic<int> runs{0};
  static std::atomic<int>* counter = nullptr;
  counter = &runs;
  auto kernel = [](const h20KernelContext*, const void*) { counter->fetch_add(1); };
  H20_ASSERT_OK(
      h20LaunchKernel(kernel, h20Dim3{3, 1, 1}, h20Dim3{1, 1, 1}, nullptr, 0, 0, nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_EQ(3, runs.load());
}

// Kernel: increments the host counter it is given (for launches that must not run).
void CountKernel(const h20KernelContext*, const void* args) {
  std::atomic<int>* c = nullptr;
  std::memcpy(&c, args, sizeof c);
  c->fetch_add(1);
}

TEST_F(LaunchKernel, InvalidConfigurationsAreRejectedAndRunNothing) {
  const h20DeviceProp p = h20test::Props(0);
  std::atomic<int> runs{0};
  std::atomic<int>* cp = &runs;
  const unsigned maxT = static_cast<unsigned>(p.maxThreadsPerBlock);
  struct Case {
    const char* what;
    h20Dim3 grid, block;
    size_t shared;
  };
  std::vector<Case> cases = {
      {"grid.x 0", {0, 1, 1}, {1, 1, 1}, 0},
      {"grid.y 0", {1, 0, 1}, {1, 1, 1}, 0},
      {"grid.z 0", {1, 1, 0}, {1, 1, 1}, 0},
      {"block.x 0", {1, 1, 1}, {0, 1, 1}, 0},
      {"block.y 0", {1, 1, 1}, {1, 0, 1}, 0},
      {"block.z 0", {1, 1, 1}, {1, 1, 0}, 0},
      {"block product > max", {1, 1, 1}, {maxT, 2, 1}, 0},
      {"block product > max (x)", {1, 1, 1}, {maxT + 1, 1, 1}, 0},
      {"block product overflows 32 bits", {1, 1, 1}, {65536, 65536, 1}, 0},
      {"block product overflows 64 bits", {1, 1, 1}, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, 0},
      {"grid.x > max", {static_cast<unsigned>(p.maxGridSize[0]) + 1u, 1, 1}, {1, 1, 1}, 0},
      {"grid.y > max", {1, static_cast<unsigned>(p.maxGridSize[1]) + 1u, 1}, {1, 1, 1}, 0},
      {"grid.z > max", {1, 1, static_cast<unsigned>(p.maxGridSize[2]) + 1u}, {1, 1, 1}, 0},
      {"shared > opt-in max", {1, 1, 1}, {1, 1, 1}, p.sharedMemPerBlockOptin + 1},
      {"shared huge", {1, 1, 1}, {1, 1, 1}, SIZE_MAX},
  };
  for (int i = 0; i < 3; ++i) {
    if (p.maxThreadsDim[i] < p.maxThreadsPerBlock) {
      h20Dim3 b{1, 1, 1};
      (&b.x)[i] = static_cast<unsigned>(p.maxThreadsDim[i]) + 1u;
      cases.push_back({"block dimension > maxThreadsDim", {1, 1, 1}, b, 0});
    }
  }
  for (const Case& c : cases) {
    EXPECT_EQ(h20ErrorInvalidValue,
              h20LaunchKernel(CountKernel, c.grid, c.block, &cp, sizeof cp, c.shared, nullptr))
        << c.what;
    EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError()) << c.what;
  }
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_EQ(0, runs.load());
}

TEST_F(LaunchKernel, InvalidArgumentsAreRejectedAndRunNothing) {
  std::atomic<int> runs{0};
  std::atomic<int>* cp = &runs;
  const h20Dim3 one{1, 1, 1};
  EXPECT_EQ(h20ErrorInvalidValue, h20LaunchKernel(nullptr, one, one, &cp, sizeof cp, 0, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20LaunchKernel(CountKernel, one, one, nullptr, 8, 0, nullptr));
  std::vector<unsigned char> big(H20_MAX_KERNEL_ARGS_BYTES + 1);
  std::memcpy(big.data(), &cp, sizeof cp);
  EXPECT_EQ(h20ErrorInvalidValue,
            h20LaunchKernel(CountKernel, one, one, big.data(), big.size(), 0, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle,
            h20LaunchKernel(CountKernel, one, one, &cp, sizeof cp, 0, s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_EQ(0, runs.load());
}

TEST_F(LaunchKernel, RunsOnLegacyPerThreadAndCreatedStreams) {
  constexpr size_t kCount = 1000;
  int* d = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)));
  H20_ASSERT_OK(h20Memset(d, 0, kCount * sizeof(int)));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 1, nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 10, h20StreamPerThread));
  H20_ASSERT_OK(h20StreamSynchronize(h20StreamPerThread));
  H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 100, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  std::vector<int> host(kCount);
  H20_ASSERT_OK(h20Memcpy(host.data(), d, kCount * sizeof(int), h20MemcpyDeviceToHost));
  for (int v : host)
    ASSERT_EQ(111, v);
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_EXPECT_OK(h20Free(d));
}

// What a kernel observed when it called into the runtime.
struct KernelInside {
  h20Error_t malloc;
  h20Error_t launch;
  h20Error_t streamQuery;
  h20Error_t deviceSync;
  h20Error_t getDevice;
  h20Error_t lastError;
  int nameWorks;
};

void NoopKernel(const h20KernelContext*, const void*) {}

void CallRuntimeKernel(const h20KernelContext* ctx, const void* args) {
  KernelInside* in = nullptr;
  std::memcpy(&in, args, sizeof in);
  if (Linear(ctx) != 0) return;
  void* p = nullptr;
  in->malloc = h20Malloc(&p, 64);
  const h20Dim3 one{1, 1, 1};
  in->launch = h20LaunchKernel(NoopKernel, one, one, nullptr, 0, 0, nullptr);
  in->streamQuery = h20StreamQuery(nullptr);
  in->deviceSync = h20DeviceSynchronize();
  int d = -1;
  in->getDevice = h20GetDevice(&d);
  in->lastError = h20GetLastError();
  in->nameWorks = std::strcmp(h20GetErrorName(h20Success), "h20Success") == 0;
}

TEST_F(LaunchKernel, RuntimeCallsFromAKernelReturnNotPermitted) {
  KernelInside in{};
  KernelInside* ip = &in;
  H20_ASSERT_OK(h20LaunchKernel(CallRuntimeKernel, h20Dim3{2, 1, 1}, h20Dim3{1, 1, 1}, &ip,
                                sizeof ip, 0, nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_EQ(h20ErrorNotPermitted, in.malloc);
  EXPECT_EQ(h20ErrorNotPermitted, in.launch);
  EXPECT_EQ(h20ErrorNotPermitted, in.streamQuery);
  EXPECT_EQ(h20ErrorNotPermitted, in.deviceSync);
  EXPECT_EQ(h20ErrorNotPermitted, in.getDevice);
  EXPECT_EQ(h20ErrorNotPermitted, in.lastError);
  EXPECT_EQ(1, in.nameWorks);
}

}  // namespace
