// spin_lock.hpp - short locks for the submission path, cheaper than the pthread ones.
//
// SpinLock: an exclusive lock whose unlock is a plain release store (pthread_mutex_unlock is an
// atomic exchange: a full barrier that waits for every earlier store to reach the cache, which on
// a submission path means waiting for lines the consumer holds). ReadMostlyLock: a reader-writer
// lock for tables read on every call and written rarely: a read lock is one atomic add and one
// atomic subtract (pthread_rwlock does several times the work), and a writer that is waiting keeps
// new readers out, so that it is not starved.
//
// Both are for critical sections of a few dozen instructions. A thread that cannot get the lock
// pauses for a while and then yields its core on every try, so that a holder that was preempted
// gets to run.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace h20::base {

inline void spinPause(int& tries) {
  if (++tries < 64) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  } else {
    std::this_thread::yield();
  }
}

class SpinLock {
 public:
  void lock() noexcept {
    int tries = 0;
    while (locked_.exchange(true, std::memory_order_acquire))
      while (locked_.load(std::memory_order_relaxed))
        spinPause(tries);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

class ReadMostlyLock {
 public:
  void lock_shared() noexcept {
    int tries = 0;
    for (;;) {
      if ((state_.fetch_add(kReader, std::memory_order_acquire) & kWriter) == 0) return;
      state_.fetch_sub(kReader, std::memory_order_relaxed);
      while (state_.load(std::memory_order_relaxed) & kWriter)
        spinPause(tries);
    }
  }
  void unlock_shared() noexcept { state_.fetch_sub(kReader, std::memory_order_release); }

  void lock() noexcept {
    int tries = 0;
    // One writer at a time claims the writer bit (new readers then back off), then waits for the
    // readers already in to leave.
    while (state_.fetch_or(kWriter, std::memory_order_acquire) & kWriter)
      while (state_.load(std::memory_order_relaxed) & kWriter)
        spinPause(tries);
    while (state_.load(std::memory_order_acquire) != kWriter)
      spinPause(tries);
  }
  void unlock() noexcept { state_.fetch_and(~kWriter, std::memory_order_release); }

 private:
  static constexpr std::uint32_t kWriter = 1;
  static constexpr std::uint32_t kReader = 2;
  std::atomic<std::uint32_t> state_{0};
};

}  // namespace h20::base
