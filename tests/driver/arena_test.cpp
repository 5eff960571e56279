// arena_test.cpp - the per-chip device memory allocator: alignment, disjointness, coalescing,
// exhaustion and rejection of foreign pointers.
#include "emu/arena.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

using h20::emu::Arena;

namespace {
constexpr std::size_t kMiB = 1u << 20;
}

TEST(Arena, AllocationsAreAlignedDisjointAndWritable) {
  Arena arena(64 * kMiB);
  ASSERT_TRUE(arena.reserved());
  std::vector<std::pair<std::uintptr_t, std::size_t>> blocks;
  for (std::size_t size : {1u, 7u, 256u, 257u, 4096u, 1000000u}) {
    std::size_t granted = 0;
    void* p = arena.allocate(size, &granted);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % Arena::kAlignment, 0u);
    EXPECT_GE(granted, size);
    std::memset(p, 0xab, size);
    blocks.emplace_back(reinterpret_cast<std::uintptr_t>(p), granted);
  }
  std::sort(blocks.begin(), blocks.end());
  for (std::size_t i = 1; i < blocks.size(); ++i)
    EXPECT_LE(blocks[i - 1].first + blocks[i - 1].second, blocks[i].first);
}

TEST(Arena, FreeingAllBlocksCoalescesIntoOne) {
  Arena arena(16 * kMiB);
  std::mt19937 rng(7);
  std::vector<void*> live;
  for (int i = 0; i < 200; ++i) {
    void* p = arena.allocate(256 + rng() % 20000, nullptr);
    ASSERT_NE(p, nullptr);
    live.push_back(p);
  }
  std::shuffle(live.begin(), live.end(), rng);
  for (void* p : live)
    EXPECT_GT(arena.free(p), 0u);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.freeBlockCount(), 1u);
  EXPECT_EQ(arena.largestFreeBlock(), arena.capacity());
}

TEST(Arena, FreedMiddleBlockIsReusedBestFit) {
  Arena arena(1 * kMiB);
  void* a = arena.allocate(4096, nullptr);
  void* b = arena.allocate(4096, nullptr);
  void* c = arena.allocate(4096, nullptr);
  ASSERT_TRUE(a && b && c);
  arena.free(b);
  // The 4 KiB hole fits exactly and is preferred over the large tail.
  EXPECT_EQ(arena.allocate(4000, nullptr), b);
}

TEST(Arena, ReturnsNullWhenFullAndRecoversAfterFree) {
  Arena arena(1 * kMiB);
  void* all = arena.allocate(1 * kMiB, nullptr);
  ASSERT_NE(all, nullptr);
  EXPECT_EQ(arena.allocate(256, nullptr), nullptr);
  EXPECT_EQ(arena.free(all), 1 * kMiB);
  EXPECT_NE(arena.allocate(256, nullptr), nullptr);
}

TEST(Arena, FreeRejectsForeignInteriorAndDoubleFree) {
  Arena arena(1 * kMiB);
  auto* p = static_cast<char*>(arena.allocate(1024, nullptr));
  int local = 0;
  EXPECT_EQ(arena.free(&local), 0u);
  EXPECT_EQ(arena.free(p + 256), 0u);
  EXPECT_EQ(arena.free(p), 1024u);
  EXPECT_EQ(arena.free(p), 0u);
  EXPECT_EQ(arena.used(), 0u);
}

TEST(Arena, LargeFreedBlockReadsZeroWhenReallocated) {
  Arena arena(8 * kMiB);
  auto* p = static_cast<unsigned char*>(arena.allocate(4 * kMiB, nullptr));
  std::memset(p, 0x5a, 4 * kMiB);
  arena.free(p);  // large frees hand their pages back to the host
  auto* q = static_cast<unsigned char*>(arena.allocate(4 * kMiB, nullptr));
  ASSERT_EQ(q, p);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[4 * kMiB - 1], 0);
}

TEST(Arena, HugeRequestsFailWithoutOverflow) {
  Arena arena(1 * kMiB);
  EXPECT_EQ(arena.allocate(SIZE_MAX, nullptr), nullptr);
  EXPECT_EQ(arena.allocate(SIZE_MAX - 100, nullptr), nullptr);
  EXPECT_EQ(arena.allocate(0, nullptr), nullptr);
  EXPECT_EQ(arena.used(), 0u);
}
