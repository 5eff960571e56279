// api_test.cpp - libh20ccl's API in one process on the default topology: communicator creation and
// queries, every argument error (with the message naming it), ranks that disagree, groups,
// stream order, the current device, and a faulted device (in a child process).
#include "c_header_check.h"
#include "ccl_harness.hpp"
#include "child_process.hpp"
#include "h20_test.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using ccltest::Case;
using ccltest::Coll;
using namespace std::chrono_literals;

namespace {

// Asserts that `expr` returned `code` and that the library's message contains `needle`.
#define EXPECT_CCL_ERROR(expr, code, needle)                \
  do {                                                      \
    const h20Error_t rc_ = (expr);                          \
    EXPECT_EQ(code, rc_) << #expr;                          \
    const std::string msg_ = h20cclGetLastErrorMessage();   \
    EXPECT_NE(msg_.find(needle), std::string::npos)         \
        << "message: " << msg_ << "\nwanted: " << (needle); \
  } while (0)

class CclApiTest : public h20test::CApiTest {
 protected:
  void SetUp() override {
    CApiTest::SetUp();
    if (h20test::DeviceCount() < 8) GTEST_SKIP() << "needs the default 8 devices";
  }
};

// A one-rank clique on device 2 with 4 KiB buffers: a single call is a whole collective, so
// argument errors can be provoked one at a time.
class CclSingleRankTest : public CclApiTest {
 protected:
  void SetUp() override {
    CclApiTest::SetUp();
    if (IsSkipped()) return;
    const int dev = 2;
    H20_ASSERT_OK(h20cclCommInitAll(&comm_, 1, &dev));
    H20_ASSERT_OK(h20SetDevice(dev));
    H20_ASSERT_OK(h20StreamCreate(&stream_));
    H20_ASSERT_OK(h20Malloc(&a_, 4096));
    H20_ASSERT_OK(h20Malloc(&b_, 4096));
    H20_ASSERT_OK(h20SetDevice(0));
  }
  void TearDown() override {
    if (stream_) h20StreamSynchronize(stream_);
    h20Free(a_);
    h20Free(b_);
    if (stream_) h20StreamDestroy(stream_);
    h20cclCommDestroy(comm_);
    CclApiTest::TearDown();
  }
  h20cclComm_t comm_ = nullptr;
  h20Stream_t stream_ = nullptr;
  void* a_ = nullptr;
  void* b_ = nullptr;
};

// An 8-rank clique (the harness) with 64 KiB buffers per rank.
class CclGroupTest : public CclApiTest {
 protected:
  void SetUp() override {
    CclApiTest::SetUp();
    if (IsSkipped()) return;
    clique_ = std::make_unique<ccltest::Clique>(std::vector<int>{}, 64 * 1024);
    ASSERT_EQ(clique_->error(), "");
  }
  void TearDown() override {
    clique_.reset();
    CclApiTest::TearDown();
  }
  // Fills every rank's receive buffer with byte `b` and waits.
  void FillRecv(unsigned char b) {
    for (int r = 0; r < clique_->size(); ++r) {
      H20_ASSERT_OK(h20MemsetAsync(clique_->recv(r), b, clique_->bytes(), clique_->stream(r)));
    }
    H20_ASSERT_OK(clique_->SyncAll());
  }
  // True when every rank's receive buffer still holds only byte `b`.
  bool RecvIsAll(unsigned char b) {
    std::vector<unsigned char> host(clique_->bytes());
    for (int r = 0; r < clique_->size(); ++r) {
      if (h20Memcpy(host.data(), clique_->recv(r), host.size(), h20MemcpyDeviceToHost) !=
          h20Success)
        return false;
      for (unsigned char c : host)
        if (c != b) return false;
    }
    return true;
  }
  long RunCase(const Case& c) {
    std::string message;
    const long wrong = clique_->Run(c, &message);
    EXPECT_GE(wrong, 0) << message;
    return wrong;
  }
  std::unique_ptr<ccltest::Clique> clique_;
};

Case SmallAllReduce() {
  Case c;
  c.coll = Coll::allReduce;
  c.count = 1001;
  return c;
}

}  // namespace

// ---- creation and queries ---------------------------------------------------------------

TEST_F(CclApiTest, CommInitAllWithNullDevicesGivesOneRankPerDevice) {
  std::vector<h20cclComm_t> comms(8);
  H20_ASSERT_OK(h20cclCommInitAll(comms.data(), 8, nullptr));
  for (int r = 0; r < 8; ++r) {
    int count = 0, device = -1, rank = -1;
    H20_EXPECT_OK(h20cclCommCount(comms[r], &count));
    H20_EXPECT_OK(h20cclCommDevice(comms[r], &device));
    H20_EXPECT_OK(h20cclCommUserRank(comms[r], &rank));
    EXPECT_EQ(count, 8);
    EXPECT_EQ(device, r);
    EXPECT_EQ(rank, r);
  }
  for (auto c : comms)
    H20_EXPECT_OK(h20cclCommDestroy(c));
}

TEST_F(CclApiTest, CommInitAllWithDeviceListMapsRanksToTheListedDevices) {
  const int devices[] = {5, 2, 7};
  h20cclComm_t comms[3] = {};
  H20_ASSERT_OK(h20cclCommInitAll(comms, 3, devices));
  for (int r = 0; r < 3; ++r) {
    int count = 0, device = -1, rank = -1;
    H20_EXPECT_OK(h20cclCommCount(comms[r], &count));
    H20_EXPECT_OK(h20cclCommDevice(comms[r], &device));
    H20_EXPECT_OK(h20cclCommUserRank(comms[r], &rank));
    EXPECT_EQ(count, 3);
    EXPECT_EQ(device, devices[r]);
    EXPECT_EQ(rank, r);
  }
  for (auto c : comms)
    h20cclCommDestroy(c);
}

TEST_F(CclApiTest, CommInitAllWithBadArgumentsFailsNamingThem) {
  h20cclComm_t comms[9] = {};
  EXPECT_CCL_ERROR(h20cclCommInitAll(nullptr, 2, nullptr), h20ErrorInvalidValue, "comms is NULL");
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 0, nullptr), h20ErrorInvalidValue, "ndev 0");
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 65, nullptr), h20ErrorInvalidValue, "ndev 65");
  const int outOfRange[] = {0, 8};
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 2, outOfRange), h20ErrorInvalidDevice,
                   "devices[1] is 8");
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 9, nullptr), h20ErrorInvalidDevice, "is 8");
  const int negative[] = {-1};
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 1, negative), h20ErrorInvalidDevice, "is -1");
  const int twice[] = {3, 1, 3};
  comms[0] = reinterpret_cast<h20cclComm_t>(0x1);
  EXPECT_CCL_ERROR(h20cclCommInitAll(comms, 3, twice), h20ErrorInvalidValue,
                   "devices[0] and devices[2] are both device 3");
  EXPECT_EQ(comms[0], nullptr) << "outputs are cleared when creation fails";
}

TEST_F(CclApiTest, QueriesWithNullArgumentsReturnInvalidValue) {
  h20cclComm_t comm = nullptr;
  const int dev = 1;
  H20_ASSERT_OK(h20cclCommInitAll(&comm, 1, &dev));
  int v = 0;
  EXPECT_CCL_ERROR(h20cclCommCount(nullptr, &v), h20ErrorInvalidValue, "comm is NULL");
  EXPECT_CCL_ERROR(h20cclCommCount(comm, nullptr), h20ErrorInvalidValue, "count is NULL");
  EXPECT_CCL_ERROR(h20cclCommDevice(comm, nullptr), h20ErrorInvalidValue, "device is NULL");
  EXPECT_CCL_ERROR(h20cclCommUserRank(comm, nullptr), h20ErrorInvalidValue, "rank is NULL");
  EXPECT_CCL_ERROR(h20cclGetVersion(nullptr), h20ErrorInvalidValue, "version is NULL");
  EXPECT_CCL_ERROR(h20cclCommGetRingOrder(comm, nullptr, 1, &v), h20ErrorInvalidValue,
                   "capacity 1");
  h20cclAlgo algo;
  EXPECT_CCL_ERROR(h20cclCGetAlgorithmRaw(comm, 5, 1, H20_R_32F, &algo), h20ErrorInvalidValue,
                   "func 5");
  EXPECT_CCL_ERROR(h20cclCGetAlgorithmRaw(comm, h20cclFuncAllReduce, 1, 9, &algo),
                   h20ErrorInvalidValue, "datatype 9");
  h20cclCommDestroy(comm);
}

TEST_F(CclApiTest, GetVersionReturnsHeaderVersion) {
  int v = 0;
  H20_ASSERT_OK(h20cclGetVersion(&v));
  EXPECT_EQ(v, H20_CCL_VERSION);
}

TEST_F(CclApiTest, HeaderCompilesAsCAndRefusesNullComm) {
  EXPECT_EQ(h20cclCHeaderCheck(), 1);
}

TEST_F(CclApiTest, RingOrderReportsEveryRankAndTheCount) {
  std::vector<h20cclComm_t> comms(8);
  H20_ASSERT_OK(h20cclCommInitAll(comms.data(), 8, nullptr));
  int count = 0;
  H20_ASSERT_OK(h20cclCommGetRingOrder(comms[3], nullptr, 0, &count));
  EXPECT_EQ(count, 8);
  int ring[8] = {};
  H20_ASSERT_OK(h20cclCommGetRingOrder(comms[3], ring, 8, &count));
  std::vector<int> sorted(ring, ring + 8);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(ring[0], 0);
  for (auto c : comms)
    h20cclCommDestroy(c);
}

TEST_F(CclApiTest, DestroyedCommIsRefusedAndNullDestroyIsANoOp) {
  h20cclComm_t comm = nullptr;
  const int dev = 4;
  H20_ASSERT_OK(h20cclCommInitAll(&comm, 1, &dev));
  H20_ASSERT_OK(h20cclCommDestroy(comm));
  int v = 0;
  EXPECT_CCL_ERROR(h20cclCommCount(comm, &v), h20ErrorInvalidValue, "not a live communicator");
  EXPECT_CCL_ERROR(h20cclCommDestroy(comm), h20ErrorInvalidValue, "not a live communicator");
  EXPECT_EQ(h20cclCommDestroy(nullptr), h20Success);
}

TEST_F(CclApiTest, CommInitAllLeavesPeerAccessEnabledAndNoRuntimeError) {
  std::vector<h20cclComm_t> comms(8);
  H20_ASSERT_OK(h20cclCommInitAll(comms.data(), 8, nullptr));
  // Again: access is already enabled, which the library tolerates without leaving an error.
  std::vector<h20cclComm_t> again(8);
  H20_ASSERT_OK(h20cclCommInitAll(again.data(), 8, nullptr));
  EXPECT_EQ(h20PeekAtLastError(), h20Success);
  H20_ASSERT_OK(h20SetDevice(3));
  EXPECT_EQ(h20DeviceEnablePeerAccess(6, 0), h20ErrorPeerAccessAlreadyEnabled);
  h20GetLastError();
  for (auto c : comms)
    h20cclCommDestroy(c);
  for (auto c : again)
    h20cclCommDestroy(c);
}

// ---- argument errors of a single call ------------------------------------------------------

TEST_F(CclSingleRankTest, NullCommReturnsInvalidValue) {
  EXPECT_CCL_ERROR(h20cclAllReduce(a_, b_, 4, H20_R_32F, h20cclSum, nullptr, stream_),
                   h20ErrorInvalidValue, "h20cclAllReduce: comm is NULL");
  EXPECT_CCL_ERROR(
      h20cclBroadcast(a_, b_, 4, H20_R_32F, 0, reinterpret_cast<h20cclComm_t>(&a_), stream_),
      h20ErrorInvalidValue, "not a live communicator");
}

TEST_F(CclSingleRankTest, NullBuffersReturnInvalidValue) {
  EXPECT_CCL_ERROR(h20cclAllReduce(nullptr, b_, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "sendbuff is NULL");
  EXPECT_CCL_ERROR(h20cclAllGather(a_, nullptr, 4, H20_R_32F, comm_, stream_), h20ErrorInvalidValue,
                   "recvbuff is NULL");
}

TEST_F(CclSingleRankTest, HostMemoryIsRefused) {
  std::vector<float> pageable(16);
  EXPECT_CCL_ERROR(h20cclAllReduce(pageable.data(), b_, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "pageable host memory");
  void* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(&pinned, 64));
  EXPECT_CCL_ERROR(h20cclReduceScatter(a_, pinned, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "pinned host memory");
  h20FreeHost(pinned);
}

TEST_F(CclSingleRankTest, MemoryOfAnotherDeviceIsRefused) {
  void* other = nullptr;
  H20_ASSERT_OK(h20SetDevice(3));
  H20_ASSERT_OK(h20Malloc(&other, 64));
  EXPECT_CCL_ERROR(h20cclAllReduce(other, b_, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue,
                   "is memory of device 3, but the communicator is rank 0 on device 2");
  h20Free(other);
}

TEST_F(CclSingleRankTest, TooSmallBufferIsRefusedNamingTheSizes) {
  // 4096-byte allocation, 1024 bytes in: 3072 left, 4000 needed.
  auto* p = static_cast<char*>(b_) + 1024;
  EXPECT_CCL_ERROR(h20cclAllReduce(a_, p, 1000, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "has 3072 bytes left");
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("needs 4000"), std::string::npos);
  EXPECT_TRUE(h20test::MessageNamesPointer(h20cclGetLastErrorMessage(), p));
}

TEST_F(CclSingleRankTest, MisalignedBufferIsRefused) {
  auto* p = static_cast<char*>(a_) + 2;
  EXPECT_CCL_ERROR(h20cclAllReduce(p, b_, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "not aligned to the 4-byte elements of H20_R_32F");
}

TEST_F(CclSingleRankTest, FreedBufferIsRefused) {
  void* freed = nullptr;
  H20_ASSERT_OK(h20SetDevice(2));
  H20_ASSERT_OK(h20Malloc(&freed, 64));
  H20_ASSERT_OK(h20Free(freed));
  EXPECT_CCL_ERROR(h20cclAllReduce(freed, b_, 4, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "sendbuff");
  h20GetLastError();
}

TEST_F(CclSingleRankTest, BadDatatypeOpAndRootAreRefused) {
  EXPECT_CCL_ERROR(h20cclCAllReduceRaw(a_, b_, 4, 7, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "datatype 7");
  EXPECT_CCL_ERROR(h20cclCReduceScatterRaw(a_, b_, 4, H20_R_32F, 9, comm_, stream_),
                   h20ErrorInvalidValue, "op 9");
  EXPECT_CCL_ERROR(h20cclBroadcast(a_, b_, 4, H20_R_32F, 1, comm_, stream_), h20ErrorInvalidValue,
                   "root 1");
  EXPECT_CCL_ERROR(h20cclBroadcast(a_, b_, 4, H20_R_32F, -1, comm_, stream_), h20ErrorInvalidValue,
                   "root -1");
}

// Enum arguments are read as ints and range-checked before anything converts them: values no
// enumerator has (negative, just past the last, the int extremes) are refused, naming the value.
TEST_F(CclSingleRankTest, EnumArgumentsOutOfRangeAreRefusedNamingTheValue) {
  for (int bad : {-1, 3, 99, INT_MIN, INT_MAX}) {
    SCOPED_TRACE(bad);
    const std::string type = "datatype " + std::to_string(bad);
    EXPECT_CCL_ERROR(h20cclCAllReduceRaw(a_, b_, 4, bad, h20cclSum, comm_, stream_),
                     h20ErrorInvalidValue, type);
    EXPECT_CCL_ERROR(h20cclCAllGatherRaw(a_, b_, 4, bad, comm_, stream_), h20ErrorInvalidValue,
                     type);
    EXPECT_CCL_ERROR(h20cclCReduceScatterRaw(a_, b_, 4, bad, h20cclSum, comm_, stream_),
                     h20ErrorInvalidValue, type);
    EXPECT_CCL_ERROR(h20cclCBroadcastRaw(a_, b_, 4, bad, 0, comm_, stream_), h20ErrorInvalidValue,
                     type);
    const std::string op = "op " + std::to_string(bad);
    EXPECT_CCL_ERROR(h20cclCAllReduceRaw(a_, b_, 4, H20_R_32F, bad, comm_, stream_),
                     h20ErrorInvalidValue, op);
    EXPECT_CCL_ERROR(h20cclCReduceScatterRaw(a_, b_, 4, H20_R_16BF, bad, comm_, stream_),
                     h20ErrorInvalidValue, op);
    h20cclAlgo algo = h20cclAlgoRing;
    EXPECT_CCL_ERROR(h20cclCGetAlgorithmRaw(comm_, h20cclFuncAllReduce, 1, bad, &algo),
                     h20ErrorInvalidValue, type);
  }
  h20cclAlgo algo = h20cclAlgoRing;
  for (int bad : {-1, 5, INT_MIN, INT_MAX}) {
    SCOPED_TRACE(bad);
    EXPECT_CCL_ERROR(h20cclCGetAlgorithmRaw(comm_, bad, 1, H20_R_32F, &algo), h20ErrorInvalidValue,
                     "func " + std::to_string(bad));
  }
  // In a group the call fails at once, and so does the group; the clique stays usable.
  H20_ASSERT_OK(h20cclGroupStart());
  EXPECT_CCL_ERROR(h20cclCAllReduceRaw(a_, b_, 4, H20_R_32F, -7, comm_, stream_),
                   h20ErrorInvalidValue, "op -7");
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue, "op -7");
  H20_EXPECT_OK(h20cclCAllReduceRaw(a_, b_, 4, H20_R_16F, h20cclMax, comm_, stream_));
}

TEST_F(CclSingleRankTest, OverflowingCountIsRefused) {
  EXPECT_CCL_ERROR(h20cclAllReduce(a_, b_, SIZE_MAX / 2, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "overflows");
}

TEST_F(CclSingleRankTest, PartiallyOverlappingBuffersAreRefused) {
  auto* p = static_cast<char*>(a_);
  EXPECT_CCL_ERROR(h20cclAllReduce(p, p + 16, 8, H20_R_32F, h20cclSum, comm_, stream_),
                   h20ErrorInvalidValue, "overlap but the call is not in place");
}

TEST_F(CclSingleRankTest, ZeroCountSucceedsWithNullBuffers) {
  H20_EXPECT_OK(h20cclAllReduce(nullptr, nullptr, 0, H20_R_32F, h20cclSum, comm_, stream_));
  H20_EXPECT_OK(h20cclAllGather(nullptr, nullptr, 0, H20_R_16BF, comm_, stream_));
}

TEST_F(CclSingleRankTest, StreamOfAnotherDeviceIsRefusedNamingTheRank) {
  h20Stream_t other = nullptr;
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(h20StreamCreate(&other));
  EXPECT_CCL_ERROR(h20cclAllReduce(a_, b_, 4, H20_R_32F, h20cclSum, comm_, other),
                   h20ErrorInvalidResourceHandle, "(rank 0, device 2)");
  h20GetLastError();
  h20StreamDestroy(other);
  // The communicator still works afterwards.
  H20_EXPECT_OK(h20cclAllReduce(a_, b_, 4, H20_R_32F, h20cclSum, comm_, stream_));
}

namespace {

// What the library answered inside a host function (h20LaunchHostFunc).
struct FromHostFunction {
  h20cclComm_t comm = nullptr;
  h20Stream_t stream = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  struct Answer {
    h20Error_t rc = h20Success;
    std::string message;
  };
  Answer allReduce, zeroCount, broadcast, inGroup, groupEnd, destroy, initAll;
};

void CallTheLibrary(void* p) {
  auto* f = static_cast<FromHostFunction*>(p);
  auto note = [](FromHostFunction::Answer& a, h20Error_t rc) {
    a.rc = rc;
    a.message = h20cclGetLastErrorMessage();
  };
  note(f->allReduce, h20cclAllReduce(f->a, f->b, 4, H20_R_32F, h20cclSum, f->comm, f->stream));
  note(f->zeroCount,
       h20cclAllReduce(nullptr, nullptr, 0, H20_R_32F, h20cclSum, f->comm, f->stream));
  note(f->broadcast, h20cclBroadcast(f->a, f->b, 4, H20_R_16BF, 0, f->comm, f->stream));
  h20cclGroupStart();
  note(f->inGroup, h20cclAllGather(f->a, f->b, 4, H20_R_32F, f->comm, f->stream));
  note(f->groupEnd, h20cclGroupEnd());
  note(f->destroy, h20cclCommDestroy(f->comm));
  h20cclComm_t made = nullptr;
  const int dev = 3;
  note(f->initAll, h20cclCommInitAll(&made, 1, &dev));
}

}  // namespace

// The runtime refuses calls from a host function (h20ErrorNotPermitted); the library passes that
// through instead of reporting the buffers as invalid, does not wait for other ranks there, and
// leaves the communicator as it was.
TEST_F(CclSingleRankTest, CallsFromAHostFunctionReturnNotPermitted) {
  FromHostFunction f;
  f.comm = comm_;
  f.stream = stream_;
  f.a = a_;
  f.b = b_;
  H20_ASSERT_OK(h20LaunchHostFunc(stream_, CallTheLibrary, &f));
  H20_ASSERT_OK(h20StreamSynchronize(stream_));
  for (const auto* a : {&f.allReduce, &f.zeroCount, &f.broadcast, &f.inGroup, &f.groupEnd,
                        &f.destroy, &f.initAll}) {
    EXPECT_EQ(h20ErrorNotPermitted, a->rc) << a->message;
    EXPECT_NE(a->message.find("host function"), std::string::npos) << a->message;
  }
  EXPECT_NE(f.allReduce.message.find("h20cclAllReduce"), std::string::npos) << f.allReduce.message;
  EXPECT_NE(f.destroy.message.find("h20cclCommDestroy"), std::string::npos) << f.destroy.message;
  // The communicator is still live and in step.
  int count = 0;
  H20_EXPECT_OK(h20cclCommCount(comm_, &count));
  EXPECT_EQ(count, 1);
  H20_EXPECT_OK(h20cclAllReduce(a_, b_, 4, H20_R_32F, h20cclSum, comm_, stream_));
  H20_EXPECT_OK(h20StreamSynchronize(stream_));
}

TEST_F(CclSingleRankTest, SingleRankCopiesOutOfPlaceAndKeepsInPlace) {
  const float in[4] = {1.5f, -2, 3, 4};
  float out[4] = {};
  H20_ASSERT_OK(h20Memcpy(a_, in, sizeof in, h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20cclAllReduce(a_, b_, 4, H20_R_32F, h20cclMax, comm_, stream_));
  H20_ASSERT_OK(h20cclAllReduce(b_, b_, 4, H20_R_32F, h20cclSum, comm_, stream_));
  H20_ASSERT_OK(h20StreamSynchronize(stream_));
  H20_ASSERT_OK(h20Memcpy(out, b_, sizeof out, h20MemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(in, out, sizeof in), 0);
}

// ---- groups and ranks that disagree ----------------------------------------------------------

TEST_F(CclGroupTest, GroupedCollectivesOfEveryKindHaveNoWrongElements) {
  for (Coll coll : {Coll::allReduce, Coll::allGather, Coll::reduceScatter, Coll::broadcast}) {
    Case c;
    c.coll = coll;
    c.type = H20_R_16BF;
    c.count = coll == Coll::allGather || coll == Coll::reduceScatter ? 333 : 2999;
    c.root = 6;
    EXPECT_EQ(RunCase(c), 0) << ccltest::CaseName(c, 8);
  }
}

TEST_F(CclGroupTest, MismatchedCountFailsBeforeAnythingIsEnqueued) {
  FillRecv(0x11);
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r)
    h20cclAllReduce(clique_->send(r), clique_->recv(r), r == 3 ? 1000 : 1024, H20_R_32F, h20cclSum,
                    clique_->comm(r), clique_->stream(r));
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue,
                   "rank 0 has count 1024 but rank 3 has count 1000");
  H20_ASSERT_OK(clique_->SyncAll());
  EXPECT_TRUE(RecvIsAll(0x11)) << "a receive buffer was written";
  // The clique stays in step: the next collective is correct.
  EXPECT_EQ(RunCase(SmallAllReduce()), 0);
}

TEST_F(CclGroupTest, MismatchedDatatypeOpRootOrKindIsReported) {
  auto issueWith = [&](auto&& callForRank) {
    h20cclGroupStart();
    for (int r = 0; r < 8; ++r)
      callForRank(r);
    return h20cclGroupEnd();
  };
  EXPECT_CCL_ERROR(issueWith([&](int r) {
                     h20cclAllReduce(clique_->send(r), clique_->recv(r), 64,
                                     r == 5 ? H20_R_16BF : H20_R_32F, h20cclSum, clique_->comm(r),
                                     clique_->stream(r));
                   }),
                   h20ErrorInvalidValue, "rank 0 has datatype H20_R_32F but rank 5 has H20_R_16BF");
  EXPECT_CCL_ERROR(issueWith([&](int r) {
                     h20cclReduceScatter(clique_->send(r), clique_->recv(r), 8, H20_R_32F,
                                         r == 7 ? h20cclMax : h20cclSum, clique_->comm(r),
                                         clique_->stream(r));
                   }),
                   h20ErrorInvalidValue, "rank 7 has op 1");
  EXPECT_CCL_ERROR(issueWith([&](int r) {
                     h20cclBroadcast(clique_->send(r), clique_->recv(r), 8, H20_R_32F,
                                     r == 2 ? 1 : 0, clique_->comm(r), clique_->stream(r));
                   }),
                   h20ErrorInvalidValue, "rank 2 has root 1");
  EXPECT_CCL_ERROR(issueWith([&](int r) {
                     if (r == 4)
                       h20cclAllGather(clique_->send(r), clique_->recv(r), 8, H20_R_32F,
                                       clique_->comm(r), clique_->stream(r));
                     else
                       h20cclAllReduce(clique_->send(r), clique_->recv(r), 8, H20_R_32F, h20cclSum,
                                       clique_->comm(r), clique_->stream(r));
                   }),
                   h20ErrorInvalidValue, "rank 4 called h20cclAllGather");
  EXPECT_EQ(RunCase(SmallAllReduce()), 0);
}

TEST_F(CclGroupTest, BadArgumentOnOneRankFailsTheWholeGroupAndEnqueuesNothing) {
  FillRecv(0x22);
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r) {
    const h20Error_t rc =
        h20cclAllReduce(clique_->send(r), r == 5 ? nullptr : clique_->recv(r), 64, H20_R_32F,
                        h20cclSum, clique_->comm(r), clique_->stream(r));
    EXPECT_EQ(rc, r == 5 ? h20ErrorInvalidValue : h20Success) << "rank " << r;
  }
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue, "recvbuff is NULL");
  H20_ASSERT_OK(clique_->SyncAll());
  EXPECT_TRUE(RecvIsAll(0x22));
  EXPECT_EQ(RunCase(SmallAllReduce()), 0);
}

TEST_F(CclGroupTest, NullCommInAGroupFailsItWithoutDisturbingTheClique) {
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r)
    h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F, h20cclSum,
                    r == 6 ? nullptr : clique_->comm(r), clique_->stream(r));
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue, "comm is NULL");
  EXPECT_EQ(RunCase(SmallAllReduce()), 0);
}

TEST_F(CclGroupTest, GroupEndWithoutGroupStartReturnsInvalidValue) {
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue, "no group is open");
}

TEST_F(CclGroupTest, NestedGroupsIssueAtTheOutermostEnd) {
  FillRecv(0x33);
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r)
    H20_EXPECT_OK(h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F, h20cclSum,
                                  clique_->comm(r), clique_->stream(r)));
  H20_ASSERT_OK(h20cclGroupEnd());
  H20_ASSERT_OK(clique_->SyncAll());
  EXPECT_TRUE(RecvIsAll(0x33)) << "the inner h20cclGroupEnd issued the collective";
  H20_ASSERT_OK(h20cclGroupEnd());
  H20_ASSERT_OK(clique_->SyncAll());
  EXPECT_FALSE(RecvIsAll(0x33));
}

TEST_F(CclGroupTest, SeveralCollectivesInOneGroupRunInIssueOrder) {
  // Rank r holds r+1 in its first 8 floats. Group: allReduce(sum) in place, then a broadcast of
  // that result from rank 3 into the second half: every rank ends with 36 in both.
  std::vector<float> host(16);
  for (int r = 0; r < 8; ++r) {
    std::fill(host.begin(), host.end(), static_cast<float>(r + 1));
    H20_ASSERT_OK(h20Memcpy(clique_->recv(r), host.data(), 64, h20MemcpyHostToDevice));
  }
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r) {
    auto* buf = static_cast<float*>(clique_->recv(r));
    H20_EXPECT_OK(
        h20cclAllReduce(buf, buf, 8, H20_R_32F, h20cclSum, clique_->comm(r), clique_->stream(r)));
    H20_EXPECT_OK(
        h20cclBroadcast(buf, buf + 8, 8, H20_R_32F, 3, clique_->comm(r), clique_->stream(r)));
  }
  H20_ASSERT_OK(h20cclGroupEnd());
  H20_ASSERT_OK(clique_->SyncAll());
  for (int r = 0; r < 8; ++r) {
    H20_ASSERT_OK(h20Memcpy(host.data(), clique_->recv(r), 64, h20MemcpyDeviceToHost));
    EXPECT_EQ(host, std::vector<float>(16, 36.0f)) << "rank " << r;
  }
}

// ---- stream order, streams, current device -----------------------------------------------------

TEST_F(CclGroupTest, CollectiveWaitsForEarlierWorkOnEveryRanksStream) {
  h20test::BusyGate gate;
  H20_ASSERT_OK(h20SetDevice(0));
  H20_ASSERT_OK(gate.Launch(clique_->stream(0)));
  ASSERT_TRUE(gate.WaitStarted());
  Case c = SmallAllReduce();
  H20_ASSERT_OK(clique_->Issue(c));
  // Rank 5's result needs rank 0's input, which comes after the gate.
  EXPECT_EQ(h20StreamQuery(clique_->stream(5)), h20ErrorNotReady);
  EXPECT_FALSE(h20test::BecomesTrueWithin(
      [&] { return h20StreamQuery(clique_->stream(5)) == h20Success; }, 50ms));
  gate.Open();
  H20_ASSERT_OK(clique_->SyncAll());
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(CclGroupTest, LaterWorkOnOneRanksStreamSeesTheResult) {
  // Inputs via the harness, then only rank 3's stream is synchronised after a copy on it.
  Case c = SmallAllReduce();
  ASSERT_EQ(RunCase(c), 0);  // fills inputs (and checks once)
  void* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(&pinned, c.count * 4));
  H20_ASSERT_OK(h20MemsetAsync(clique_->recv(3), 0xff, c.count * 4, clique_->stream(3)));
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r)
    h20cclAllReduce(clique_->send(r), clique_->recv(r), c.count, H20_R_32F, h20cclSum,
                    clique_->comm(r), clique_->stream(r));
  H20_ASSERT_OK(h20cclGroupEnd());
  H20_ASSERT_OK(h20MemcpyAsync(pinned, clique_->recv(3), c.count * 4, h20MemcpyDeviceToHost,
                               clique_->stream(3)));
  H20_ASSERT_OK(h20StreamSynchronize(clique_->stream(3)));
  const auto* out = static_cast<const float*>(pinned);
  long wrong = 0;
  for (std::size_t i = 0; i < c.count; ++i)
    wrong += out[i] != ccltest::Reduced(H20_R_32F, h20cclSum, 8, i);
  EXPECT_EQ(wrong, 0);
  H20_ASSERT_OK(clique_->SyncAll());
  h20FreeHost(pinned);
}

TEST_F(CclGroupTest, InputsMayBeOverwrittenRightAfterTheCollective) {
  // Work enqueued on a rank's stream after an allReduce may overwrite that rank's input at once:
  // the collective has finished reading it on every peer by then. 1001 floats take the one-shot
  // path of the direct algorithm, 16 Ki floats (64 KiB) the two-step one.
  h20cclAlgo algo = h20cclAlgoRing;
  ASSERT_EQ(h20cclCommGetAlgorithm(clique_->comm(0), h20cclFuncAllReduce, 1001, H20_R_32F, &algo),
            h20Success);
  ASSERT_EQ(algo, h20cclAlgoDirect) << "the test assumes the default switch topology";
  void* pinned = nullptr;
  H20_ASSERT_OK(h20MallocHost(&pinned, 16384 * 4));
  for (std::size_t count : {std::size_t(1001), std::size_t(16384)}) {
    for (int round = 0; round < 10; ++round) {
      Case c;
      c.count = count;
      ASSERT_EQ(RunCase(c), 0);  // fills the inputs (and checks once)
      ASSERT_EQ(h20cclGroupStart(), h20Success);
      for (int r = 0; r < 8; ++r)
        h20cclAllReduce(clique_->send(r), clique_->recv(r), count, H20_R_32F, h20cclSum,
                        clique_->comm(r), clique_->stream(r));
      H20_ASSERT_OK(h20cclGroupEnd());
      for (int r = 0; r < 8; ++r) {
        H20_ASSERT_OK(h20SetDevice(r));
        H20_ASSERT_OK(h20MemsetAsync(clique_->send(r), 0x7f, count * 4, clique_->stream(r)));
      }
      H20_ASSERT_OK(clique_->SyncAll());
      for (int r = 0; r < 8; ++r) {
        H20_ASSERT_OK(h20Memcpy(pinned, clique_->recv(r), count * 4, h20MemcpyDeviceToHost));
        const auto* out = static_cast<const float*>(pinned);
        long wrong = 0;
        for (std::size_t i = 0; i < count; ++i)
          wrong += out[i] != ccltest::Reduced(H20_R_32F, h20cclSum, 8, i);
        ASSERT_EQ(wrong, 0) << "rank " << r << ", count " << count << ", round " << round;
      }
    }
  }
  h20FreeHost(pinned);
}

TEST_F(CclGroupTest, CollectivesOnDifferentStreamsOfOneRankRunInIssueOrder) {
  // Each rank holds 1s; allReduce in place on stream A, then again on stream B: 8, then 64.
  std::vector<h20Stream_t> other(8);
  std::vector<float> host(256, 1.0f);
  for (int r = 0; r < 8; ++r) {
    H20_ASSERT_OK(h20SetDevice(r));
    H20_ASSERT_OK(h20StreamCreateWithFlags(&other[r], h20StreamNonBlocking));
    H20_ASSERT_OK(h20Memcpy(clique_->recv(r), host.data(), 1024, h20MemcpyHostToDevice));
  }
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(h20cclGroupStart(), h20Success);
    for (int r = 0; r < 8; ++r)
      h20cclAllReduce(clique_->recv(r), clique_->recv(r), 256, H20_R_32F, h20cclSum,
                      clique_->comm(r), round == 0 ? clique_->stream(r) : other[r]);
    H20_ASSERT_OK(h20cclGroupEnd());
  }
  for (int r = 0; r < 8; ++r) {
    H20_ASSERT_OK(h20StreamSynchronize(other[r]));
    H20_ASSERT_OK(h20Memcpy(host.data(), clique_->recv(r), 1024, h20MemcpyDeviceToHost));
    EXPECT_EQ(host, std::vector<float>(256, 64.0f)) << "rank " << r;
  }
  H20_ASSERT_OK(clique_->SyncAll());
  for (auto s : other)
    h20StreamDestroy(s);
}

TEST_F(CclGroupTest, NullStreamIsEachRanksLegacyStreamAndCurrentDeviceIsRestored) {
  std::vector<float> host(64, 2.0f);
  for (int r = 0; r < 8; ++r)
    H20_ASSERT_OK(h20Memcpy(clique_->send(r), host.data(), 256, h20MemcpyHostToDevice));
  H20_ASSERT_OK(h20SetDevice(6));
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r)
    h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F, h20cclSum, clique_->comm(r),
                    nullptr);
  H20_ASSERT_OK(h20cclGroupEnd());
  int current = -1;
  H20_ASSERT_OK(h20GetDevice(&current));
  EXPECT_EQ(current, 6);
  for (int r = 0; r < 8; ++r) {
    // h20Memcpy to the host is ordered after the device's legacy stream.
    H20_ASSERT_OK(h20SetDevice(r));
    H20_ASSERT_OK(h20DeviceSynchronize());
    H20_ASSERT_OK(h20Memcpy(host.data(), clique_->recv(r), 256, h20MemcpyDeviceToHost));
    EXPECT_EQ(host, std::vector<float>(64, 16.0f)) << "rank " << r;
  }
}

TEST_F(CclGroupTest, PerThreadStreamWorksWhenOneThreadIssuesAllRanks) {
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 0; r < 8; ++r) {
    h20SetDevice(r);
    h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F, h20cclSum, clique_->comm(r),
                    h20StreamPerThread);
  }
  H20_EXPECT_OK(h20cclGroupEnd());
  for (int r = 0; r < 8; ++r) {
    H20_ASSERT_OK(h20SetDevice(r));
    H20_ASSERT_OK(h20DeviceSynchronize());
  }
}

TEST_F(CclGroupTest, DestroyingOneRankMakesTheOthersFailInsteadOfWaiting) {
  H20_ASSERT_OK(h20cclCommDestroy(clique_->comm(0)));
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  for (int r = 1; r < 8; ++r)
    h20cclAllReduce(clique_->send(r), clique_->recv(r), 64, H20_R_32F, h20cclSum, clique_->comm(r),
                    clique_->stream(r));
  EXPECT_CCL_ERROR(h20cclGroupEnd(), h20ErrorInvalidValue, "rank 0 (device 0)");
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("was destroyed"), std::string::npos);
}

// ---- a faulted device -------------------------------------------------------------------------

H20_CHILD_SCENARIO(CclFaultedDevice) {
  ccltest::Clique clique({}, 4096);
  if (!clique.error().empty()) return 1;
  h20test::FaultArgs fa{0, h20ErrorLaunchFailure, "injected"};
  h20SetDevice(2);
  h20LaunchKernel(&h20test::FaultKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &fa, sizeof fa, 0,
                  clique.stream(2));
  h20StreamSynchronize(clique.stream(2));
  Case c;
  c.count = 64;
  const h20Error_t rc = clique.Issue(c);
  h20test::Emit("rc", h20GetErrorName(rc));
  h20test::Emit("message", h20cclGetLastErrorMessage());
  return 0;
}

TEST(CclFault, CollectiveOnAFaultedDeviceReturnsTheFaultNamingTheRank) {
  const auto r = h20test::RunChild("CclFaultedDevice");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("rc"), "h20ErrorLaunchFailure");
  EXPECT_NE(r.Value("message").find("rank 2, device 2"), std::string::npos) << r.Value("message");
}
