// fuzz_mt_test.cpp - the multi-threaded API fuzzer as tests (label concurrency, so the TSan lane
// runs them): a fixed set of seeds, each running H20_FUZZ_THREADS (default 3) host threads with
// their own sequences over shared devices plus shared read-only buffers; a replay named by
// H20_FUZZ_SEED / H20_FUZZ_KEEP ("thread:index" entries); a soak over random seeds when
// H20_FUZZ_SEEDS or H20_FUZZ_SECONDS is set (tests/fuzz/soak.sh).
#include "fuzzer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>

namespace {

constexpr std::size_t kOps = 1500;  // per thread

std::uint64_t EnvU64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

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
  if (!std::getenv("H20_FUZZ_SEED")) GTEST_SKIP() << "set H20_FUZZ_SEED (and H20_FUZZ_KEEP)";
  const h20fuzz::SeedResult r =
      h20fuzz::RunSeed(EnvU64("H20_FUZZ_SEED", 0), true, h20fuzz::Options::FromEnv(kOps));
  EXPECT_TRUE(r.passed) << r.report;
}

TEST(FuzzThreadsSoak, RandomSeeds) {
  const std::uint64_t seeds = EnvU64("H20_FUZZ_SEEDS", 0);
  const std::uint64_t seconds = EnvU64("H20_FUZZ_SECONDS", 0);
  if (seeds == 0 && seconds == 0) GTEST_SKIP() << "set H20_FUZZ_SEEDS or H20_FUZZ_SECONDS";
  const std::uint64_t base = EnvU64("H20_FUZZ_SEED_BASE", std::random_device{}() * 1000003ull);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  h20fuzz::Options o = h20fuzz::Options::FromEnv(kOps);
  std::uint64_t ran = 0, failed = 0;
  for (std::uint64_t i = 0; seeds ? i < seeds : std::chrono::steady_clock::now() < deadline; ++i) {
    const h20fuzz::SeedResult r = h20fuzz::RunSeed(base + i, true, o);
    ++ran;
    if (!r.passed) {
      ++failed;
      ADD_FAILURE() << r.report;
    }
  }
  std::printf("soak: %llu threaded seeds from %llu, %llu failed\n",
              static_cast<unsigned long long>(ran), static_cast<unsigned long long>(base),
              static_cast<unsigned long long>(failed));
}

}  // namespace
