// hostfn_test.cpp - host functions (h20LaunchHostFunc): they run after the stream's prior work and
// before its later work, in enqueue order, on the legacy, per-thread and created streams; calls to
// the runtime from inside one return h20ErrorNotPermitted, except the error-query functions; bad
// arguments are rejected.
#include "h20_test.hpp"

#include <atomic>
#include <cstring>
#include <vector>

namespace {

using h20test::BusyGate;
using h20test::SeqSlot;
using h20test::Sequencer;
using h20test::StampHostFn;
using HostFunc = h20test::CApiTest;

TEST_F(HostFunc, RunsAfterPriorWorkAndBeforeLaterWork) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  Sequencer seq;
  BusyGate before, after;
  before.StampWith(&seq.counter);
  after.StampWith(&seq.counter);
  H20_ASSERT_OK(before.Launch(s));
  SeqSlot slot{&seq};
  H20_ASSERT_OK(h20LaunchHostFunc(s, StampHostFn, &slot));
  after.Open();  // the second gate is open from the start: it runs as soon as it is reached
  H20_ASSERT_OK(after.Launch(s));
  EXPECT_EQ(0, slot.value.load());
  before.Open();
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(1, before.FinishSeq());
  EXPECT_EQ(2, slot.value.load());
  EXPECT_EQ(3, after.FinishSeq());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(HostFunc, ManyRunExactlyOnceInEnqueueOrder) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  Sequencer seq;
  std::vector<SeqSlot> slots(1000);
  for (auto& slot : slots) {
    slot.seq = &seq;
    H20_ASSERT_OK(h20LaunchHostFunc(s, StampHostFn, &slot));
  }
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(static_cast<int64_t>(slots.size()), seq.counter.load());
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_EQ(static_cast<int64_t>(i + 1), slots[i].value.load()) << "host function " << i;
  }
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(HostFunc, RunsOnLegacyAndPerThreadStreams) {
  std::atomic<int> a{0}, b{0};
  H20_ASSERT_OK(h20LaunchHostFunc(nullptr, h20test::SetFlagHostFn, &a));
  H20_ASSERT_OK(h20LaunchHostFunc(h20StreamPerThread, h20test::SetFlagHostFn, &b));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(h20StreamPerThread));
  EXPECT_EQ(1, a.load());
  EXPECT_EQ(1, b.load());
}

// What a host function observed when it called into the runtime.
struct Inside {
  h20Error_t malloc = h20Success;
  h20Error_t streamSync = h20Success;
  h20Error_t deviceSync = h20Success;
  h20Error_t launch = h20Success;
  h20Error_t hostFunc = h20Success;
  h20Error_t eventRecord = h20Success;
  h20Error_t setDevice = h20Success;
  h20Error_t memcpy = h20Success;
  h20Error_t lastError = h20Success;
  h20Error_t peekAfterGet = h20ErrorUnknown;
  bool nameWorks = false;
  bool messageNotNull = false;
  h20Stream_t stream = nullptr;
  h20Event_t event = nullptr;
  std::atomic<int> unexpectedRun{0};
  void* mallocResult = reinterpret_cast<void*>(0x1);
  std::atomic<int> done{0};
};

void CallRuntimeHostFn(void* p) {
  auto* in = static_cast<Inside*>(p);
  void* ptr = nullptr;
  in->malloc = h20Malloc(&ptr, 1024);
  in->mallocResult = ptr;
  in->streamSync = h20StreamSynchronize(in->stream);
  in->deviceSync = h20DeviceSynchronize();
  in->launch = h20test::LaunchAdd(nullptr, 0, 0, in->stream);
  in->hostFunc = h20LaunchHostFunc(in->stream, h20test::SetFlagHostFn, &in->unexpectedRun);
  in->eventRecord = h20EventRecord(in->event, in->stream);
  in->setDevice = h20SetDevice(0);
  int x = 0, y = 0;
  in->memcpy = h20Memcpy(&x, &y, sizeof x, h20MemcpyHostToHost);
  // The error-query functions are allowed.
  in->lastError = h20GetLastError();
  in->peekAfterGet = h20PeekAtLastError();
  in->nameWorks = std::strcmp(h20GetErrorName(h20ErrorNotPermitted), "h20ErrorNotPermitted") == 0;
  in->messageNotNull = h20GetLastErrorMessage() != nullptr;
  in->done.store(1);
}

void RefusedCallHostFn(void* p) {
  void* ptr = nullptr;
  *static_cast<h20Error_t*>(p) = h20Malloc(&ptr, 64);  // refused, and not cleared here
}

TEST_F(HostFunc, ErrorsInsideDoNotBecomeTheWaitingCallersLastError) {
  // A thread that waits for a stream may run the stream's ready work itself: what that work's
  // calls record stays apart from the caller's last error.
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  EXPECT_EQ(h20ErrorInvalidValue, h20Malloc(nullptr, 64));  // the caller's own last error
  for (int i = 0; i < 50; ++i) {
    h20Error_t inside = h20Success;
    H20_ASSERT_OK(h20LaunchHostFunc(s, RefusedCallHostFn, &inside));
    H20_ASSERT_OK(h20StreamSynchronize(s));
    EXPECT_EQ(h20ErrorNotPermitted, inside);
    EXPECT_EQ(h20ErrorInvalidValue, h20PeekAtLastError()) << "round " << i;
  }
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_EQ(h20Success, h20GetLastError());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(HostFunc, RuntimeCallsInsideReturnNotPermitted) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  Inside in;
  in.stream = s;
  H20_ASSERT_OK(h20EventCreate(&in.event));
  H20_ASSERT_OK(h20LaunchHostFunc(s, CallRuntimeHostFn, &in));
  H20_ASSERT_OK(h20StreamSynchronize(s));
  ASSERT_EQ(1, in.done.load());
  EXPECT_EQ(h20ErrorNotPermitted, in.malloc);
  EXPECT_EQ(nullptr, in.mallocResult);
  EXPECT_EQ(h20ErrorNotPermitted, in.streamSync);
  EXPECT_EQ(h20ErrorNotPermitted, in.deviceSync);
  EXPECT_EQ(h20ErrorNotPermitted, in.launch);
  EXPECT_EQ(h20ErrorNotPermitted, in.hostFunc);
  EXPECT_EQ(h20ErrorNotPermitted, in.eventRecord);
  EXPECT_EQ(h20ErrorNotPermitted, in.setDevice);
  EXPECT_EQ(h20ErrorNotPermitted, in.memcpy);
  EXPECT_EQ(h20ErrorNotPermitted, in.lastError);
  EXPECT_EQ(h20Success, in.peekAfterGet);
  EXPECT_TRUE(in.nameWorks);
  EXPECT_TRUE(in.messageNotNull);
  H20_ASSERT_OK(h20StreamSynchronize(s));
  EXPECT_EQ(0, in.unexpectedRun.load());
  H20_EXPECT_OK(h20EventDestroy(in.event));
  // The refusals inside did not fault the stream or the device.
  H20_EXPECT_OK(h20StreamQuery(s));
  H20_EXPECT_OK(h20DeviceSynchronize());
  EXPECT_EQ(h20Success, h20PeekAtLastError());
  H20_EXPECT_OK(h20StreamDestroy(s));
}

TEST_F(HostFunc, NullFunctionReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20LaunchHostFunc(nullptr, nullptr, nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

TEST_F(HostFunc, DestroyedStreamReturnsInvalidResourceHandle) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20StreamDestroy(s));
  std::atomic<int> flag{0};
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20LaunchHostFunc(s, h20test::SetFlagHostFn, &flag));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20GetLastError());
  H20_ASSERT_OK(h20DeviceSynchronize());
  EXPECT_EQ(0, flag.load());
}

}  // namespace
