// h20_test.hpp - shared helpers for the GoogleTest suites that exercise the public C API.
//
// Owns: printing of h20Error_t in assertion messages, the H20_ASSERT_OK/H20_EXPECT_OK macros,
// bounded polling (WaitUntil), the "busy kernel" gate that keeps a stream deterministically busy
// until the test opens it, small kernels used by many tests, and helpers that check error messages
// (pointer values named in them). It does not own child processes (child_process.hpp) or any
// runtime state: every helper goes through the public API only.
#pragma once

#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

// gtest prints h20Error_t values by name (found by ADL: h20Error lives in the global namespace).
inline void PrintTo(h20Error e, std::ostream* os) {
  *os << h20GetErrorName(e) << " (" << static_cast<int>(e) << ")";
}

// Asserts that an h20 call succeeded; on failure prints the runtime's detailed message.
#define H20_ASSERT_OK(expr)                                                             \
  do {                                                                                  \
    const h20Error_t h20_assert_rc_ = (expr);                                           \
    ASSERT_EQ(h20Success, h20_assert_rc_) << #expr << ": " << h20GetLastErrorMessage(); \
  } while (0)
#define H20_EXPECT_OK(expr)                                                             \
  do {                                                                                  \
    const h20Error_t h20_expect_rc_ = (expr);                                           \
    EXPECT_EQ(h20Success, h20_expect_rc_) << #expr << ": " << h20GetLastErrorMessage(); \
  } while (0)

// Skips a test that checks the embedded emulator itself (its environment variables, its
// in-process configuration) when the suite runs against the device daemon, saying why.
#define H20_SKIP_UNLESS_EMBEDDED(why)                                                \
  do {                                                                               \
    if (h20test::DaemonBackend()) GTEST_SKIP() << "embedded emulator only: " << why; \
  } while (0)

namespace h20test {

using namespace std::chrono_literals;

// Upper bound for every wait in the tests. It only matters when the runtime is wrong (a test
// would otherwise hang); correct runtimes finish far sooner, so no test depends on it.
inline constexpr std::chrono::milliseconds kWaitBound = 20s;

// Polls `pred` until it is true or `bound` has passed; returns the last value of pred.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds bound = kWaitBound);

// Gives a wrong runtime a chance to show itself: polls `pred` for `window` and returns true as soon
// as it becomes true. Correct runtimes keep pred false, so this just waits out the window; no test
// asserts how long anything took.
bool BecomesTrueWithin(const std::function<bool()>& pred, std::chrono::milliseconds window);

// True when the tests run against the device daemon (H20_DRIVER=daemon), false for the embedded
// emulator.
bool DaemonBackend();

// Device memory is handed out in blocks of this many bytes: 256 in-process, the page size with
// the daemon (each allocation is a shared-memory object mapped by page).
std::size_t AllocationGranule();

// Bytes of `device`'s memory this process holds (h20DeviceGetMemoryUsed; 0 when it fails). Tests
// of this process's accounting use it rather than h20MemGetInfo, whose free bytes move with other
// processes under the device daemon.
std::size_t UsedBytes(int device);

// Number of visible devices (0 when the runtime reports an error).
int DeviceCount();

// Properties of `device`; fails the current test when the call fails.
h20DeviceProp Props(int device);

// Host worker threads of the emulator (h20DeviceProp::hostWorkerThreads of device 0).
int WorkerThreads();

// True when `message` names `ptr`: its address in hexadecimal (case-insensitive, with or without
// 0x, no zero padding) appears in the message.
bool MessageNamesPointer(const std::string& message, const void* ptr);

// A gate that keeps a stream busy: Launch() enqueues a one-block kernel that spins until Open()
// (or until its own bound passes, which marks timedOut). The state lives on the heap and is
// intentionally leaked if the kernel never finished by destruction, so a failed test can never
// make the kernel touch freed memory.
class BusyGate {
 public:
  explicit BusyGate(std::chrono::milliseconds bound = kWaitBound);
  ~BusyGate();
  BusyGate(const BusyGate&) = delete;
  BusyGate& operator=(const BusyGate&) = delete;

  // Enqueues the busy kernel on `stream` (current device must be the stream's device).
  h20Error_t Launch(h20Stream_t stream);
  void Open();
  bool Started() const;
  bool Finished() const;
  // True when the kernel gave up waiting: the runtime made the test deadlock.
  bool TimedOut() const;
  // Waits (bounded) until the kernel is running.
  bool WaitStarted() const;
  // Waits (bounded) until the kernel has returned.
  bool WaitFinished() const;
  // Sequence number taken from the shared counter when the kernel finished (see Sequencer).
  std::int64_t FinishSeq() const;
  // Use `counter` to stamp FinishSeq (optional).
  void StampWith(std::atomic<std::int64_t>* counter);

  struct State;

 private:
  State* state_;
  bool launched_ = false;
};

// Records the order in which asynchronous operations ran: each call to Next() returns a strictly
// increasing number.
struct Sequencer {
  std::atomic<std::int64_t> counter{0};
  std::int64_t Next() { return counter.fetch_add(1) + 1; }
};

// A host function that stores Next() of a Sequencer into a slot.
struct SeqSlot {
  Sequencer* seq = nullptr;
  std::atomic<std::int64_t> value{0};
};
void StampHostFn(void* seqSlot);  // h20HostFn_t over SeqSlot*

// A host function that opens a BusyGate (passed as userData).
void OpenGateHostFn(void* gate);

// A host function that sets an std::atomic<int> (passed as userData) to 1.
void SetFlagHostFn(void* flag);

// Kernel: adds `delta` to every int in [data, data + count) (blocks split the range).
struct AddArgs {
  int* data;
  std::size_t count;
  int delta;
};
void AddKernel(const h20KernelContext* ctx, const void* args);
// Enqueues AddKernel on `stream` with 4 blocks.
h20Error_t LaunchAdd(int* data, std::size_t count, int delta, h20Stream_t stream);

// Kernel that reports a fault with `message` from block `faultBlock` (linear index).
struct FaultArgs {
  unsigned faultBlock;
  h20Error_t code;
  char message[64];
};
void FaultKernel(const h20KernelContext* ctx, const void* args);

// Fixture base for C API tests: starts each test on device 0 with a clean last error, and after
// the test resets every device that the test marked with UseDevice (so faults, streams and
// allocations never leak into the next test of the same process).
class CApiTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Marks `device` to be reset in TearDown.
  void ResetAfter(int device) { resetMask_ |= (1u << device); }

 private:
  unsigned resetMask_ = 0;
};

}  // namespace h20test

// Skips the current test unless the emulator has at least `n` host worker threads: tests in which
// a busy kernel holds one worker while other work must make progress need a second one
// (H20_EMU_WORKERS=1 would make them wait out their bound and fail).
#define H20_REQUIRE_WORKERS(n)                                                                   \
  do {                                                                                           \
    if (::h20test::WorkerThreads() < (n))                                                        \
      GTEST_SKIP() << "needs " << (n) << " worker threads, have " << ::h20test::WorkerThreads(); \
  } while (0)

// Skips the current test unless at least `n` devices are visible.
#define H20_REQUIRE_DEVICES(n)                                                          \
  do {                                                                                  \
    if (::h20test::DeviceCount() < (n))                                                 \
      GTEST_SKIP() << "needs " << (n) << " devices, have " << ::h20test::DeviceCount(); \
  } while (0)
