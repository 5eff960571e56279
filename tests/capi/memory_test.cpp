// memory_test.cpp - allocation through the C API: h20Malloc/h20Free (alignment >= 256, size 0,
// bad pointers, waiting for pending work), h20MallocHost/h20HostAlloc/h20FreeHost (flags),
// h20HostRegister/h20HostUnregister (double and overlapping registration),
// h20HostGetDevicePointer, h20PointerGetAttributes (device, pinned, registered, pageable, NULL,
// freed), h20MemGetAddressRange and the stream-ordered pool h20MallocAsync/h20FreeAsync (reuse in
// stream order, release at h20DeviceSynchronize). Copies and memsets are in memcpy_test.cpp.
#include "h20_test.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using h20test::BusyGate;
using Malloc = h20test::CApiTest;
using Free = h20test::CApiTest;
using MallocHost = h20test::CApiTest;
using HostAlloc = h20test::CApiTest;
using HostRegister = h20test::CApiTest;
using HostGetDevicePointer = h20test::CApiTest;
using PointerAttributes = h20test::CApiTest;
using MemGetAddressRange = h20test::CApiTest;
using MallocAsync = h20test::CApiTest;

h20PointerAttributes Attributes(const void* p) {
  h20PointerAttributes a;
  std::memset(&a, 0xCD, sizeof a);
  const h20Error_t rc = h20PointerGetAttributes(&a, p);
  EXPECT_EQ(h20Success, rc) << h20GetLastErrorMessage();
  return a;
}

std::uintptr_t Addr(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

// ---- h20Malloc / h20Free ----------------------------------------------------------------------

TEST_F(Malloc, ReturnsDistinctAlignedUsableBlocks) {
  const std::vector<size_t> sizes = {1, 3, 255, 256, 257, 4095, 4096, 65537, 1u << 20};
  std::vector<std::pair<void*, size_t>> blocks;
  for (size_t size : sizes) {
    void* p = nullptr;
    H20_ASSERT_OK(h20Malloc(&p, size));
    ASSERT_NE(nullptr, p) << size;
    EXPECT_EQ(0u, Addr(p) % 256) << "allocation of " << size << " bytes at " << p;
    blocks.emplace_back(p, size);
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (size_t j = i + 1; j < blocks.size(); ++j) {
      const auto [a, an] = blocks[i];
      const auto [b, bn] = blocks[j];
      const bool disjoint = Addr(a) + an <= Addr(b) || Addr(b) + bn <= Addr(a);
      EXPECT_TRUE(disjoint) << a << "+" << an << " overlaps " << b << "+" << bn;
    }
  }
  // Every block holds its own bytes.
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::vector<unsigned char> pattern(blocks[i].second, static_cast<unsigned char>(i + 1));
    H20_ASSERT_OK(
        h20Memcpy(blocks[i].first, pattern.data(), pattern.size(), h20MemcpyHostToDevice));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::vector<unsigned char> back(blocks[i].second, 0);
    H20_ASSERT_OK(h20Memcpy(back.data(), blocks[i].first, back.size(), h20MemcpyDeviceToHost));
    EXPECT_TRUE(
        std::all_of(back.begin(), back.end(),
                    [&](unsigned char c) { return c == static_cast<unsigned char>(i + 1); }))
        << "block " << i;
  }
  for (auto& [p, n] : blocks)
    H20_EXPECT_OK(h20Free(p));
}

TEST_F(Malloc, ZeroSizeSucceedsWithNull) {
  void* p = reinterpret_cast<void*>(0x1234);
  H20_ASSERT_OK(h20Malloc(&p, 0));
  EXPECT_EQ(nullptr, p);
}

TEST_F(Malloc, NullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20Malloc(nullptr, 64));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Malloc, MoreThanTheDeviceHoldsReturnsMemoryAllocation) {
  const size_t total = h20test::Props(0).totalGlobalMem;
  for (size_t size : {total + 1, size_t{1} << 62, SIZE_MAX, SIZE_MAX - 100}) {
    void* p = nullptr;
    EXPECT_EQ(h20ErrorMemoryAllocation, h20Malloc(&p, size)) << size;
    EXPECT_EQ(h20ErrorMemoryAllocation, h20GetLastError()) << size;
    EXPECT_GT(std::strlen(h20GetLastErrorMessage()), 0u);
    EXPECT_EQ(nullptr, p) << "a failed allocation of " << size << " bytes returned a pointer";
    if (p != nullptr) {
      h20Free(p);
      h20GetLastError();
    }
  }
  // A failed allocation leaves the device usable.
  void* q = nullptr;
  H20_ASSERT_OK(h20Malloc(&q, 1024));
  H20_EXPECT_OK(h20Free(q));
}

TEST_F(Free, NullIsANoOp) {
  H20_EXPECT_OK(h20Free(nullptr));
}

TEST_F(Free, InteriorPointerReturnsInvalidValueAndKeepsAllocation) {
  char* p = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&p), 4096));
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(p + 256));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_TRUE(h20test::MessageNamesPointer(h20GetLastErrorMessage(), p + 256))
      << h20GetLastErrorMessage();
  EXPECT_EQ(h20MemoryTypeDevice, Attributes(p).type);
  H20_EXPECT_OK(h20Memset(p, 0, 4096));
  H20_EXPECT_OK(h20Free(p));
}

TEST_F(Free, DoubleFreeReturnsInvalidValue) {
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 1024));
  H20_ASSERT_OK(h20Free(p));
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(p));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Free, HostPointerReturnsInvalidValue) {
  int local = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(&local));
  void* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(&pinned, 1024));
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(pinned));
  H20_EXPECT_OK(h20FreeHost(pinned));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Free, WaitsForPendingWorkOfTheDevice) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 4096));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20MemsetAsync(p, 7, 4096, s));
  std::thread opener([&] {
    gate.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gate.Open();
  });
  H20_EXPECT_OK(h20Free(p));
  EXPECT_TRUE(gate.Finished()) << "h20Free returned while work using the memory was pending";
  H20_EXPECT_OK(h20StreamQuery(s));
  opener.join();
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

// ---- pinned host memory -----------------------------------------------------------------------

TEST_F(MallocHost, ReturnsWritablePinnedMemory) {
  constexpr size_t kBytes = 1u << 20;
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocHost(&p, kBytes));
  ASSERT_NE(nullptr, p);
  std::memset(p, 0x5A, kBytes);
  EXPECT_EQ(0x5A, static_cast<unsigned char*>(p)[kBytes - 1]);
  const h20PointerAttributes a = Attributes(p);
  EXPECT_EQ(h20MemoryTypeHost, a.type);
  EXPECT_EQ(p, a.hostPointer);
  H20_EXPECT_OK(h20FreeHost(p));
}

TEST_F(MallocHost, NullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20MallocHost(nullptr, 64));
  EXPECT_EQ(h20ErrorInvalidValue, h20HostAlloc(nullptr, 64, h20HostAllocDefault));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(MallocHost, FreeHostOfNullIsANoOp) {
  H20_EXPECT_OK(h20FreeHost(nullptr));
}

TEST_F(MallocHost, FreeHostOfNonPinnedPointerReturnsInvalidValue) {
  int local = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20FreeHost(&local));
  void* dev = nullptr;
  H20_ASSERT_OK(h20Malloc(&dev, 1024));
  EXPECT_EQ(h20ErrorInvalidValue, h20FreeHost(dev));
  H20_EXPECT_OK(h20Free(dev));
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocHost(&p, 1024));
  H20_ASSERT_OK(h20FreeHost(p));
  EXPECT_EQ(h20ErrorInvalidValue, h20FreeHost(p)) << "double h20FreeHost";
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(MallocHost, RecordsTheCurrentDevice) {
  H20_REQUIRE_DEVICES(3);
  H20_ASSERT_OK(h20SetDevice(2));
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocHost(&p, 4096));
  H20_ASSERT_OK(h20SetDevice(0));
  const h20PointerAttributes a = Attributes(p);
  EXPECT_EQ(h20MemoryTypeHost, a.type);
  EXPECT_EQ(2, a.device);
  H20_EXPECT_OK(h20FreeHost(p));
}

TEST_F(HostAlloc, AcceptsEveryDocumentedFlag) {
  const unsigned flags[] = {h20HostAllocDefault, h20HostAllocPortable, h20HostAllocMapped,
                            h20HostAllocWriteCombined,
                            h20HostAllocPortable | h20HostAllocMapped | h20HostAllocWriteCombined};
  for (unsigned f : flags) {
    void* p = nullptr;
    H20_ASSERT_OK(h20HostAlloc(&p, 8192, f));
    ASSERT_NE(nullptr, p) << f;
    static_cast<unsigned char*>(p)[8191] = 1;
    EXPECT_EQ(h20MemoryTypeHost, Attributes(p).type) << f;
    H20_EXPECT_OK(h20FreeHost(p));
  }
}

TEST_F(HostAlloc, UnknownFlagReturnsInvalidValue) {
  for (unsigned f : {0x08u, 0x80u, 0x80000000u}) {
    void* p = nullptr;
    EXPECT_EQ(h20ErrorInvalidValue, h20HostAlloc(&p, 4096, f)) << f;
    EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  }
}

TEST_F(HostGetDevicePointer, ReturnsTheHostPointerOfMappedMemory) {
  void* p = nullptr;
  H20_ASSERT_OK(h20HostAlloc(&p, 4096, h20HostAllocMapped));
  void* d = nullptr;
  H20_ASSERT_OK(h20HostGetDevicePointer(&d, p, 0));
  EXPECT_EQ(p, d);
  H20_EXPECT_OK(h20FreeHost(p));
}

TEST_F(HostGetDevicePointer, RejectsFlagsNullAndPageableMemory) {
  void* p = nullptr;
  H20_ASSERT_OK(h20HostAlloc(&p, 4096, h20HostAllocMapped));
  void* d = nullptr;
  EXPECT_EQ(h20ErrorInvalidValue, h20HostGetDevicePointer(&d, p, 1));
  EXPECT_EQ(h20ErrorInvalidValue, h20HostGetDevicePointer(nullptr, p, 0));
  int local = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20HostGetDevicePointer(&d, &local, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  H20_EXPECT_OK(h20FreeHost(p));
}

// ---- h20HostRegister ----------------------------------------------------------------------------

TEST_F(HostRegister, MakesTheRangePinnedUntilUnregistered) {
  std::vector<unsigned char> buf(64 * 1024);
  H20_ASSERT_OK(h20HostRegister(buf.data(), buf.size(), h20HostRegisterDefault));
  h20PointerAttributes a = Attributes(buf.data());
  EXPECT_EQ(h20MemoryTypeHost, a.type);
  EXPECT_EQ(buf.data(), a.hostPointer);
  a = Attributes(buf.data() + 1000);
  EXPECT_EQ(h20MemoryTypeHost, a.type) << "interior pointer of a registered range";
  EXPECT_EQ(buf.data() + 1000, a.hostPointer);
  H20_ASSERT_OK(h20HostUnregister(buf.data()));
  EXPECT_EQ(h20MemoryTypeUnregistered, Attributes(buf.data()).type);
}

TEST_F(HostRegister, RegisteredMemoryCopiesAsynchronously) {
  std::vector<int> src(4096), dst(4096, 0);
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = static_cast<int>(i * 3);
  const size_t bytes = src.size() * sizeof(int);
  H20_ASSERT_OK(h20HostRegister(src.data(), bytes, h20HostRegisterDefault));
  H20_ASSERT_OK(h20HostRegister(dst.data(), bytes, h20HostRegisterPortable));
  void* d = nullptr;
  H20_ASSERT_OK(h20Malloc(&d, bytes));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20MemcpyAsync(d, src.data(), bytes, h20MemcpyHostToDevice, s));
  H20_ASSERT_OK(h20MemcpyAsync(dst.data(), d, bytes, h20MemcpyDeviceToHost, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(src, dst);
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_EXPECT_OK(h20Free(d));
  H20_EXPECT_OK(h20HostUnregister(src.data()));
  H20_EXPECT_OK(h20HostUnregister(dst.data()));
}

TEST_F(HostRegister, SameRangeTwiceReturnsAlreadyRegistered) {
  std::vector<unsigned char> buf(16 * 1024);
  H20_ASSERT_OK(h20HostRegister(buf.data(), buf.size(), 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data(), buf.size(), 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20GetLastError());
  // The first registration is intact.
  EXPECT_EQ(h20MemoryTypeHost, Attributes(buf.data()).type);
  H20_EXPECT_OK(h20HostUnregister(buf.data()));
}

TEST_F(HostRegister, OverlappingRangeReturnsAlreadyRegistered) {
  std::vector<unsigned char> buf(32 * 1024);
  H20_ASSERT_OK(h20HostRegister(buf.data() + 8192, 8192, 0));
  // Starts before and ends inside, starts inside, and covers it entirely.
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data(), 8193, 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data() + 12288, 8192, 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data(), buf.size(), 0));
  // Adjacent ranges do not overlap.
  H20_EXPECT_OK(h20HostRegister(buf.data(), 8192, 0));
  H20_EXPECT_OK(h20HostUnregister(buf.data()));
  H20_EXPECT_OK(h20HostUnregister(buf.data() + 8192));
}

TEST_F(HostRegister, UnregisterOfUnregisteredMemoryReturnsNotRegistered) {
  std::vector<unsigned char> buf(4096);
  EXPECT_EQ(h20ErrorHostMemoryNotRegistered, h20HostUnregister(buf.data()));
  EXPECT_EQ(h20ErrorHostMemoryNotRegistered, h20GetLastError());
  H20_ASSERT_OK(h20HostRegister(buf.data(), buf.size(), 0));
  H20_ASSERT_OK(h20HostUnregister(buf.data()));
  EXPECT_EQ(h20ErrorHostMemoryNotRegistered, h20HostUnregister(buf.data()));
}

TEST_F(HostRegister, RejectsNullZeroSizeAndUnknownFlags) {
  std::vector<unsigned char> buf(4096);
  EXPECT_EQ(h20ErrorInvalidValue, h20HostRegister(nullptr, 4096, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20HostRegister(buf.data(), 0, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20HostRegister(buf.data(), buf.size(), 0x100));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_EQ(h20MemoryTypeUnregistered, Attributes(buf.data()).type);
  const h20Error_t rc = h20HostUnregister(nullptr);
  EXPECT_TRUE(rc == h20ErrorInvalidValue || rc == h20ErrorHostMemoryNotRegistered)
      << h20GetErrorName(rc);
}

TEST_F(HostRegister, RangesThatRunPastTheEndOfTheAddressSpaceAreInvalid) {
  std::vector<unsigned char> buf(4096);
  const auto base = reinterpret_cast<std::uintptr_t>(buf.data());
  // SIZE_MAX, the first size that wraps, and one far past it.
  for (size_t size : {SIZE_MAX, SIZE_MAX - base + 2, SIZE_MAX - 4095}) {
    EXPECT_EQ(h20ErrorInvalidValue, h20HostRegister(buf.data(), size, 0)) << size;
    EXPECT_EQ(h20MemoryTypeUnregistered, Attributes(buf.data()).type) << size;
    EXPECT_EQ(h20ErrorHostMemoryNotRegistered, h20HostUnregister(buf.data())) << size;
  }
  // Nothing was registered: a real registration works, and a second one is refused.
  H20_ASSERT_OK(h20HostRegister(buf.data(), buf.size(), 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data(), buf.size(), 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(buf.data(), 1, 0));
  H20_EXPECT_OK(h20HostUnregister(buf.data()));
}

TEST_F(HostRegister, RangeCoveringPinnedMemoryReturnsAlreadyRegistered) {
  void* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(&pinned, 4096));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered, h20HostRegister(pinned, 4096, 0));
  EXPECT_EQ(h20ErrorHostMemoryAlreadyRegistered,
            h20HostRegister(static_cast<unsigned char*>(pinned) + 100, 8, 0));
  H20_EXPECT_OK(h20FreeHost(pinned));
}

TEST_F(HostRegister, DeviceMemoryCannotBeRegistered) {
  void* d = nullptr;
  H20_ASSERT_OK(h20Malloc(&d, 4096));
  const h20Error_t rc = h20HostRegister(d, 4096, 0);
  EXPECT_NE(h20Success, rc) << "device memory was accepted as host memory";
  if (rc == h20Success) h20HostUnregister(d);
  h20GetLastError();
  H20_EXPECT_OK(h20Free(d));
}

// ---- h20PointerGetAttributes
// ---------------------------------------------------------------------

TEST_F(PointerAttributes, DescribeDeviceMemoryIncludingInteriorPointers) {
  H20_REQUIRE_DEVICES(2);
  H20_ASSERT_OK(h20SetDevice(1));
  char* p = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&p), 8192));
  H20_ASSERT_OK(h20SetDevice(0));
  h20PointerAttributes a = Attributes(p);
  EXPECT_EQ(h20MemoryTypeDevice, a.type);
  EXPECT_EQ(1, a.device);
  EXPECT_EQ(p, a.devicePointer);
  a = Attributes(p + 8191);
  EXPECT_EQ(h20MemoryTypeDevice, a.type);
  EXPECT_EQ(1, a.device);
  EXPECT_EQ(p + 8191, a.devicePointer);
  H20_EXPECT_OK(h20Free(p));
}

TEST_F(PointerAttributes, PageableMemoryIsUnregistered) {
  std::vector<int> v(16);
  const h20PointerAttributes a = Attributes(v.data());
  EXPECT_EQ(h20MemoryTypeUnregistered, a.type);
  EXPECT_EQ(-2, a.device);
  EXPECT_EQ(nullptr, a.devicePointer);
  EXPECT_EQ(nullptr, a.hostPointer);
}

TEST_F(PointerAttributes, NullPointerIsUnregistered) {
  const h20PointerAttributes a = Attributes(nullptr);
  EXPECT_EQ(h20MemoryTypeUnregistered, a.type);
  EXPECT_EQ(-2, a.device);
  EXPECT_EQ(nullptr, a.devicePointer);
  EXPECT_EQ(nullptr, a.hostPointer);
}

TEST_F(PointerAttributes, FreedDeviceMemoryReturnsInvalidValue) {
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 4096));
  H20_ASSERT_OK(h20Free(p));
  h20PointerAttributes a;
  std::memset(&a, 0, sizeof a);
  EXPECT_EQ(h20ErrorInvalidValue, h20PointerGetAttributes(&a, p));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_TRUE(h20test::MessageNamesPointer(h20GetLastErrorMessage(), p))
      << h20GetLastErrorMessage();
}

TEST_F(PointerAttributes, NullOutPointerReturnsInvalidValue) {
  int local = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20PointerGetAttributes(nullptr, &local));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

// ---- h20MemGetAddressRange
// ---------------------------------------------------------------------------

TEST_F(MemGetAddressRange, ReturnsBaseAndRequestedSizeOfDeviceAllocations) {
  char* p = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&p), 1000));
  for (size_t off : {size_t{0}, size_t{1}, size_t{999}}) {
    void* base = nullptr;
    size_t size = 0;
    H20_ASSERT_OK(h20MemGetAddressRange(&base, &size, p + off));
    EXPECT_EQ(p, base) << "offset " << off;
    EXPECT_EQ(1000u, size) << "offset " << off;
  }
  void* base = nullptr;
  size_t size = 0;
  H20_EXPECT_OK(h20MemGetAddressRange(&base, nullptr, p + 5));
  EXPECT_EQ(p, base);
  H20_EXPECT_OK(h20MemGetAddressRange(nullptr, &size, p + 5));
  EXPECT_EQ(1000u, size);
  H20_EXPECT_OK(h20Free(p));
}

TEST_F(MemGetAddressRange, CoversPinnedAndRegisteredMemory) {
  char* pin = nullptr;
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pin), 3000));
  void* base = nullptr;
  size_t size = 0;
  H20_ASSERT_OK(h20MemGetAddressRange(&base, &size, pin + 2999));
  EXPECT_EQ(pin, base);
  EXPECT_EQ(3000u, size);
  H20_EXPECT_OK(h20FreeHost(pin));

  std::vector<char> buf(8192);
  H20_ASSERT_OK(h20HostRegister(buf.data(), 5000, 0));
  H20_ASSERT_OK(h20MemGetAddressRange(&base, &size, buf.data() + 100));
  EXPECT_EQ(buf.data(), base);
  EXPECT_EQ(5000u, size);
  H20_EXPECT_OK(h20HostUnregister(buf.data()));
}

TEST_F(MemGetAddressRange, PageableFreedAndPastTheEndPointersReturnInvalidValue) {
  void* base = nullptr;
  size_t size = 0;
  std::vector<char> v(64);
  EXPECT_EQ(h20ErrorInvalidValue, h20MemGetAddressRange(&base, &size, v.data()));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemGetAddressRange(&base, &size, nullptr));
  char* p = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&p), 4096));
  // One past the end is outside unless another allocation starts there.
  void* q = nullptr;
  const h20Error_t rc = h20MemGetAddressRange(&q, &size, p + 4096);
  if (rc == h20Success) {
    EXPECT_NE(static_cast<void*>(p), q);
  }
  h20GetLastError();
  H20_ASSERT_OK(h20Free(p));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemGetAddressRange(&base, &size, p));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

// ---- h20MallocAsync / h20FreeAsync
// ----------------------------------------------------------------

TEST_F(MallocAsync, ReturnsAlignedMemoryUsableInStreamOrder) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  constexpr size_t kBytes = 1u << 16;
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p, kBytes, s));
  ASSERT_NE(nullptr, p);
  EXPECT_EQ(0u, Addr(p) % 256);
  H20_ASSERT_OK(h20MemsetAsync(p, 0x3C, kBytes, s));
  std::vector<unsigned char> back(kBytes, 0);
  H20_ASSERT_OK(h20MemcpyAsync(back.data(), p, kBytes, h20MemcpyDeviceToHost, s));
  H20_ASSERT_OK(h20FreeAsync(p, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](unsigned char c) { return c == 0x3C; }));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MallocAsync, WorksOnTheLegacyAndPerThreadStreams) {
  for (h20Stream_t s : {static_cast<h20Stream_t>(nullptr), h20StreamPerThread}) {
    void* p = nullptr;
    H20_ASSERT_OK(h20MallocAsync(&p, 4096, s));
    H20_ASSERT_OK(h20MemsetAsync(p, 1, 4096, s));
    H20_ASSERT_OK(h20FreeAsync(p, s));
    H20_ASSERT_OK(h20StreamSynchronize(s));
  }
}

TEST_F(MallocAsync, FreedBlockIsReusedAtOnceOnTheSameStream) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));  // nothing below has executed when the second malloc is made
  void* p1 = nullptr;
  void* p2 = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p1, 1u << 20, s));
  H20_ASSERT_OK(h20FreeAsync(p1, s));
  H20_ASSERT_OK(h20MallocAsync(&p2, 1u << 20, s));
  EXPECT_EQ(p1, p2) << "memory freed on a stream is reused by the next allocation on it";
  gate.Open();
  H20_ASSERT_OK(h20FreeAsync(p2, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MallocAsync, PendingFreeIsNotReusedByAnotherStreamUntilItExecutes) {
  h20Stream_t s1 = nullptr, s2 = nullptr;
  H20_ASSERT_OK(h20StreamCreateWithFlags(&s1, h20StreamNonBlocking));
  H20_ASSERT_OK(h20StreamCreateWithFlags(&s2, h20StreamNonBlocking));
  constexpr size_t kBytes = 1u << 20;
  void* p1 = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p1, kBytes, s1));
  H20_ASSERT_OK(h20StreamSynchronize(s1));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s1));
  H20_ASSERT_OK(h20FreeAsync(p1, s1));  // not executed while the gate is closed

  void* p3 = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p3, kBytes, s2));
  EXPECT_NE(p1, p3) << "s2 got memory that s1 may still use";
  EXPECT_TRUE(Addr(p3) + kBytes <= Addr(p1) || Addr(p1) + kBytes <= Addr(p3));

  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s1));  // the free has executed
  const size_t usedBefore = h20test::UsedBytes(0);
  void* p4 = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p4, kBytes, s2));
  EXPECT_EQ(usedBefore, h20test::UsedBytes(0))
      << "the freed block is reused: no new device memory is taken";
  H20_ASSERT_OK(h20FreeAsync(p3, s2));
  H20_ASSERT_OK(h20FreeAsync(p4, s2));
  H20_ASSERT_OK(h20StreamSynchronize(s2));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s1));
  H20_EXPECT_OK(h20StreamDestroy(s2));
}

TEST_F(MallocAsync, UnusedPoolMemoryIsReleasedAtDeviceSynchronize) {
  H20_ASSERT_OK(h20DeviceSynchronize());
  const size_t used0 = h20test::UsedBytes(0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p, 64u << 20, s));
  EXPECT_GE(h20test::UsedBytes(0), used0 + (64u << 20));
  H20_ASSERT_OK(h20FreeAsync(p, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_EQ(used0, h20test::UsedBytes(0));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MallocAsync, RejectsNullOutPointerAndDestroyedStream) {
  void* p = nullptr;
  EXPECT_EQ(h20ErrorInvalidValue, h20MallocAsync(nullptr, 64, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20MallocAsync(&p, 64, s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
}

TEST_F(MallocAsync, FreeAsyncRejectsUnknownPointerAndDestroyedStream) {
  int local = 0;
  EXPECT_EQ(h20ErrorInvalidValue, h20FreeAsync(&local, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  void* p = nullptr;
  H20_ASSERT_OK(h20MallocAsync(&p, 4096, nullptr));
  H20_ASSERT_OK(h20FreeAsync(p, nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20FreeAsync(p, nullptr)) << "double h20FreeAsync";
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20MallocAsync(&p, 4096, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  h20Stream_t dead = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&dead));
  H20_ASSERT_OK(h20StreamDestroy(dead));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20FreeAsync(p, dead));
  H20_EXPECT_OK(h20FreeAsync(p, s));
  H20_EXPECT_OK(h20StreamSynchronize(s));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

}  // namespace

TEST(MemoryUsed, CountsLiveAllocationsOfThatDeviceOnly) {
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20DeviceSynchronize());
  size_t used0 = 0, used1 = 0;
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&used0, 0));
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&used1, 1));
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 1000));  // rounded to the backend's granule
  size_t after = 0, other = 0;
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&after, 0));
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&other, 1));
  const size_t granule = h20test::AllocationGranule();
  EXPECT_EQ(after, used0 + (1000 + granule - 1) / granule * granule);
  EXPECT_EQ(other, used1);
  H20_ASSERT_OK(h20Free(p));
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&after, 0));
  EXPECT_EQ(after, used0);
  EXPECT_EQ(h20ErrorInvalidValue, h20DeviceGetMemoryUsed(nullptr, 0));
  EXPECT_EQ(h20ErrorInvalidDevice, h20DeviceGetMemoryUsed(&after, 99));
}
