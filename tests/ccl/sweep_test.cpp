// sweep_test.cpp - the nccl-tests-style correctness sweep of libh20ccl: every collective, every
// preset topology (H20_EMU_TOPOLOGY, one child process each, since the runtime reads it once),
// each algorithm, fp32/bf16 (and fp16 for allReduce), in place and out of place, the quick sizes
// (8 B, 1 KiB + odd, 1 MiB); #wrong must be 0 for every case. Also the ring order and the
// algorithm choice per topology, and cliques over subsets of the devices in unusual orders.
// The 64 MiB cases are in big_sweep_test.cpp (label slow).
#include "ccl_harness.hpp"
#include "ccl_sweep.hpp"
#include "child_process.hpp"

#include <h20/ccl.h>

#include <gtest/gtest.h>

#include <string>

using h20test::ChildResult;
using h20test::RunChild;

namespace {

ChildResult Sweep(const std::string& topology, const std::string& algo,
                  const std::string& devices = "") {
  h20test::EnvChanges env{
      {"H20_EMU_TOPOLOGY", topology}, {"H20_CCL_ALGO", algo}, {"H20_CCL_TEST_SIZES", "quick"}};
  if (!devices.empty()) env["H20_CCL_TEST_DEVICES"] = devices;
  return RunChild("CclSweep", env);
}

}  // namespace

TEST(CclSweep, SwitchTopologyRingAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("switch", "ring"));
}
TEST(CclSweep, SwitchTopologyDirectAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("switch", "direct"));
}
TEST(CclSweep, MeshTopologyRingAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("mesh", "ring"));
}
TEST(CclSweep, MeshTopologyDirectAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("mesh", "direct"));
}
TEST(CclSweep, RingTopologyRingAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("ring", "ring"));
}
TEST(CclSweep, RingTopologyDirectAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("ring", "direct"));
}
TEST(CclSweep, PairsTopologyStagedRingHasNoWrongElements) {
  // No link between pairs: direct is unavailable, the ring crosses between pairs through the host.
  ccltest::ExpectSweepPassed(Sweep("pairs", "auto"));
}
TEST(CclSweep, RingTopologySubsetInScrambledOrderHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("ring", "auto", "5,2,7,0"));
}
TEST(CclSweep, PairsTopologySubsetSplittingPairsHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("pairs", "ring", "0,2,1,3"));
}
TEST(CclSweep, ThreeRanksHaveNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("switch", "ring", "6,1,3"));
}
TEST(CclSweep, TwoRanksHaveNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("pairs", "ring", "3,4"));
}
TEST(CclSweep, OneRankHasNoWrongElements) {
  ccltest::ExpectSweepPassed(Sweep("switch", "auto", "5"));
}

// ---- ring order and algorithm choice ------------------------------------------------------

H20_CHILD_SCENARIO(CclTopology) {
  std::vector<int> devices = ccltest::DevicesFromEnvironment();
  const int n = static_cast<int>(devices.size());
  std::vector<h20cclComm_t> comms(static_cast<std::size_t>(n));
  const h20Error_t rc = h20cclCommInitAll(comms.data(), n, devices.data());
  h20test::Emit("init", h20GetErrorName(rc));
  h20test::Emit("initMessage", h20cclGetLastErrorMessage());
  if (rc != h20Success) return 0;
  std::vector<int> ring(static_cast<std::size_t>(n));
  int count = 0;
  h20cclCommGetRingOrder(comms[0], ring.data(), n, &count);
  std::string order;
  for (int r : ring)
    order += (order.empty() ? "" : " ") + std::to_string(r);
  h20test::Emit("ring", order);
  for (std::size_t bytes :
       {std::size_t{8}, std::size_t{64} << 10, std::size_t{1} << 20, std::size_t{64} << 20}) {
    h20cclAlgo algo = h20cclAlgoRing;
    h20cclCommGetAlgorithm(comms[0], h20cclFuncAllReduce, bytes / 4, H20_R_32F, &algo);
    h20test::Emit("algo." + std::to_string(bytes), algo == h20cclAlgoDirect ? "direct" : "ring");
  }
  for (auto c : comms)
    h20cclCommDestroy(c);
  return 0;
}

namespace {
ChildResult Topology(const std::string& topology, const std::string& devices,
                     h20test::EnvChanges extra = {}) {
  extra["H20_EMU_TOPOLOGY"] = topology;
  if (!devices.empty()) extra["H20_CCL_TEST_DEVICES"] = devices;
  return RunChild("CclTopology", extra);
}
}  // namespace

TEST(CclTopology, RingPresetRingFollowsTheLinks) {
  const auto r = Topology("ring", "");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("ring"), "0 1 2 3 4 5 6 7");
}

TEST(CclTopology, RingPresetSubsetRingMinimisesTheHops) {
  // Devices 5, 2, 7, 0 on the 8-ring: 5-2-0-7-5 (3+2+1+2 hops) beats the rank order 5-2-7-0-5
  // (3+3+1+3) and 5-7-2-0-5 (2+3+2+3), and every ring has a 3-hop edge.
  const auto r = Topology("ring", "5,2,7,0");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("ring"), "0 1 3 2");
}

TEST(CclTopology, PairsPresetKeepsPairsAdjacent) {
  const auto all = Topology("pairs", "");
  ASSERT_EQ(all.exitCode, 0) << all.output;
  EXPECT_EQ(all.Value("ring"), "0 1 2 3 4 5 6 7");
  // Ranks 0..3 on devices 0, 2, 1, 3: pairs (0,1) and (2,3) are ranks (0,2) and (1,3), which
  // must be ring neighbours; of the two such rings the one closer to the rank order is taken.
  const auto split = Topology("pairs", "0,2,1,3");
  ASSERT_EQ(split.exitCode, 0) << split.output;
  EXPECT_EQ(split.Value("ring"), "0 1 3 2");
}

TEST(CclTopology, PairsPresetAlwaysUsesTheRing) {
  const auto r = Topology("pairs", "");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("algo.8"), "ring");
  EXPECT_EQ(r.Value("algo.65536"), "ring");
  EXPECT_EQ(r.Value("algo.1048576"), "ring");
}

TEST(CclTopology, SingleHopPresetsUseDirectAtEverySize) {
  for (const char* topology : {"switch", "mesh"}) {
    const auto r = Topology(topology, "");
    ASSERT_EQ(r.exitCode, 0) << r.output;
    EXPECT_EQ(r.Value("ring"), "0 1 2 3 4 5 6 7") << topology;
    EXPECT_EQ(r.Value("algo.8"), "direct") << topology;
    EXPECT_EQ(r.Value("algo.67108864"), "direct") << topology;
  }
}

TEST(CclTopology, RingPresetUsesDirectForSmallAndRingForLargeMessages) {
  const auto r = Topology("ring", "");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("algo.8"), "direct");
  EXPECT_EQ(r.Value("algo.1048576"), "direct");
  EXPECT_EQ(r.Value("algo.67108864"), "ring");
}

TEST(CclTopology, DirectThresholdFollowsTheEnvironment) {
  const auto r = Topology("mesh", "", {{"H20_CCL_DIRECT_MAX_BYTES", "0"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("algo.8"), "ring");
  EXPECT_EQ(r.Value("algo.67108864"), "ring");
  const auto big = Topology("ring", "", {{"H20_CCL_DIRECT_MAX_BYTES", "100000000"}});
  EXPECT_EQ(big.Value("algo.67108864"), "direct");
}

TEST(CclTopology, ForcedAlgorithmIsUsedWherePossible) {
  EXPECT_EQ(Topology("switch", "", {{"H20_CCL_ALGO", "ring"}}).Value("algo.8"), "ring");
  EXPECT_EQ(Topology("ring", "", {{"H20_CCL_ALGO", "direct"}}).Value("algo.1048576"), "direct");
  // Direct needs every pair linked: on pairs the ring is used anyway.
  EXPECT_EQ(Topology("pairs", "", {{"H20_CCL_ALGO", "direct"}}).Value("algo.8"), "ring");
}

TEST(CclTopology, BadAlgorithmVariableFailsCommInitWithItsValue) {
  const auto r = Topology("switch", "", {{"H20_CCL_ALGO", "tree"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("init"), "h20ErrorInitializationError");
  EXPECT_NE(r.Value("initMessage").find("H20_CCL_ALGO='tree'"), std::string::npos)
      << r.Value("initMessage");
  const auto t = Topology("switch", "", {{"H20_CCL_DIRECT_MAX_BYTES", "lots"}});
  EXPECT_EQ(t.Value("init"), "h20ErrorInitializationError");
}
