// shared_wait.cpp - futex-based completion of interprocess events (see shared_wait.hpp).
#include "emu/shared_wait.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>
#include <thread>

namespace h20::emu {

long futex(const std::atomic<std::uint32_t>* word, int op, std::uint32_t value,
           const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), op, value, timeout,
                 nullptr, 0);
}

}  // namespace h20::emu

namespace h20::driver {

void beginSharedRecord(SharedEventState& state, std::uint64_t record, std::uint64_t recorder) {
  SharedEventState::Slot& slot = state.slot(record);
  slot.state.store(SharedEventState::kPending, std::memory_order_relaxed);
  slot.recorder.store(recorder, std::memory_order_relaxed);
  slot.record.store(record, std::memory_order_release);
}

void finishSharedRecord(SharedEventState& state, std::uint64_t record, bool failed) {
  SharedEventState::Slot& slot = state.slot(record);
  std::uint32_t pending = SharedEventState::kPending;
  if (slot.record.load(std::memory_order_acquire) == record)
    slot.state.compare_exchange_strong(pending,
                                       failed ? SharedEventState::kFailed : SharedEventState::kDone,
                                       std::memory_order_acq_rel);
  // Advance over every record that has finished, in order: a record that finishes before an
  // earlier one leaves the advance to the earlier one's finish.
  std::uint64_t done = state.completed.load(std::memory_order_acquire);
  for (;;) {
    const SharedEventState::Slot& next = state.slot(done + 1);
    if (done + 1 > state.recorded.load(std::memory_order_acquire) ||
        next.record.load(std::memory_order_acquire) != done + 1 ||
        next.state.load(std::memory_order_acquire) < SharedEventState::kDone)
      break;
    if (state.completed.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) ++done;
  }
  state.wake.fetch_add(1, std::memory_order_seq_cst);
  // A sleeper registers before its last look at `completed` (seq_cst on both sides): it either
  // sees the new value or is counted here.
  if (state.sleepers.load(std::memory_order_seq_cst) > 0)
    emu::futex(&state.wake, FUTEX_WAKE, INT_MAX, nullptr);
}

}  // namespace h20::driver

namespace h20::emu {

bool waitShared(const driver::SharedEventState& state, std::uint64_t value, bool spinFirst,
                std::chrono::nanoseconds timeout) {
  using Clock = std::chrono::steady_clock;
  if (sharedDone(state, value)) return true;
  const auto start = Clock::now();
  const auto deadline =
      timeout == std::chrono::nanoseconds::max() ? Clock::time_point::max() : start + timeout;
  if (spinFirst) {
    // As for queue waits: a short spin catches completions that are about to happen.
    const auto spinUntil = start + std::chrono::microseconds(50);
    while (Clock::now() < std::min(spinUntil, deadline)) {
      if (sharedDone(state, value)) return true;
      std::this_thread::yield();
    }
  }
  auto& s = const_cast<driver::SharedEventState&>(state);
  for (;;) {
    const std::uint32_t ticket = s.wake.load(std::memory_order_seq_cst);
    s.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (sharedDone(state, value)) {
      s.sleepers.fetch_sub(1);
      return true;
    }
    // Bounded sleeps: a completion by a process that exits between its store and its wake, or a
    // sleeper count left behind by a killed process, costs at most this much latency.
    auto now = Clock::now();
    if (now >= deadline) {
      s.sleepers.fetch_sub(1);
      return false;
    }
    const auto slice = std::min<Clock::duration>(std::chrono::milliseconds(10), deadline - now);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(slice).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    futex(&s.wake, FUTEX_WAIT, ticket, &ts);
    s.sleepers.fetch_sub(1, std::memory_order_seq_cst);
    if (sharedDone(state, value)) return true;
  }
}

}  // namespace h20::emu
