// fuzz_mt_test.cpp - the multi-threaded API fuzzer as tests (label concurrency, so the TSan lane
// runs them): a fixed set of seeds, each running H20_FUZZ_THREADS (default 3) host threads with
// their own sequences over shared devices plus shared read-only buffers; a replay named by
// H20_FUZZ_SEED / H20_FUZZ_KEEP ("thread:index" entries); a soak over random seeds when
// H20_FUZZ_SEEDS or H20_FUZZ_SECONDS is set (tests/fuzz/soak.sh).
#include "fuzzer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

constexpr std::size_t kOps = 1500;  // per thread

class FuzzThreads : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(FuzzThreads, SequencesMatchTheModel) {
  const h20fuzz::SeedResult r = h20fuzz::RunSeed(GetParam(), true, h20fuzz::Options::FromEnv(kOps));
  EXPECT_TRUE(r.passed) << r.report;
}

INSTANTIATE_TEST_SUITE_P(Seeds, FuzzThreads, ::testing::Range<std::uint64_t>(101, 107),
                         [](const ::testing::TestParamInfo<std::uint64_t>& info) {
                           return "seed" + std::to_string(info.param);
                         });

TEST(FuzzThreadsReplay, SeedFromEnvironment) {
  h20fuzz::ReplayFromEnvironment(true, kOps);
}

TEST(FuzzThreadsSoak, RandomSeeds) {
  h20fuzz::SoakFromEnvironment(true, kOps);
}

}  // namespace
