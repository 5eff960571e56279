// stream_test.cpp - streams through the C API: creation (flags, priorities with clamping),
// h20StreamQuery/h20StreamSynchronize, in-order execution, concurrency of independent streams,
// h20StreamDestroy (pending work completes, the handle becomes invalid), the legacy default stream
// (NULL / h20StreamLegacy) with CUDA's implicit synchronisation against blocking streams and none
// against h20StreamNonBlocking streams, h20StreamPerThread, and h20StreamWaitEvent across streams
// and devices. Ordering is made observable with the busy-kernel gate and sequence stamps, never
// with timing.
#include "h20_test.hpp"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using h20test::BecomesTrueWithin;
using h20test::BusyGate;
using h20test::OpenGateHostFn;
using h20test::SeqSlot;
using h20test::Sequencer;
using h20test::SetFlagHostFn;
using h20test::StampHostFn;
using Stream = h20test::CApiTest;
using StreamPriority = h20test::CApiTest;
using StreamDestroy = h20test::CApiTest;
using LegacyStream = h20test::CApiTest;
using PerThreadStream = h20test::CApiTest;
using StreamWaitEvent = h20test::CApiTest;

// A window in which a wrong runtime would let an operation run that must not run yet.
constexpr auto kWindow = 50ms;

h20Stream_t NewStream(unsigned flags = h20StreamDefault) {
  h20Stream_t s = nullptr;
  EXPECT_EQ(h20Success, h20StreamCreateWithFlags(&s, flags)) << h20GetLastErrorMessage();
  return s;
}

// Work issued on `other` must run while gated work issued before it on `gated` is still running:
// `other`'s work is what opens the gate.
void ExpectNotHeldBehind(h20Stream_t gated, h20Stream_t other, const char* what) {
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(gated));
  ASSERT_TRUE(gate.WaitStarted());
  H20_ASSERT_OK(h20LaunchHostFunc(other, OpenGateHostFn, &gate));
  H20_EXPECT_OK(h20StreamSynchronize(other));
  H20_EXPECT_OK(h20StreamSynchronize(gated));
  EXPECT_FALSE(gate.TimedOut()) << what;
}

// Work issued on `later` must wait for the gated work issued before it on `earlier`.
void ExpectHeldBehind(h20Stream_t earlier, h20Stream_t later, const char* what) {
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(earlier));
  SeqSlot slot{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(later, StampHostFn, &slot));
  EXPECT_FALSE(BecomesTrueWithin([&] { return slot.value.load() != 0; }, kWindow)) << what;
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(later));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(later));
  EXPECT_LT(gate.FinishSeq(), slot.value.load());
  EXPECT_FALSE(gate.TimedOut());
}

// ---- creation, flags, priorities ----------------------------------------------------------------

TEST_F(Stream, CreateWithNullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreate(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreateWithFlags(nullptr, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreateWithPriority(nullptr, 0, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Stream, CreateWithUnknownFlagsReturnsInvalidValue) {
  h20Stream_t s = nullptr;
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreateWithFlags(&s, 0x2));
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreateWithFlags(&s, 0x80000000u));
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreateWithPriority(&s, 0x10, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Stream, GetFlagsReturnsCreationFlags) {
  h20Stream_t a = NewStream(h20StreamDefault);
  h20Stream_t b = NewStream(h20StreamNonBlocking);
  unsigned f = 0xFFFF;
  H20_ASSERT_OK(h20StreamGetFlags(a, &f));
  EXPECT_EQ(h20StreamDefault, f);
  H20_ASSERT_OK(h20StreamGetFlags(b, &f));
  EXPECT_EQ(h20StreamNonBlocking, f);
  h20Stream_t c = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&c));
  H20_ASSERT_OK(h20StreamGetFlags(c, &f));
  EXPECT_EQ(h20StreamDefault, f);
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamGetFlags(a, nullptr));
  H20_EXPECT_OK(h20StreamDestroy(a));
  H20_EXPECT_OK(h20StreamDestroy(b));
  H20_EXPECT_OK(h20StreamDestroy(c));
}

TEST_F(StreamPriority, InRangeValuesAreKept) {
  int least = 0, greatest = 0;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  for (int p = greatest; p <= least; ++p) {
    h20Stream_t s = nullptr;
    H20_ASSERT_OK(h20StreamCreateWithPriority(&s, h20StreamDefault, p));
    int got = 12345;
    H20_ASSERT_OK(h20StreamGetPriority(s, &got));
    EXPECT_EQ(p, got);
    H20_EXPECT_OK(h20StreamDestroy(s));
  }
}

TEST_F(StreamPriority, OutOfRangeValuesAreClamped) {
  int least = 0, greatest = 0;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  struct Case {
    int requested, expected;
  } cases[] = {{greatest - 1, greatest}, {greatest - 1000, greatest}, {INT32_MIN, greatest},
               {least + 1, least},       {least + 1000, least},       {INT32_MAX, least}};
  for (const auto& c : cases) {
    h20Stream_t s = nullptr;
    H20_ASSERT_OK(h20StreamCreateWithPriority(&s, h20StreamNonBlocking, c.requested));
    int got = 12345;
    H20_ASSERT_OK(h20StreamGetPriority(s, &got));
    EXPECT_EQ(c.expected, got) << "requested " << c.requested;
    unsigned f = 0;
    H20_ASSERT_OK(h20StreamGetFlags(s, &f));
    EXPECT_EQ(h20StreamNonBlocking, f);
    H20_EXPECT_OK(h20StreamDestroy(s));
  }
}

TEST_F(StreamPriority, DefaultStreamsHaveAPriorityInRange) {
  int least = 0, greatest = 0;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  h20Stream_t s = NewStream();
  for (h20Stream_t q : {s, static_cast<h20Stream_t>(nullptr), h20StreamPerThread}) {
    int got = 12345;
    H20_ASSERT_OK(h20StreamGetPriority(q, &got));
    EXPECT_GE(got, greatest);
    EXPECT_LE(got, least);
  }
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamGetPriority(s, nullptr));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

// ---- query, synchronize, order ------------------------------------------------------------------

TEST_F(Stream, QueryReturnsNotReadyWhileBusyAndSuccessAfter) {
  h20Stream_t s = NewStream();
  H20_EXPECT_OK(h20StreamQuery(s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(s));
  ASSERT_TRUE(gate.WaitStarted());
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(s));
  gate.Open();
  ASSERT_TRUE(h20test::WaitUntil([&] { return h20StreamQuery(s) == h20Success; }));
  EXPECT_TRUE(gate.Finished());
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(Stream, SynchronizeWaitsForAllEnqueuedWork) {
  h20Stream_t s = NewStream();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::atomic<int> after{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, SetFlagHostFn, &after));
  std::thread opener([&] {
    gate.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gate.Open();
  });
  H20_EXPECT_OK(h20StreamSynchronize(s));
  EXPECT_TRUE(gate.Finished());
  EXPECT_EQ(1, after.load());
  H20_EXPECT_OK(h20StreamQuery(s));
  opener.join();
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

// Kernel: checks that it runs as operation number `expected` of its stream.
struct OrderArgs {
  std::atomic<int>* next;
  std::atomic<int>* violations;
  int expected;
};
void OrderKernel(const h20KernelContext* ctx, const void* args) {
  OrderArgs a;
  std::memcpy(&a, args, sizeof a);
  if (ctx->blockIdx.x != 0) return;
  if (a.next->load() != a.expected) a.violations->fetch_add(1);
  a.next->store(a.expected + 1);
}
struct OrderHost {
  std::atomic<int>* next;
  std::atomic<int>* violations;
  int expected;
};
void OrderHostFn(void* p) {
  auto* o = static_cast<OrderHost*>(p);
  if (o->next->load() != o->expected) o->violations->fetch_add(1);
  o->next->store(o->expected + 1);
}

TEST_F(Stream, RunsKernelsHostFunctionsAndCopiesInEnqueueOrder) {
  h20Stream_t s = NewStream();
  std::atomic<int> next{0}, violations{0};
  constexpr int kOps = 300;
  std::vector<OrderHost> hosts(kOps);
  int* dev = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&dev), sizeof(int) * 64));
  H20_ASSERT_OK(h20MemsetAsync(dev, 0, sizeof(int) * 64, s));
  for (int i = 0; i < kOps; ++i) {
    if (i % 3 == 0) {
      OrderArgs a;
      std::memset(&a, 0, sizeof a);  // padding too: see LaunchAdd
      a.next = &next;
      a.violations = &violations;
      a.expected = i;
      H20_ASSERT_OK(
          h20LaunchKernel(OrderKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &a, sizeof a, 0, s));
    } else if (i % 3 == 1) {
      hosts[i] = OrderHost{&next, &violations, i};
      H20_ASSERT_OK(h20LaunchHostFunc(s, OrderHostFn, &hosts[i]));
    } else {
      // A copy does not take part in the counter; it must still not reorder the others.
      H20_ASSERT_OK(h20test::LaunchAdd(dev, 64, 1, s));
      hosts[i] = OrderHost{&next, &violations, i};
      H20_ASSERT_OK(h20LaunchHostFunc(s, OrderHostFn, &hosts[i]));
    }
  }
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(kOps, next.load());
  EXPECT_EQ(0, violations.load());
  int back[64];
  H20_ASSERT_OK(h20Memcpy(back, dev, sizeof back, h20MemcpyDeviceToHost));
  for (int v : back)
    EXPECT_EQ(kOps / 3, v);
  H20_EXPECT_OK(h20Free(dev));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(Stream, IndependentStreamsRunConcurrently) {
  H20_REQUIRE_WORKERS(2);
  h20Stream_t a = NewStream(), b = NewStream();
  ExpectNotHeldBehind(a, b, "stream b did not run while stream a was busy");
  H20_EXPECT_OK(h20StreamDestroy(a));
  H20_EXPECT_OK(h20StreamDestroy(b));
}

TEST_F(Stream, StreamsOfDifferentDevicesRunConcurrently) {
  H20_REQUIRE_WORKERS(2);
  H20_REQUIRE_DEVICES(2);
  h20Stream_t a = NewStream();
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t b = NewStream();
  H20_ASSERT_OK(h20SetDevice(0));
  ExpectNotHeldBehind(a, b, "a stream of device 1 did not run while one of device 0 was busy");
  H20_EXPECT_OK(h20StreamDestroy(a));
  H20_EXPECT_OK(h20StreamDestroy(b));
}

TEST_F(Stream, BogusHandleReturnsInvalidResourceHandle) {
  // Never a stream: the runtime must reject it without dereferencing it.
  long long storage[8] = {};
  auto bogus = reinterpret_cast<h20Stream_t>(&storage[0]);
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamQuery(bogus));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamSynchronize(bogus));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamDestroy(bogus));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  EXPECT_EQ(h20ErrorInvalidResourceHandle,
            h20StreamQuery(reinterpret_cast<h20Stream_t>(std::uintptr_t{0x3})));
}

// ---- destroy ------------------------------------------------------------------------------------

TEST_F(StreamDestroy, ReturnsAtOnceAndPendingWorkStillCompletes) {
  h20Stream_t s = NewStream();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::atomic<int> after{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, SetFlagHostFn, &after));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_FALSE(gate.Finished()) << "h20StreamDestroy waited for the pending work";
  gate.Open();
  EXPECT_TRUE(h20test::WaitUntil([&] { return after.load() == 1; }))
      << "work enqueued before h20StreamDestroy never ran";
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(StreamDestroy, DestroyedHandleIsRejectedByEveryCall) {
  h20Stream_t s = NewStream();
  H20_ASSERT_OK(h20StreamDestroy(s));
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  int dummy = 0;
  unsigned flags = 0;
  int prio = 0;
  const h20Error_t ih = h20ErrorInvalidResourceHandle;
  EXPECT_EQ(ih, h20StreamQuery(s));
  EXPECT_EQ(ih, h20StreamSynchronize(s));
  EXPECT_EQ(ih, h20StreamGetFlags(s, &flags));
  EXPECT_EQ(ih, h20StreamGetPriority(s, &prio));
  EXPECT_EQ(ih, h20StreamWaitEvent(s, e, 0));
  EXPECT_EQ(ih, h20EventRecord(e, s));
  EXPECT_EQ(ih, h20LaunchHostFunc(s, SetFlagHostFn, &dummy));
  EXPECT_EQ(ih, h20test::LaunchAdd(&dummy, 1, 1, s));
  EXPECT_EQ(ih, h20StreamDestroy(s));
  EXPECT_EQ(ih, h20GetLastError());
  EXPECT_EQ(0, dummy);
  H20_EXPECT_OK(h20EventDestroy(e));
}

TEST_F(StreamDestroy, OfTheDefaultStreamsIsRejected) {
  EXPECT_NE(h20Success, h20StreamDestroy(nullptr));
  EXPECT_NE(h20Success, h20StreamDestroy(h20StreamPerThread));
  EXPECT_NE(h20Success, h20StreamDestroy(h20StreamLegacy));
  h20GetLastError();
  H20_EXPECT_OK(h20StreamSynchronize(nullptr));
  H20_EXPECT_OK(h20StreamSynchronize(h20StreamPerThread));
}

// ---- the legacy default stream
// ---------------------------------------------------------------------

TEST_F(LegacyStream, WaitsForPriorWorkOfBlockingStreams) {
  h20Stream_t s = NewStream();
  ExpectHeldBehind(s, nullptr,
                   "legacy-stream work ran while a blocking stream's earlier work was pending");
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(LegacyStream, BlockingStreamsWaitForPriorLegacyWork) {
  h20Stream_t s = NewStream();
  ExpectHeldBehind(nullptr, s,
                   "blocking-stream work ran while earlier legacy-stream work was pending");
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(LegacyStream, BlockingStreamWorkIssuedBeforeLegacyWorkIsNotHeldBack) {
  H20_REQUIRE_WORKERS(2);
  // Implicit synchronisation follows the order of issue: work issued on blocking stream s2 before
  // the legacy-stream work does not wait for blocking stream s1 (it opens s1's gate), and the
  // legacy work then runs after both.
  h20Stream_t s1 = NewStream(), s2 = NewStream();
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(s1));
  H20_ASSERT_OK(h20LaunchHostFunc(s2, OpenGateHostFn, &gate));
  SeqSlot legacy{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, StampHostFn, &legacy));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_FALSE(gate.TimedOut()) << "s2's earlier work was held behind s1";
  EXPECT_LT(gate.FinishSeq(), legacy.value.load());
  H20_EXPECT_OK(h20StreamDestroy(s1));
  H20_EXPECT_OK(h20StreamDestroy(s2));
}

TEST_F(LegacyStream, NonBlockingStreamDoesNotWaitForLegacyWork) {
  H20_REQUIRE_WORKERS(2);
  h20Stream_t nb = NewStream(h20StreamNonBlocking);
  ExpectNotHeldBehind(nullptr, nb, "the non-blocking stream waited for the legacy stream");
  H20_EXPECT_OK(h20StreamDestroy(nb));
}

TEST_F(LegacyStream, DoesNotWaitForNonBlockingStreams) {
  H20_REQUIRE_WORKERS(2);
  h20Stream_t nb = NewStream(h20StreamNonBlocking);
  ExpectNotHeldBehind(nb, nullptr, "the legacy stream waited for a non-blocking stream");
  H20_EXPECT_OK(h20StreamDestroy(nb));
}

TEST_F(LegacyStream, LegacyHandleIsTheSameStreamAsNull) {
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(h20StreamLegacy));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(nullptr));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(h20StreamLegacy));
  gate.Open();
  H20_EXPECT_OK(h20StreamSynchronize(nullptr));
  H20_EXPECT_OK(h20StreamQuery(h20StreamLegacy));
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(LegacyStream, IsPerDevice) {
  H20_REQUIRE_WORKERS(2);
  H20_REQUIRE_DEVICES(2);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(nullptr));  // device 0's legacy stream
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, OpenGateHostFn, &gate));  // device 1's legacy stream
  H20_EXPECT_OK(h20StreamSynchronize(nullptr));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_EXPECT_OK(h20StreamSynchronize(nullptr));
  EXPECT_FALSE(gate.TimedOut()) << "device 1's legacy stream waited for device 0's";
}

TEST_F(LegacyStream, SynchronizeWaitsForDestroyedBlockingStreamsPendingWork) {
  h20Stream_t s = NewStream();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::atomic<int> flag{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, SetFlagHostFn, &flag));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(nullptr));
  std::atomic<int> flagAtReturn{-1};
  std::thread t([&] {
    EXPECT_EQ(h20Success, h20StreamSynchronize(nullptr));
    flagAtReturn = flag.load();
  });
  EXPECT_FALSE(BecomesTrueWithin([&] { return flagAtReturn.load() != -1; }, kWindow))
      << "h20StreamSynchronize(NULL) returned while a destroyed blocking stream's work was pending";
  gate.Open();
  t.join();
  EXPECT_EQ(1, flagAtReturn.load());
  H20_EXPECT_OK(h20StreamQuery(nullptr));
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(LegacyStream, SynchronizeDoesNotWaitForADestroyedNonBlockingStream) {
  H20_REQUIRE_WORKERS(2);
  h20Stream_t nb = NewStream(h20StreamNonBlocking);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(nb));
  H20_ASSERT_OK(h20StreamDestroy(nb));
  H20_EXPECT_OK(h20StreamQuery(nullptr));
  H20_EXPECT_OK(h20StreamSynchronize(nullptr));
  EXPECT_FALSE(gate.Finished());
  gate.Open();
  H20_EXPECT_OK(h20DeviceSynchronize());
  EXPECT_TRUE(gate.Finished());
}

TEST_F(StreamDestroy, ConcurrentDeviceSynchronizeCallsAllWaitForDestroyedStreamsWork) {
  h20Stream_t s = NewStream(h20StreamNonBlocking);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  std::atomic<int> flag{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, SetFlagHostFn, &flag));
  H20_ASSERT_OK(h20StreamDestroy(s));
  // Each waiter records whether the destroyed stream's work had run when its call returned.
  std::atomic<int> first{-1}, second{-1};
  std::thread t1([&] {
    EXPECT_EQ(h20Success, h20DeviceSynchronize());
    first = flag.load();
  });
  EXPECT_FALSE(BecomesTrueWithin([&] { return first.load() != -1; }, kWindow));
  std::thread t2([&] {
    EXPECT_EQ(h20Success, h20DeviceSynchronize());
    second = flag.load();
  });
  EXPECT_FALSE(BecomesTrueWithin([&] { return second.load() != -1; }, kWindow))
      << "a second h20DeviceSynchronize returned while the first was still waiting";
  gate.Open();
  t1.join();
  t2.join();
  EXPECT_EQ(1, first.load());
  EXPECT_EQ(1, second.load());
  // And a later call after everything completed returns at once.
  H20_EXPECT_OK(h20DeviceSynchronize());
}

// ---- h20StreamPerThread
// ------------------------------------------------------------------------------

TEST_F(PerThreadStream, RunsWorkInOrder) {
  Sequencer seq;
  std::vector<SeqSlot> slots(100);
  for (auto& slot : slots) {
    slot.seq = &seq;
    H20_ASSERT_OK(h20LaunchHostFunc(h20StreamPerThread, StampHostFn, &slot));
  }
  H20_ASSERT_OK(h20StreamSynchronize(h20StreamPerThread));
  for (size_t i = 0; i < slots.size(); ++i)
    EXPECT_EQ(static_cast<int64_t>(i + 1), slots[i].value);
}

TEST_F(PerThreadStream, StreamsOfDifferentThreadsAreIndependent) {
  H20_REQUIRE_WORKERS(2);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(h20StreamPerThread));
  h20Error_t inThread = h20ErrorUnknown;
  std::thread t([&] {
    // A fresh thread's per-thread stream is idle, and is not the main thread's.
    if (h20StreamQuery(h20StreamPerThread) != h20Success) return;
    if (h20LaunchHostFunc(h20StreamPerThread, OpenGateHostFn, &gate) != h20Success) return;
    inThread = h20StreamSynchronize(h20StreamPerThread);
  });
  t.join();
  EXPECT_EQ(h20Success, inThread);
  H20_EXPECT_OK(h20StreamSynchronize(h20StreamPerThread));
  EXPECT_FALSE(gate.TimedOut()) << "one thread's per-thread stream waited for another's";
}

TEST_F(PerThreadStream, SynchronizesWithTheLegacyStream) {
  // As in CUDA, the per-thread default stream is a blocking stream.
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(h20StreamPerThread));
  SeqSlot legacy{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, StampHostFn, &legacy));
  EXPECT_FALSE(BecomesTrueWithin([&] { return legacy.value.load() != 0; }, kWindow));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(nullptr));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_LT(gate.FinishSeq(), legacy.value.load());
  H20_EXPECT_OK(h20StreamSynchronize(h20StreamPerThread));
  EXPECT_FALSE(gate.TimedOut());
}

TEST_F(PerThreadStream, QueryAndFlagsWork) {
  H20_EXPECT_OK(h20StreamQuery(h20StreamPerThread));
  unsigned f = 0xFF;
  H20_EXPECT_OK(h20StreamGetFlags(h20StreamPerThread, &f));
  EXPECT_EQ(h20StreamDefault, f);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(h20StreamPerThread));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(h20StreamPerThread));
  gate.Open();
  H20_EXPECT_OK(h20StreamSynchronize(h20StreamPerThread));
  EXPECT_FALSE(gate.TimedOut());
}

// ---- h20StreamWaitEvent
// ---------------------------------------------------------------------------

TEST_F(StreamWaitEvent, MakesLaterWorkWaitForTheRecordedWork) {
  h20Stream_t a = NewStream(h20StreamNonBlocking), b = NewStream(h20StreamNonBlocking);
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreateWithFlags(&e, h20EventDisableTiming));
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(a));
  H20_ASSERT_OK(h20EventRecord(e, a));
  H20_ASSERT_OK(h20StreamWaitEvent(b, e, 0));
  SeqSlot slot{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(b, StampHostFn, &slot));
  EXPECT_FALSE(BecomesTrueWithin([&] { return slot.value.load() != 0; }, kWindow));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(b));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(b));
  EXPECT_LT(gate.FinishSeq(), slot.value.load());
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(a));
  H20_EXPECT_OK(h20StreamDestroy(b));
}

TEST_F(StreamWaitEvent, WorksAcrossDevices) {
  H20_REQUIRE_DEVICES(2);
  h20Stream_t a = NewStream(h20StreamNonBlocking);
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t b = NewStream(h20StreamNonBlocking);
  H20_ASSERT_OK(h20SetDevice(0));
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(a));
  H20_ASSERT_OK(h20EventRecord(e, a));
  H20_ASSERT_OK(h20SetDevice(1));
  H20_ASSERT_OK(h20StreamWaitEvent(b, e, 0));  // b is on device 1, e on device 0
  SeqSlot slot{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(b, StampHostFn, &slot));
  EXPECT_FALSE(BecomesTrueWithin([&] { return slot.value.load() != 0; }, kWindow));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(b));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(b));
  EXPECT_LT(gate.FinishSeq(), slot.value.load());
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(b));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(a));
}

TEST_F(StreamWaitEvent, WaitsForTheRecordCurrentAtTheCall) {
  H20_REQUIRE_WORKERS(2);
  // Re-recording the event after the wait was enqueued does not change what the wait waits for.
  h20Stream_t a = NewStream(h20StreamNonBlocking), b = NewStream(h20StreamNonBlocking),
              c = NewStream(h20StreamNonBlocking);
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(a));
  H20_ASSERT_OK(h20EventRecord(e, a));
  H20_ASSERT_OK(h20StreamWaitEvent(b, e, 0));
  std::atomic<int> ran{0};
  H20_ASSERT_OK(h20LaunchHostFunc(b, SetFlagHostFn, &ran));
  H20_ASSERT_OK(h20EventRecord(e, c));  // c is idle: this record completes at once
  H20_ASSERT_OK(h20EventSynchronize(e));
  EXPECT_FALSE(BecomesTrueWithin([&] { return ran.load() != 0; }, kWindow));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(b));
  EXPECT_EQ(1, ran.load());
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(e));
  for (h20Stream_t s : {a, b, c})
    H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(StreamWaitEvent, NeverRecordedEventIsANoOp) {
  h20Stream_t s = NewStream();
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  H20_ASSERT_OK(h20StreamWaitEvent(s, e, 0));
  std::atomic<int> ran{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, SetFlagHostFn, &ran));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(1, ran.load());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(StreamWaitEvent, OnTheLegacyStreamWorks) {
  h20Stream_t a = NewStream(h20StreamNonBlocking);
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  BusyGate gate;
  Sequencer seq;
  gate.StampWith(&seq.counter);
  H20_ASSERT_OK(gate.Launch(a));
  H20_ASSERT_OK(h20EventRecord(e, a));
  H20_ASSERT_OK(h20StreamWaitEvent(nullptr, e, 0));
  SeqSlot slot{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, StampHostFn, &slot));
  EXPECT_FALSE(BecomesTrueWithin([&] { return slot.value.load() != 0; }, kWindow));
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  EXPECT_LT(gate.FinishSeq(), slot.value.load());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(a));
}

TEST_F(StreamWaitEvent, RejectsNonZeroFlagsAndBadHandles) {
  h20Stream_t s = NewStream();
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20EventCreate(&e));
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamWaitEvent(s, e, 1));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  h20Event_t dead = nullptr;
  H20_ASSERT_OK(h20EventCreate(&dead));
  H20_ASSERT_OK(h20EventDestroy(dead));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamWaitEvent(s, dead, 0));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamWaitEvent(s, nullptr, 0));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

}  // namespace

TEST_F(Stream, GetDeviceNamesTheStreamsDevice) {
  H20_REQUIRE_DEVICES(2);
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t s = NewStream();
  H20_ASSERT_OK(h20SetDevice(0));
  int device = -1;
  H20_ASSERT_OK(h20StreamGetDevice(s, &device));
  EXPECT_EQ(device, 1);
  H20_ASSERT_OK(h20StreamGetDevice(nullptr, &device));
  EXPECT_EQ(device, 0);
  H20_ASSERT_OK(h20StreamGetDevice(h20StreamPerThread, &device));
  EXPECT_EQ(device, 0);
  EXPECT_EQ(h20ErrorInvalidValue, h20StreamGetDevice(s, nullptr));
  H20_ASSERT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamGetDevice(s, &device));
}
