// numa_test.cpp - pinned host memory lands on the NUMA node of the device that was current when
// it was allocated, checked with libnuma's numa_move_pages (query mode) where the host has NUMA.
#include "h20_test.hpp"

#include <h20/h20_runtime.h>

#include <gtest/gtest.h>
#include <numa.h>
#include <numaif.h>

#include <cstring>

TEST(Numa, PinnedMemoryIsPlacedOnTheCurrentDevicesNode) {
  if (numa_available() < 0) GTEST_SKIP() << "the host has no NUMA support";
  const int n = h20test::DeviceCount();
  for (int d = 0; d < n; ++d) {
    H20_ASSERT_OK(h20SetDevice(d));
    const int node = h20test::Props(d).numaNode;
    ASSERT_GE(node, 0);
    ASSERT_LE(node, numa_max_node());
    void* p = nullptr;
    constexpr size_t kBytes = 1u << 20;
    H20_ASSERT_OK(h20MallocHost(&p, kBytes));
    std::memset(p, 1, kBytes);  // fault the pages in
    void* pages[2] = {p, static_cast<char*>(p) + kBytes - 1};
    int status[2] = {-1, -1};
    ASSERT_EQ(numa_move_pages(0, 2, pages, nullptr, status, 0), 0);
    EXPECT_EQ(status[0], node) << "device " << d;
    EXPECT_EQ(status[1], node) << "device " << d;
    H20_ASSERT_OK(h20FreeHost(p));
  }
  H20_ASSERT_OK(h20SetDevice(0));
}
