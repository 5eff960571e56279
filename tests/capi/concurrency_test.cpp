// concurrency_test.cpp - the C API used from 8 host threads at once, quick versions (label unit):
// per-thread pipelines on their own streams and devices, one stream shared by all threads,
// allocation churn, stream/event churn, per-thread last errors, the legacy stream shared by all
// threads, and events crossing threads and devices. The workloads live in concurrency_work.hpp;
// stress_test.cpp runs them longer.
#include "concurrency_work.hpp"

namespace {

using h20test::Failures;
using Concurrency = h20test::CApiTest;

constexpr int kThreads = 8;

TEST_F(Concurrency, EightThreadsRunPipelinesOnTheirOwnStreams) {
  Failures f;
  h20test::PerThreadPipelines(kThreads, 20, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EightThreadsLaunchOntoOneSharedStream) {
  Failures f;
  h20test::SharedStreamLaunches(kThreads, 50, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EightThreadsAllocateAndFreeWithoutOverlap) {
  Failures f;
  h20test::AllocFreeChurn(kThreads, 60, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EightThreadsCreateAndDestroyStreamsAndEvents) {
  Failures f;
  h20test::HandleChurn(kThreads, 40, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EachThreadSeesOnlyItsOwnLastError) {
  Failures f;
  h20test::LastErrorsUnderLoad(kThreads, 200, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EightThreadsShareTheLegacyStream) {
  Failures f;
  h20test::LegacyStreamFromManyThreads(kThreads, 20, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

TEST_F(Concurrency, EventsOrderWorkAcrossThreadsAndDevices) {
  Failures f;
  h20test::CrossThreadEvents(4, 10, f);
  EXPECT_EQ(0, f.Count()) << f.Describe();
}

}  // namespace
