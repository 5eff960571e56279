// concurrency_test.cpp - libh20ccl driven by one host thread per rank (label concurrency, also run
// by the TSan lane): the calls of the ranks meet in the library's rendezvous, whichever thread
// arrives last enqueues the collective, and every thread returns once it is enqueued. Also the
// ring algorithm's cross-chip ordering (kernels of one chip reading another chip's memory after
// an event) on two topologies, so the TSan lane checks it too.
#include "ccl_harness.hpp"
#include "ccl_sweep.hpp"
#include "child_process.hpp"
#include "h20_test.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using ccltest::Case;
using ccltest::Coll;

namespace {

class CclThreadsTest : public h20test::CApiTest {
 protected:
  void SetUp() override {
    CApiTest::SetUp();
    if (h20test::DeviceCount() < 8) GTEST_SKIP() << "needs the default 8 devices";
    clique_ = std::make_unique<ccltest::Clique>(std::vector<int>{}, 64 * 1024);
    ASSERT_EQ(clique_->error(), "");
  }
  void TearDown() override {
    clique_.reset();
    CApiTest::TearDown();
  }

  // Runs body(rank) on one thread per rank; returns each thread's result.
  template <class F>
  std::vector<h20Error_t> OnEveryRank(F body) {
    std::vector<h20Error_t> rc(static_cast<std::size_t>(clique_->size()), h20ErrorUnknown);
    std::vector<std::thread> threads;
    for (int r = 0; r < clique_->size(); ++r)
      threads.emplace_back([&, r] { rc[static_cast<std::size_t>(r)] = body(r); });
    for (auto& t : threads)
      t.join();
    return rc;
  }

  // Host-side inputs for an allReduce of `count` fp32 (the harness data) on every rank.
  void FillInputs(std::size_t count) {
    std::vector<float> host(count);
    for (int r = 0; r < clique_->size(); ++r) {
      for (std::size_t i = 0; i < count; ++i)
        host[i] = ccltest::Value(H20_R_32F, r, i);
      H20_ASSERT_OK(h20Memcpy(clique_->send(r), host.data(), count * 4, h20MemcpyHostToDevice));
    }
  }
  long WrongAllReduceElements(std::size_t count) {
    std::vector<float> host(count);
    long wrong = 0;
    for (int r = 0; r < clique_->size(); ++r) {
      if (h20Memcpy(host.data(), clique_->recv(r), count * 4, h20MemcpyDeviceToHost) != h20Success)
        return -1;
      for (std::size_t i = 0; i < count; ++i)
        wrong += host[i] != ccltest::Reduced(H20_R_32F, h20cclSum, clique_->size(), i);
    }
    return wrong;
  }

  std::unique_ptr<ccltest::Clique> clique_;
};

}  // namespace

TEST_F(CclThreadsTest, OneThreadPerRankWithoutGroupsProducesTheSums) {
  const std::size_t count = 3001;
  FillInputs(count);
  const auto rc = OnEveryRank([&](int r) {
    h20Error_t first = h20Success;
    // Several collectives back to back: each thread's k-th call joins the k-th collective.
    for (int i = 0; i < 5 && first == h20Success; ++i)
      first = h20cclAllReduce(clique_->send(r), clique_->recv(r), count, H20_R_32F, h20cclSum,
                              clique_->comm(r), clique_->stream(r));
    if (first == h20Success) first = h20StreamSynchronize(clique_->stream(r));
    return first;
  });
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(rc[r], h20Success) << "rank " << r;
  EXPECT_EQ(WrongAllReduceElements(count), 0);
}

TEST_F(CclThreadsTest, OneThreadPerRankWithGroupsProducesTheSums) {
  const std::size_t count = 777;
  FillInputs(count);
  const auto rc = OnEveryRank([&](int r) {
    h20cclGroupStart();
    h20cclAllReduce(clique_->send(r), clique_->recv(r), count, H20_R_32F, h20cclSum,
                    clique_->comm(r), clique_->stream(r));
    h20Error_t e = h20cclGroupEnd();
    if (e == h20Success) e = h20StreamSynchronize(clique_->stream(r));
    return e;
  });
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(rc[r], h20Success) << "rank " << r;
  EXPECT_EQ(WrongAllReduceElements(count), 0);
}

TEST_F(CclThreadsTest, BadCallOnOneThreadFailsEveryRankInsteadOfWaiting) {
  const auto rc = OnEveryRank([&](int r) {
    return h20cclAllReduce(clique_->send(r), r == 0 ? nullptr : clique_->recv(r), 64, H20_R_32F,
                           h20cclSum, clique_->comm(r), clique_->stream(r));
  });
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(rc[r], h20ErrorInvalidValue) << "rank " << r;
  // The ranks stay in step: the next collective works.
  const std::size_t count = 100;
  FillInputs(count);
  const auto again = OnEveryRank([&](int r) {
    h20Error_t e = h20cclAllReduce(clique_->send(r), clique_->recv(r), count, H20_R_32F, h20cclSum,
                                   clique_->comm(r), clique_->stream(r));
    if (e == h20Success) e = h20StreamSynchronize(clique_->stream(r));
    return e;
  });
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(again[r], h20Success) << "rank " << r;
  EXPECT_EQ(WrongAllReduceElements(count), 0);
}

TEST_F(CclThreadsTest, PerThreadStreamFromSeveralThreadsIsRefused) {
  std::vector<std::string> messages(8);
  const auto rc = OnEveryRank([&](int r) {
    h20SetDevice(r);
    const h20Error_t e = h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F,
                                         h20cclSum, clique_->comm(r), h20StreamPerThread);
    messages[static_cast<std::size_t>(r)] = h20cclGetLastErrorMessage();
    return e;
  });
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(rc[r], h20ErrorInvalidValue) << "rank " << r;
    EXPECT_NE(messages[r].find("h20StreamPerThread"), std::string::npos) << messages[r];
  }
}

TEST_F(CclThreadsTest, ThreadsDrivingTwoCliquesDoNotInterfere) {
  // A second clique over the same devices; each thread alternates between the two.
  ccltest::Clique second({}, 64 * 1024);
  ASSERT_EQ(second.error(), "");
  Case c;
  c.count = 500;
  ASSERT_EQ(clique_->Run(c, nullptr), 0);  // leaves the harness inputs in the send buffers
  ASSERT_EQ(second.Run(c, nullptr), 0);
  const auto rc = OnEveryRank([&](int r) {
    h20Error_t e = h20Success;
    for (int i = 0; i < 3 && e == h20Success; ++i) {
      e = h20cclAllReduce(clique_->send(r), clique_->recv(r), c.count, H20_R_32F, h20cclSum,
                          clique_->comm(r), clique_->stream(r));
      if (e == h20Success)
        e = h20cclAllReduce(second.send(r), second.recv(r), c.count, H20_R_32F, h20cclSum,
                            second.comm(r), second.stream(r));
    }
    if (e == h20Success) e = h20StreamSynchronize(clique_->stream(r));
    if (e == h20Success) e = h20StreamSynchronize(second.stream(r));
    return e;
  });
  for (int r = 0; r < 8; ++r)
    EXPECT_EQ(rc[r], h20Success) << "rank " << r;
  EXPECT_EQ(WrongAllReduceElements(c.count), 0);
}

TEST(CclSweepUnderThreads, SwitchTopologyRingAlgorithmHasNoWrongElements) {
  ccltest::ExpectSweepPassed(h20test::RunChild(
      "CclSweep",
      {{"H20_EMU_TOPOLOGY", "switch"}, {"H20_CCL_ALGO", "ring"}, {"H20_CCL_TEST_SIZES", "quick"}}));
}

TEST(CclSweepUnderThreads, PairsTopologyStagedRingHasNoWrongElements) {
  ccltest::ExpectSweepPassed(h20test::RunChild("CclSweep", {{"H20_EMU_TOPOLOGY", "pairs"},
                                                            {"H20_CCL_ALGO", "ring"},
                                                            {"H20_CCL_TEST_DEVICES", "0,2,1,3"},
                                                            {"H20_CCL_TEST_SIZES", "quick"}}));
}
