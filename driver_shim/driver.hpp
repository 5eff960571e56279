// driver.hpp - the narrow interface the runtime programs against.
//
// A Driver owns chips: their properties, their device memory and their engine queues. It speaks in
// chip indices, queue ids, sequence numbers and plain structs, so that an out-of-process backend
// (a device daemon) can implement it as well as the embedded emulator does. It knows nothing of
// streams, events, handles, the current device or argument validation: those belong to the
// runtime, which validates every request before it reaches a driver.
//
// Queues are in-order: each submitted command gets the next sequence number of its queue (starting
// at 1) and completes after every command before it. Ordering across queues is expressed with
// Wait commands. A kernel fault makes its chip faulted: later commands on that chip's queues, and
// copies and fills on other chips' queues that touch its memory, are skipped (they still complete,
// so nothing waits forever) until resetChip.
#pragma once

#include <h20/h20_runtime.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace h20::driver {

// The outcome of a driver call: a runtime error code and, on failure, a message with values.
struct Status {
  h20Error_t code = h20Success;
  std::string message;
  bool ok() const { return code == h20Success; }
  static Status success() { return {}; }
};

using QueueId = std::uint64_t;
using Seq = std::uint64_t;

// A kernel's argument bytes, copied at launch and aligned to 16 bytes. Arguments of up to
// kInline bytes (the common case) live in the command itself, so a launch allocates nothing.
class KernelArgs {
 public:
  static constexpr std::size_t kInline = 64;
  KernelArgs() = default;
  KernelArgs(KernelArgs&& o) noexcept { *this = std::move(o); }
  KernelArgs& operator=(KernelArgs&& o) noexcept {
    size_ = o.size_;
    heap_ = std::move(o.heap_);
    if (!heap_) std::memcpy(inline_, o.inline_, size_);
    o.size_ = 0;
    return *this;
  }
  KernelArgs(const KernelArgs&) = delete;
  KernelArgs& operator=(const KernelArgs&) = delete;

  void assign(const unsigned char* first, const unsigned char* last) {
    size_ = static_cast<std::size_t>(last - first);
    heap_.reset();
    if (size_ > kInline) heap_.reset(new Block[(size_ + sizeof(Block) - 1) / sizeof(Block)]);
    if (size_) std::memcpy(ptr(), first, size_);
  }
  const unsigned char* data() const {
    return heap_ ? reinterpret_cast<const unsigned char*>(heap_.get()) : inline_;
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct alignas(16) Block {
    unsigned char bytes[16];
  };
  unsigned char* ptr() { return heap_ ? reinterpret_cast<unsigned char*>(heap_.get()) : inline_; }
  alignas(16) unsigned char inline_[kInline];
  std::size_t size_ = 0;
  std::unique_ptr<Block[]> heap_;
};

// Runs one block of a kernel. Set up by the runtime, run by the driver's engine.
struct KernelCommand {
  h20KernelFn fn = nullptr;
  h20Dim3 grid{1, 1, 1};
  h20Dim3 block{1, 1, 1};
  KernelArgs args;
  std::size_t sharedMemBytes = 0;
  int device = 0;                // runtime ordinal, reported to the kernel through its context
  std::uint64_t launchId = 0;    // per-device launch number, named in fault messages
  std::uintptr_t streamTag = 0;  // the stream handle's value, named in fault messages
};

// Where a running kernel reports a fault (h20KernelContext::internal points to one). `code` is
// the kernel's value as an int, unchecked: the fault raised is h20ErrorIllegalAddress when it is
// that, h20ErrorLaunchFailure for anything else.
class KernelFaultSink {
 public:
  virtual void report(int code, const char* message) = 0;

 protected:
  ~KernelFaultSink() = default;
};

struct CopyCommand {
  void* dst = nullptr;
  const void* src = nullptr;
  std::size_t bytes = 0;
  std::shared_ptr<void> keepAlive;  // e.g. a staging buffer released when the copy completed
  // Between chips without a usable link: the data goes through a host bounce buffer, in chunks.
  bool stageThroughHost = false;
  // Chips other than the queue's whose memory the copy touches (-1: none). The copy is skipped
  // when any of them, or the queue's chip, is faulted.
  std::array<int, 2> otherChips{-1, -1};
};

struct FillCommand {
  void* dst = nullptr;
  unsigned char value = 0;
  std::size_t bytes = 0;
  int otherChip = -1;  // a chip other than the queue's that owns dst, or -1 (as for copies)
};

// Runs a host function on an engine thread.
struct HostCommand {
  std::function<void()> fn;
};

// Blocks the queue until `queue` has completed `seq`.
struct WaitCommand {
  QueueId queue = 0;
  Seq seq = 0;
};

// Completes immediately, storing the completion time into *timestampNs (steady clock, never 0;
// a release store, before the marker counts as completed). The submitter keeps the slot alive
// until the marker has run.
struct MarkerCommand {
  std::atomic<std::uint64_t>* timestampNs = nullptr;  // may be null: no timing
};

// The state of an interprocess event, in memory that every process using the event maps (one
// page). Each record takes the next number (`recorded`) and a slot of the ring, which holds its
// number, who made it and whether it is pending, done or failed. `completed` is the highest
// number up to which every record has finished, so a wait for record r is released only by
// record r's own completion (records finish out of order when they are made on several streams),
// never by a later one's. At most kSlots records may be pending: a further record waits on the
// host for the oldest. When a record fails (its chip faulted, or the process that made it exited
// with it pending: h20d completes it for the others) waits for it end with an error.
struct SharedEventState {
  static constexpr int kSlots = 112;
  enum : std::uint32_t { kFree = 0, kPending = 1, kDone = 2, kFailed = 3 };
  struct alignas(32) Slot {
    std::atomic<std::uint64_t> record{0};
    std::atomic<std::uint64_t> recorder{0};  // the recording process's session (daemon's id)
    std::atomic<std::uint32_t> state{kFree};
  };
  std::atomic<std::uint64_t> recorded{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint32_t> wake{0};
  std::atomic<std::uint32_t> sleepers{0};  // threads in futex wait on `wake`
  Slot slots[kSlots];

  Slot& slot(std::uint64_t record) { return slots[record % kSlots]; }
  const Slot& slot(std::uint64_t record) const { return slots[record % kSlots]; }
  // True when record `value` failed (read once the wait for it has ended; false if its slot has
  // been taken by a later record since).
  bool failed(std::uint64_t value) const {
    const Slot& s = slot(value);
    return s.record.load(std::memory_order_acquire) == value &&
           s.state.load(std::memory_order_acquire) == kFailed;
  }
};
static_assert(sizeof(SharedEventState) <= 4096, "an interprocess event fits in one page");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "shared event words must be lock-free to work across processes");

// Takes record number `record` for a record by `recorder`: marks its slot pending.
void beginSharedRecord(SharedEventState& state, std::uint64_t record, std::uint64_t recorder);
// Marks record `record` done (or failed) if it is still pending, advances `completed` over every
// finished record and wakes the waiters, in any process.
void finishSharedRecord(SharedEventState& state, std::uint64_t record, bool failed);

// A mapped interprocess event; unmapped (and released with the daemon) when the last reference
// goes. Commands that use it hold a reference until they have run.
class SharedEvent {
 public:
  virtual ~SharedEvent() = default;
  virtual SharedEventState& state() const = 0;
  // Who records: written into each record's slot, so that the daemon can tell which pending
  // records an exiting process leaves behind.
  std::uint64_t recorderId = 0;
};

// Finishes record `value` of a shared event (after everything before it on the queue): done, or
// failed when the queue's chip is faulted (its work was skipped).
struct SignalCommand {
  std::shared_ptr<SharedEvent> event;
  std::uint64_t value = 0;
};

// Blocks the queue until record `value` of a shared event has finished. A failed record faults
// the queue's chip (its later work is skipped, as after any fault).
struct WaitSharedCommand {
  std::shared_ptr<SharedEvent> event;
  std::uint64_t value = 0;
};

using Command = std::variant<KernelCommand, CopyCommand, FillCommand, HostCommand, WaitCommand,
                             MarkerCommand, SignalCommand, WaitSharedCommand>;

// A fault raised during execution, sticky for its chip until resetChip.
struct Fault {
  h20Error_t code = h20ErrorLaunchFailure;
  std::string message;
};

// Address range a chip's device memory lives in (device pointers are host-addressable in-process).
struct AddressRange {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool contains(std::uintptr_t p) const { return p >= begin && p < end; }
};

// How two chips reach each other. Only direct and switched links carry peer access; a host
// path means copies are staged through host memory.
enum class LinkKind { self, direct, switched, host };

struct PeerLink {
  LinkKind kind = LinkKind::host;
  double bandwidth = 0;  // bytes/s, per direction
  double latencyUs = 0;
  int hops = -1;  // chip-to-chip links traversed; 0 for self, -1 for a host path
  bool accessSupported() const { return kind == LinkKind::direct || kind == LinkKind::switched; }
  // Relative link performance, 0 is best (as CUDA's P2P performance rank).
  int performanceRank() const { return accessSupported() ? hops - 1 : -1; }
};

// Where a chip is attached to the host.
struct ChipAttachment {
  int numaNode = -1;      // -1: the host has no NUMA support
  std::vector<int> cpus;  // host CPUs near the chip
  double hostBandwidth = 64.0e9;
  double hostLatencyUs = 5.0;
};

struct Topology {
  std::string name;  // preset name or file path
  int chips = 0;
  std::vector<PeerLink> links;  // chips * chips, row = source
  std::vector<ChipAttachment> attachment;
  const PeerLink& link(int from, int to) const {
    return links[static_cast<std::size_t>(from * chips + to)];
  }
};

// The bytes of an interprocess memory handle (h20IpcMemHandle_t), opaque to the runtime.
using IpcHandleBytes = std::array<unsigned char, 64>;

// Memory of another process mapped into this one by importMemory.
struct ImportedMemory {
  int chip = 0;
  void* ptr = nullptr;
  std::size_t bytes = 0;      // the size the exporter allocated
  bool firstMapping = false;  // false: this process had it open already (a reference was added)
};

class Driver {
 public:
  virtual ~Driver() = default;

  // Identity.
  virtual std::string name() const = 0;
  virtual int version() const = 0;

  // Chips.
  virtual int chipCount() const = 0;
  virtual h20DeviceProp properties(int chip) const = 0;

  // Device memory. Alignment is at least 256 bytes.
  virtual Status allocate(int chip, std::size_t bytes, void** out) = 0;
  virtual Status free(int chip, void* ptr) = 0;
  // Free and total bytes of the chip (free counts every process's allocations where the backend
  // serves several; h20ErrorDeviceUnavailable when its daemon is gone).
  virtual Status memInfo(int chip, std::size_t* freeBytes, std::size_t* totalBytes) const = 0;
  // Bytes of the chip's memory held by live allocations (including the runtime's pool).
  virtual std::size_t memUsed(int chip) const = 0;
  virtual AddressRange addressRange(int chip) const = 0;

  // Pinned host memory placed near `chip` (its NUMA node, where the host has NUMA).
  virtual Status allocateHost(int chip, std::size_t bytes, void** out) = 0;
  virtual void freeHost(void* ptr, std::size_t bytes) = 0;

  // Queues. createQueue: lower priority values are served first (CUDA convention).
  virtual QueueId createQueue(int chip, int priority) = 0;
  // Releases the queue once its pending commands have completed; returns at once.
  virtual void destroyQueue(QueueId queue) = 0;
  virtual Seq submit(QueueId queue, Command&& command) = 0;
  virtual Seq completed(QueueId queue) const = 0;
  virtual Seq submitted(QueueId queue) const = 0;
  // The counter submitted() reads, for a caller that reads it often without a call (an acquire
  // load); valid until destroyQueue.
  virtual const std::atomic<Seq>& submittedCounter(QueueId queue) const = 0;
  // Blocks the calling thread until `queue` has completed `seq`. spinFirst: poll briefly before
  // sleeping (lower latency), as CUDA's default synchronisation does.
  virtual void wait(QueueId queue, Seq seq, bool spinFirst) = 0;

  // Interprocess memory. A backend that serves one process (the embedded emulator) returns
  // h20ErrorNotSupported. exportMemory: ptr is the start of an allocate()d block of `chip`.
  // importMemory maps the exported block (once per process: opening it again adds a reference
  // and returns the same pointer); closeImport drops one reference, unmapping it with the last
  // (*lastReference true).
  virtual Status exportMemory(int chip, void* ptr, IpcHandleBytes* out) = 0;
  virtual Status importMemory(const IpcHandleBytes& handle, ImportedMemory* out) = 0;
  virtual Status closeImport(void* ptr, bool* lastReference) = 0;

  // Interprocess events (h20ErrorNotSupported where memory is): createSharedEvent makes one for
  // `chip`; exportEvent gives its handle; importEvent maps another process's (with its chip).
  virtual Status createSharedEvent(int chip, std::shared_ptr<SharedEvent>* out) = 0;
  virtual Status exportEvent(const SharedEvent& event, IpcHandleBytes* out) = 0;
  virtual Status importEvent(const IpcHandleBytes& handle, std::shared_ptr<SharedEvent>* out,
                             int* chip) = 0;
  // Blocks the calling thread until record `value` of the event has completed.
  virtual void waitShared(const SharedEventState& state, std::uint64_t value, bool spinFirst) = 0;

  // Processes and compute modes (h20ComputeMode values). processes(): every process holding
  // memory on any chip (a backend serving one process lists itself). setComputeMode is
  // h20ErrorNotSupported where the backend serves one process.
  struct ProcessUse {
    int pid = 0;
    std::string name;
    int chip = 0;
    std::size_t bytes = 0;
  };
  virtual Status processes(std::vector<ProcessUse>* out) const = 0;
  virtual Status computeMode(int chip, int* mode) const = 0;
  virtual Status setComputeMode(int chip, int mode) = 0;

  // Topology of the chips (links, host attachment).
  virtual const Topology& topology() const = 0;

  // Faults.
  virtual std::optional<Fault> fault(int chip) const = 0;
  virtual void resetChip(int chip) = 0;

  // True on a thread that is running queue work (a kernel block or a host function).
  virtual bool onEngineThread() const = 0;
  // Threads executing work for `chip`.
  virtual int workerCount(int chip) const = 0;
};

// Configuration of the embedded emulator, parsed from the environment by the runtime.
struct EmuConfig {
  int chips = 8;
  std::size_t backingBudgetBytes = 0;  // 0: default (half of the host's physical memory)
  int workerThreads = 0;               // 0: one per host core
  std::string topology = "switch";     // a preset name or a JSON file path
};

std::unique_ptr<Driver> createEmulator(const EmuConfig& config, Status* status);

// Configuration of the device daemon's client.
struct DaemonConfig {
  std::string socketPath;  // empty: the default per-user socket
  int workerThreads = 0;   // this process's engine (execution stays in the client)
};

std::unique_ptr<Driver> createDaemonClient(const DaemonConfig& config, Status* status);

// The backends, chosen by name in one place (H20_DRIVER): "emu" (default) and "daemon".
struct DriverConfig {
  std::string backend = "emu";
  EmuConfig emu;
  DaemonConfig daemon;
};
// The names createDriver accepts, for messages.
const std::vector<std::string>& driverNames();
// nullptr with *status set when the backend is unknown or cannot start.
std::unique_ptr<Driver> createDriver(const DriverConfig& config, Status* status);

}  // namespace h20::driver
