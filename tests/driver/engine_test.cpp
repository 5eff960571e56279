// engine_test.cpp - queue semantics of the emulator's engine through the Driver interface:
// in-order execution, cross-queue waits, parallel kernel blocks, priorities, concurrency, fault
// containment and destruction with pending work.
#include "emu/engine.hpp"
#include "driver.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

using namespace h20::driver;

namespace {

std::unique_ptr<Driver> make(int chips, int workers) {
  EmuConfig c;
  c.chips = chips;
  c.backingBudgetBytes = 1u << 30;
  c.workerThreads = workers;
  Status s;
  auto d = createEmulator(c, &s);
  EXPECT_TRUE(s.ok()) << s.message;
  return d;
}

HostCommand host(std::function<void()> fn) {
  return HostCommand{std::move(fn)};
}

// Blocks an engine worker until released (bounded, so a broken engine fails instead of hanging).
struct Gate {
  std::atomic<bool> open{false};
  // True if the gate was opened before the bound ran out.
  bool wait() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!open.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    return open.load();
  }
};

}  // namespace

TEST(Engine, CommandsOfOneQueueRunInSubmissionOrder) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  std::vector<int> order;
  std::mutex mu;
  Seq last = 0;
  for (int i = 0; i < 200; ++i)
    last = d->submit(q, host([&, i] {
                       std::lock_guard<std::mutex> lock(mu);
                       order.push_back(i);
                     }));
  EXPECT_EQ(last, 200u);
  d->wait(q, last, true);
  EXPECT_EQ(d->completed(q), 200u);
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  d->destroyQueue(q);
}

TEST(Engine, WaitCommandHoldsQueueUntilOtherQueueCompletes) {
  auto d = make(1, 2);
  const QueueId a = d->createQueue(0, 0), b = d->createQueue(0, 0);
  Gate gate;
  std::atomic<int> step{0};
  const Seq aSeq = d->submit(a, host([&] {
                               gate.wait();
                               step.store(1);
                             }));
  d->submit(b, WaitCommand{a, aSeq});
  int seenByB = -1;
  const Seq bSeq = d->submit(b, host([&] { seenByB = step.load(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(d->completed(b), bSeq);  // parked behind a
  gate.open.store(true);
  d->wait(b, bSeq, false);
  EXPECT_EQ(seenByB, 1);
}

TEST(Engine, KernelRunsEveryBlockExactlyOnceWithItsIndex) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  constexpr unsigned gx = 37, gy = 5, gz = 3;
  static std::atomic<int> hits[gx * gy * gz];
  for (auto& h : hits)
    h.store(0);
  KernelCommand k;
  k.grid = {gx, gy, gz};
  k.block = {64, 1, 1};
  k.fn = [](const h20KernelContext* ctx, const void*) {
    const unsigned i = ctx->blockIdx.x + gx * (ctx->blockIdx.y + gy * ctx->blockIdx.z);
    hits[i].fetch_add(1);
  };
  d->wait(q, d->submit(q, std::move(k)), true);
  for (auto& h : hits)
    EXPECT_EQ(h.load(), 1);
}

TEST(Engine, KernelArgumentsAndSharedMemoryReachEachBlock) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  static std::atomic<int> bad{0};
  bad = 0;
  KernelCommand k;
  k.grid = {64, 1, 1};
  k.sharedMemBytes = 1000;
  const int magic = 0x1234;
  k.args.assign(reinterpret_cast<const unsigned char*>(&magic),
                reinterpret_cast<const unsigned char*>(&magic) + sizeof magic);
  k.fn = [](const h20KernelContext* ctx, const void* args) {
    if (*static_cast<const int*>(args) != 0x1234 || !ctx->sharedMem ||
        reinterpret_cast<std::uintptr_t>(ctx->sharedMem) % 64 != 0 || ctx->sharedMemBytes != 1000)
      bad.fetch_add(1);
    std::memset(ctx->sharedMem, 1, ctx->sharedMemBytes);
  };
  d->wait(q, d->submit(q, std::move(k)), true);
  EXPECT_EQ(bad.load(), 0);
}

TEST(Engine, IndependentQueuesRunConcurrently) {
  auto d = make(2, 2);
  const QueueId a = d->createQueue(0, 0), b = d->createQueue(1, 0);
  // Each host function waits for the other to start: only concurrent execution completes both.
  std::atomic<int> arrived{0};
  std::atomic<int> met{0};
  auto rendezvous = [&] {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    if (arrived.load() == 2) met.fetch_add(1);
  };
  const Seq sa = d->submit(a, host(rendezvous)), sb = d->submit(b, host(rendezvous));
  d->wait(a, sa, false);
  d->wait(b, sb, false);
  EXPECT_EQ(met.load(), 2);
}

TEST(Engine, HigherPriorityQueueIsServedFirst) {
  auto d = make(1, 1);
  const QueueId blocker = d->createQueue(0, 0);
  const QueueId low = d->createQueue(0, 0), high = d->createQueue(0, -5);
  Gate gate;
  d->submit(blocker, host([&] { gate.wait(); }));
  std::vector<char> order;
  std::mutex mu;
  const Seq sl = d->submit(low, host([&] {
                             std::lock_guard<std::mutex> l(mu);
                             order.push_back('l');
                           }));
  const Seq sh = d->submit(high, host([&] {
                             std::lock_guard<std::mutex> l(mu);
                             order.push_back('h');
                           }));
  gate.open.store(true);
  d->wait(low, sl, false);
  d->wait(high, sh, false);
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], 'h');
}

TEST(Engine, KernelFaultSkipsLaterWorkOnThatChipOnlyUntilReset) {
  auto d = make(2, 2);
  const QueueId q0 = d->createQueue(0, 0), q1 = d->createQueue(1, 0);
  KernelCommand k;
  k.grid = {8, 1, 1};
  k.launchId = 42;
  k.fn = [](const h20KernelContext* ctx, const void*) {
    if (ctx->blockIdx.x == 3)
      static_cast<KernelFaultSink*>(ctx->internal)
          ->report(h20ErrorIllegalAddress, "block 3 went astray");
  };
  d->submit(q0, std::move(k));
  std::atomic<bool> ranOnFaulted{false}, ranOnHealthy{false};
  const Seq s0 = d->submit(q0, host([&] { ranOnFaulted = true; }));
  const Seq s1 = d->submit(q1, host([&] { ranOnHealthy = true; }));
  d->wait(q0, s0, true);
  d->wait(q1, s1, true);
  EXPECT_FALSE(ranOnFaulted.load());
  EXPECT_TRUE(ranOnHealthy.load());
  auto fault = d->fault(0);
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->code, h20ErrorIllegalAddress);
  EXPECT_NE(fault->message.find("launch #42"), std::string::npos) << fault->message;
  EXPECT_NE(fault->message.find("block 3 went astray"), std::string::npos) << fault->message;
  EXPECT_FALSE(d->fault(1).has_value());
  d->resetChip(0);
  EXPECT_FALSE(d->fault(0).has_value());
  const Seq again = d->submit(q0, host([&] { ranOnFaulted = true; }));
  d->wait(q0, again, true);
  EXPECT_TRUE(ranOnFaulted.load());
}

TEST(Engine, DestroyedQueueStillCompletesPendingWork) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  Gate gate;
  std::atomic<int> ran{0};
  d->submit(q, host([&] { gate.wait(); }));
  const Seq last = d->submit(q, host([&] { ran.fetch_add(1); }));
  d->destroyQueue(q);
  gate.open.store(true);
  d->wait(q, last, true);  // waiting on a drained, removed queue returns
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ran.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(ran.load(), 1);
}

TEST(Engine, ManyThreadsSubmittingToOneQueueLoseNothing) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  std::atomic<int> count{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        d->submit(q, host([&] { count.fetch_add(1); }));
    });
  for (auto& t : threads)
    t.join();
  d->wait(q, d->submitted(q), true);
  EXPECT_EQ(count.load(), 8 * 500);
}

TEST(Engine, WorkSubmittedWhileTheOnlyAwakeWorkerIsBusyStillRuns) {
  // Two workers: one is kept busy by a host function; work submitted to another queue right after
  // must be run by the other worker (woken, not left asleep behind the busy one).
  auto d = make(1, 2);
  for (int round = 0; round < 200; ++round) {
    const QueueId a = d->createQueue(0, 0), b = d->createQueue(0, 0);
    Gate gate;
    std::atomic<bool> openedInTime{false};
    const Seq sa = d->submit(a, host([&] { openedInTime = gate.wait(); }));
    d->submit(b, host([&] { gate.open.store(true); }));
    d->wait(a, sa, false);
    EXPECT_TRUE(openedInTime.load()) << "round " << round;
    d->destroyQueue(a);
    d->destroyQueue(b);
    if (::testing::Test::HasFailure()) break;
  }
}

namespace {
class NoFaults final : public h20::emu::FaultRegistry {
 public:
  bool faulted(int) const override { return false; }
  void raise(int, Fault) override {}
};
}  // namespace

TEST(Engine, QueuesAreServedByTheWorkersOfTheirNumaNode) {
  NoFaults faults;
  h20::emu::Engine engine({{1, {}}, {1, {}}}, &faults);
  EXPECT_EQ(engine.workers(), 2);
  EXPECT_EQ(engine.workersOfNode(1), 1);
  for (int node : {0, 1, 1, 0}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // both workers idle and asleep
    const QueueId q = engine.createQueue(node, 0, node);
    static std::atomic<int> worker;
    worker = -1;
    KernelCommand k;
    k.fn = [](const h20KernelContext* ctx, const void*) { worker = ctx->workerIndex; };
    engine.wait(q, engine.submit(q, std::move(k)), true);
    EXPECT_EQ(worker.load(), node) << "queue of node " << node;
    engine.destroyQueue(q);
  }
}

TEST(Engine, BusyNodeLetsAnIdleNodeStealItsWork) {
  NoFaults faults;
  h20::emu::Engine engine({{1, {}}, {1, {}}}, &faults);
  const QueueId blocker = engine.createQueue(0, 0, 0), q = engine.createQueue(0, 0, 0);
  Gate gate;
  std::atomic<bool> openedInTime{false};
  const Seq sb = engine.submit(blocker, host([&] { openedInTime = gate.wait(); }));
  engine.submit(q, host([&] { gate.open.store(true); }));  // node 0's only worker is busy
  engine.wait(blocker, sb, false);
  EXPECT_TRUE(openedInTime.load());
}

// A waiting host thread may move itself off a worker's CPU (stepAsideFromWorkers), but the
// caller's CPU affinity is its own: after every wait it must be exactly what it was, whether it is
// the process's default (the thread may be moved) or one CPU (an application's pinning: never
// moved).
TEST(Engine, WaitingLeavesTheCallersCpuAffinityAsItWas) {
  cpu_set_t all;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof all, &all), 0);
  struct Restore {
    cpu_set_t mask;
    ~Restore() { pthread_setaffinity_np(pthread_self(), sizeof mask, &mask); }
  } restore{all};
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c)
    if (CPU_ISSET(c, &all)) first = c;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  auto d = make(2, 2);
  const QueueId q = d->createQueue(0, 0);
  for (const cpu_set_t* mask : {&all, &one}) {
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof *mask, mask), 0);
    for (int i = 0; i < 300; ++i) {
      KernelCommand k;
      k.grid = {4, 1, 1};
      k.fn = [](const h20KernelContext*, const void*) {};
      d->wait(q, d->submit(q, std::move(k)), true);
      cpu_set_t now;
      ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof now, &now), 0);
      ASSERT_TRUE(CPU_EQUAL(&now, mask))
          << "after wait " << i << " with " << CPU_COUNT(mask) << " CPUs allowed";
    }
  }
  d->destroyQueue(q);
}

// A waiting host thread may run ready work of its queue itself (Engine::runInline). Whoever runs
// it, a host function sees an engine thread (the runtime refuses API calls from it by that), and
// the waiting thread is an ordinary thread again once the wait returns.
TEST(Engine, HostFunctionsRunAsEngineThreadsWhicheverThreadRunsThem) {
  NoFaults faults;
  h20::emu::Engine engine(2, &faults);
  const QueueId q = engine.createQueue(0, 0);
  int onEngine = 0, onWaiter = 0;
  constexpr int kRounds = 2000;
  for (int i = 0; i < kRounds; ++i) {
    const std::thread::id waiter = std::this_thread::get_id();
    bool engineThread = false, sameThread = false;
    const Seq s = engine.submit(q, host([&] {
                                  engineThread = engine.onWorkerThread();
                                  sameThread = std::this_thread::get_id() == waiter;
                                }));
    engine.wait(q, s, i % 2 == 0);
    onEngine += engineThread;
    onWaiter += sameThread;
    ASSERT_FALSE(engine.onWorkerThread()) << "after wait " << i;
  }
  EXPECT_EQ(onEngine, kRounds);
  RecordProperty("ranOnTheWaitingThread", onWaiter);
  engine.destroyQueue(q);
}

// Work run by waiting host threads borrows the index of a sleeping worker: no two threads ever run
// blocks under one index at the same time, and every index is one of the engine's workers.
TEST(Engine, KernelBlocksNeverShareAWorkerIndexWhileHostThreadsRunWork) {
  NoFaults faults;
  h20::emu::Engine engine(2, &faults);
  static std::atomic<int> inUse[2];
  static std::atomic<int> clashes{0}, outOfRange{0};
  clashes = 0;
  outOfRange = 0;
  auto submitter = [&] {
    const QueueId q = engine.createQueue(0, 0);
    for (int i = 0; i < 500; ++i) {
      KernelCommand k;
      k.grid = {static_cast<unsigned>(1 + i % 8), 1, 1};
      k.fn = [](const h20KernelContext* ctx, const void*) {
        if (ctx->workerIndex < 0 || ctx->workerIndex >= 2) {
          outOfRange.fetch_add(1);
          return;
        }
        if (inUse[ctx->workerIndex].exchange(1) != 0) clashes.fetch_add(1);
        for (int spin = 0; spin < 200; ++spin)
          std::atomic_signal_fence(std::memory_order_seq_cst);
        inUse[ctx->workerIndex].store(0);
      };
      engine.wait(q, engine.submit(q, std::move(k)), i % 3 != 0);
    }
    engine.destroyQueue(q);
  };
  std::thread a(submitter), b(submitter);
  submitter();
  a.join();
  b.join();
  EXPECT_EQ(clashes.load(), 0);
  EXPECT_EQ(outOfRange.load(), 0);
}

// Several threads waiting for different points of one queue: whichever of them (or a worker) runs
// its work, the queue still runs in submission order, each command once.
TEST(Engine, ThreadsWaitingOnOneQueueKeepItsOrder) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  for (int round = 0; round < 50; ++round) {
    std::vector<int> order;
    std::mutex mu;
    std::vector<Seq> seqs;
    for (int i = 0; i < 400; ++i)
      seqs.push_back(d->submit(q, host([&, i] {
                                 std::lock_guard<std::mutex> lock(mu);
                                 order.push_back(i);
                               })));
    std::vector<std::thread> waiters;
    for (int t = 0; t < 4; ++t)
      waiters.emplace_back(
          [&, t] { d->wait(q, seqs[static_cast<std::size_t>(100 * t + 99)], t % 2 == 0); });
    for (auto& t : waiters)
      t.join();
    ASSERT_EQ(order.size(), 400u);
    for (int i = 0; i < 400; ++i)
      ASSERT_EQ(order[static_cast<std::size_t>(i)], i) << "round " << round;
  }
  d->destroyQueue(q);
}

// A waiting thread that runs its queue's work runs it only up to what it waits for: a later
// command may wait for this very thread (here: a gate it opens once the wait returns).
TEST(Engine, WaitingThreadRunsNothingPastTheCommandItWaitsFor) {
  auto d = make(1, 2);
  const QueueId q = d->createQueue(0, 0);
  for (int round = 0; round < 200; ++round) {
    Gate gate;
    std::atomic<bool> openedInTime{false};
    const Seq first = d->submit(q, host([] {}));
    const Seq second = d->submit(q, host([&] { openedInTime = gate.wait(); }));
    d->wait(q, first, round % 2 == 0);
    gate.open.store(true);
    d->wait(q, second, true);
    ASSERT_TRUE(openedInTime.load()) << "round " << round;
  }
  d->destroyQueue(q);
}

// A worker that drains a queue stays attached to it for a while (polling for the next command).
// Destroying the queue meanwhile still removes it: its id soon reads as unknown (nothing
// submitted, everything completed).
TEST(Engine, DestroyingAQueueWhoseWorkerIsAttachedRemovesIt) {
  NoFaults faults;
  h20::emu::Engine engine(2, &faults);
  for (int round = 0; round < 100; ++round) {
    const QueueId q = engine.createQueue(0, 0);
    engine.wait(q, engine.submit(q, host([] {})), true);
    engine.destroyQueue(q);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (engine.submitted(q) != 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    ASSERT_EQ(engine.submitted(q), 0u) << "round " << round;
    EXPECT_EQ(engine.completed(q), ~Seq{0});
  }
}

// With a single worker attached to a drained queue, work for another queue must still run: the
// attached worker counts as the one that is awake (nobody else is woken), so it has to leave the
// drained queue for the new work. (The waiting thread cannot run the work itself: no worker is
// asleep whose index it could take.)
TEST(Engine, WorkOfAnotherQueueRunsWhileTheOnlyWorkerIsAttached) {
  NoFaults faults;
  h20::emu::Engine engine(1, &faults);
  const QueueId a = engine.createQueue(0, 0), b = engine.createQueue(0, 0);
  for (int round = 0; round < 200; ++round) {
    engine.wait(a, engine.submit(a, host([] {})), true);  // the worker is now attached to a
    std::atomic<bool> ran{false};
    engine.wait(b, engine.submit(b, host([&] { ran.store(true); })), round % 2 == 0);
    ASSERT_TRUE(ran.load()) << "round " << round;
  }
  engine.destroyQueue(a);
  engine.destroyQueue(b);
}

// Host thread and workers confined to one CPU: an attached worker then often has no core when a
// command arrives, and the waiting thread takes the command from it (after polling for a while).
// Either way every command runs once, in order, as engine work.
TEST(Engine, CommandsRunOnceInOrderWhenTheAttachedWorkerHasNoCore) {
  std::thread confined([] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
    NoFaults faults;
    h20::emu::Engine engine(2, &faults);  // its workers inherit the one-CPU affinity
    const QueueId q = engine.createQueue(0, 0);
    std::vector<int> order;
    int onWaiter = 0;
    constexpr int kRounds = 2000;
    for (int i = 0; i < kRounds; ++i) {
      bool engineThread = false, waiterThread = false;
      const std::thread::id waiter = std::this_thread::get_id();
      const Seq s = engine.submit(q, host([&, i] {
                                    order.push_back(i);
                                    engineThread = engine.onWorkerThread();
                                    waiterThread = std::this_thread::get_id() == waiter;
                                  }));
      engine.wait(q, s, true);
      ASSERT_TRUE(engineThread) << "round " << i;
      onWaiter += waiterThread;
    }
    ASSERT_EQ(order.size(), static_cast<std::size_t>(kRounds));
    for (int i = 0; i < kRounds; ++i)
      ASSERT_EQ(order[static_cast<std::size_t>(i)], i);
    ::testing::Test::RecordProperty("ranOnTheWaitingThread", onWaiter);
    engine.destroyQueue(q);
  });
  confined.join();
}
