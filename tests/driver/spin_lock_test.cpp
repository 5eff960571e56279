// spin_lock_test.cpp - the short locks of common/h20_base/spin_lock.hpp: SpinLock excludes, and
// ReadMostlyLock lets readers share while a writer excludes everyone (readers never see a write
// half done) and a waiting writer gets in while readers keep coming.
#include <h20_base/spin_lock.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

namespace {

TEST(SpinLock, ExcludesOtherThreads) {
  h20::base::SpinLock lock;
  long counter = 0;  // unprotected but for the lock: a lost update shows a broken lock
  std::atomic<int> inside{0}, overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        std::lock_guard<h20::base::SpinLock> guard(lock);
        if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counter;
        inside.fetch_sub(1);
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(counter, 4 * 20000);
  EXPECT_EQ(overlaps.load(), 0);
}

TEST(ReadMostlyLock, ReadersNeverSeeAWriteHalfDone) {
  h20::base::ReadMostlyLock lock;
  long a = 0, b = 0;  // a writer keeps them equal; a reader seeing them differ saw a half write
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0}, reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      while (!stop.load()) {
        std::shared_lock<h20::base::ReadMostlyLock> guard(lock);
        if (a != b) torn.fetch_add(1);
        reads.fetch_add(1);
      }
    });
  // The writer gets in however busy the readers keep the lock; it goes on until the readers have
  // read a while alongside it (bounded, should they never get to run).
  long writes = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((writes < 5000 || reads.load() < 5000) && std::chrono::steady_clock::now() < deadline) {
    std::unique_lock<h20::base::ReadMostlyLock> guard(lock);
    ++a;
    ++b;
    ++writes;
  }
  stop.store(true);
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(a, writes);
  EXPECT_GE(reads.load(), 5000);
}

TEST(ReadMostlyLock, ReadersShareTheLock) {
  h20::base::ReadMostlyLock lock;
  std::shared_lock<h20::base::ReadMostlyLock> first(lock);
  std::atomic<bool> secondIn{false};
  // A second reader gets in while the first holds the lock (a lock that excluded readers would
  // keep it out forever here).
  std::thread t([&] {
    std::shared_lock<h20::base::ReadMostlyLock> second(lock);
    secondIn.store(true);
  });
  t.join();
  EXPECT_TRUE(secondIn.load());
}

TEST(ReadMostlyLock, WritersExcludeEachOther) {
  h20::base::ReadMostlyLock lock;
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        std::unique_lock<h20::base::ReadMostlyLock> guard(lock);
        ++counter;
      }
    });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(counter, 3 * 20000);
}

}  // namespace
