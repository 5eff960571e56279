// peer_test.cpp - peer access and copies between devices on the default (switch) topology:
// CUDA's error semantics, one-directional access enforced at kernel launch, copies for every pair.
#include "c_callers.h"
#include "h20_test.hpp"

#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace {

struct FillArgs {
  unsigned char* dst;
  unsigned char value;
  size_t n;
};

void fillKernel(const h20KernelContext*, const void* p) {
  const auto* a = static_cast<const FillArgs*>(p);
  std::memset(a->dst, a->value, a->n);
}

class Peer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (h20test::DeviceCount() < 2) GTEST_SKIP() << "needs two devices";
  }
  void TearDown() override {
    for (int d = 0; d < h20test::DeviceCount(); ++d) {
      h20SetDevice(d);
      h20DeviceReset();
    }
    h20SetDevice(0);
    h20GetLastError();
  }
};

}  // namespace

TEST_F(Peer, CanAccessPeerIsTrueForLinkedDevicesAndFalseForItself) {
  int can = -1;
  H20_ASSERT_OK(h20DeviceCanAccessPeer(&can, 0, 1));
  EXPECT_EQ(can, 1);
  H20_ASSERT_OK(h20DeviceCanAccessPeer(&can, 1, 1));
  EXPECT_EQ(can, 0);
  EXPECT_EQ(h20DeviceCanAccessPeer(nullptr, 0, 1), h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceCanAccessPeer(&can, 0, 99), h20ErrorInvalidDevice);
  EXPECT_EQ(h20DeviceCanAccessPeer(&can, -1, 0), h20ErrorInvalidDevice);
}

TEST_F(Peer, P2PAttributesDescribeTheSwitchLink) {
  int v = -7;
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrAccessSupported, 0, 1));
  EXPECT_EQ(v, 1);
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrPerformanceRank, 0, 1));
  EXPECT_EQ(v, 0);
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrNativeAtomicSupported, 0, 1));
  EXPECT_EQ(v, 1);
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrLinkBandwidthMBps, 0, 1));
  EXPECT_EQ(v, 450000);
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrHopCount, 0, 1));
  EXPECT_EQ(v, 1);
  H20_ASSERT_OK(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrLinkKind, 0, 1));
  EXPECT_EQ(v, h20P2PLinkSwitch);
  EXPECT_EQ(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrLinkKind, 2, 2), h20ErrorInvalidDevice);
  EXPECT_EQ(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrHopCount, 1, 1), h20ErrorInvalidDevice);
  EXPECT_EQ(h20DeviceGetP2PAttribute(&v, static_cast<h20DeviceP2PAttr>(42), 0, 1),
            h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceGetP2PAttribute(nullptr, h20DevP2PAttrHopCount, 0, 1), h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceGetP2PAttribute(&v, h20DevP2PAttrHopCount, 0, 64), h20ErrorInvalidDevice);
}

TEST_F(Peer, EnableAndDisableFollowCudaErrors) {
  H20_ASSERT_OK(h20SetDevice(0));
  EXPECT_EQ(h20DeviceEnablePeerAccess(1, 1u), h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceEnablePeerAccess(64, 0), h20ErrorInvalidDevice);
  EXPECT_EQ(h20DeviceEnablePeerAccess(0, 0), h20ErrorInvalidDevice);
  EXPECT_EQ(h20DeviceDisablePeerAccess(1), h20ErrorPeerAccessNotEnabled);
  H20_ASSERT_OK(h20DeviceEnablePeerAccess(1, 0));
  EXPECT_EQ(h20DeviceEnablePeerAccess(1, 0), h20ErrorPeerAccessAlreadyEnabled);
  EXPECT_NE(std::string(h20GetLastErrorMessage()).find("already"), std::string::npos);
  H20_ASSERT_OK(h20DeviceDisablePeerAccess(1));
  EXPECT_EQ(h20DeviceDisablePeerAccess(1), h20ErrorPeerAccessNotEnabled);
  EXPECT_EQ(h20DeviceDisablePeerAccess(-3), h20ErrorInvalidDevice);
}

TEST_F(Peer, KernelUsingPeerMemoryNeedsAccessInThatDirection) {
  H20_ASSERT_OK(h20SetDevice(1));
  unsigned char* peerBuf = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&peerBuf), 4096));
  H20_ASSERT_OK(h20SetDevice(0));
  const FillArgs args{peerBuf, 0x3c, 4096};
  const h20Dim3 one{1, 1, 1};
  EXPECT_EQ(h20LaunchKernel(fillKernel, one, one, &args, sizeof args, 0, nullptr),
            h20ErrorPeerAccessNotEnabled);
  EXPECT_TRUE(h20test::MessageNamesPointer(h20GetLastErrorMessage(), peerBuf))
      << h20GetLastErrorMessage();
  // Access from device 1 to device 0 does not give device 0 access to device 1.
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20DeviceEnablePeerAccess(0, 0));
  H20_ASSERT_OK(h20SetDevice(0));
  EXPECT_EQ(h20LaunchKernel(fillKernel, one, one, &args, sizeof args, 0, nullptr),
            h20ErrorPeerAccessNotEnabled);
  H20_ASSERT_OK(h20DeviceEnablePeerAccess(1, 0));
  H20_ASSERT_OK(h20LaunchKernel(fillKernel, one, one, &args, sizeof args, 0, nullptr));
  H20_ASSERT_OK(h20DeviceSynchronize());
  std::vector<unsigned char> host(4096);
  H20_ASSERT_OK(h20Memcpy(host.data(), peerBuf, host.size(), h20MemcpyDeviceToHost));
  EXPECT_EQ(host.front(), 0x3c);
  EXPECT_EQ(host.back(), 0x3c);
}

TEST_F(Peer, DeviceResetDisablesItsPeerAccess) {
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20DeviceEnablePeerAccess(1, 0));
  H20_ASSERT_OK(h20DeviceReset());
  EXPECT_EQ(h20DeviceDisablePeerAccess(1), h20ErrorPeerAccessNotEnabled);
}

TEST_F(Peer, MemcpyPeerCopiesBetweenEveryPairWithOffsetsAndOddSizes) {
  const int n = h20test::DeviceCount();
  constexpr size_t kBytes = 4096, kOffset = 3, kCount = 1237;
  std::vector<unsigned char*> buf(static_cast<size_t>(n));
  for (int d = 0; d < n; ++d) {
    H20_ASSERT_OK(h20SetDevice(d));
    H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&buf[static_cast<size_t>(d)]), kBytes));
  }
  std::vector<unsigned char> pattern(kBytes), out(kBytes);
  for (int src = 0; src < n; ++src) {
    for (int dst = 0; dst < n; ++dst) {
      if (src == dst) continue;
      for (size_t i = 0; i < kBytes; ++i)
        pattern[i] = static_cast<unsigned char>(i * 7 + src * 31 + dst);
      H20_ASSERT_OK(h20SetDevice(src));
      H20_ASSERT_OK(
          h20Memcpy(buf[static_cast<size_t>(src)], pattern.data(), kBytes, h20MemcpyHostToDevice));
      H20_ASSERT_OK(h20SetDevice(dst));
      H20_ASSERT_OK(h20Memset(buf[static_cast<size_t>(dst)], 0, kBytes));
      const bool async = (src + dst) % 2 == 0;
      if (async) {
        H20_ASSERT_OK(h20MemcpyPeerAsync(buf[static_cast<size_t>(dst)] + kOffset, dst,
                                         buf[static_cast<size_t>(src)] + kOffset, src, kCount,
                                         nullptr));
      } else {
        H20_ASSERT_OK(h20MemcpyPeer(buf[static_cast<size_t>(dst)] + kOffset, dst,
                                    buf[static_cast<size_t>(src)] + kOffset, src, kCount));
      }
      H20_ASSERT_OK(
          h20Memcpy(out.data(), buf[static_cast<size_t>(dst)], kBytes, h20MemcpyDeviceToHost));
      for (size_t i = 0; i < kBytes; ++i) {
        const unsigned char want = (i >= kOffset && i < kOffset + kCount) ? pattern[i] : 0;
        ASSERT_EQ(out[i], want) << "src " << src << " dst " << dst << " byte " << i;
      }
    }
  }
}

TEST_F(Peer, MemcpyPeerChecksRangesAndOwnership) {
  unsigned char *a = nullptr, *b = nullptr;
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&a), 1024));
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&b), 1024));
  std::vector<unsigned char> before(1024, 0x11);
  H20_ASSERT_OK(h20Memcpy(b, before.data(), 1024, h20MemcpyHostToDevice));
  EXPECT_EQ(h20MemcpyPeer(b + 512, 1, a, 0, 1024), h20ErrorInvalidValue);
  EXPECT_TRUE(h20test::MessageNamesPointer(h20GetLastErrorMessage(), b))
      << h20GetLastErrorMessage();
  EXPECT_EQ(h20MemcpyPeer(b, 0, a, 0, 16), h20ErrorInvalidValue);  // b is device 1's memory
  EXPECT_EQ(h20MemcpyPeer(b, 1, a, 9, 16), h20ErrorInvalidDevice);
  EXPECT_EQ(h20MemcpyPeer(nullptr, 1, a, 0, 16), h20ErrorInvalidValue);
  EXPECT_EQ(h20MemcpyPeer(b, 1, before.data(), 0, 16), h20ErrorInvalidValue);
  std::vector<unsigned char> after(1024);
  H20_ASSERT_OK(h20Memcpy(after.data(), b, 1024, h20MemcpyDeviceToHost));
  EXPECT_EQ(after, before);  // nothing was written by the refused copies
}

TEST_F(Peer, CpuAffinityMatchesTheDeviceNumaNode) {
  int count = -1, node = -5;
  H20_ASSERT_OK(h20DeviceGetCpuAffinity(0, nullptr, 0, &count, &node));
  EXPECT_EQ(node, h20test::Props(0).numaNode);
  std::vector<int> cpus(static_cast<size_t>(count > 0 ? count : 1), -1);
  int again = 0;
  H20_ASSERT_OK(
      h20DeviceGetCpuAffinity(0, cpus.data(), static_cast<int>(cpus.size()), &again, nullptr));
  EXPECT_EQ(again, count);
  if (node >= 0) {
    ASSERT_GE(count, 1);
    for (int c : cpus)
      EXPECT_GE(c, 0);
  }
  EXPECT_EQ(h20DeviceGetCpuAffinity(0, nullptr, 4, &count, nullptr), h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceGetCpuAffinity(0, nullptr, 0, nullptr, nullptr), h20ErrorInvalidValue);
  EXPECT_EQ(h20DeviceGetCpuAffinity(42, nullptr, 0, &count, nullptr), h20ErrorInvalidDevice);
}

TEST_F(Peer, LargePeerCopyIsExactOverTheLinkAndThroughTheHost) {
  constexpr size_t kBytes = (5u << 20) + 13;  // above the parallel-copy size, odd tail
  unsigned char *a = nullptr, *b = nullptr;
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&a), kBytes));
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&b), kBytes));
  std::vector<unsigned char> in(kBytes), out(kBytes);
  for (size_t i = 0; i < kBytes; ++i)
    in[i] = static_cast<unsigned char>(i * 2654435761u >> 24);
  H20_ASSERT_OK(h20Memcpy(a, in.data(), kBytes, h20MemcpyHostToDevice));
  for (bool enabled : {false, true}) {
    H20_ASSERT_OK(h20SetDevice(1));
    if (enabled) H20_ASSERT_OK(h20DeviceEnablePeerAccess(0, 0));
    H20_ASSERT_OK(h20Memset(b, 0, kBytes));
    // Runs on device 1's legacy stream: direct when 1 may access 0, staged otherwise.
    H20_ASSERT_OK(h20MemcpyAsync(b, a, kBytes, h20MemcpyDefault, nullptr));
    H20_ASSERT_OK(h20Memcpy(out.data(), b, kBytes, h20MemcpyDeviceToHost));
    EXPECT_TRUE(out == in) << "peer access enabled: " << enabled;
  }
}

TEST_F(Peer, ArgumentWordsOutsideLiveAllocationsDoNotNeedPeerAccess) {
  H20_ASSERT_OK(h20SetDevice(1));
  unsigned char* peerBuf = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&peerBuf), 4096));
  H20_ASSERT_OK(h20Free(peerBuf));  // still in device 1's range, no longer an allocation
  H20_ASSERT_OK(h20SetDevice(0));
  unsigned char* own = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&own), 64));
  // A word that looks like device 1's memory (stale padding, a freed pointer) is not a use of it.
  struct {
    FillArgs fill;
    const void* stale;
  } args{{own, 1, 64}, peerBuf};
  const h20Dim3 one{1, 1, 1};
  H20_EXPECT_OK(h20LaunchKernel(fillKernel, one, one, &args, sizeof args, 0, nullptr));
  H20_EXPECT_OK(h20DeviceSynchronize());
}

// ---- ordering of legacy-stream work that touches two devices (h20MemcpyPeer, h20Memcpy,
// h20Memset with another device current) against both devices' blocking streams

namespace {

// Which device's blocking stream holds the pending write, and which device is current when the
// cross-device call is made.
struct CrossCase {
  const char* name;
  int busyDevice;     // 0 = source device, 1 = destination device
  int currentDevice;  // device current at the call
};

class CrossDeviceOrdering : public Peer, public ::testing::WithParamInterface<CrossCase> {
 protected:
  static constexpr size_t kBytes = 4096;
  // Device 0 owns src, device 1 owns dst; both start as 0x11 / 0x22. A blocking stream of the busy
  // device holds a memset of its buffer (src: 0x33, dst: 0x44) behind a gate kernel.
  void Prepare() {
    H20_ASSERT_OK(h20SetDevice(0));
    H20_ASSERT_OK(h20Malloc(&src_, kBytes));
    H20_ASSERT_OK(h20Memset(src_, 0x11, kBytes));
    H20_ASSERT_OK(h20DeviceSynchronize());
    H20_ASSERT_OK(h20SetDevice(1));
    H20_ASSERT_OK(h20Malloc(&dst_, kBytes));
    H20_ASSERT_OK(h20Memset(dst_, 0x22, kBytes));
    H20_ASSERT_OK(h20DeviceSynchronize());
    H20_ASSERT_OK(h20SetDevice(GetParam().busyDevice));
    H20_ASSERT_OK(h20StreamCreate(&busy_));
    H20_ASSERT_OK(gate_.Launch(busy_));
    void* target = GetParam().busyDevice == 0 ? src_ : dst_;
    H20_ASSERT_OK(h20MemsetAsync(target, GetParam().busyDevice == 0 ? 0x33 : 0x44, kBytes, busy_));
    H20_ASSERT_OK(h20SetDevice(GetParam().currentDevice));
  }
  // Opens the gate, waits for everything and returns dst's bytes.
  std::vector<unsigned char> Finish() {
    gate_.Open();
    for (int d = 0; d < 2; ++d) {
      h20SetDevice(d);
      EXPECT_EQ(h20DeviceSynchronize(), h20Success) << h20GetLastErrorMessage();
    }
    std::vector<unsigned char> out(kBytes);
    EXPECT_EQ(h20Memcpy(out.data(), dst_, kBytes, h20MemcpyDeviceToHost), h20Success);
    return out;
  }
  // The bytes dst must hold: the copy runs after the pending memset, whichever side it wrote.
  unsigned char Expected() const { return GetParam().busyDevice == 0 ? 0x33 : 0x11; }

  void* src_ = nullptr;
  void* dst_ = nullptr;
  h20Stream_t busy_ = nullptr;
  h20test::BusyGate gate_;
};

void PrintTo(const CrossCase& c, std::ostream* os) {
  *os << c.name;
}

std::string CrossCaseName(const ::testing::TestParamInfo<CrossCase>& info) {
  return info.param.name;
}

const CrossCase kCrossCases[] = {
    {"SourceBusy_SourceCurrent", 0, 0},
    {"SourceBusy_DestinationCurrent", 0, 1},
    {"DestinationBusy_SourceCurrent", 1, 0},
    {"DestinationBusy_DestinationCurrent", 1, 1},
};

}  // namespace

TEST_P(CrossDeviceOrdering, MemcpyPeerRunsAfterBothDevicesBlockingStreams) {
  H20_REQUIRE_WORKERS(2);
  Prepare();
  H20_ASSERT_OK(h20MemcpyPeer(dst_, 1, src_, 0, kBytes));
  const auto out = Finish();
  EXPECT_EQ(out, std::vector<unsigned char>(kBytes, Expected()));
}

TEST_P(CrossDeviceOrdering, MemcpyBetweenDevicesRunsAfterBothDevicesBlockingStreams) {
  H20_REQUIRE_WORKERS(2);
  Prepare();
  H20_ASSERT_OK(h20Memcpy(dst_, src_, kBytes, h20MemcpyDeviceToDevice));
  const auto out = Finish();
  EXPECT_EQ(out, std::vector<unsigned char>(kBytes, Expected()));
}

TEST_P(CrossDeviceOrdering, MemsetOfAnotherDevicesMemoryRunsAfterItsBlockingStreams) {
  H20_REQUIRE_WORKERS(2);
  Prepare();
  // A memset of the busy device's buffer from the legacy stream of whichever device is current
  // lands after the pending memset.
  void* target = GetParam().busyDevice == 0 ? src_ : dst_;
  H20_ASSERT_OK(h20Memset(target, 0x5a, kBytes));
  gate_.Open();
  for (int d = 0; d < 2; ++d) {
    H20_ASSERT_OK(h20SetDevice(d));
    H20_ASSERT_OK(h20DeviceSynchronize());
  }
  std::vector<unsigned char> out(kBytes);
  H20_ASSERT_OK(h20Memcpy(out.data(), target, kBytes, h20MemcpyDeviceToHost));
  EXPECT_EQ(out, std::vector<unsigned char>(kBytes, 0x5a));
}

TEST_P(CrossDeviceOrdering, LaterBlockingStreamWorkWaitsForTheMemcpyPeer) {
  H20_REQUIRE_WORKERS(2);
  Prepare();
  H20_ASSERT_OK(h20MemcpyPeer(dst_, 1, src_, 0, kBytes));
  // Work enqueued afterwards on a blocking stream of the destination device runs after the copy.
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t later = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&later));
  H20_ASSERT_OK(h20MemsetAsync(dst_, 0x77, kBytes, later));
  const auto out = Finish();
  EXPECT_EQ(out, std::vector<unsigned char>(kBytes, 0x77));
}

INSTANTIATE_TEST_SUITE_P(BusyAndCurrent, CrossDeviceOrdering, ::testing::ValuesIn(kCrossCases),
                         CrossCaseName);

// ---- a faulted device's memory cannot be used by any device

namespace {

void faultDevice(int device) {
  ASSERT_EQ(h20SetDevice(device), h20Success);
  h20test::FaultArgs fa{0, h20ErrorLaunchFailure, "injected"};
  ASSERT_EQ(h20LaunchKernel(h20test::FaultKernel, {1, 1, 1}, {1, 1, 1}, &fa, sizeof fa, 0, nullptr),
            h20Success);
  EXPECT_EQ(h20DeviceSynchronize(), h20ErrorLaunchFailure);
}

}  // namespace

TEST_F(Peer, CopiesTouchingAFaultedDeviceFailAndWriteNothing) {
  constexpr size_t kBytes = 1024;
  void* a = nullptr;  // device 0, faulted below
  void* b = nullptr;  // device 1
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20Malloc(&a, kBytes));
  H20_ASSERT_OK(h20Memset(a, 0x11, kBytes));
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20Malloc(&b, kBytes));
  H20_ASSERT_OK(h20Memset(b, 0x22, kBytes));
  H20_ASSERT_OK(h20DeviceSynchronize());
  faultDevice(0);

  H20_ASSERT_OK(h20SetDevice(1));
  std::vector<unsigned char> host(kBytes, 0x99);
  EXPECT_EQ(h20MemcpyPeer(b, 1, a, 0, kBytes), h20ErrorLaunchFailure);
  EXPECT_EQ(h20MemcpyPeer(a, 0, b, 1, kBytes), h20ErrorLaunchFailure);
  EXPECT_EQ(h20MemcpyPeerAsync(b, 1, a, 0, kBytes, nullptr), h20ErrorLaunchFailure);
  EXPECT_EQ(h20Memcpy(host.data(), a, kBytes, h20MemcpyDeviceToHost), h20ErrorLaunchFailure);
  EXPECT_EQ(host, std::vector<unsigned char>(kBytes, 0x99));
  EXPECT_EQ(h20Memcpy(b, a, kBytes, h20MemcpyDeviceToDevice), h20ErrorLaunchFailure);
  EXPECT_EQ(h20Memcpy(a, host.data(), kBytes, h20MemcpyHostToDevice), h20ErrorLaunchFailure);
  EXPECT_EQ(h20Memset(a, 0x55, kBytes), h20ErrorLaunchFailure);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  EXPECT_EQ(h20MemcpyAsync(b, a, kBytes, h20MemcpyDefault, s), h20ErrorLaunchFailure);

  // Device 1 is not faulted and its memory is intact.
  H20_ASSERT_OK(h20DeviceSynchronize());
  H20_ASSERT_OK(h20Memcpy(host.data(), b, kBytes, h20MemcpyDeviceToHost));
  EXPECT_EQ(host, std::vector<unsigned char>(kBytes, 0x22));
}

TEST_F(Peer, CopyEnqueuedBeforeTheOtherDeviceFaultsIsSkipped) {
  H20_REQUIRE_WORKERS(2);
  constexpr size_t kBytes = 1024;
  void* a = nullptr;  // device 0, faulted while the copy waits
  void* b = nullptr;  // device 1, runs the copy
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20Malloc(&a, kBytes));
  H20_ASSERT_OK(h20Memset(a, 0x11, kBytes));
  H20_ASSERT_OK(h20DeviceSynchronize());
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20Malloc(&b, kBytes));
  H20_ASSERT_OK(h20Memset(b, 0x22, kBytes));
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  h20test::BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20MemcpyPeerAsync(b, 1, a, 0, kBytes, s));
  faultDevice(0);
  gate.Open();
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  std::vector<unsigned char> host(kBytes);
  H20_ASSERT_OK(h20Memcpy(host.data(), b, kBytes, h20MemcpyDeviceToHost));
  EXPECT_EQ(host, std::vector<unsigned char>(kBytes, 0x22)) << "a faulted device's memory was read";
}

TEST_F(Peer, P2PAttributeOutsideTheEnumsRangeIsInvalidValue) {
  // From C, where any int converts to h20DeviceP2PAttr.
  for (int attr : {99, -1, 1 << 20}) {
    int v = -7;
    EXPECT_EQ(h20test_P2PAttribute(&v, attr, 0, 1), h20ErrorInvalidValue) << attr;
    EXPECT_EQ(v, -7);
  }
}
