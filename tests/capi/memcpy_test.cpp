// memcpy_test.cpp - copies and fills through the C API: h20Memcpy/h20MemcpyAsync in every
// direction (explicit kinds and h20MemcpyDefault inference), their host synchronisation as in CUDA
// (pinned async copies are asynchronous, pageable sources are staged before return, pageable
// destinations are complete on return, device-to-device h20Memcpy is asynchronous on the legacy
// stream), h20Memset/h20MemsetAsync, and range checking: a copy or fill past the end of an
// allocation, into freed memory or across two allocations fails with h20ErrorInvalidValue, names
// the allocation in h20GetLastErrorMessage and writes nothing.
#include "c_callers.h"
#include "h20_test.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using h20test::BusyGate;
using h20test::MessageNamesPointer;
using Memcpy = h20test::CApiTest;
using MemcpyAsync = h20test::CApiTest;
using Memset = h20test::CApiTest;
using CopyRange = h20test::CApiTest;

std::vector<unsigned char> Pattern(size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<unsigned char>((i * 131 + seed) & 0xFF);
  return v;
}

std::vector<unsigned char> ReadDevice(const void* dev, size_t n) {
  std::vector<unsigned char> v(n, 0);
  const h20Error_t rc = h20Memcpy(v.data(), dev, n, h20MemcpyDeviceToHost);
  EXPECT_EQ(h20Success, rc) << h20GetLastErrorMessage();
  return v;
}

bool AllBytes(const std::vector<unsigned char>& v, unsigned char b) {
  return std::all_of(v.begin(), v.end(), [b](unsigned char c) { return c == b; });
}

// Device allocation of `n` bytes filled with `fill`, freed with the object.
struct DevBuf {
  explicit DevBuf(size_t n, int fill = 0xEE) : bytes(n) {
    EXPECT_EQ(h20Success, h20Malloc(&ptr, n)) << h20GetLastErrorMessage();
    EXPECT_EQ(h20Success, h20Memset(ptr, fill, n));
    EXPECT_EQ(h20Success, h20DeviceSynchronize());
  }
  ~DevBuf() {
    if (ptr) h20Free(ptr);
  }
  char* c() const { return static_cast<char*>(ptr); }
  void* ptr = nullptr;
  size_t bytes;
};

// ---- directions
// -----------------------------------------------------------------------------------

TEST_F(Memcpy, HostToDeviceToHostRoundTrips) {
  const auto src = Pattern(100000, 1);
  DevBuf d(src.size());
  H20_ASSERT_OK(h20Memcpy(d.ptr, src.data(), src.size(), h20MemcpyHostToDevice));
  EXPECT_EQ(src, ReadDevice(d.ptr, src.size()));
}

TEST_F(Memcpy, HostToHostCopies) {
  const auto src = Pattern(5000, 2);
  std::vector<unsigned char> dst(src.size(), 0);
  H20_ASSERT_OK(h20Memcpy(dst.data(), src.data(), src.size(), h20MemcpyHostToHost));
  EXPECT_EQ(src, dst);
}

TEST_F(Memcpy, DeviceToDeviceCopiesWithinAndAcrossDevices) {
  H20_REQUIRE_DEVICES(2);
  const auto src = Pattern(70000, 3);
  DevBuf a(src.size()), b(src.size());
  H20_ASSERT_OK(h20Memcpy(a.ptr, src.data(), src.size(), h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20Memcpy(b.ptr, a.ptr, src.size(), h20MemcpyDeviceToDevice));
  EXPECT_EQ(src, ReadDevice(b.ptr, src.size()));

  H20_ASSERT_OK(h20SetDevice(1));
  void* other = nullptr;
  H20_ASSERT_OK(h20Malloc(&other, src.size()));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20Memcpy(other, a.ptr, src.size(), h20MemcpyDeviceToDevice));
  EXPECT_EQ(src, ReadDevice(other, src.size()));
  H20_EXPECT_OK(h20Free(other));
}

TEST_F(Memcpy, DefaultInfersEveryDirection) {
  H20_REQUIRE_DEVICES(2);
  const size_t n = 12345;
  const auto src = Pattern(n, 4);
  std::vector<unsigned char> pageable(n, 0);
  unsigned char* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pinned), n));
  DevBuf d0(n);
  H20_ASSERT_OK(h20SetDevice(1));
  DevBuf d1(n);
  H20_ASSERT_OK(h20SetDevice(0));

  H20_ASSERT_OK(h20Memcpy(d0.ptr, src.data(), n, h20MemcpyDefault));       // pageable -> dev
  H20_ASSERT_OK(h20Memcpy(d1.ptr, d0.ptr, n, h20MemcpyDefault));           // dev -> dev (peer)
  H20_ASSERT_OK(h20Memcpy(pinned, d1.ptr, n, h20MemcpyDefault));           // dev -> pinned
  H20_ASSERT_OK(h20Memcpy(pageable.data(), pinned, n, h20MemcpyDefault));  // pinned -> pageable
  EXPECT_EQ(src, pageable);

  std::memset(pinned, 0, n);
  H20_ASSERT_OK(h20Memset(d0.ptr, 0, n));
  H20_ASSERT_OK(h20Memcpy(pinned, src.data(), n, h20MemcpyDefault));  // pageable -> pinned
  H20_ASSERT_OK(h20Memcpy(d0.ptr, pinned, n, h20MemcpyDefault));      // pinned -> dev
  std::fill(pageable.begin(), pageable.end(), 0);
  H20_ASSERT_OK(h20Memcpy(pageable.data(), d0.ptr, n, h20MemcpyDefault));  // dev -> pageable
  EXPECT_EQ(src, pageable);
  H20_EXPECT_OK(h20FreeHost(pinned));
}

TEST_F(Memcpy, ZeroCountSucceedsAndCopiesNothing) {
  DevBuf d(256, 0x11);
  std::vector<unsigned char> h(256, 0x22);
  H20_EXPECT_OK(h20Memcpy(d.ptr, h.data(), 0, h20MemcpyHostToDevice));
  H20_EXPECT_OK(h20Memcpy(h.data(), d.ptr, 0, h20MemcpyDeviceToHost));
  EXPECT_TRUE(AllBytes(h, 0x22));
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 256), 0x11));
}

TEST_F(Memcpy, NullPointerReturnsInvalidValue) {
  DevBuf d(256);
  std::vector<unsigned char> h(256);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(nullptr, h.data(), 16, h20MemcpyHostToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(d.ptr, nullptr, 16, h20MemcpyHostToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(nullptr, d.ptr, 16, h20MemcpyDefault));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemcpyAsync(h.data(), nullptr, 16, h20MemcpyDefault, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Memcpy, UnknownKindReturnsInvalidValue) {
  // 5..7 are within h20MemcpyKind's value range, so the C++ test itself has no undefined
  // behaviour (C callers may pass any int).
  DevBuf d(256, 0x12);
  std::vector<unsigned char> h(256, 0x34);
  for (int kind : {5, 6, 7}) {
    EXPECT_EQ(h20ErrorInvalidValue,
              h20Memcpy(d.ptr, h.data(), 16, static_cast<h20MemcpyKind>(kind)))
        << kind;
    EXPECT_EQ(h20ErrorInvalidValue,
              h20MemcpyAsync(h.data(), d.ptr, 16, static_cast<h20MemcpyKind>(kind), nullptr))
        << kind;
    EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  }
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(h, 0x34));
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 256), 0x12));
}

TEST_F(Memcpy, KindOutsideTheEnumsRangeReturnsInvalidValueAndCopiesNothing) {
  // From C, where any int converts to h20MemcpyKind: the runtime must read it as an int.
  DevBuf d(256, 0x12);
  std::vector<unsigned char> h(256, 0x34);
  for (int kind : {99, -1, 1 << 20, INT_MIN, INT_MAX}) {
    EXPECT_EQ(h20ErrorInvalidValue, h20test_MemcpyKind(d.ptr, h.data(), 16, kind)) << kind;
    EXPECT_NE(nullptr, std::strstr(h20GetLastErrorMessage(), std::to_string(kind).c_str()))
        << h20GetLastErrorMessage();
    EXPECT_EQ(h20ErrorInvalidValue, h20test_MemcpyAsyncKind(h.data(), d.ptr, 16, kind, nullptr))
        << kind;
  }
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_EQ(h, std::vector<unsigned char>(256, 0x34));
  std::vector<unsigned char> back(256);
  H20_ASSERT_OK(h20Memcpy(back.data(), d.ptr, 256, h20MemcpyDeviceToHost));
  EXPECT_EQ(back, std::vector<unsigned char>(256, 0x12));
}

TEST_F(Memcpy, KindContradictingPointersReturnsInvalidValue) {
  DevBuf d(4096, 0x33);
  std::vector<unsigned char> a(4096, 0x44), b(4096, 0x55);
  // The device side of these kinds is host memory: not in any live device allocation.
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(a.data(), b.data(), 4096, h20MemcpyHostToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(a.data(), b.data(), 4096, h20MemcpyDeviceToHost));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(a.data(), b.data(), 4096, h20MemcpyDeviceToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(d.ptr, b.data(), 4096, h20MemcpyDeviceToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_TRUE(AllBytes(a, 0x44));
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 4096), 0x33));
}

// ---- synchronisation with the host
// ------------------------------------------------------------------

TEST_F(Memcpy, HostToDeviceIsCompleteOnReturn) {
  auto src = Pattern(1u << 20, 5);
  const auto expected = src;
  DevBuf d(src.size());
  H20_ASSERT_OK(h20Memcpy(d.ptr, src.data(), src.size(), h20MemcpyHostToDevice));
  std::fill(src.begin(), src.end(), 0);  // the copy is done: this cannot affect the device
  EXPECT_EQ(expected, ReadDevice(d.ptr, expected.size()));
}

TEST_F(Memcpy, IsOrderedAfterLegacyStreamWork) {
  constexpr size_t kCount = 4096;
  std::vector<int> h(kCount, 10);
  int* d = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)));
  H20_ASSERT_OK(h20Memcpy(d, h.data(), kCount * sizeof(int), h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 5, nullptr));
  std::vector<int> back(kCount, 0);
  H20_ASSERT_OK(h20Memcpy(back.data(), d, kCount * sizeof(int), h20MemcpyDeviceToHost));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](int v) { return v == 15; }));
  H20_EXPECT_OK(h20Free(d));
}

TEST_F(Memcpy, DeviceToDeviceReturnsWithoutWaitingForTheLegacyStream) {
  const auto src = Pattern(8192, 6);
  DevBuf a(src.size()), b(src.size());
  H20_ASSERT_OK(h20Memcpy(a.ptr, src.data(), src.size(), h20MemcpyHostToDevice));
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(nullptr));
  H20_ASSERT_OK(h20Memcpy(b.ptr, a.ptr, src.size(), h20MemcpyDeviceToDevice));
  EXPECT_FALSE(gate.Finished()) << "device-to-device h20Memcpy waited for the legacy stream";
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(nullptr));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_FALSE(gate.TimedOut());
  EXPECT_EQ(src, ReadDevice(b.ptr, src.size()));
}

TEST_F(MemcpyAsync, PinnedCopiesReturnBeforeTheyRun) {
  const size_t n = 1u << 16;
  const auto src = Pattern(n, 7);
  unsigned char* pin = nullptr;
  unsigned char* pinOut = nullptr;
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pin), n));
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pinOut), n));
  std::memcpy(pin, src.data(), n);
  std::memset(pinOut, 0, n);
  DevBuf d(n);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20MemcpyAsync(d.ptr, pin, n, h20MemcpyHostToDevice, s));
  H20_ASSERT_OK(h20MemcpyAsync(pinOut, d.ptr, n, h20MemcpyDeviceToHost, s));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(s));
  EXPECT_FALSE(gate.Finished()) << "an async copy with pinned memory waited for the stream";
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  EXPECT_EQ(0, std::memcmp(src.data(), pinOut, n));
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_EXPECT_OK(h20FreeHost(pin));
  H20_EXPECT_OK(h20FreeHost(pinOut));
}

TEST_F(MemcpyAsync, PageableSourceIsStagedBeforeReturn) {
  const size_t n = 1u << 16;
  auto src = Pattern(n, 8);
  const auto expected = src;
  DevBuf d(n);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20MemcpyAsync(d.ptr, src.data(), n, h20MemcpyHostToDevice, s));
  EXPECT_FALSE(gate.Finished()) << "an async copy from pageable memory waited for the stream";
  std::fill(src.begin(), src.end(), 0);  // staged already: must not reach the device
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  EXPECT_EQ(expected, ReadDevice(d.ptr, n));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MemcpyAsync, PageableSourceOnAnIdleStreamIsConsumedBeforeReturn) {
  const size_t n = 3u << 20;
  auto src = Pattern(n, 10);
  const auto expected = src;
  DevBuf d(n);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20MemcpyAsync(d.ptr, src.data(), n, h20MemcpyHostToDevice, s));
  std::fill(src.begin(), src.end(), 0);
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(expected, ReadDevice(d.ptr, n));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MemcpyAsync, StagedCopiesInFlightTogetherKeepTheirOwnBytes) {
  // One pageable buffer, refilled before each copy while the stream is held: every copy must
  // carry the bytes it was given, whatever staging buffers are reused.
  const size_t sizes[] = {100, 70000, 1u << 16, 1u << 20, 5000, 1u << 20};
  std::vector<unsigned char> src(1u << 20);
  std::vector<std::unique_ptr<DevBuf>> dst;
  for (size_t n : sizes)
    dst.push_back(std::make_unique<DevBuf>(n));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  for (int round = 0; round < 3; ++round) {
    BusyGate gate(5s);
    H20_ASSERT_OK(gate.Launch(s));
    for (size_t i = 0; i < std::size(sizes); ++i) {
      std::fill(src.begin(), src.end(), static_cast<unsigned char>(16 * round + i + 1));
      H20_ASSERT_OK(h20MemcpyAsync(dst[i]->ptr, src.data(), sizes[i], h20MemcpyHostToDevice, s));
    }
    gate.Open();
    H20_ASSERT_OK(h20StreamSynchronize(s));
    for (size_t i = 0; i < std::size(sizes); ++i)
      EXPECT_EQ(
          std::vector<unsigned char>(sizes[i], static_cast<unsigned char>(16 * round + i + 1)),
          ReadDevice(dst[i]->ptr, sizes[i]))
          << "round " << round << ", copy " << i;
  }
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MemcpyAsync, PageableDestinationIsCompleteOnReturn) {
  const size_t n = 1u << 16;
  const auto src = Pattern(n, 9);
  DevBuf d(n);
  H20_ASSERT_OK(h20Memcpy(d.ptr, src.data(), n, h20MemcpyHostToDevice));
  std::vector<unsigned char> dst(n, 0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::thread opener([&] {
    gate.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gate.Open();
  });
  H20_ASSERT_OK(h20MemcpyAsync(dst.data(), d.ptr, n, h20MemcpyDeviceToHost, s));
  EXPECT_TRUE(gate.Finished()) << "an async copy to pageable memory returned before it ran";
  EXPECT_EQ(src, dst);
  opener.join();
  H20_EXPECT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(MemcpyAsync, RunsInStreamOrderWithKernelsAndMemsets) {
  constexpr size_t kCount = 10000;
  int* d = nullptr;
  int* pin = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)));
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pin), kCount * sizeof(int)));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  for (int round = 0; round < 20; ++round) {
    H20_ASSERT_OK(h20MemsetAsync(d, 0, kCount * sizeof(int), s));
    H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, round, s));
    H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 1, s));
    H20_ASSERT_OK(h20MemcpyAsync(pin, d, kCount * sizeof(int), h20MemcpyDeviceToHost, s));
    H20_ASSERT_OK(h20StreamSynchronize(s));
    ASSERT_TRUE(std::all_of(pin, pin + kCount, [&](int v) { return v == round + 1; }))
        << "round " << round << " got " << pin[0];
  }
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_EXPECT_OK(h20Free(d));
  H20_EXPECT_OK(h20FreeHost(pin));
}

TEST_F(MemcpyAsync, DestroyedStreamReturnsInvalidResourceHandle) {
  DevBuf d(256, 0x77);
  std::vector<unsigned char> h(256, 0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle,
            h20MemcpyAsync(d.ptr, h.data(), 256, h20MemcpyHostToDevice, s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20MemsetAsync(d.ptr, 0, 256, s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 256), 0x77));
}

// ---- h20Memset
// ----------------------------------------------------------------------------------------

TEST_F(Memset, FillsWithTheLowByteOfValue) {
  DevBuf d(10000, 0);
  H20_ASSERT_OK(h20Memset(d.ptr, 0x1A5, 10000));  // converted to unsigned char, as memset does
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 10000), 0xA5));
  H20_ASSERT_OK(h20Memset(d.c() + 100, -1, 50));
  const auto back = ReadDevice(d.ptr, 10000);
  for (size_t i = 0; i < back.size(); ++i) {
    const unsigned char want = (i >= 100 && i < 150) ? 0xFF : 0xA5;
    ASSERT_EQ(want, back[i]) << "byte " << i;
  }
}

TEST_F(Memset, IsAsynchronousOnTheLegacyStream) {
  DevBuf d(4096, 0);
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(nullptr));
  H20_ASSERT_OK(h20Memset(d.ptr, 0x42, 4096));
  EXPECT_FALSE(gate.Finished()) << "h20Memset waited for the legacy stream";
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(nullptr));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_FALSE(gate.TimedOut());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 4096), 0x42));
}

TEST_F(Memset, AsyncRunsInStreamOrder) {
  DevBuf d(4096, 0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  for (int v = 1; v <= 50; ++v)
    H20_ASSERT_OK(h20MemsetAsync(d.ptr, v, 4096, s));
  H20_ASSERT_OK(h20MemsetAsync(d.c() + 4000, 0x99, 96, s));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  const auto back = ReadDevice(d.ptr, 4096);
  for (size_t i = 0; i < back.size(); ++i)
    ASSERT_EQ(i < 4000 ? 50 : 0x99, back[i]) << i;
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(Memset, ZeroCountSucceeds) {
  DevBuf d(256, 0x10);
  H20_EXPECT_OK(h20Memset(d.ptr, 0, 0));
  H20_EXPECT_OK(h20MemsetAsync(d.ptr, 0, 0, nullptr));
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 256), 0x10));
}

TEST_F(Memset, NullOrHostPointerReturnsInvalidValue) {
  std::vector<unsigned char> h(256, 0x66);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(nullptr, 0, 16));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(h.data(), 0, 16));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemsetAsync(h.data(), 0, 16, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(h, 0x66));
}

// ---- range checks
// ---------------------------------------------------------------------------------

TEST_F(CopyRange, HostToDevicePastTheEndIsRejectedAndWritesNothing) {
  DevBuf d(1024, 0xEE);
  const auto src = Pattern(1024, 10);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(d.c() + 512, src.data(), 1024, h20MemcpyHostToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20PeekAtLastError());
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_TRUE(MessageNamesPointer(msg, d.ptr))
      << "message does not name allocation " << d.ptr << ": " << msg;
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 1024), 0xEE));
}

TEST_F(CopyRange, DeviceToHostPastTheEndIsRejectedAndWritesNothing) {
  DevBuf d(1024, 0xEE);
  std::vector<unsigned char> dst(2048, 0x01);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(dst.data(), d.ptr, 1025, h20MemcpyDeviceToHost));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), d.ptr)) << h20GetLastErrorMessage();
  EXPECT_TRUE(AllBytes(dst, 0x01));
}

TEST_F(CopyRange, DeviceToDevicePastTheEndIsRejectedAndWritesNothing) {
  DevBuf a(1024, 0xAA), b(4096, 0xBB);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(a.ptr, b.ptr, 2048, h20MemcpyDeviceToDevice));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), a.ptr)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(b.ptr, a.c() + 1, 1024, h20MemcpyDefault));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), a.ptr)) << h20GetLastErrorMessage();
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(a.ptr, 1024), 0xAA));
  EXPECT_TRUE(AllBytes(ReadDevice(b.ptr, 4096), 0xBB));
}

TEST_F(CopyRange, AsyncCopyAndMemsetPastTheEndAreRejected) {
  DevBuf d(1024, 0xEE);
  std::vector<unsigned char> h(4096, 0x02);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  EXPECT_EQ(h20ErrorInvalidValue,
            h20MemcpyAsync(d.c() + 1, h.data(), 1024, h20MemcpyHostToDevice, s));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), d.ptr)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20MemcpyAsync(h.data(), d.ptr, 1025, h20MemcpyDeviceToHost, s));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemsetAsync(d.c() + 1000, 0, 25, s));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), d.ptr)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(d.ptr, 0, 1025));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), d.ptr)) << h20GetLastErrorMessage();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 1024), 0xEE));
  EXPECT_TRUE(AllBytes(h, 0x02));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(CopyRange, AcrossTwoAllocationsIsRejectedAndWritesNeither) {
  // Allocate small blocks and pick the two closest neighbours: a copy starting in the lower one
  // and ending inside the upper one spans both (and any gap between them).
  std::vector<void*> blocks(16, nullptr);
  for (auto& p : blocks) {
    H20_ASSERT_OK(h20Malloc(&p, 256));
    H20_ASSERT_OK(h20Memset(p, 0xCC, 256));
  }
  H20_ASSERT_OK(h20DeviceSynchronize());
  std::vector<void*> sorted = blocks;
  std::sort(sorted.begin(), sorted.end(), [](void* a, void* b) {
    return reinterpret_cast<std::uintptr_t>(a) < reinterpret_cast<std::uintptr_t>(b);
  });
  size_t best = 0;
  for (size_t i = 1; i + 1 < sorted.size(); ++i) {
    const auto gap = [&](size_t k) {
      return reinterpret_cast<std::uintptr_t>(sorted[k + 1]) -
             reinterpret_cast<std::uintptr_t>(sorted[k]);
    };
    if (gap(i) < gap(best)) best = i;
  }
  char* lo = static_cast<char*>(sorted[best]);
  char* hi = static_cast<char*>(sorted[best + 1]);
  const size_t span = static_cast<size_t>(hi - lo) + 128;  // ends 128 bytes into `hi`
  std::vector<unsigned char> src(span, 0x01);

  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(lo, src.data(), span, h20MemcpyHostToDevice));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), lo)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(lo + 128, 0, 256));
  std::vector<unsigned char> dst(span, 0x02);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(dst.data(), lo, span, h20MemcpyDeviceToHost));
  EXPECT_TRUE(AllBytes(dst, 0x02));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(lo, hi - 128, 256, h20MemcpyDeviceToDevice));
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(lo, 256), 0xCC));
  EXPECT_TRUE(AllBytes(ReadDevice(hi, 256), 0xCC));
  for (void* p : blocks)
    H20_EXPECT_OK(h20Free(p));
}

TEST_F(CopyRange, IntoFreedMemoryIsRejected) {
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 4096));
  H20_ASSERT_OK(h20Free(p));
  std::vector<unsigned char> h(4096, 0x03);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(p, h.data(), 4096, h20MemcpyHostToDevice));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), p)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(h.data(), p, 4096, h20MemcpyDeviceToHost));
  EXPECT_TRUE(AllBytes(h, 0x03));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemcpyAsync(p, h.data(), 64, h20MemcpyHostToDevice, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(p, 0, 64));
  EXPECT_EQ(h20ErrorInvalidValue, h20MemsetAsync(p, 0, 64, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(CopyRange, IntoFreedMemoryWithDefaultKindIsRejected) {
  // Freed device memory stays inside the device's address range; with h20MemcpyDefault the
  // runtime must not take it for pageable host memory and write to it.
  void* p = nullptr;
  H20_ASSERT_OK(h20Malloc(&p, 4096));
  H20_ASSERT_OK(h20Free(p));
  std::vector<unsigned char> h(4096, 0x04);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(p, h.data(), 4096, h20MemcpyDefault));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), p)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(h.data(), p, 4096, h20MemcpyDefault));
  EXPECT_TRUE(AllBytes(h, 0x04));
}

TEST_F(CopyRange, PinnedRangePastItsEndIsRejected) {
  unsigned char* pin = nullptr;
  H20_ASSERT_OK(h20MallocHost(reinterpret_cast<void**>(&pin), 1024));
  std::memset(pin, 0x05, 1024);
  DevBuf d(4096, 0xEE);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(d.ptr, pin + 512, 1024, h20MemcpyHostToDevice));
  EXPECT_TRUE(MessageNamesPointer(h20GetLastErrorMessage(), pin)) << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorInvalidValue,
            h20MemcpyAsync(pin + 1, d.ptr, 1024, h20MemcpyDeviceToHost, nullptr));
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 4096), 0xEE));
  EXPECT_TRUE(std::all_of(pin, pin + 1024, [](unsigned char c) { return c == 0x05; }));
  H20_EXPECT_OK(h20FreeHost(pin));
}

TEST_F(CopyRange, CountThatWrapsTheAddressSpaceIsRejected) {
  DevBuf d(1024, 0xEE);
  std::vector<unsigned char> h(1024, 0x06);
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(d.c() + 16, h.data(), SIZE_MAX, h20MemcpyHostToDevice));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memcpy(h.data(), d.c() + 16, SIZE_MAX - 8, h20MemcpyDefault));
  EXPECT_EQ(h20ErrorInvalidValue, h20Memset(d.c() + 16, 0, SIZE_MAX));
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(AllBytes(ReadDevice(d.ptr, 1024), 0xEE));
  EXPECT_TRUE(AllBytes(h, 0x06));
}

TEST_F(CopyRange, ExactlyTheWholeAllocationIsAccepted) {
  DevBuf d(1000, 0);
  const auto src = Pattern(1000, 11);
  H20_ASSERT_OK(h20Memcpy(d.ptr, src.data(), 1000, h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20Memcpy(d.c() + 999, src.data(), 1, h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20Memset(d.c() + 1, 0x07, 999));
  H20_ASSERT_OK(h20DeviceSynchronize());
  const auto back = ReadDevice(d.ptr, 1000);
  EXPECT_EQ(src[0], back[0]);
  EXPECT_EQ(0x07, back[999]);
}

}  // namespace
