// engine.cpp - queues, workers and parallel kernel execution (see engine.hpp).
#include "emu/engine.hpp"

#include "emu/shared_wait.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <shared_mutex>
#include <vector>

#include <pthread.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define H20_CPU_RELAX() _mm_pause()
#else
#define H20_CPU_RELAX() std::this_thread::yield()
#endif

namespace h20::emu {

using driver::Command;
using driver::QueueId;
using driver::Seq;

namespace {

// How long idle workers and waiting host threads poll before they sleep. Long enough to catch
// the next command of a launch/synchronise loop, short enough that idle costs nothing.
constexpr auto kSpinTime = std::chrono::microseconds(50);
constexpr auto kPauseTime = std::chrono::microseconds(10);
// Commands a worker runs from one queue before letting other ready work (if any) have a turn.
constexpr int kBatch = 64;
// Polls of a drained queue by its worker before it announces itself attached (see stayAttached).
constexpr int kQuietPolls = 64;
// Polls of a waiting host thread before it runs work that an attached worker has not started
// (each poll is a pause of tens of nanoseconds, or a yield after kPauseTime).
constexpr int kPollsBeforeTakingAttached = 256;
// Copies and fills at least this large are split over the workers.
constexpr std::size_t kParallelCopyBytes = 4u << 20;
constexpr std::size_t kCopyChunkBytes = 1u << 20;

std::uint64_t nowNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Polls pred for up to kSpinTime. For the first kPauseTime it only pauses between polls (a
// completion a few hundred nanoseconds away is caught at once); after that it yields the core
// between polls, so that on a host with no idle core the thread that would make pred true gets to
// run instead of waiting behind this one. (A yield costs microseconds here, hence not at once.)
template <class Pred>
bool spinUntil(Pred pred) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (pred()) return true;
    if ((i & 63) != 63) {
      H20_CPU_RELAX();
      continue;
    }
    const auto spent = std::chrono::steady_clock::now() - start;
    if (spent >= kSpinTime) return false;
    if (spent >= kPauseTime) std::this_thread::yield();
  }
}

// A host thread waiting for a queue and the worker running it can end up on one core while
// another core idles: the scheduler places a woken thread next to its waker and then keeps both
// there, as cache hot, while each polls for the other. Every hand-off then waits for a time slice
// or a yield (~20 us instead of ~1 us for a launch/synchronise round trip on a 2-core host). So a
// host thread about to spin on a CPU that an awake worker is on moves to a CPU that no awake
// worker is on, if there is one: narrowing its affinity migrates it at once, and widening it again
// straight after leaves it there. The host thread moves rather than the worker, so that workers
// stay where the scheduler spread them (moving workers makes two of them share a core more often).
// Only a thread whose affinity is the process's default is moved (the application did not
// choose its CPUs), and it gets that default back as "every CPU", what a thread nobody pinned
// has, so that CPUs added to the process later still reach it. At most once per
// kStepAsideIntervalNs per thread.
constexpr std::uint64_t kStepAsideIntervalNs = 1'000'000;

// awakeCpus: the CPU of each worker that is not asleep, -1 for the others. processDefault: the
// affinity of a thread nobody pinned (the engine creator's at start-up).
void stepAsideFromWorkers(const std::atomic<int>* awakeCpus, int workers,
                          const cpu_set_t& processDefault) {
  thread_local std::uint64_t last = 0;
  const int cpu = sched_getcpu();
  if (cpu < 0 || cpu >= CPU_SETSIZE) return;
  bool shared = false;
  for (int w = 0; w < workers && !shared; ++w)
    shared = awakeCpus[w].load(std::memory_order_relaxed) == cpu;
  if (!shared) return;
  const std::uint64_t now = nowNs();
  if (now - last < kStepAsideIntervalNs) return;
  last = now;
  cpu_set_t own;
  if (pthread_getaffinity_np(pthread_self(), sizeof own, &own) != 0 ||
      !CPU_EQUAL(&own, &processDefault))
    return;
  cpu_set_t to = own;
  for (int w = 0; w < workers; ++w) {
    const int c = awakeCpus[w].load(std::memory_order_relaxed);
    if (c >= 0 && c < CPU_SETSIZE) CPU_CLR(c, &to);
  }
  if (CPU_COUNT(&to) == 0) return;
  if (pthread_setaffinity_np(pthread_self(), sizeof to, &to) != 0) return;
  static const cpu_set_t every = [] {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      CPU_SET(c, &all);
    return all;
  }();
  // The kernel keeps the CPUs of `every` that the process may use: `own` again. Should that ever
  // be refused, `own` itself is the fallback.
  if (pthread_setaffinity_np(pthread_self(), sizeof every, &every) != 0)
    pthread_setaffinity_np(pthread_self(), sizeof own, &own);
}

struct WorkerTls {
  const Engine* engine = nullptr;
  int index = -1;
};
thread_local WorkerTls tlsWorker;

// Per-thread shared memory for kernel blocks, grown on demand and reused across blocks.
struct SharedMemBuffer {
  void* data = nullptr;
  std::size_t size = 0;
  ~SharedMemBuffer() { std::free(data); }
  void* get(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    if (bytes > size) {
      std::free(data);
      size = (bytes + 63) / 64 * 64;
      data = std::aligned_alloc(64, size);
      if (!data) {
        size = 0;
        throw std::bad_alloc();
      }
    }
    return data;
  }
};
thread_local SharedMemBuffer tlsSharedMem;

// Collects the first fault reported by any block of one launch.
class KernelRun final : public driver::KernelFaultSink {
 public:
  void report(int code, const char* message) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (faulted_.load(std::memory_order_relaxed)) return;
    code_ = code == h20ErrorIllegalAddress ? h20ErrorIllegalAddress : h20ErrorLaunchFailure;
    message_ = message ? message : "";
    faulted_.store(true, std::memory_order_release);
  }
  bool faulted() const { return faulted_.load(std::memory_order_acquire); }
  h20Error_t code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  std::mutex mu_;
  std::atomic<bool> faulted_{false};
  h20Error_t code_ = h20Success;
  std::string message_;
};

}  // namespace

// The pending commands of a queue, in order: a singly linked list of chunks of kChunk entries,
// written at its tail by the submitting host threads (one at a time, under the queue's submitMu)
// and read at its head by the queue's one runner, without a lock shared by the two. An entry is
// published by storing its sequence number into Queue::submitted (release) after it is written;
// the runner reads only entries up to the submitted number it loaded (acquire). A drained chunk is
// kept as a spare for the producer, so a steady flow of submissions allocates nothing. push never
// moves an entry, so the front entry stays put while the runner runs it.
class Engine::EntryRing {
 public:
  EntryRing() : head_(new Chunk), tail_(head_) {}
  EntryRing(const EntryRing&) = delete;
  EntryRing& operator=(const EntryRing&) = delete;
  ~EntryRing() {
    while (head_) {
      Chunk* next = head_->next.load(std::memory_order_relaxed);
      delete head_;
      head_ = next;
    }
    delete spare_.load(std::memory_order_relaxed);
  }

  // Producer end (serialised by the caller). The entry is not visible until published.
  void push(Seq seq, Command&& command) {
    if (end_ == kChunk) {
      Chunk* c = spare_.exchange(nullptr, std::memory_order_acquire);
      if (!c) c = new Chunk;
      c->next.store(nullptr, std::memory_order_relaxed);
      tail_->next.store(c, std::memory_order_release);
      tail_ = c;
      end_ = 0;
    }
    Entry& e = tail_->entries[end_++];
    e.seq = seq;
    e.command = std::move(command);
    // The next slot's lines were last written by the runner (when it popped that slot a chunk
    // ago): ask for them now, so that the next push does not wait for them (its lock is an atomic
    // exchange, a full barrier that waits for earlier stores).
    if (end_ < kChunk) {
      const char* next = reinterpret_cast<const char*>(&tail_->entries[end_]);
      for (std::size_t off = 0; off < sizeof(Entry); off += 64)
        __builtin_prefetch(next + off, 1);
    }
  }

  // Consumer end (the queue's runner only), and only while an entry is published.
  Entry& front() {
    if (begin_ == kChunk) {
      // The next entry is published, so the producer has moved on to the next chunk.
      Chunk* drained = head_;
      head_ = drained->next.load(std::memory_order_acquire);
      begin_ = 0;
      delete spare_.exchange(drained, std::memory_order_acq_rel);
    }
    return head_->entries[begin_];
  }
  void pop_front() {
    // What the command holds (staging buffers, a host function's captures) goes now.
    head_->entries[begin_].command = driver::MarkerCommand{};
    ++begin_;
  }

 private:
  static constexpr int kChunk = 32;
  struct Chunk {
    Entry entries[kChunk];
    std::atomic<Chunk*> next{nullptr};
  };
  // The two ends on cache lines of their own: each side writes its end on every command.
  alignas(64) Chunk* head_;  // consumer: chunk of the front entry
  int begin_ = 0;
  alignas(64) Chunk* tail_;  // producer: chunk the next entry goes to
  int end_ = 0;
  std::atomic<Chunk*> spare_{nullptr};
};

// A queue's state. Submitters and the runner share no lock on the way of a command: submitters
// serialise on submitMu (which the runner never takes), publish through `submitted`, and schedule
// the queue only when `owner` says nobody has it; the runner publishes through `completed` and
// takes `mu` only when a host thread sleeps on the queue or a queue waits for it. The protocol's
// loads and stores of completed, owner, destroyed, hostWaiters and hasDependents are sequentially
// consistent: each side stores its own word, then loads the other's, so at least one of them sees
// the other (no lost wake-up, no queue left unscheduled). Between a submit's `submitted` and its
// load of `owner` the same guarantee comes from submitMu instead (see the drained case in
// runQueue), so that a submit has no full barrier after its stores.
//
// Who has the queue (`owner`): nobody (kFree); whoever took it from the ready list, or the Wait
// it is parked on (kOwned); or a worker that drained it and stays on it for a while, polling
// `submitted` (kAttached), so that a stream fed command by command is not scheduled again for
// every command. Leaving kAttached is a compare-and-swap: by the attached worker, to run what
// arrived (kOwned) or to let go (kFree); or by a waiting host thread that runs the work itself
// when the worker does not get to it (see runInline).
struct Engine::Queue {
  QueueId id = 0;
  int chip = 0;
  int node = 0;
  int level = 0;  // index into Node::ready

  // Producers (host threads). (The ring keeps its two ends on separate cache lines.)
  alignas(64) base::SpinLock submitMu;
  Seq lastSeq = 0;  // guarded by submitMu
  EntryRing pending;

  // Read on every submit, written when the queue changes hands: a line of their own.
  static constexpr int kFree = 0;
  static constexpr int kOwned = 1, kAttached = 2;
  alignas(64) std::atomic<int> owner{kFree};
  std::atomic<bool> destroyed{false};
  // In its node's ready list, waiting for a worker (written under Engine::mu_; read without it
  // by waiting host threads, which then take mu_ to look again).
  std::atomic<bool> ready{false};

  alignas(64) std::atomic<Seq> submitted{0};
  alignas(64) std::atomic<Seq> completed{0};

  // Guards hostCv's sleepers and dependents.
  alignas(64) std::mutex mu;
  std::condition_variable hostCv;
  std::atomic<int> hostWaiters{0};
  std::atomic<bool> hasDependents{false};
  // Queues parked on a Wait for this queue: resumed once completed >= the sequence number.
  std::vector<std::pair<Seq, std::shared_ptr<Queue>>> dependents;
};

// A parallel loop that idle workers help with. Lives on its runner's stack.
struct Engine::Job {
  const std::function<void(std::uint64_t, std::uint64_t, int)>* body = nullptr;
  std::uint64_t total = 0;
  std::uint64_t chunk = 1;
  std::atomic<std::uint64_t> next{0};
  std::atomic<int> helpers{0};
  // Counted in workHint while chunks are left to claim; the first claimer to find none left
  // takes it out, so idle workers stop looking at an exhausted job at once.
  std::atomic<int>* workHint = nullptr;
  std::atomic<bool> exhausted{false};
  std::mutex mu;
  std::condition_variable cv;

  bool open() const { return next.load(std::memory_order_relaxed) < total; }
  void claimLoop(int worker) {
    for (;;) {
      const std::uint64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= total) {
        if (!exhausted.exchange(true, std::memory_order_acq_rel))
          workHint->fetch_sub(1, std::memory_order_relaxed);
        return;
      }
      (*body)(begin, std::min(begin + chunk, total), worker);
    }
  }
};

Engine::Engine(const std::vector<NodeWorkers>& nodes, FaultRegistry* faults) : faults_(faults) {
  for (const NodeWorkers& n : nodes) {
    auto node = std::make_unique<Node>();
    node->ready.resize(kPriorityLowest - kPriorityHighest + 1);
    node->workers = std::max(1, n.workers);
    nodes_.push_back(std::move(node));
  }
  if (nodes_.empty()) {
    nodes_.push_back(std::make_unique<Node>());
    nodes_.back()->ready.resize(kPriorityLowest - kPriorityHighest + 1);
    nodes_.back()->workers = 1;
  }
  int total = 0;
  for (const auto& n : nodes_)
    total += n->workers;
  workerCount_ = total;
  if (pthread_getaffinity_np(pthread_self(), sizeof processDefaultCpus_, &processDefaultCpus_) != 0)
    CPU_ZERO(&processDefaultCpus_);  // matches no thread: nobody is moved
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    for (int w = 0; w < nodes_[n]->workers; ++w)
      workerStates_.push_back(WorkerState{static_cast<int>(n)});
  awakeCpu_ = std::make_unique<std::atomic<int>[]>(static_cast<std::size_t>(total));
  for (int w = 0; w < total; ++w)
    awakeCpu_[static_cast<std::size_t>(w)].store(-1, std::memory_order_relaxed);
  int index = 0;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    const std::vector<int> cpus = n < nodes.size() ? nodes[n].cpus : std::vector<int>{};
    for (int w = 0; w < nodes_[n]->workers; ++w, ++index)
      threads_.emplace_back(
          [this, index, n, cpus] { workerMain(index, static_cast<int>(n), cpus); });
  }
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  for (auto& n : nodes_)
    n->cv.notify_all();
  for (auto& t : threads_)
    t.join();
  // After the workers: none of them can park a queue (and start the thread) any more.
  {
    std::lock_guard<std::mutex> lock(extMu_);
    extStop_ = true;
  }
  extCv_.notify_all();
  if (extThread_.joinable()) extThread_.join();
}

void Engine::parkExternal(std::shared_ptr<Queue> queue, std::shared_ptr<driver::SharedEvent> event,
                          std::uint64_t value) {
  {
    std::lock_guard<std::mutex> lock(extMu_);
    if (extStop_) return;  // the engine is going: nothing will run the queue again
    extWaits_.push_back({std::move(queue), std::move(event), value});
    if (!extThread_.joinable()) extThread_ = std::thread([this] { externalWaitMain(); });
  }
  extCv_.notify_one();
}

// The thread that watches queues parked on interprocess events. Another process completes them,
// so no in-process completion can resume them: one parked queue is waited for on the event's
// futex (woken at once by the completing process), several are polled.
void Engine::externalWaitMain() {
  std::unique_lock<std::mutex> lock(extMu_);
  while (!extStop_) {
    if (extWaits_.empty()) {
      extCv_.wait(lock);
      continue;
    }
    std::vector<std::shared_ptr<Queue>> resumed;
    for (auto it = extWaits_.begin(); it != extWaits_.end();) {
      if (sharedDone(it->event->state(), it->value)) {
        resumed.push_back(std::move(it->queue));
        it = extWaits_.erase(it);
      } else {
        ++it;
      }
    }
    if (!resumed.empty()) {
      lock.unlock();
      for (auto& q : resumed)
        schedule(std::move(q));
      lock.lock();
      continue;
    }
    if (extWaits_.size() == 1) {
      const auto event = extWaits_.front().event;
      const std::uint64_t value = extWaits_.front().value;
      lock.unlock();
      waitShared(event->state(), value, false, std::chrono::milliseconds(2));
      lock.lock();
    } else {
      extCv_.wait_for(lock, std::chrono::microseconds(200));
    }
  }
}

int Engine::workersOfNode(int node) const {
  return nodes_[static_cast<std::size_t>(std::clamp(node, 0, static_cast<int>(nodes_.size()) - 1))]
      ->workers;
}

bool Engine::onWorkerThread() const {
  return tlsWorker.engine == this;
}

QueueId Engine::createQueue(int chip, int priority, int node) {
  auto q = std::make_shared<Queue>();
  q->id = nextQueueId_.fetch_add(1);
  q->chip = chip;
  q->node = std::clamp(node, 0, static_cast<int>(nodes_.size()) - 1);
  q->level = std::clamp(priority, kPriorityHighest, kPriorityLowest) - kPriorityHighest;
  std::unique_lock<base::ReadMostlyLock> lock(mapMu_);
  queues_.emplace(q->id, q);
  return q->id;
}

std::shared_ptr<Engine::Queue> Engine::find(QueueId id) const {
  std::shared_lock<base::ReadMostlyLock> lock(mapMu_);
  auto it = queues_.find(id);
  return it == queues_.end() ? nullptr : it->second;
}

void Engine::destroyQueue(QueueId id) {
  auto q = find(id);
  if (!q) return;
  q->destroyed.store(true);
  // A busy queue is removed by its runner when drained (it loads `destroyed` after clearing
  // `owner`; at least one of the two sees the other). Until then its id stays queryable; once
  // removed, an unknown id reads as "everything completed", which is then true.
  if (q->owner.load() == Queue::kFree) eraseQueue(id);
}

void Engine::eraseQueue(QueueId id) {
  std::unique_lock<base::ReadMostlyLock> lock(mapMu_);
  queues_.erase(id);
}

Seq Engine::submit(QueueId id, Command&& command) {
  // The map lock is held throughout (so the queue stays alive) rather than copying its pointer:
  // a queue's owner is only taken when it must be scheduled.
  std::shared_lock<base::ReadMostlyLock> mapLock(mapMu_);
  auto it = queues_.find(id);
  if (it == queues_.end()) return 0;
  Queue& q = *it->second;
  Seq seq;
  {
    std::lock_guard<base::SpinLock> lock(q.submitMu);
    seq = ++q.lastSeq;
    q.pending.push(seq, std::move(command));
    q.submitted.store(seq, std::memory_order_release);
  }
  // A queue that somebody has (running, ready, parked or attached) picks the entry up by itself.
  int expected = Queue::kFree;
  if (q.owner.load() == Queue::kFree && q.owner.compare_exchange_strong(expected, Queue::kOwned)) {
    std::shared_ptr<Queue> owner = it->second;
    mapLock.unlock();
    schedule(std::move(owner));
  }
  return seq;
}

Seq Engine::completed(QueueId id) const {
  std::shared_lock<base::ReadMostlyLock> lock(mapMu_);
  auto it = queues_.find(id);
  return it != queues_.end() ? it->second->completed.load(std::memory_order_acquire) : ~Seq{0};
}

Seq Engine::submitted(QueueId id) const {
  std::shared_lock<base::ReadMostlyLock> lock(mapMu_);
  auto it = queues_.find(id);
  return it != queues_.end() ? it->second->submitted.load(std::memory_order_acquire) : 0;
}

const std::atomic<Seq>& Engine::submittedCounter(QueueId id) const {
  static const std::atomic<Seq> none{0};
  std::shared_lock<base::ReadMostlyLock> lock(mapMu_);
  auto it = queues_.find(id);
  return it != queues_.end() ? it->second->submitted : none;
}

void Engine::wait(QueueId id, Seq seq, bool spinFirst) {
  auto q = find(id);
  if (!q) return;
  auto done = [&] { return q->completed.load(std::memory_order_acquire) >= seq; };
  if (done()) return;
  // Work of the queue that is ready but not taken by a worker runs here: a worker woken for it, or
  // the one spinning, may be waiting for a core behind another process for a time slice, while
  // this thread has one and would only spin or sleep. (Not on the engine's own threads, whose
  // index is already taken.)
  const bool mayRun = tlsWorker.engine != this;
  // A queue with an attached worker is left to it for a while (it runs the work within
  // nanoseconds when it has a core); after that this thread takes the work as well.
  int polls = 0;
  auto ranOrDone = [&] {
    if (done()) return true;
    const bool takeAttached = ++polls > kPollsBeforeTakingAttached;
    if (mayRun && (q->ready.load(std::memory_order_relaxed) ||
                   (takeAttached && q->owner.load() == Queue::kAttached)))
      runInline(q, seq, takeAttached);
    return done();
  };
  if (ranOrDone()) return;
  if (spinFirst) {
    if (mayRun) stepAsideFromWorkers(awakeCpu_.get(), workerCount_, processDefaultCpus_);
    if (spinUntil(ranOrDone)) return;
  }
  std::unique_lock<std::mutex> lock(q->mu);
  q->hostWaiters.fetch_add(1);  // before `done` is looked at again (the runner: the reverse)
  q->hostCv.wait(lock, [&] { return q->completed.load() >= seq; });
  q->hostWaiters.fetch_sub(1);
}

bool Engine::runInline(const std::shared_ptr<Queue>& q, Seq seq, bool takeAttached) {
  int index = -1;
  Node* node = nullptr;
  Wake lentWake;
  {
    // try_lock: a worker preempted while holding mu_ must not put this thread to sleep too.
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    const bool ready = q->ready.load(std::memory_order_relaxed);
    if (!ready && !(takeAttached && q->owner.load() == Queue::kAttached)) return false;
    // The index of a sleeping worker of the queue's node, so that kernels see one of the node's
    // workers, as they would with the worker itself.
    for (std::size_t w = 0; w < workerStates_.size() && index < 0; ++w) {
      const WorkerState& s = workerStates_[w];
      if (s.node == q->node && s.asleep && !s.lent) index = static_cast<int>(w);
    }
    if (index < 0) return false;
    node = nodes_[static_cast<std::size_t>(q->node)].get();
    // As the worker it stands in for, this thread serves higher-priority ready queues first: it
    // leaves them to the workers and does not run its own queue ahead of them.
    for (int l = 0; l < q->level; ++l)
      if (!node->ready[static_cast<std::size_t>(l)].empty()) return false;
    if (ready) {
      auto& level = node->ready[static_cast<std::size_t>(q->level)];
      auto it = std::find(level.begin(), level.end(), q);
      if (it == level.end()) return false;  // not reached: `ready` says it is there
      level.erase(it);
      q->ready.store(false, std::memory_order_relaxed);
      workHint_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      // Taken from the worker attached to it, which finds it gone and leaves it.
      int expected = Queue::kAttached;
      if (q->completed.load() >= q->submitted.load() ||
          !q->owner.compare_exchange_strong(expected, Queue::kOwned))
        return false;
    }
    workerStates_[static_cast<std::size_t>(index)].lent = true;
    ++node->lent;
    --node->sleeping;
    // The lent worker may have been woken already for other ready work (a wake-up it now ignores):
    // pass one on, or that work could wait for this thread, which may be waiting for it.
    if (workHint_.load(std::memory_order_relaxed) > 0) lentWake = pickWaker(q->node);
  }
  lentWake();
  // Run as that worker: kernels and host functions see an engine thread (the runtime refuses API
  // calls from host functions by that), and parallelFor helpers join as they would.
  // The index goes back (and the thread is a host thread again) however runQueue leaves.
  struct Return {
    Engine* engine;
    Node* node;
    int index;
    int queueNode;
    WorkerTls saved = tlsWorker;
    ~Return() {
      tlsWorker = saved;
      Wake wake;
      {
        std::lock_guard<std::mutex> lock(engine->mu_);
        engine->workerStates_[static_cast<std::size_t>(index)].lent = false;
        --node->lent;
        ++node->sleeping;
        // Wake-ups that reached the lent worker while it could not run were lost: pass one on.
        if (engine->workHint_.load(std::memory_order_relaxed) > 0)
          wake = engine->pickWaker(queueNode);
      }
      wake();
    }
  } giveBack{this, node, index, q->node};
  tlsWorker.engine = this;
  tlsWorker.index = index;
  runQueue(q, seq);
  return true;
}

Engine::Wake Engine::pickWaker(int node) {
  Node& home = *nodes_[static_cast<std::size_t>(node)];
  // A spinning worker of the node will find the work by itself.
  if (home.spinning > 0 || home.attached.load() > 0) return {};
  if (home.sleeping > 0) return {&home.cv, home.lent > 0};
  // Every worker of the node is busy: an idle worker elsewhere may take it.
  for (auto& other : nodes_)
    if (other->spinning > 0 || other->attached.load() > 0) return {};
  for (auto& other : nodes_)
    if (other->sleeping > 0) return {&other->cv, other->lent > 0};
  return {};
}

void Engine::schedule(std::shared_ptr<Queue> queue) {
  Wake wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int node = queue->node;
    queue->ready.store(true, std::memory_order_relaxed);
    nodes_[static_cast<std::size_t>(node)]->ready[static_cast<std::size_t>(queue->level)].push_back(
        std::move(queue));
    workHint_.fetch_add(1, std::memory_order_release);
    wake = pickWaker(node);
  }
  wake();
}

bool Engine::spinForWork() {
  return spinUntil([this] { return workHint_.load(std::memory_order_acquire) > 0; });
}

void Engine::workerMain(int index, int node, std::vector<int> cpus) {
  tlsWorker.engine = this;
  tlsWorker.index = index;
  if (!cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus)
      if (c >= 0 && c < CPU_SETSIZE) CPU_SET(c, &set);
    // Best effort: a restricted cpuset (containers) may refuse; the worker then runs anywhere.
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  std::atomic<int>& awake = awakeCpu_[static_cast<std::size_t>(index)];
  awake.store(sched_getcpu(), std::memory_order_relaxed);
  Node& home = *nodes_[static_cast<std::size_t>(node)];
  auto pop = [this](Node& n) -> std::shared_ptr<Queue> {
    for (auto& level : n.ready) {
      if (!level.empty()) {
        auto q = std::move(level.front());
        level.pop_front();
        q->ready.store(false, std::memory_order_relaxed);
        workHint_.fetch_sub(1, std::memory_order_relaxed);
        return q;
      }
    }
    return nullptr;
  };
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Helping an open kernel first finishes launches sooner, which is what streams wait on.
    auto job = std::find_if(jobs_.begin(), jobs_.end(), [](Job* j) { return j->open(); });
    if (job != jobs_.end()) {
      Job* j = *job;
      j->helpers.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      help(j);
      lock.lock();
      continue;
    }
    // The home node's queues first; then other nodes' work, which is only waiting because
    // their own workers are busy.
    std::shared_ptr<Queue> queue = pop(home);
    for (std::size_t n = 0; !queue && n < nodes_.size(); ++n)
      queue = pop(*nodes_[n]);
    if (queue) {
      // A submit that saw a worker still spinning woke nobody: pass the wake-up on if more work
      // is waiting, or it would wait for this worker to finish.
      Wake wake;
      if (workHint_.load(std::memory_order_relaxed) > 0) wake = pickWaker(node);
      lock.unlock();
      wake();
      awake.store(sched_getcpu(), std::memory_order_relaxed);
      runQueue(queue, ~Seq{0}, node);
      queue.reset();
      lock.lock();
      continue;
    }
    if (stop_) return;
    // One spinning worker per node catches the next command at once; the others sleep, so that
    // their cores stay free for the host threads that submit and wait (see
    // stepAsideFromWorkers). A submit that finds no spinner wakes a sleeper.
    if (home.spinning == 0 && home.attached.load() == 0) {
      ++home.spinning;
      lock.unlock();
      const bool found = spinForWork();
      lock.lock();
      --home.spinning;
      if (found) continue;
    }
    // While lent to a host thread (runInline) the worker stays asleep whatever wakes it: its index
    // is in use. Whoever lends it takes it out of `sleeping` meanwhile.
    WorkerState& state = workerStates_[static_cast<std::size_t>(index)];
    ++home.sleeping;
    state.asleep = true;
    awake.store(-1, std::memory_order_relaxed);
    home.cv.wait(lock, [&] {
      return !state.lent && (stop_ || workHint_.load(std::memory_order_relaxed) > 0);
    });
    awake.store(sched_getcpu(), std::memory_order_relaxed);
    state.asleep = false;
    --home.sleeping;
  }
}

void Engine::help(Job* job) {
  job->claimLoop(tlsWorker.index);
  std::lock_guard<std::mutex> lock(job->mu);
  if (job->helpers.fetch_sub(1, std::memory_order_acq_rel) == 1) job->cv.notify_one();
}

void Engine::parallelFor(std::uint64_t total, std::uint64_t chunk,
                         const std::function<void(std::uint64_t, std::uint64_t, int)>& body) {
  const int self = tlsWorker.index;
  if (total <= chunk || threads_.size() == 1) {
    body(0, total, self);
    return;
  }
  Job job;
  job.body = &body;
  job.total = total;
  job.chunk = chunk;
  job.workHint = &workHint_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(&job);
    workHint_.fetch_add(1, std::memory_order_release);
  }
  // Every sleeping worker may help, whatever its node.
  for (auto& n : nodes_)
    n->cv.notify_all();
  job.claimLoop(self);
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.erase(std::find(jobs_.begin(), jobs_.end(), &job));
  }
  // Every chunk is claimed; wait for helpers still running theirs. Taking job.mu at the end
  // guarantees the last helper has left the job before it goes out of scope.
  spinUntil([&] { return job.helpers.load(std::memory_order_acquire) == 0; });
  std::unique_lock<std::mutex> lock(job.mu);
  job.cv.wait(lock, [&] { return job.helpers.load(std::memory_order_acquire) == 0; });
}

Engine::Attach Engine::stayAttached(Queue& q, Seq done, int node) {
  // First a few polls as the owner, without a word to anyone: a stream fed command after command
  // usually has the next one here within them, and `owner` (which every submit reads) is then
  // not written at all.
  for (int i = 0; i < kQuietPolls; ++i) {
    if (q.submitted.load(std::memory_order_acquire) != done) return Attach::resumed;
    H20_CPU_RELAX();
  }
  int expected = Queue::kOwned;
  q.owner.store(Queue::kAttached);
  Node& home = *nodes_[static_cast<std::size_t>(node)];
  // Counted as the node's spinner: work scheduled meanwhile wakes nobody, this worker takes it.
  home.attached.fetch_add(1);
  Attach result = Attach::released;
  spinUntil([&] {
    const int state = q.owner.load();
    if (state != Queue::kAttached) {
      result = Attach::taken;
      return true;
    }
    if (q.submitted.load() != done) {
      expected = Queue::kAttached;
      result = q.owner.compare_exchange_strong(expected, Queue::kOwned) ? Attach::resumed
                                                                        : Attach::taken;
      return true;
    }
    return q.destroyed.load() || workHint_.load(std::memory_order_relaxed) > 0;
  });
  home.attached.fetch_sub(1);
  if (result != Attach::released) return result;
  expected = Queue::kAttached;
  return q.owner.compare_exchange_strong(expected, Queue::kOwned) ? Attach::released
                                                                  : Attach::taken;
}

void Engine::runQueue(const std::shared_ptr<Queue>& q, Seq until, int attachNode) {
  for (int n = 0;; ++n) {
    // Only the runner stores `completed`.
    const Seq done = q->completed.load(std::memory_order_relaxed);
    if (q->submitted.load(std::memory_order_acquire) == done) {
      if (attachNode >= 0 && !q->destroyed.load()) {
        // Stay on the queue for the next command; runQueue still has it unless it was taken.
        const Attach a = stayAttached(*q, done, attachNode);
        if (a == Attach::taken) return;
        if (a == Attach::resumed) {
          n = 0;
          continue;
        }
        attachNode = -1;  // released: let go below, as a runner that does not attach
      }
      // Drained: give up ownership, then look again (a submit that still saw the queue owned
      // relies on this look). Passing through the submitters' lock in between orders the look
      // after every submit whose load of `owner` came before the store: such a submit holds the
      // lock from before that load until after its `submitted` store (the lock's acquisition is
      // what orders its load, which needs no fence of its own). So the submit path has no full
      // barrier after its stores; letting go, which is rare, pays for it.
      q->owner.store(Queue::kFree);
      { std::lock_guard<base::SpinLock> sync(q->submitMu); }
      int expected = Queue::kFree;
      if (q->submitted.load() != done && q->owner.compare_exchange_strong(expected, Queue::kOwned))
        continue;
      if (q->destroyed.load() && q->owner.load() == Queue::kFree) eraseQueue(q->id);
      return;
    }
    if ((n >= kBatch && workHint_.load(std::memory_order_relaxed) > 0) || done + 1 > until) {
      schedule(q);  // stays scheduled; other ready queues get a turn first
      return;
    }
    Entry& entry = q->pending.front();

    if (auto* w = std::get_if<driver::WaitCommand>(&entry.command)) {
      auto target = w->queue == q->id ? nullptr : find(w->queue);
      if (target && target->completed.load() < w->seq) {
        std::lock_guard<std::mutex> lock(target->mu);
        target->dependents.emplace_back(w->seq, q);
        target->hasDependents.store(true);
        // Parked, unless the target completed meanwhile (its runner looks at hasDependents after
        // storing `completed`; at least one of the two sees the other).
        if (target->completed.load() < w->seq) return;  // resumed by the target's completion
        target->dependents.pop_back();
        target->hasDependents.store(!target->dependents.empty());
      }
    } else if (auto* x = std::get_if<driver::WaitSharedCommand>(&entry.command)) {
      if (!sharedDone(x->event->state(), x->value)) {
        parkExternal(q, x->event, x->value);  // resumed by externalWaitMain
        return;
      }
      if (x->event->state().failed(x->value))
        faults_->raise(q->chip,
                       {h20ErrorLaunchFailure,
                        fmt::format("record {} of an interprocess event this stream waited for "
                                    "failed: its work was skipped on a faulted device, or the "
                                    "process that recorded it exited first",
                                    x->value)});
      x->event.reset();
    } else {
      execute(entry.command, q->chip);
    }

    const Seq seq = entry.seq;
    q->pending.pop_front();
    q->completed.store(seq);
    if (q->hostWaiters.load() > 0) {
      // Taking the lock orders the notify after a waiter's last look at `completed`.
      std::lock_guard<std::mutex> lock(q->mu);
      q->hostCv.notify_all();
    }
    if (q->hasDependents.load()) {
      std::vector<std::shared_ptr<Queue>> resumed;
      {
        std::lock_guard<std::mutex> lock(q->mu);
        auto& deps = q->dependents;
        for (auto it = deps.begin(); it != deps.end();) {
          if (it->first <= seq) {
            resumed.push_back(std::move(it->second));
            it = deps.erase(it);
          } else {
            ++it;
          }
        }
        q->hasDependents.store(!deps.empty());
      }
      for (auto& r : resumed)
        schedule(std::move(r));
    }
  }
}

void Engine::execute(Command& command, int chip) {
  // After a fault the chip's work is skipped (but still completes) until the chip is reset, and so
  // are copies and fills of other chips that touch its memory.
  auto faulted = [&](int c) { return c >= 0 && faults_->faulted(c); };
  bool skip = faulted(chip);
  if (const auto* c = std::get_if<driver::CopyCommand>(&command))
    skip = skip || faulted(c->otherChips[0]) || faulted(c->otherChips[1]);
  else if (const auto* f = std::get_if<driver::FillCommand>(&command))
    skip = skip || faulted(f->otherChip);
  std::visit(
      [&](auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, driver::MarkerCommand>) {
          if (c.timestampNs)
            c.timestampNs->store(std::max<std::uint64_t>(nowNs(), 1), std::memory_order_release);
        } else if constexpr (std::is_same_v<T, driver::SignalCommand>) {
          // Runs even on a faulted chip (as failed): other processes must not wait forever.
          driver::finishSharedRecord(c.event->state(), c.value, skip);
          c.event.reset();
        } else if constexpr (std::is_same_v<T, driver::WaitCommand> ||
                             std::is_same_v<T, driver::WaitSharedCommand>) {
          // handled by runQueue
        } else if (skip) {
          return;
        } else if constexpr (std::is_same_v<T, driver::KernelCommand>) {
          runKernel(c, chip);
        } else if constexpr (std::is_same_v<T, driver::CopyCommand>) {
          auto* dst = static_cast<unsigned char*>(c.dst);
          auto* src = static_cast<const unsigned char*>(c.src);
          if (c.stageThroughHost) {
            // Device -> host bounce buffer -> device, as a copy between chips without a peer path
            // does on real hardware: twice the memory traffic of a direct copy. Chunks are spread
            // over the workers like any large copy, each through its own bounce buffer.
            parallelFor((c.bytes + kCopyChunkBytes - 1) / kCopyChunkBytes, 1,
                        [&](std::uint64_t b, std::uint64_t e, int) {
                          thread_local std::vector<unsigned char> bounce(kCopyChunkBytes);
                          for (std::uint64_t chunk = b; chunk < e; ++chunk) {
                            const std::size_t off = chunk * kCopyChunkBytes;
                            const std::size_t n = std::min(kCopyChunkBytes, c.bytes - off);
                            std::memcpy(bounce.data(), src + off, n);
                            std::memcpy(dst + off, bounce.data(), n);
                          }
                        });
          } else if (c.bytes < kParallelCopyBytes) {
            std::memcpy(dst, src, c.bytes);
          } else {
            parallelFor((c.bytes + kCopyChunkBytes - 1) / kCopyChunkBytes, 1,
                        [&](std::uint64_t b, std::uint64_t e, int) {
                          const std::size_t off = b * kCopyChunkBytes;
                          const std::size_t end =
                              std::min<std::size_t>(e * kCopyChunkBytes, c.bytes);
                          std::memcpy(dst + off, src + off, end - off);
                        });
          }
          c.keepAlive.reset();
        } else if constexpr (std::is_same_v<T, driver::FillCommand>) {
          auto* dst = static_cast<unsigned char*>(c.dst);
          if (c.bytes < kParallelCopyBytes) {
            std::memset(dst, c.value, c.bytes);
          } else {
            parallelFor((c.bytes + kCopyChunkBytes - 1) / kCopyChunkBytes, 1,
                        [&](std::uint64_t b, std::uint64_t e, int) {
                          const std::size_t off = b * kCopyChunkBytes;
                          const std::size_t end =
                              std::min<std::size_t>(e * kCopyChunkBytes, c.bytes);
                          std::memset(dst + off, c.value, end - off);
                        });
          }
        } else if constexpr (std::is_same_v<T, driver::HostCommand>) {
          try {
            c.fn();
          } catch (const std::exception& e) {
            faults_->raise(chip, {h20ErrorLaunchFailure,
                                  fmt::format("host function threw an exception: {}", e.what())});
          } catch (...) {
            faults_->raise(chip, {h20ErrorLaunchFailure, "host function threw an exception"});
          }
        }
      },
      command);
}

void Engine::runKernel(const driver::KernelCommand& k, int chip) {
  KernelRun run;
  const std::uint64_t gx = k.grid.x, gy = k.grid.y;
  const std::uint64_t total = gx * gy * k.grid.z;
  // Enough chunks for load balance across workers, few enough to keep the claim traffic low.
  const std::uint64_t chunk =
      std::max<std::uint64_t>(1, total / (static_cast<std::uint64_t>(threads_.size()) * 16));
  auto body = [&](std::uint64_t begin, std::uint64_t end, int worker) {
    h20KernelContext ctx{};
    ctx.gridDim = k.grid;
    ctx.blockDim = k.block;
    ctx.device = k.device;
    ctx.workerIndex = worker;
    ctx.internal = static_cast<driver::KernelFaultSink*>(&run);
    ctx.sharedMemBytes = k.sharedMemBytes;
    try {
      ctx.sharedMem = tlsSharedMem.get(k.sharedMemBytes);
    } catch (const std::bad_alloc&) {
      run.report(h20ErrorLaunchFailure, "out of host memory for the block's shared memory");
      return;
    }
    for (std::uint64_t b = begin; b < end; ++b) {
      if (run.faulted()) return;  // the launch failed: its remaining blocks are not run
      ctx.blockIdx.x = static_cast<unsigned>(b % gx);
      ctx.blockIdx.y = static_cast<unsigned>((b / gx) % gy);
      ctx.blockIdx.z = static_cast<unsigned>(b / (gx * gy));
      try {
        k.fn(&ctx, k.args.empty() ? nullptr : k.args.data());
      } catch (const std::exception& e) {
        run.report(h20ErrorLaunchFailure,
                   fmt::format("kernel threw an exception: {}", e.what()).c_str());
      } catch (...) {
        run.report(h20ErrorLaunchFailure, "kernel threw an exception");
      }
    }
  };
  if (total <= chunk)
    body(0, total, tlsWorker.index);  // one chunk: no job for helpers, no std::function
  else
    parallelFor(total, chunk, body);
  if (run.faulted()) {
    faults_->raise(chip, {run.code(), fmt::format("kernel {} (launch #{} on stream {:#x} of device "
                                                  "{}) failed: {}",
                                                  reinterpret_cast<const void*>(k.fn), k.launchId,
                                                  k.streamTag, k.device, run.message())});
  }
}

}  // namespace h20::emu
