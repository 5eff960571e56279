// engine.hpp - the emulator's execution engine: in-order queues served by a pool of host workers.
//
// Each queue is an in-order list of commands. A queue with work is "scheduled": it sits in the
// ready list (ordered by priority), is being run by exactly one worker, or is parked on a Wait
// command until the queue it waits for completes the awaited sequence number. Any number of queues
// of any number of chips run concurrently, one worker each. A kernel's blocks (and large copies)
// are split into chunks that idle workers help to run, so one launch can use every core.
//
// Submitting takes no lock the runner takes (see Engine::Queue in engine.cpp): commands go through
// a ring per queue, published by counters. A worker that drains a queue stays attached to it for a
// while, polling for the next command, so that a stream fed command after command is neither
// scheduled again nor woken for every command. Otherwise one worker per NUMA node spins briefly
// when it runs out of work (a submit shortly after finds it awake, avoiding a wake-up system
// call), the others sleep at once: an idle process uses no CPU.
// Host threads that wait for a queue spin briefly too (first stepping off a core an awake worker
// is on, see stepAsideFromWorkers in engine.cpp), then sleep on the queue's condition variable.
// A waiting host thread that finds its queue ready but not yet taken by any worker, or attached to
// a worker that has not run the awaited command after a while, runs the queue itself, as a worker
// would (see Engine::runInline): on a host whose cores are busy with other processes the worker
// that would run it may not get a core for a whole time slice.
//
// The engine owns threads and queues; it does not know about memory, properties or the runtime.
// Faults are reported to a FaultRegistry owned by the emulator. Thread-safe.
#pragma once

#include "driver.hpp"

#include <h20_base/spin_lock.hpp>

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace h20::emu {

// The emulator's record of chip faults, consulted and updated by the engine.
class FaultRegistry {
 public:
  virtual bool faulted(int chip) const = 0;
  virtual void raise(int chip, driver::Fault fault) = 0;

 protected:
  ~FaultRegistry() = default;
};

class Engine {
 public:
  // Stream priorities are clamped to [kPriorityHighest, kPriorityLowest].
  static constexpr int kPriorityLowest = 0;
  static constexpr int kPriorityHighest = -5;

  // Workers of one host NUMA node: they serve the queues of that node's chips first (and help
  // other nodes only when idle), pinned to `cpus` when it is not empty.
  struct NodeWorkers {
    int workers = 1;
    std::vector<int> cpus;
  };

  Engine(const std::vector<NodeWorkers>& nodes, FaultRegistry* faults);
  Engine(int workers, FaultRegistry* faults) : Engine({NodeWorkers{workers, {}}}, faults) {}
  ~Engine();  // joins the workers; queues must have drained (the runtime synchronises first)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // `node` indexes the NodeWorkers the queue's work prefers (clamped to the nodes there are).
  driver::QueueId createQueue(int chip, int priority, int node = 0);
  void destroyQueue(driver::QueueId id);
  driver::Seq submit(driver::QueueId id, driver::Command&& command);
  driver::Seq completed(driver::QueueId id) const;
  driver::Seq submitted(driver::QueueId id) const;
  // What submitted() reads; valid until destroyQueue (an unknown id gets a counter at 0).
  const std::atomic<driver::Seq>& submittedCounter(driver::QueueId id) const;
  void wait(driver::QueueId id, driver::Seq seq, bool spinFirst);

  int workers() const { return static_cast<int>(threads_.size()); }
  int workersOfNode(int node) const;
  // True on this engine's worker threads.
  bool onWorkerThread() const;

 private:
  struct Queue;
  struct Job;
  struct Entry {
    driver::Seq seq = 0;
    driver::Command command;
  };
  class EntryRing;

  std::shared_ptr<Queue> find(driver::QueueId id) const;
  void eraseQueue(driver::QueueId id);
  void schedule(std::shared_ptr<Queue> queue);
  void workerMain(int index, int node, std::vector<int> cpus);
  // A wake-up to deliver after unlocking mu_: notify_all where a worker sleeping on the
  // condition variable is lent to a host thread (a notify_one could reach only that one).
  struct Wake {
    std::condition_variable* cv = nullptr;
    bool all = false;
    void operator()() const {
      if (cv && all)
        cv->notify_all();
      else if (cv)
        cv->notify_one();
    }
  };
  // Wakes a sleeping worker for work of `node` (one of its own, else one that may steal it).
  // Called with mu_ held; returns the wake-up to deliver after unlocking (empty: none needed).
  Wake pickWaker(int node);
  // Run by a host thread waiting for `queue` to complete `seq`: if the queue is ready and no
  // worker has taken it, takes it off the ready list and runs it up to `seq` (never further: what
  // follows may wait for this very thread) on this thread, under the index of a sleeping worker
  // of its node, lent for that time, so that kernel blocks still see a worker index nobody else
  // runs under. Returns false when it ran nothing.
  // takeAttached: also take the queue from a worker attached to it (see Queue::owner).
  bool runInline(const std::shared_ptr<Queue>& queue, driver::Seq seq, bool takeAttached);
  // Runs the queue's commands in order until it is empty, parked on a Wait, has run kBatch of
  // them, or has completed `until` (then the rest is left to the workers). A worker passes its
  // node as attachNode: when the queue runs empty it stays attached to it for a while (see
  // stayAttached) instead of letting go at once.
  void runQueue(const std::shared_ptr<Queue>& queue, driver::Seq until = ~driver::Seq{0},
                int attachNode = -1);
  // The attached worker's poll of a drained queue: `resumed` (new work, the queue is the
  // worker's again), `released` (nothing came, or other work or the queue's destruction calls;
  // the queue is the worker's, to let go), or `taken` (a waiting host thread took it).
  enum class Attach { resumed, released, taken };
  Attach stayAttached(Queue& queue, driver::Seq done, int node);
  void execute(driver::Command& command, int chip);
  void runKernel(const driver::KernelCommand& kernel, int chip);
  // Runs body over [0, total) in chunks, on this worker and on idle helpers.
  void parallelFor(std::uint64_t total, std::uint64_t chunk,
                   const std::function<void(std::uint64_t, std::uint64_t, int)>& body);
  void help(Job* job);
  bool spinForWork();

  // Queues parked on a WaitShared command (an interprocess event), watched by extThread_ (started
  // on first use) until the event completes.
  void parkExternal(std::shared_ptr<Queue> queue, std::shared_ptr<driver::SharedEvent> event,
                    std::uint64_t value);
  void externalWaitMain();

  FaultRegistry* faults_;
  std::vector<std::thread> threads_;

  struct ExternalWait {
    std::shared_ptr<Queue> queue;
    std::shared_ptr<driver::SharedEvent> event;
    std::uint64_t value = 0;
  };
  std::mutex extMu_;
  std::condition_variable extCv_;
  std::vector<ExternalWait> extWaits_;
  bool extStop_ = false;
  std::thread extThread_;

  // Taken for reading on every submit; apart from the lines the workers write.
  alignas(64) mutable base::ReadMostlyLock mapMu_;
  std::unordered_map<driver::QueueId, std::shared_ptr<Queue>> queues_;
  std::atomic<driver::QueueId> nextQueueId_{1};

  // Guards the ready lists, the job board and the sleep/stop state.
  struct Node {
    std::vector<std::deque<std::shared_ptr<Queue>>> ready;  // index 0 = highest priority
    std::condition_variable cv;
    int workers = 0;
    int sleeping = 0;  // not counting those lent to a host thread
    int spinning = 0;
    int lent = 0;
    alignas(64) std::atomic<int> attached{0};  // workers polling a drained queue (stayAttached)
  };
  // Per worker, guarded by mu_: asleep on its node's condition variable, lent to a host thread
  // (see runInline; a lent worker stays asleep until its index is returned).
  struct WorkerState {
    int node = 0;
    bool asleep = false;
    bool lent = false;
  };
  alignas(64) std::mutex mu_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Job*> jobs_;
  std::vector<WorkerState> workerStates_;
  // Ready queues + open jobs; read without the lock by spinners.
  alignas(64) std::atomic<int> workHint_{0};
  bool stop_ = false;
  // The CPU of each worker that is not asleep (-1 while it sleeps): where a waiting host thread
  // should not spin (see stepAsideFromWorkers in engine.cpp).
  std::unique_ptr<std::atomic<int>[]> awakeCpu_;
  int workerCount_ = 0;           // set before the workers start
  cpu_set_t processDefaultCpus_;  // the engine creator's affinity: that of an unpinned thread
};

}  // namespace h20::emu
