// event.hpp - an event: a marker recorded into a stream, queryable and timed.
//
// Recording enqueues a marker command; the event remembers the (queue, sequence number) of its
// most recent record (the capture) and the slot the marker writes its completion time to. The
// slot also tells completion without asking the driver: the marker runs after everything before
// it on its stream, and writes a time (never 0) as it runs.
//
// Slots come in blocks of kSlots. A record takes a slot whose marker has run (never the current
// capture's), so that a record/query loop allocates nothing and shares no reference count with
// the engine; only when every slot still waits for its marker does the event move to another
// block (an earlier one whose markers have all run, else a new one). Re-recording replaces the
// capture; a pending capture that is replaced, or whose event is destroyed, still completes
// harmlessly into its own slot. An event frees its blocks only when it goes, then the Runtime
// keeps those a marker will still write to until it has run (Runtime::keepUntilRun). Queries read
// the current capture's slot without a lock. Events created with h20EventDisableTiming work the
// same way (the time is then not read).
//
// An interprocess event (h20EventInterprocess, or opened with h20IpcOpenEventHandle) keeps its
// state in memory shared with other processes (driver::SharedEventState) instead: a record takes
// the next record number and enqueues the command that completes it; queries, host waits and
// stream waits compare the completed number with the latest record, whichever process made it.
#pragma once

#include "driver.hpp"

#include <h20_base/spin_lock.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

namespace h20::rt {

class Device;
class Stream;

// A block of event slots: each holds the time its last marker ran at, 0 while one is pending.
struct EventSlots {
  static constexpr int kSlots = 4;
  static constexpr std::uint64_t kFree = 1;  // before the first record
  EventSlots() {
    for (auto& s : slots)
      s.timeNs.store(kFree, std::memory_order_relaxed);
  }
  std::atomic<std::uint64_t>& time(int slot) { return slots[slot].timeNs; }
  const std::atomic<std::uint64_t>& time(int slot) const { return slots[slot].timeNs; }
  bool allRun() const {
    for (const auto& s : slots)
      if (s.timeNs.load(std::memory_order_acquire) == 0) return false;
    return true;
  }

 private:
  // A line each: the engine writes one slot while the host reads and takes others.
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> timeNs;
  };
  Slot slots[kSlots];
};

class Event {
 public:
  struct Capture {
    driver::QueueId queue = 0;
    driver::Seq seq = 0;
    bool recorded() const { return seq != 0; }
  };

  Event(Device& device, unsigned flags, std::shared_ptr<driver::SharedEvent> shared = nullptr)
      : device_(device), flags_(flags), shared_(std::move(shared)) {}
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Device& device() const { return device_; }
  unsigned flags() const { return flags_; }
  bool timing() const { return (flags_ & h20EventDisableTiming) == 0; }
  // The interprocess state, or nullptr for an event of this process only.
  const std::shared_ptr<driver::SharedEvent>& shared() const { return shared_; }
  // For an interprocess event: the latest record number (0: never recorded), and a throw of
  // h20ErrorLaunchFailure when that record failed (skipped on a faulted device, or abandoned by a
  // process that exited).
  std::uint64_t latestRecord() const;
  void checkRecordSucceeded(std::uint64_t record) const;

  void record(Stream& stream);
  Capture capture() const;
  // True if never recorded or the captured work has completed.
  bool completed() const;
  // The steady-clock time the current capture's marker ran at; nullopt if never recorded or
  // still pending.
  std::optional<std::uint64_t> timestampNs() const;
  void wait() const;

 private:
  static constexpr int kSlots = EventSlots::kSlots;
  static constexpr std::uintptr_t kSlotMask = 63;  // blocks are 64-byte aligned
  static EventSlots* capturedBlock(std::uintptr_t word);

  Device& device_;
  unsigned flags_;
  std::shared_ptr<driver::SharedEvent> shared_;
  mutable base::SpinLock mu_;  // serialises records; guards everything below but captured_
  Capture capture_;
  std::unique_ptr<EventSlots> block_;  // where records take their slots
  // Earlier blocks, oldest first: taken again once their markers have all run, freed only with
  // the event (so that a reader of captured_ never sees its block go).
  std::deque<std::unique_ptr<EventSlots>> retired_;
  // The current capture's block | its slot, 0 before the first record: what queries read, without
  // the lock.
  std::atomic<std::uintptr_t> captured_{0};
};

}  // namespace h20::rt
