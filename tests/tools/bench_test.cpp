// bench_test.cpp - h20-bench smoke tests: every suite runs and reports; argument errors exit 2.
//
// Deliberately no assertion on any figure: timings depend on the machine and its load. The full
// measurement is a tool run, documented in docs/tools.md, never a test.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tool_runner.hpp"

namespace h20::tools_test {
namespace {

RunResult bench(const std::string& args) {
  return run_tool(H20_BENCH_PATH, args);
}

TEST(Bench, QuickRunExitsZeroAndPrintsItsTables) {
  RunResult r = bench("--quick");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* heading :
       {"## Summary", "## Launch", "## Copies", "## Stream overlap", "## Idle", "| benchmark |"})
    EXPECT_NE(r.out.find(heading), std::string::npos) << heading << "\n" << r.out;
}

TEST(Bench, QuickJsonParsesWithAllSummaryKeys) {
  RunResult r = bench("--quick --json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  std::vector<std::string> keys;
  for (const auto& row : doc.at("summary")) {
    keys.push_back(row.at("key").get<std::string>());
    EXPECT_TRUE(row.at("value").is_number());
  }
  for (const char* k :
       {"launch_sync_us", "enqueue_us", "h2d_pinned_ratio", "h2d_pageable_ratio",
        "d2h_pinned_ratio", "d2h_pageable_ratio", "d2d_ratio", "overlap_ratio", "idle_cores"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
}

TEST(Bench, SingleSuiteWithOptionRuns) {
  RunResult r = bench("copy --quick --sizes 64K");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("64 KiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("## Launch"), std::string::npos) << r.out;
}

struct BenchBadArgs : testing::TestWithParam<const char*> {};
TEST_P(BenchBadArgs, ExitsTwoWithMessageOnStderr) {
  RunResult r = bench(GetParam());
  EXPECT_EQ(r.exitCode, 2) << GetParam();
  EXPECT_FALSE(r.err.empty()) << GetParam();
}
INSTANTIATE_TEST_SUITE_P(Bench, BenchBadArgs,
                         testing::Values("--no-such-option", "nosuchsuite", "copy --sizes 12X",
                                         "--reps 0", "overlap --kernel-ms -1",
                                         "launch --quick --device 8"));

TEST(Bench, HelpExitsZero) {
  RunResult r = bench("--help");
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("launch"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace h20::tools_test
