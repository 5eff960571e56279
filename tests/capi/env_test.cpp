// env_test.cpp - configuration through the environment, each case in a fresh child process
// (child_process.hpp): H20_EMU_DEVICES (chip count; an invalid value is
// h20ErrorInitializationError), H20_VISIBLE_DEVICES with CUDA_VISIBLE_DEVICES semantics (the
// listed chips in list order, the list truncated at the first invalid entry, an empty list means
// h20ErrorNoDevice) and H20_EMU_MEMORY_BUDGET (allocation past the budget fails with
// h20ErrorMemoryAllocation and a message naming the budget).
#include "child_process.hpp"
#include "h20_test.hpp"

#include <cstring>
#include <string>
#include <vector>

namespace {

using h20test::ChildResult;
using h20test::Emit;
using h20test::RunChild;

// ---- child scenarios (run in the child process only) -------------------------------------------

// Reports what the runtime sees: count, and per device its PCI bus id.
H20_CHILD_SCENARIO(ReportDevices) {
  int count = -1;
  const h20Error_t rc = h20GetDeviceCount(&count);
  Emit("countRc", h20GetErrorName(rc));
  Emit("count", count);
  for (int d = 0; d < count && d < 64; ++d) {
    h20DeviceProp p;
    std::memset(&p, 0, sizeof p);
    const h20Error_t prc = h20GetDeviceProperties(&p, d);
    Emit("busId" + std::to_string(d), prc == h20Success ? p.pciBusId : h20GetErrorName(prc));
  }
  // What the other entry points say in this configuration.
  Emit("setDevice0Rc", h20GetErrorName(h20SetDevice(0)));
  void* ptr = nullptr;
  const h20Error_t mrc = h20Malloc(&ptr, 256);
  Emit("mallocRc", h20GetErrorName(mrc));
  if (mrc == h20Success) h20Free(ptr);
  return 0;
}

// Allocates under H20_EMU_MEMORY_BUDGET=64MiB: 32 MiB fits, 48 MiB more does not; after freeing
// the first block the 48 MiB fits.
H20_CHILD_SCENARIO(AllocateAgainstBudget) {
  void* a = nullptr;
  void* b = nullptr;
  Emit("first", h20GetErrorName(h20Malloc(&a, 32u << 20)));
  const h20Error_t rc = h20Malloc(&b, 48u << 20);
  Emit("second", h20GetErrorName(rc));
  Emit("secondMessage", h20GetLastErrorMessage());
  Emit("secondLast", h20GetErrorName(h20GetLastError()));
  if (rc == h20Success) h20Free(b);
  Emit("freeFirst", h20GetErrorName(h20Free(a)));
  void* c = nullptr;
  Emit("third", h20GetErrorName(h20Malloc(&c, 48u << 20)));
  if (c) h20Free(c);
  // The budget bounds real backing memory, not the reported device size.
  h20DeviceProp p;
  std::memset(&p, 0, sizeof p);
  h20GetDeviceProperties(&p, 0);
  Emit("totalGlobalMem", std::to_string(p.totalGlobalMem));
  return 0;
}

// ---- helpers ------------------------------------------------------------------------------------

std::string Describe(const ChildResult& r) {
  return "exit " + std::to_string(r.exitCode) + ", output:\n" + r.output;
}

std::vector<std::string> BusIds(const ChildResult& r) {
  std::vector<std::string> ids;
  const int count = r.IntValue("count");
  for (int d = 0; d < count; ++d)
    ids.push_back(r.Value("busId" + std::to_string(d)));
  return ids;
}

// Bus ids of all chips of an unrestricted emulator with `chips` chips.
std::vector<std::string> AllBusIds(int chips) {
  const ChildResult r = RunChild("ReportDevices", {{"H20_EMU_DEVICES", std::to_string(chips)}});
  EXPECT_EQ(0, r.exitCode) << Describe(r);
  EXPECT_EQ(chips, r.IntValue("count")) << Describe(r);
  return BusIds(r);
}

// ---- tests --------------------------------------------------------------------------------------

TEST(EnvConfig, DefaultIsEightDevices) {
  const ChildResult r = RunChild("ReportDevices");
  ASSERT_EQ(0, r.exitCode) << Describe(r);
  EXPECT_EQ("h20Success", r.Value("countRc")) << Describe(r);
  EXPECT_EQ(8, r.IntValue("count")) << Describe(r);
  EXPECT_EQ("h20Success", r.Value("mallocRc"));
}

TEST(EnvConfig, EmuDevicesSetsTheChipCount) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_DEVICES sizes the in-process box (h20d --devices sizes the daemon's)");
  for (int n : {1, 3, 5}) {
    const ChildResult r = RunChild("ReportDevices", {{"H20_EMU_DEVICES", std::to_string(n)}});
    ASSERT_EQ(0, r.exitCode) << Describe(r);
    EXPECT_EQ("h20Success", r.Value("countRc")) << n << ": " << Describe(r);
    EXPECT_EQ(n, r.IntValue("count")) << Describe(r);
  }
}

TEST(EnvConfig, EmuDevicesInvalidValueIsInitializationError) {
  for (const char* bad : {"banana", "-2", "3x", "99999999999999999999"}) {
    const ChildResult r = RunChild("ReportDevices", {{"H20_EMU_DEVICES", bad}});
    ASSERT_EQ(0, r.exitCode) << Describe(r);
    EXPECT_EQ("h20ErrorInitializationError", r.Value("countRc")) << bad << ": " << Describe(r);
    EXPECT_EQ("h20ErrorInitializationError", r.Value("mallocRc")) << bad << ": " << Describe(r);
  }
}

TEST(EnvConfig, VisibleDevicesSelectsChipsInListOrder) {
  const auto all = AllBusIds(8);
  ASSERT_EQ(8u, all.size());
  const ChildResult r = RunChild("ReportDevices", {{"H20_VISIBLE_DEVICES", "3,1"}});
  ASSERT_EQ(0, r.exitCode) << Describe(r);
  ASSERT_EQ(2, r.IntValue("count")) << Describe(r);
  EXPECT_EQ(all[3], r.Value("busId0")) << "device 0 must be chip 3";
  EXPECT_EQ(all[1], r.Value("busId1")) << "device 1 must be chip 1";

  const ChildResult r2 = RunChild("ReportDevices", {{"H20_VISIBLE_DEVICES", "7,0,5"}});
  ASSERT_EQ(3, r2.IntValue("count")) << Describe(r2);
  EXPECT_EQ((std::vector<std::string>{all[7], all[0], all[5]}), BusIds(r2));
}

TEST(EnvConfig, VisibleDevicesIsTruncatedAtTheFirstInvalidEntry) {
  H20_SKIP_UNLESS_EMBEDDED("the cases build a 4-chip box with H20_EMU_DEVICES");
  const auto all = AllBusIds(4);
  ASSERT_EQ(4u, all.size());
  struct Case {
    const char* mask;
    std::vector<int> chips;
  } cases[] = {
      {"2,9,1", {2}},       // out of range
      {"1,x,2", {1}},       // not a number
      {"3,-1,0", {3}},      // negative
      {"0,1,4,2", {0, 1}},  // 4 is past the 4 emulated chips
  };
  for (const auto& c : cases) {
    const ChildResult r =
        RunChild("ReportDevices", {{"H20_EMU_DEVICES", "4"}, {"H20_VISIBLE_DEVICES", c.mask}});
    ASSERT_EQ(0, r.exitCode) << Describe(r);
    EXPECT_EQ("h20Success", r.Value("countRc")) << c.mask << ": " << Describe(r);
    std::vector<std::string> expected;
    for (int chip : c.chips)
      expected.push_back(all[chip]);
    EXPECT_EQ(expected, BusIds(r)) << "mask '" << c.mask << "': " << Describe(r);
  }
}

TEST(EnvConfig, VisibleDevicesEmptyOrInvalidFirstEntryMeansNoDevice) {
  for (const char* mask : {"", "-1", "8", "none"}) {
    const ChildResult r = RunChild("ReportDevices", {{"H20_VISIBLE_DEVICES", mask}});
    ASSERT_EQ(0, r.exitCode) << Describe(r);
    EXPECT_EQ("h20ErrorNoDevice", r.Value("countRc")) << "mask '" << mask << "': " << Describe(r);
    EXPECT_EQ(0, r.IntValue("count")) << "mask '" << mask << "': " << Describe(r);
    EXPECT_NE("h20Success", r.Value("mallocRc")) << "mask '" << mask << "'";
  }
}

TEST(EnvConfig, MemoryBudgetFailsAllocationPastTheBudgetAndNamesIt) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_MEMORY_BUDGET is the in-process budget (h20d --memory-budget is tested in "
      "tests/daemon)");
  const ChildResult r = RunChild("AllocateAgainstBudget", {{"H20_EMU_MEMORY_BUDGET", "64MiB"}});
  ASSERT_EQ(0, r.exitCode) << Describe(r);
  EXPECT_EQ("h20Success", r.Value("first")) << Describe(r);
  EXPECT_EQ("h20ErrorMemoryAllocation", r.Value("second")) << Describe(r);
  EXPECT_EQ("h20ErrorMemoryAllocation", r.Value("secondLast")) << Describe(r);
  const std::string msg = r.Value("secondMessage");
  EXPECT_NE(std::string::npos, msg.find("budget")) << msg;
  const bool namesValue =
      msg.find("67108864") != std::string::npos || msg.find("64 MiB") != std::string::npos ||
      msg.find("64MiB") != std::string::npos || msg.find("64.0 MiB") != std::string::npos;
  EXPECT_TRUE(namesValue) << "the message should give the budget's size: " << msg;
  EXPECT_EQ("h20Success", r.Value("freeFirst")) << Describe(r);
  EXPECT_EQ("h20Success", r.Value("third"))
      << "freed memory returns to the budget. " << Describe(r);
  EXPECT_EQ(std::to_string(96ull << 30), r.Value("totalGlobalMem"));
}

TEST(EnvConfig, MemoryBudgetInvalidValueIsInitializationError) {
  for (const char* bad : {"lots", "64XB", "-5MiB"}) {
    const ChildResult r = RunChild("ReportDevices", {{"H20_EMU_MEMORY_BUDGET", bad}});
    ASSERT_EQ(0, r.exitCode) << Describe(r);
    EXPECT_EQ("h20ErrorInitializationError", r.Value("countRc")) << bad << ": " << Describe(r);
  }
}

}  // namespace
