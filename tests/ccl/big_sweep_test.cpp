// big_sweep_test.cpp - the 64 MiB end of the correctness sweep (label slow): on every preset
// topology, with the automatic algorithm (direct on switch and mesh, the ring on the ring and
// pairs presets), allReduce fp32 out of place and bf16 in place, allGather fp32, reduceScatter
// fp32 in place and broadcast bf16 from the last rank; #wrong must be 0 for every case.
#include "ccl_sweep.hpp"
#include "child_process.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

h20test::ChildResult BigSweep(const std::string& topology) {
  return h20test::RunChild("CclSweep",
                           {{"H20_EMU_TOPOLOGY", topology}, {"H20_CCL_TEST_SIZES", "big"}});
}

}  // namespace

TEST(CclBigSweep, SwitchTopology64MiBHasNoWrongElements) {
  ccltest::ExpectSweepPassed(BigSweep("switch"));
}
TEST(CclBigSweep, MeshTopology64MiBHasNoWrongElements) {
  ccltest::ExpectSweepPassed(BigSweep("mesh"));
}
TEST(CclBigSweep, RingTopology64MiBHasNoWrongElements) {
  ccltest::ExpectSweepPassed(BigSweep("ring"));
}
TEST(CclBigSweep, PairsTopology64MiBHasNoWrongElements) {
  ccltest::ExpectSweepPassed(BigSweep("pairs"));
}
