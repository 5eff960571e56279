// staging_test.cpp - the staging-buffer pool of asynchronous pageable copies (core/staging.hpp):
// buffers come back for reuse, buffers in use are never handed out twice, and no more than
// kCachedBytes stay cached.
#include "core/staging.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

using h20::rt::StagingPool;

TEST(StagingPool, AReleasedBufferServesTheNextRequestOfItsSizeClass) {
  StagingPool pool;
  unsigned char* first = nullptr;
  {
    auto a = pool.acquire(100);
    first = a.get();
    std::memset(first, 0x5a, 100);
  }
  // 100 and 60000 bytes share the smallest class (64 KiB).
  auto b = pool.acquire(60000);
  EXPECT_EQ(first, b.get());
  auto c = pool.acquire(100);  // the cached one is in use: a new one
  EXPECT_NE(b.get(), c.get());
}

TEST(StagingPool, BuffersInUseAreDistinctAndLargeEnough) {
  StagingPool pool;
  std::vector<std::shared_ptr<unsigned char[]>> held;
  std::set<unsigned char*> seen;
  for (std::size_t size : {1u, 65536u, 65537u, 1u << 20, 3u << 20, 100u}) {
    held.push_back(pool.acquire(size));
    std::memset(held.back().get(), 1, size);  // ASan checks that the buffer holds `size` bytes
    EXPECT_TRUE(seen.insert(held.back().get()).second) << size;
  }
}

TEST(StagingPool, KeepsAtMostTheCachedBytes) {
  StagingPool pool;
  // Two buffers of the largest class that fits the cache once: only one can stay cached.
  const std::size_t half = StagingPool::kCachedBytes / 2 + 1;  // rounds up to kCachedBytes
  auto a = pool.acquire(half);
  auto b = pool.acquire(half);
  auto small = pool.acquire(10);
  EXPECT_EQ(0u, pool.cachedBytes());
  unsigned char* pa = a.get();
  a.reset();
  EXPECT_EQ(StagingPool::kCachedBytes, pool.cachedBytes());
  b.reset();      // over the limit: freed
  small.reset();  // so is this one
  EXPECT_EQ(StagingPool::kCachedBytes, pool.cachedBytes());
  auto c = pool.acquire(half);
  EXPECT_EQ(pa, c.get());
  EXPECT_EQ(0u, pool.cachedBytes());
}
