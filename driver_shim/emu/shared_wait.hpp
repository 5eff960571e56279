// shared_wait.hpp - completing and waiting for interprocess events (driver::SharedEventState),
// whose words live in memory shared between processes: futex calls without FUTEX_PRIVATE_FLAG, so
// that a completion in one process wakes sleepers in another.
#pragma once

#include "driver.hpp"

#include <chrono>

struct timespec;

namespace h20::emu {

long futex(const std::atomic<std::uint32_t>* word, int op, std::uint32_t value,
           const struct timespec* timeout);

// True once record `value` has completed (acquire: the recorded work's writes are visible).
inline bool sharedDone(const driver::SharedEventState& state, std::uint64_t value) {
  return state.completed.load(std::memory_order_acquire) >= value;
}

// Blocks until record `value` has completed, spinning first when spinFirst, then sleeping on the
// futex. Returns false when `timeout` passed first.
bool waitShared(const driver::SharedEventState& state, std::uint64_t value, bool spinFirst,
                std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max());

}  // namespace h20::emu
