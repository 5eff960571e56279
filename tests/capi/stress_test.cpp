// stress_test.cpp - the concurrency workloads of concurrency_work.hpp with more iterations
// (label slow): a few thousand operations per test, bounded so that the suite still finishes under
// the sanitizers on two cores. Nothing here asserts a duration.
#include "concurrency_work.hpp"

namespace {

using h20test::Failures;
using ConcurrencyStress = h20test::CApiTest;

constexpr int kThreads = 8;

TEST_F(ConcurrencyStress, EightThreadsRunPipelinesOnTheirOwnStreams) {
  Failures f;
  h20test::PerThreadPipelines(kThreads, 250, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EightThreadsLaunchOntoOneSharedStream) {
  Failures f;
  h20test::SharedStreamLaunches(kThreads, 500, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EightThreadsAllocateAndFreeWithoutOverlap) {
  Failures f;
  h20test::AllocFreeChurn(kThreads, 500, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EightThreadsCreateAndDestroyStreamsAndEvents) {
  Failures f;
  h20test::HandleChurn(kThreads, 400, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EachThreadSeesOnlyItsOwnLastError) {
  Failures f;
  h20test::LastErrorsUnderLoad(kThreads, 2000, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EightThreadsShareTheLegacyStream) {
  Failures f;
  h20test::LegacyStreamFromManyThreads(kThreads, 250, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(ConcurrencyStress, EventsOrderWorkAcrossThreadsAndDevices) {
  Failures f;
  h20test::CrossThreadEvents(4, 150, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

}  // namespace
