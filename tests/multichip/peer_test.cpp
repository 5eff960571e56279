// peer_test.cpp - peer access and copies between devices on the default (switch) topology:
// CUDA's error semantics, one-directional access enforced at kernel launch, copies for every pair.
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
