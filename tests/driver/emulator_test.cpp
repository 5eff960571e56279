// emulator_test.cpp - the emulator as a Driver: properties, host backing budget, fault state.
#include "driver.hpp"

#include <gtest/gtest.h>

#include <cstring>

using namespace h20::driver;

namespace {
std::unique_ptr<Driver> make(int chips, std::size_t budget, int workers = 2) {
  EmuConfig c;
  c.chips = chips;
  c.backingBudgetBytes = budget;
  c.workerThreads = workers;
  Status s;
  auto d = createEmulator(c, &s);
  EXPECT_TRUE(s.ok()) << s.message;
  return d;
}
}  // namespace

TEST(Emulator, ReportsModelledH20Properties) {
  auto d = make(8, 1u << 30);
  ASSERT_EQ(d->chipCount(), 8);
  const h20DeviceProp p = d->properties(3);
  EXPECT_STREQ(p.name, "H20 (emulated)");
  EXPECT_EQ(p.totalGlobalMem, std::size_t{96} << 30);
  EXPECT_EQ(p.multiProcessorCount, 78);
  EXPECT_DOUBLE_EQ(p.memoryBandwidth, 4.0e12);
  EXPECT_DOUBLE_EQ(p.peakBf16Flops, 148.0e12);
  EXPECT_EQ(p.l2CacheSize, 60 * 1024 * 1024);
  EXPECT_EQ(p.emulated, 1);
  EXPECT_STRNE(d->properties(0).pciBusId, d->properties(1).pciBusId);
}

TEST(Emulator, ChipsHaveDisjointAddressRanges) {
  auto d = make(4, 1u << 30);
  for (int a = 0; a < 4; ++a)
    for (int b = a + 1; b < 4; ++b) {
      auto ra = d->addressRange(a), rb = d->addressRange(b);
      EXPECT_TRUE(ra.end <= rb.begin || rb.end <= ra.begin);
    }
}

TEST(Emulator, AllocationPastBudgetFailsCleanlyNamingTheBudget) {
  auto d = make(2, 8u << 20);
  void* a = nullptr;
  ASSERT_TRUE(d->allocate(0, 6u << 20, &a).ok());
  void* b = nullptr;
  Status s = d->allocate(1, 4u << 20, &b);  // the budget is shared by all chips
  EXPECT_EQ(s.code, h20ErrorMemoryAllocation);
  EXPECT_NE(s.message.find("budget"), std::string::npos) << s.message;
  EXPECT_EQ(b, nullptr);
  std::size_t freeBytes = 0, total = 0;
  ASSERT_TRUE(d->memInfo(1, &freeBytes, &total).ok());
  EXPECT_EQ(freeBytes, 2u << 20);
  ASSERT_TRUE(d->free(0, a).ok());
  EXPECT_TRUE(d->allocate(1, 4u << 20, &b).ok());
}

TEST(Emulator, FreeOfUnknownPointerIsInvalidValue) {
  auto d = make(1, 1u << 30);
  int x;
  EXPECT_EQ(d->free(0, &x).code, h20ErrorInvalidValue);
}

TEST(Emulator, PinnedHostMemoryIsZeroedAndWritable) {
  auto d = make(1, 1u << 30);
  void* p = nullptr;
  ASSERT_TRUE(d->allocateHost(0, 1u << 20, &p).ok());
  auto* bytes = static_cast<unsigned char*>(p);
  EXPECT_EQ(bytes[12345], 0);
  std::memset(p, 1, 1u << 20);
  d->freeHost(p, 1u << 20);
}
