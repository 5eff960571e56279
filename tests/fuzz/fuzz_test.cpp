// fuzz_test.cpp - the single-threaded API fuzzer as tests: a fixed set of seeds with a bounded op
// count (each seed is one test, so ctest runs them in parallel), a replay of one seed (or of a
// shrunk trace) named by H20_FUZZ_SEED / H20_FUZZ_KEEP, and a soak over random seeds that runs
// only when H20_FUZZ_SEEDS or H20_FUZZ_SECONDS is set (tests/fuzz/soak.sh). A few seeds also
// run in child processes under other configurations of the emulated box (topology without
// links between pairs, one worker thread, a reordered subset of visible chips). See fuzzer.hpp for
// the environment variables.
#include "child_process.hpp"
#include "fuzzer.hpp"
#include "h20_test.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <string>

namespace {

constexpr std::size_t kOps = 5000;

class Fuzz : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(Fuzz, SequenceMatchesTheModel) {
  const h20fuzz::SeedResult r =
      h20fuzz::RunSeed(GetParam(), false, h20fuzz::Options::FromEnv(kOps));
  EXPECT_TRUE(r.passed) << r.report;
}

INSTANTIATE_TEST_SUITE_P(Seeds, Fuzz, ::testing::Range<std::uint64_t>(1, 25),
                         [](const ::testing::TestParamInfo<std::uint64_t>& info) {
                           return "seed" + std::to_string(info.param);
                         });

// ---- other configurations, each in a child process (the runtime reads them at initialisation)
// ----

constexpr std::uint64_t kChildSeeds = 3;

H20_CHILD_SCENARIO(FuzzSeedsInChild) {
  const std::uint64_t first = h20fuzz::EnvU64("H20_FUZZ_CHILD_SEED", 1);
  int failed = 0;
  for (std::uint64_t seed = first; seed < first + kChildSeeds; ++seed) {
    const h20fuzz::SeedResult r = h20fuzz::RunSeed(seed, false, h20fuzz::Options::FromEnv(kOps));
    if (!r.passed) {
      std::printf("%s\n", r.report.c_str());
      ++failed;
    }
  }
  std::fflush(stdout);
  return failed ? 1 : 0;
}

struct ChildConfig {
  const char* name;
  std::uint64_t firstSeed;
  h20test::EnvChanges env;
};
void PrintTo(const ChildConfig& c, std::ostream* os) {
  *os << c.name;
}

class FuzzConfig : public ::testing::TestWithParam<ChildConfig> {};

TEST_P(FuzzConfig, SeedsMatchTheModel) {
  if (GetParam().env.count("H20_EMU_TOPOLOGY"))
    H20_SKIP_UNLESS_EMBEDDED("H20_EMU_TOPOLOGY configures the in-process box");
  h20test::EnvChanges env = GetParam().env;
  env["H20_FUZZ_CHILD_SEED"] = std::to_string(GetParam().firstSeed);
  env["H20_LOG_LEVEL"] = "off";
  const h20test::ChildResult r = h20test::RunChild("FuzzSeedsInChild", env);
  std::string settings;
  for (const auto& [k, v] : GetParam().env)
    settings += k + "=" + v.value_or("") + " ";
  EXPECT_EQ(0, r.exitCode) << "in a child with " << settings << "(add them to the replay):\n"
                           << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    Children, FuzzConfig,
    ::testing::Values(ChildConfig{"PairsTopology", 201, {{"H20_EMU_TOPOLOGY", "pairs"}}},
                      ChildConfig{"OneWorker", 211, {{"H20_EMU_WORKERS", "1"}}},
                      ChildConfig{
                          "ReorderedVisibleChips", 221, {{"H20_VISIBLE_DEVICES", "5,2,7,0"}}}),
    [](const ::testing::TestParamInfo<ChildConfig>& info) { return std::string(info.param.name); });

TEST(FuzzGenerate, SameSeedGivesTheSameSequence) {
  const h20fuzz::Config c = h20fuzz::ProbeConfig(4);
  ASSERT_GT(c.devices, 0);
  h20fuzz::Options o;
  o.ops = 200;
  const auto a = h20fuzz::Generate(c, 77, o);
  const auto b = h20fuzz::Generate(c, 77, o);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(h20fuzz::Describe(a[i]), h20fuzz::Describe(b[i])) << "op " << i;
  const auto other = h20fuzz::Generate(c, 78, o);
  bool differs = other.size() != a.size();
  for (std::size_t i = 0; !differs && i < a.size(); ++i)
    differs = h20fuzz::Describe(a[i]) != h20fuzz::Describe(other[i]);
  EXPECT_TRUE(differs);
}

TEST(FuzzReplay, SeedFromEnvironment) {
  h20fuzz::ReplayFromEnvironment(false, kOps);
}

TEST(FuzzSoak, RandomSeeds) {
  h20fuzz::SoakFromEnvironment(false, kOps);
}

}  // namespace
