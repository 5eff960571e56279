// event_test.cpp - events through the C API: creation flags (DisableTiming, BlockingSync,
// Interprocess), h20EventRecord (re-recording replaces the capture; the stream must belong to the
// event's device), h20EventQuery/h20EventSynchronize (a never-recorded event is complete),
// h20EventElapsedTime (never recorded, timing disabled, not yet complete, ordering of
// timestamps) and h20EventDestroy (pending capture still completes; the handle is invalid).
#include "h20_test.hpp"

#include <string>

#include <atomic>
#include <cmath>
#include <thread>

namespace {

using namespace std::chrono_literals;
using h20test::BusyGate;
using Event = h20test::CApiTest;
using EventRecord = h20test::CApiTest;
using EventElapsedTime = h20test::CApiTest;
using EventDestroy = h20test::CApiTest;

h20Event_t NewEvent(unsigned flags = h20EventDefault) {
  h20Event_t e = nullptr;
  EXPECT_EQ(h20Success, h20EventCreateWithFlags(&e, flags)) << h20GetLastErrorMessage();
  return e;
}

h20Stream_t NewStream() {
  h20Stream_t s = nullptr;
  EXPECT_EQ(h20Success, h20StreamCreate(&s)) << h20GetLastErrorMessage();
  return s;
}

// Host function that sleeps for the number of milliseconds pointed to by userData.
void SleepHostFn(void* ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
}

TEST_F(Event, CreateWithNullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20EventCreate(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20EventCreateWithFlags(nullptr, 0));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Event, CreateAcceptsDocumentedFlags) {
  for (unsigned f : {h20EventDefault, h20EventBlockingSync, h20EventDisableTiming,
                     h20EventBlockingSync | h20EventDisableTiming}) {
    h20Event_t e = nullptr;
    H20_ASSERT_OK(h20EventCreateWithFlags(&e, f));
    ASSERT_NE(nullptr, e);
    H20_EXPECT_OK(h20EventRecord(e, nullptr));
    H20_EXPECT_OK(h20EventSynchronize(e));
    H20_EXPECT_OK(h20EventDestroy(e));
  }
}

TEST_F(Event, CreateWithUnknownFlagsReturnsInvalidValue) {
  h20Event_t e = nullptr;
  EXPECT_EQ(h20ErrorInvalidValue, h20EventCreateWithFlags(&e, 0x10));
  EXPECT_EQ(h20ErrorInvalidValue, h20EventCreateWithFlags(&e, 0x80000000u));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(Event, InterprocessIsNotSupported) {
  H20_SKIP_UNLESS_EMBEDDED("the device daemon supports interprocess events (tests/daemon)");
  h20Event_t e = nullptr;
  EXPECT_EQ(h20ErrorNotSupported,
            h20EventCreateWithFlags(&e, h20EventInterprocess | h20EventDisableTiming));
  EXPECT_NE(std::string::npos, std::string(h20GetLastErrorMessage()).find("H20_DRIVER=daemon"))
      << "the message says how to get interprocess events: " << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorNotSupported, h20GetLastError());
  void* d = nullptr;
  H20_ASSERT_OK(h20Malloc(&d, 4096));
  h20IpcMemHandle_t h{};
  EXPECT_EQ(h20ErrorNotSupported, h20IpcGetMemHandle(&h, d));
  EXPECT_NE(std::string::npos, std::string(h20GetLastErrorMessage()).find("H20_DRIVER=daemon"));
  H20_EXPECT_OK(h20Free(d));
}

TEST_F(Event, NeverRecordedEventIsComplete) {
  h20Event_t e = NewEvent();
  H20_EXPECT_OK(h20EventQuery(e));
  H20_EXPECT_OK(h20EventSynchronize(e));
  H20_EXPECT_OK(h20EventDestroy(e));
}

TEST_F(Event, QueryReturnsNotReadyUntilCapturedWorkCompletes) {
  h20Stream_t s = NewStream();
  h20Event_t e = NewEvent();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(e, s));
  EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e));
  EXPECT_EQ(h20Success, h20PeekAtLastError()) << "NotReady must not be stored as last error";
  gate.Open();
  H20_ASSERT_OK(h20EventSynchronize(e));
  EXPECT_TRUE(gate.Finished());
  H20_EXPECT_OK(h20EventQuery(e));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(Event, SynchronizeWaitsForCapturedWorkOnly) {
  h20Stream_t s = NewStream();
  h20Event_t before = NewEvent(), after = NewEvent();
  H20_ASSERT_OK(h20EventRecord(before, s));
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(after, s));
  H20_EXPECT_OK(h20EventSynchronize(before));  // captured nothing that waits on the gate
  EXPECT_FALSE(gate.Finished()) << "h20EventSynchronize waited for work recorded after it";
  EXPECT_EQ(h20ErrorNotReady, h20EventQuery(after));
  gate.Open();
  H20_EXPECT_OK(h20EventSynchronize(after));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(before));
  H20_EXPECT_OK(h20EventDestroy(after));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(Event, BlockingSyncEventSynchronizeWaits) {
  h20Stream_t s = NewStream();
  h20Event_t e = NewEvent(h20EventBlockingSync);
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(e, s));
  std::thread opener([&] {
    gate.WaitStarted();
    std::this_thread::sleep_for(20ms);
    gate.Open();
  });
  H20_EXPECT_OK(h20EventSynchronize(e));
  EXPECT_TRUE(gate.Finished());
  opener.join();
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventRecord, ReRecordingReplacesThePreviousCapture) {
  H20_REQUIRE_WORKERS(2);
  h20Stream_t busy = NewStream(), idle = NewStream();
  h20Event_t e = NewEvent();
  BusyGate gate(5s);
  H20_ASSERT_OK(gate.Launch(busy));
  H20_ASSERT_OK(h20EventRecord(e, busy));
  EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e));
  H20_ASSERT_OK(h20EventRecord(e, idle));
  H20_EXPECT_OK(h20EventSynchronize(e));
  EXPECT_FALSE(gate.Finished()) << "the event still waited for its previous capture";
  gate.Open();
  H20_EXPECT_OK(h20StreamSynchronize(busy));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(busy));
  H20_EXPECT_OK(h20StreamDestroy(idle));
}

// An event re-recorded many times, alternately on a stream held by a gate (those captures stay
// pending) and on an idle one (those complete): each capture answers for its own marker only.
// More records are pending than an event has timestamp slots, so records take fresh slots; the
// pending markers that finally run must not change the time of the capture that replaced them.
TEST_F(EventRecord, EachCaptureOwnsItsTimestampWhileEarlierOnesArePending) {
  h20Stream_t held = NewStream(), idle = NewStream();
  h20Event_t start = NewEvent(), e = NewEvent();
  H20_ASSERT_OK(h20EventRecord(start, idle));
  H20_ASSERT_OK(h20EventSynchronize(start));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(held));
  float last = -1.0f;
  for (int i = 0; i < 12; ++i) {
    // Two held records for one idle one: the captures fall on every slot position.
    H20_ASSERT_OK(h20EventRecord(e, held));
    H20_ASSERT_OK(h20EventRecord(e, held));
    EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e)) << "record " << i << " on the held stream";
    float ms = 0.0f;
    EXPECT_EQ(h20ErrorNotReady, h20EventElapsedTime(&ms, start, e));
    H20_ASSERT_OK(h20EventRecord(e, idle));
    H20_ASSERT_OK(h20StreamSynchronize(idle));
    EXPECT_EQ(h20Success, h20EventQuery(e)) << "record " << i << " on the idle stream";
    H20_ASSERT_OK(h20EventElapsedTime(&ms, start, e));
    EXPECT_GE(ms, last) << "record " << i;
    last = ms;
  }
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(held));
  EXPECT_FALSE(gate.TimedOut());
  float after = -1.0f;
  H20_ASSERT_OK(h20EventElapsedTime(&after, start, e));
  EXPECT_EQ(last, after) << "a replaced capture's marker changed the current capture's time";
  H20_EXPECT_OK(h20EventDestroy(start));
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(held));
  H20_EXPECT_OK(h20StreamDestroy(idle));
}

// Many records of one event held behind a gate: each needs a slot no pending marker writes to, so
// the event keeps starting blocks of slots; the blocks of finished markers are given back in
// amortised constant time (a scan per record would make this loop quadratic), and every capture
// completes once the gate opens.
TEST_F(EventRecord, ManyRecordsBehindAHeldStreamAllComplete) {
  h20Stream_t s = NewStream();
  h20Event_t e = NewEvent();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  for (int i = 0; i < 50000; ++i)
    ASSERT_EQ(h20Success, h20EventRecord(e, s)) << "record " << i;
  EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e));
  gate.Open();
  H20_ASSERT_OK(h20EventSynchronize(e));
  H20_EXPECT_OK(h20EventQuery(e));
  EXPECT_FALSE(gate.TimedOut());
  for (int i = 0; i < 100; ++i)  // and the event records as usual afterwards
    H20_ASSERT_OK(h20EventRecord(e, s));
  H20_ASSERT_OK(h20EventSynchronize(e));
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

// A record/query loop on an idle stream (the slots are reused: their markers have run) keeps
// answering for the latest capture.
TEST_F(EventRecord, RecordQueryLoopCompletesEveryCapture) {
  h20Stream_t s = NewStream();
  h20Event_t e = NewEvent();
  for (int i = 0; i < 2000; ++i) {
    H20_ASSERT_OK(h20EventRecord(e, s));
    if (i % 10 == 0) {
      H20_ASSERT_OK(h20EventSynchronize(e));
      ASSERT_EQ(h20Success, h20EventQuery(e)) << "record " << i;
    } else {
      const h20Error_t q = h20EventQuery(e);
      ASSERT_TRUE(q == h20Success || q == h20ErrorNotReady) << h20GetErrorName(q);
    }
  }
  H20_ASSERT_OK(h20StreamSynchronize(s));
  H20_EXPECT_OK(h20EventQuery(e));
  H20_EXPECT_OK(h20EventDestroy(e));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventRecord, OnLegacyAndPerThreadStreamsCapturesTheirWork) {
  for (h20Stream_t s : {static_cast<h20Stream_t>(nullptr), h20StreamPerThread}) {
    h20Event_t e = NewEvent();
    BusyGate gate;
    H20_ASSERT_OK(gate.Launch(s));
    H20_ASSERT_OK(h20EventRecord(e, s));
    EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e));
    gate.Open();
    H20_EXPECT_OK(h20EventSynchronize(e));
    EXPECT_TRUE(gate.Finished());
    H20_EXPECT_OK(h20EventDestroy(e));
  }
}

TEST_F(EventRecord, StreamOfAnotherDeviceReturnsInvalidResourceHandle) {
  H20_REQUIRE_DEVICES(2);
  h20Event_t e = NewEvent();  // device 0
  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t s = NewStream();  // device 1
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventRecord(e, s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_EXPECT_OK(h20StreamDestroy(s));
  H20_ASSERT_OK(h20SetDevice(0));
  H20_EXPECT_OK(h20EventDestroy(e));
}

TEST_F(EventRecord, BadHandlesAreRejected) {
  h20Stream_t s = NewStream();
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventRecord(nullptr, s));
  long long storage[8] = {};
  EXPECT_EQ(h20ErrorInvalidResourceHandle,
            h20EventRecord(reinterpret_cast<h20Event_t>(&storage[0]), s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle,
            h20EventQuery(reinterpret_cast<h20Event_t>(&storage[0])));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventQuery(nullptr));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventSynchronize(nullptr));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventElapsedTime, MeasuresAtLeastTheWorkBetweenTheEvents) {
  // The host function sleeps at least 5 ms between the two records, so the elapsed time cannot
  // be less (minus the documented ~1 us resolution) however slow the machine is.
  h20Stream_t s = NewStream();
  h20Event_t start = NewEvent(), stop = NewEvent();
  int sleepMs = 5;
  H20_ASSERT_OK(h20EventRecord(start, s));
  H20_ASSERT_OK(h20LaunchHostFunc(s, SleepHostFn, &sleepMs));
  H20_ASSERT_OK(h20EventRecord(stop, s));
  H20_ASSERT_OK(h20EventSynchronize(stop));
  float ms = -1.0f;
  H20_ASSERT_OK(h20EventElapsedTime(&ms, start, stop));
  EXPECT_TRUE(std::isfinite(ms));
  EXPECT_GE(ms, 4.99f);
  float back = 0.0f;
  H20_ASSERT_OK(h20EventElapsedTime(&back, stop, start));
  EXPECT_FLOAT_EQ(-ms, back);
  float zero = -1.0f;
  H20_ASSERT_OK(h20EventElapsedTime(&zero, start, start));
  EXPECT_EQ(0.0f, zero);
  H20_EXPECT_OK(h20EventDestroy(start));
  H20_EXPECT_OK(h20EventDestroy(stop));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventElapsedTime, IsNonNegativeForConsecutiveRecords) {
  h20Stream_t s = NewStream();
  h20Event_t a = NewEvent(), b = NewEvent();
  for (int i = 0; i < 50; ++i) {
    H20_ASSERT_OK(h20EventRecord(a, s));
    H20_ASSERT_OK(h20test::LaunchAdd(nullptr, 0, 0, s));
    H20_ASSERT_OK(h20EventRecord(b, s));
    H20_ASSERT_OK(h20EventSynchronize(b));
    float ms = -1.0f;
    H20_ASSERT_OK(h20EventElapsedTime(&ms, a, b));
    ASSERT_GE(ms, 0.0f) << "iteration " << i;
  }
  H20_EXPECT_OK(h20EventDestroy(a));
  H20_EXPECT_OK(h20EventDestroy(b));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventElapsedTime, NeverRecordedEventReturnsInvalidResourceHandle) {
  h20Event_t recorded = NewEvent(), never = NewEvent();
  H20_ASSERT_OK(h20EventRecord(recorded, nullptr));
  H20_ASSERT_OK(h20EventSynchronize(recorded));
  float ms = 0.0f;
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventElapsedTime(&ms, recorded, never));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventElapsedTime(&ms, never, recorded));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_EXPECT_OK(h20EventDestroy(recorded));
  H20_EXPECT_OK(h20EventDestroy(never));
}

TEST_F(EventElapsedTime, DisabledTimingReturnsInvalidResourceHandle) {
  h20Event_t timed = NewEvent(), untimed = NewEvent(h20EventDisableTiming);
  H20_ASSERT_OK(h20EventRecord(timed, nullptr));
  H20_ASSERT_OK(h20EventRecord(untimed, nullptr));
  H20_ASSERT_OK(h20EventSynchronize(untimed));
  H20_ASSERT_OK(h20EventSynchronize(timed));
  float ms = 0.0f;
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventElapsedTime(&ms, timed, untimed));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventElapsedTime(&ms, untimed, timed));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_EXPECT_OK(h20EventDestroy(timed));
  H20_EXPECT_OK(h20EventDestroy(untimed));
}

TEST_F(EventElapsedTime, NotYetCompletedEventReturnsNotReady) {
  h20Stream_t s = NewStream();
  h20Event_t start = NewEvent(), stop = NewEvent();
  H20_ASSERT_OK(h20EventRecord(start, s));
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(stop, s));
  float ms = 0.0f;
  EXPECT_EQ(h20ErrorNotReady, h20EventElapsedTime(&ms, start, stop));
  EXPECT_EQ(h20ErrorNotReady, h20EventElapsedTime(&ms, stop, start));
  EXPECT_EQ(h20Success, h20PeekAtLastError()) << "NotReady must not be stored as last error";
  gate.Open();
  H20_ASSERT_OK(h20EventSynchronize(stop));
  H20_EXPECT_OK(h20EventElapsedTime(&ms, start, stop));
  EXPECT_GE(ms, 0.0f);
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20EventDestroy(start));
  H20_EXPECT_OK(h20EventDestroy(stop));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventElapsedTime, NullOutPointerReturnsInvalidValue) {
  h20Event_t a = NewEvent(), b = NewEvent();
  H20_ASSERT_OK(h20EventRecord(a, nullptr));
  H20_ASSERT_OK(h20EventRecord(b, nullptr));
  H20_ASSERT_OK(h20EventSynchronize(b));
  EXPECT_EQ(h20ErrorInvalidValue, h20EventElapsedTime(nullptr, a, b));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  H20_EXPECT_OK(h20EventDestroy(a));
  H20_EXPECT_OK(h20EventDestroy(b));
}

TEST_F(EventDestroy, WithPendingCaptureSucceedsAndTheWorkCompletes) {
  h20Stream_t s = NewStream();
  h20Event_t e = NewEvent();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(e, s));
  std::atomic<int> after{0};
  H20_ASSERT_OK(h20LaunchHostFunc(s, h20test::SetFlagHostFn, &after));
  H20_ASSERT_OK(h20EventDestroy(e));
  EXPECT_FALSE(gate.Finished()) << "h20EventDestroy waited for the capture";
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(1, after.load());
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

// Events whose markers are still pending when they are destroyed, some re-recorded several times
// first (so that they hold more than one block of timestamp slots): the markers still run and
// write into memory that is still theirs (AddressSanitizer checks it), and later events work.
TEST_F(EventDestroy, ManyEventsWithPendingMarkersAreDestroyedSafely) {
  h20Stream_t s = NewStream();
  BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  for (int i = 0; i < 24; ++i) {
    h20Event_t e = NewEvent(i % 3 == 0 ? h20EventDisableTiming : h20EventDefault);
    for (int r = 0; r <= i % 7; ++r)
      H20_ASSERT_OK(h20EventRecord(e, s));
    EXPECT_EQ(h20ErrorNotReady, h20EventQuery(e));
    H20_ASSERT_OK(h20EventDestroy(e));
  }
  gate.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  h20Event_t later = NewEvent();
  H20_ASSERT_OK(h20EventRecord(later, s));
  H20_ASSERT_OK(h20EventSynchronize(later));
  H20_EXPECT_OK(h20EventQuery(later));
  H20_EXPECT_OK(h20EventDestroy(later));
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(EventDestroy, DestroyedHandleIsRejectedByEveryCall) {
  h20Event_t e = NewEvent(), other = NewEvent();
  H20_ASSERT_OK(h20EventRecord(other, nullptr));
  H20_ASSERT_OK(h20EventSynchronize(other));
  H20_ASSERT_OK(h20EventDestroy(e));
  float ms = 0.0f;
  const h20Error_t ih = h20ErrorInvalidResourceHandle;
  EXPECT_EQ(ih, h20EventQuery(e));
  EXPECT_EQ(ih, h20EventSynchronize(e));
  EXPECT_EQ(ih, h20EventRecord(e, nullptr));
  EXPECT_EQ(ih, h20EventElapsedTime(&ms, e, other));
  EXPECT_EQ(ih, h20EventElapsedTime(&ms, other, e));
  EXPECT_EQ(ih, h20StreamWaitEvent(nullptr, e, 0));
  EXPECT_EQ(ih, h20EventDestroy(e));
  EXPECT_EQ(ih, h20GetLastError());
  H20_EXPECT_OK(h20EventDestroy(other));
}

}  // namespace
