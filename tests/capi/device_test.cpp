// device_test.cpp - devices through the C API: h20GetDeviceCount, h20SetDevice/h20GetDevice (a
// current device per host thread, default 0), h20GetDeviceProperties (the modelled H20 chip),
// h20MemGetInfo, h20DeviceGetStreamPriorityRange, h20DeviceSynchronize (waits for every stream of
// the current device, and only that device) and h20DeviceReset (waits, then invalidates the
// device's streams, events and allocations). Environment-driven configuration is in env_test.cpp.
#include "h20_test.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using h20test::BusyGate;
using DeviceCount = h20test::CApiTest;
using CurrentDevice = h20test::CApiTest;
using DeviceProperties = h20test::CApiTest;
using MemGetInfo = h20test::CApiTest;
using StreamPriorityRange = h20test::CApiTest;
using DeviceSynchronize = h20test::CApiTest;
using DeviceReset = h20test::CApiTest;

TEST_F(DeviceCount, IsPositive) {
  int count = -1;
  H20_ASSERT_OK(h20GetDeviceCount(&count));
  EXPECT_GE(count, 1);
}

TEST_F(DeviceCount, NullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20GetDeviceCount(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(CurrentDevice, SetThenGetReturnsTheDevice) {
  const int count = h20test::DeviceCount();
  for (int d = count - 1; d >= 0; --d) {
    H20_ASSERT_OK(h20SetDevice(d));
    int got = -1;
    H20_ASSERT_OK(h20GetDevice(&got));
    EXPECT_EQ(d, got);
  }
}

TEST_F(CurrentDevice, OutOfRangeOrdinalReturnsInvalidDeviceAndKeepsCurrent) {
  H20_REQUIRE_DEVICES(2);
  H20_ASSERT_OK(h20SetDevice(1));
  const int count = h20test::DeviceCount();
  for (int bad : {-1, count, count + 1, INT_MAX, INT_MIN}) {
    EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(bad)) << bad;
    EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
    int got = -1;
    H20_ASSERT_OK(h20GetDevice(&got));
    EXPECT_EQ(1, got) << "a failed h20SetDevice(" << bad << ") changed the current device";
  }
}

TEST_F(CurrentDevice, GetWithNullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20GetDevice(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(CurrentDevice, DefaultsToZeroInNewThread) {
  H20_REQUIRE_DEVICES(2);
  H20_ASSERT_OK(h20SetDevice(1));
  int got = -1;
  std::thread t([&] { EXPECT_EQ(h20Success, h20GetDevice(&got)); });
  t.join();
  EXPECT_EQ(0, got);
}

TEST_F(CurrentDevice, IsPerHostThread) {
  H20_REQUIRE_DEVICES(3);
  H20_ASSERT_OK(h20SetDevice(1));
  int inThread = -1;
  std::thread t([&] {
    EXPECT_EQ(h20Success, h20SetDevice(2));
    EXPECT_EQ(h20Success, h20GetDevice(&inThread));
  });
  t.join();
  EXPECT_EQ(2, inThread);
  int here = -1;
  H20_ASSERT_OK(h20GetDevice(&here));
  EXPECT_EQ(1, here);
}

TEST_F(CurrentDevice, ManyThreadsEachKeepTheirOwnDevice) {
  const int count = h20test::DeviceCount();
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const int mine = t % count;
      for (int i = 0; i < 200; ++i) {
        if (h20SetDevice(mine) != h20Success) mismatches++;
        int got = -1;
        if (h20GetDevice(&got) != h20Success || got != mine) mismatches++;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(0, mismatches.load());
}

TEST_F(CurrentDevice, AllocationsAndStreamsGoToTheCurrentDevice) {
  H20_REQUIRE_DEVICES(4);
  H20_ASSERT_OK(h20SetDevice(3));
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 1024));
  h20PointerAttributes attr;
  std::memset(&attr, 0, sizeof attr);
  H20_ASSERT_OK(h20PointerGetAttributes(&attr, p));
  EXPECT_EQ(h20MemoryTypeDevice, attr.type);
  EXPECT_EQ(3, attr.device);
  H20_EXPECT_OK(h20Free(p));
}

TEST_F(DeviceProperties, DescribeTheEmulatedH20Chip) {
  const int count = h20test::DeviceCount();
  int least = 0, greatest = 0;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  for (int d = 0; d < count; ++d) {
    SCOPED_TRACE("device " + std::to_string(d));
    const h20DeviceProp p = h20test::Props(d);
    EXPECT_NE(nullptr, std::strstr(p.name, "H20")) << p.name;
    EXPECT_LT(std::strlen(p.name), sizeof p.name);
    EXPECT_EQ(96ull << 30, p.totalGlobalMem);
    EXPECT_NEAR(4.0e12, p.memoryBandwidth, 0.05e12);
    EXPECT_NEAR(148e12, p.peakBf16Flops, 1e12);
    EXPECT_GE(p.l2CacheSize, 60 * 1000 * 1000);
    EXPECT_LE(p.l2CacheSize, 60 * 1024 * 1024);
    EXPECT_GT(p.multiProcessorCount, 0);
    EXPECT_GT(p.warpSize, 0);
    EXPECT_GT(p.maxThreadsPerBlock, 0);
    for (int i = 0; i < 3; ++i) {
      EXPECT_GT(p.maxThreadsDim[i], 0);
      EXPECT_GT(p.maxGridSize[i], 0);
    }
    EXPECT_GT(p.sharedMemPerBlock, 0u);
    EXPECT_GE(p.sharedMemPerBlockOptin, p.sharedMemPerBlock);
    EXPECT_EQ(1, p.unifiedAddressing);
    EXPECT_EQ(1, p.canMapHostMemory);
    EXPECT_EQ(1, p.emulated);
    EXPECT_GE(p.hostWorkerThreads, 1);
    EXPECT_GE(p.numaNode, -1);
    EXPECT_GT(p.hostLinkBandwidth, 0.0);
    EXPECT_GT(std::strlen(p.pciBusId), 0u);
    EXPECT_EQ(least, p.streamPriorityLowest);
    EXPECT_EQ(greatest, p.streamPriorityHighest);
  }
}

TEST_F(DeviceProperties, PciBusIdsAreDistinct) {
  const int count = h20test::DeviceCount();
  std::set<std::string> ids;
  for (int d = 0; d < count; ++d) {
    const h20DeviceProp p = h20test::Props(d);
    EXPECT_TRUE(ids.insert(p.pciBusId).second) << "duplicate bus id " << p.pciBusId;
  }
}

TEST_F(DeviceProperties, InvalidDeviceReturnsInvalidDevice) {
  h20DeviceProp p;
  const int count = h20test::DeviceCount();
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetDeviceProperties(&p, -1));
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetDeviceProperties(&p, count));
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
}

TEST_F(DeviceProperties, NullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20GetDeviceProperties(nullptr, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(MemGetInfo, TotalMatchesPropertiesAndFreeShrinksWithAllocation) {
  H20_SKIP_UNLESS_EMBEDDED(
      "under the shared daemon free memory moves with other test processes; "
      "tests/daemon checks the accounting with a daemon of its own");
  size_t free0 = 0, total = 0;
  H20_ASSERT_OK(h20MemGetInfo(&free0, &total));
  EXPECT_EQ(h20test::Props(0).totalGlobalMem, total);
  EXPECT_LE(free0, total);

  constexpr size_t kBytes = 64u << 20;
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, kBytes));
  size_t free1 = 0, total1 = 0;
  H20_ASSERT_OK(h20MemGetInfo(&free1, &total1));
  EXPECT_EQ(total, total1);
  EXPECT_LE(free1 + kBytes, free0);

  H20_ASSERT_OK(h20Free(p));
  size_t free2 = 0;
  H20_ASSERT_OK(h20MemGetInfo(&free2, &total1));
  EXPECT_EQ(free0, free2);
}

TEST_F(MemGetInfo, AllocationOnOneDeviceLeavesTheOthersAtLeastAsFree) {
  H20_SKIP_UNLESS_EMBEDDED(
      "under the shared daemon free memory moves with other test processes; "
      "tests/daemon checks the accounting with a daemon of its own");
  // Device memory is per device; only the emulator's host backing budget, which all chips
  // share, may make another device's free bytes drop (by no more than the allocation).
  H20_REQUIRE_DEVICES(2);
  constexpr size_t kBytes = 32u << 20;
  size_t free1Before = 0, total = 0;
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20MemGetInfo(&free1Before, &total));
  H20_ASSERT_OK(h20SetDevice(0));
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, kBytes));
  size_t free0 = 0;
  H20_ASSERT_OK(h20MemGetInfo(&free0, &total));
  H20_ASSERT_OK(h20SetDevice(1));
  size_t free1After = 0;
  H20_ASSERT_OK(h20MemGetInfo(&free1After, &total));
  EXPECT_GE(free1After + kBytes, free1Before);
  EXPECT_GE(free1After, free0);
  H20_ASSERT_OK(h20SetDevice(0));
  H20_EXPECT_OK(h20Free(p));
}

TEST_F(MemGetInfo, NullOutPointersReturnInvalidValue) {
  size_t v = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20MemGetInfo(nullptr, &v));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemGetInfo(&v, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(StreamPriorityRange, GreatestIsNumericallyAtMostLeast) {
  int least = 12345, greatest = 12345;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  EXPECT_LE(greatest, least);
  EXPECT_NE(12345, least);
  EXPECT_NE(12345, greatest);
}

TEST_F(StreamPriorityRange, AcceptsNullForEitherValue) {
  // As in CUDA, either pointer may be NULL when the value is not wanted.
  int v = 0;
  H20_EXPECT_OK(h20DeviceGetStreamPriorityRange(nullptr, &v));
  H20_EXPECT_OK(h20DeviceGetStreamPriorityRange(&v, nullptr));
  H20_EXPECT_OK(h20DeviceGetStreamPriorityRange(nullptr, nullptr));
}

TEST_F(DeviceSynchronize, WaitsForEveryStreamOfTheDevice) {
  h20Stream_t a = nullptr, b = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&a));
  H20_ASSERT_OK(h20StreamCreateWithFlags(&b, h20StreamNonBlocking));
  BusyGate gateA, gateB;
  H20_ASSERT_OK(gateA.Launch(a));
  H20_ASSERT_OK(gateB.Launch(b));
  std::atomic<int> afterA{0}, afterB{0}, afterLegacy{0};
  H20_ASSERT_OK(h20LaunchHostFunc(a, h20test::SetFlagHostFn, &afterA));
  H20_ASSERT_OK(h20LaunchHostFunc(b, h20test::SetFlagHostFn, &afterB));
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, h20test::SetFlagHostFn, &afterLegacy));

  std::thread opener([&] {
    gateA.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gateA.Open();
    gateB.Open();
  });
  H20_EXPECT_OK(h20DeviceSynchronize());
  EXPECT_EQ(1, afterA.load());
  EXPECT_EQ(1, afterB.load());
  EXPECT_EQ(1, afterLegacy.load());
  opener.join();
  EXPECT_FALSE(gateA.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(a));
  H20_EXPECT_OK(h20StreamDestroy(b));
}

TEST_F(DeviceSynchronize, DoesNotWaitForOtherDevices) {
  H20_REQUIRE_DEVICES(2);
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_EXPECT_OK(h20DeviceSynchronize());
  EXPECT_FALSE(gate.Finished()) << "device 0's synchronize waited for device 1's work";
  gate.Open();
  H20_ASSERT_OK(h20SetDevice(1));
  H20_EXPECT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(DeviceReset, WaitsForPendingWorkFirst) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::atomic<int> after{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, h20test::SetFlagHostFn, &after));
  std::thread opener([&] {
    gate.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gate.Open();
  });
  H20_EXPECT_OK(h20DeviceReset());
  EXPECT_EQ(1, after.load()) << "h20DeviceReset returned before the pending work completed";
  opener.join();
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(DeviceReset, InvalidatesStreamsEventsAndAllocations) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  h20Event_t e = nullptr;
  void* p = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20EventCreate(&e));
  H20_ASSERT_OK(h20Malloc(&p, 4096));
  H20_ASSERT_OK(h20DeviceReset());

  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamQuery(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamSynchronize(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventQuery(e));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventRecord(e, nullptr));
  h20PointerAttributes attr;
  std::memset(&attr, 0, sizeof attr);
  EXPECT_EQ(h20ErrorInvalidValue, h20PointerGetAttributes(&attr, p))
      << "a pointer freed by h20DeviceReset is still reported as live memory";
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(p));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventDestroy(e));

  // The device is usable again.
  h20Stream_t s2 = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s2));
  H20_EXPECT_OK(h20StreamSynchronize(s2));
  H20_EXPECT_OK(h20StreamDestroy(s2));
}

TEST_F(DeviceReset, ReturnsAllDeviceMemory) {
  ResetAfter(0);
  const size_t used0 = h20test::UsedBytes(0);
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 16u << 20));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  void* q = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&q, 8u << 20, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  H20_ASSERT_OK(h20DeviceReset());
  EXPECT_EQ(used0, h20test::UsedBytes(0));
}

TEST_F(DeviceReset, LeavesOtherDevicesAlone) {
  H20_REQUIRE_DEVICES(2);
  ResetAfter(0);
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t s1 = nullptr;
  void* p1 = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s1));
  H20_ASSERT_OK(h20Malloc(&p1, 4096));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20DeviceReset());
  H20_ASSERT_OK(h20SetDevice(1));
  H20_EXPECT_OK(h20StreamQuery(s1));
  H20_EXPECT_OK(h20MemsetAsync(p1, 1, 4096, s1));
  H20_EXPECT_OK(h20StreamSynchronize(s1));
  H20_EXPECT_OK(h20Free(p1));
  H20_EXPECT_OK(h20StreamDestroy(s1));
}

}  // namespace

TEST(DeviceAttribute, EveryAttributeMatchesTheProperties) {
  const h20DeviceProp p = h20test::Props(0);
  const std::pair<h20DeviceAttr, int> expected[] = {
      {h20DevAttrMaxThreadsPerBlock, p.maxThreadsPerBlock},
      {h20DevAttrWarpSize, p.warpSize},
      {h20DevAttrMultiProcessorCount, p.multiProcessorCount},
      {h20DevAttrComputeMode, p.computeMode},
      {h20DevAttrConcurrentKernels, p.concurrentKernels},
      {h20DevAttrPciBusId, p.pciBusID},
      {h20DevAttrPciDeviceId, p.pciDeviceID},
      {h20DevAttrComputeCapabilityMajor, p.major},
      {h20DevAttrComputeCapabilityMinor, p.minor}};
  for (const auto& [attr, value] : expected) {
    int v = -12345;
    H20_EXPECT_OK(h20DeviceGetAttribute(&v, attr, 0));
    EXPECT_EQ(value, v) << "attr " << attr;
  }
  EXPECT_EQ(h20ComputeModeDefault, p.computeMode);
}

TEST(DeviceProcesses, ThisProcessIsListedWithItsMemoryOnlyWhileItHoldsSome) {
  size_t used = 0;
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&used, 1));
  void* p = nullptr;
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20Malloc(&p, 3u << 20));
  int count = -1;
  h20ProcessInfo infos[16];
  H20_ASSERT_OK(h20DeviceGetProcesses(1, infos, 16, &count));
  const h20ProcessInfo* self = nullptr;
  for (int i = 0; i < count && i < 16; ++i)
    if (infos[i].pid == getpid()) self = &infos[i];
  ASSERT_NE(nullptr, self) << count << " processes listed";
  EXPECT_EQ(1, self->device);
  EXPECT_EQ(used + (3u << 20), self->usedMemory);
  EXPECT_STRNE("", self->name);
  int onlyCount = -1;
  H20_EXPECT_OK(h20DeviceGetProcesses(1, nullptr, 0, &onlyCount));
  // Under the shared test daemon other processes come and go between the two calls.
  if (h20test::DaemonBackend())
    EXPECT_GE(onlyCount, 1);
  else
    EXPECT_EQ(count, onlyCount);
  H20_ASSERT_OK(h20Free(p));
  H20_ASSERT_OK(h20SetDevice(0));
  if (used == 0) {
    H20_ASSERT_OK(h20DeviceGetProcesses(1, infos, 16, &count));
    for (int i = 0; i < count; ++i)
      EXPECT_NE(getpid(), infos[i].pid);
  }
}
