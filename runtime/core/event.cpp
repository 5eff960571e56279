// event.cpp - event recording and completion (see event.hpp).
#include "core/event.hpp"

#include "core/device.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "core/stream.hpp"

#include <algorithm>
#include <mutex>

namespace h20::rt {

Event::~Event() {
  // Blocks a pending marker will still write to go to the runtime, which frees them once run.
  if (block_) retired_.push_back(std::move(block_));
  for (auto& b : retired_)
    if (!b->allRun()) device_.runtime().keepUntilRun(std::move(b));
}

EventSlots* Event::capturedBlock(std::uintptr_t word) {
  return reinterpret_cast<EventSlots*>(word & ~kSlotMask);
}

std::uint64_t Event::latestRecord() const {
  return shared_ ? shared_->state().recorded.load(std::memory_order_acquire) : 0;
}

void Event::checkRecordSucceeded(std::uint64_t record) const {
  if (shared_ && shared_->state().failed(record))
    fail(h20ErrorLaunchFailure,
         "record {} of the interprocess event failed: its work was skipped on a faulted device, "
         "or the process that recorded it exited first",
         record);
}

void Event::record(Stream& stream) {
  if (shared_) {
    driver::SharedEventState& st = shared_->state();
    const std::uint64_t record = st.recorded.fetch_add(1, std::memory_order_acq_rel) + 1;
    // The ring holds kSlots records: the oldest must have finished before its slot is reused.
    if (record > static_cast<std::uint64_t>(driver::SharedEventState::kSlots))
      device_.driver().waitShared(st, record - driver::SharedEventState::kSlots, true);
    driver::beginSharedRecord(st, record, shared_->recorderId);
    try {
      stream.device().submit(stream, driver::SignalCommand{shared_, record});
    } catch (...) {
      // Nothing will finish it: waiters in other processes must not wait for it forever.
      driver::finishSharedRecord(st, record, true);
      throw;
    }
    return;
  }
  // One critical section for the whole record: concurrent records of one event are rare, and the
  // readers (query, elapsed time) do not take the lock.
  std::lock_guard<base::SpinLock> lock(mu_);
  const std::uintptr_t word = captured_.load(std::memory_order_relaxed);
  int slot = -1;
  if (block_) {
    const int current = static_cast<int>(word & kSlotMask);
    for (int i = 1; i <= kSlots && slot < 0; ++i) {
      const int s = (current + i) % kSlots;
      const bool isCurrent = capturedBlock(word) == block_.get() && s == current;
      // A slot with a time is free: its marker has run (the write this load acquires).
      if (!isCurrent && block_->time(s).load(std::memory_order_acquire) != 0) slot = s;
    }
  }
  if (slot < 0) {
    // Every slot waits for its marker (or none exists yet): another block. The oldest retired
    // block is taken again once its markers have all run (blocks are never freed while the event
    // lives, so a reader never sees one go), else a new one.
    if (block_) retired_.push_back(std::move(block_));
    if (retired_.size() > 1 && retired_.front().get() != capturedBlock(word) &&
        retired_.front()->allRun()) {
      block_ = std::move(retired_.front());
      retired_.pop_front();
    } else {
      block_ = std::make_unique<EventSlots>();
    }
    slot = 0;
  }
  EventSlots* block = block_.get();
  block->time(slot).store(0, std::memory_order_relaxed);
  driver::Seq seq;
  try {
    seq = stream.device().submit(stream, driver::MarkerCommand{&block->time(slot)});
  } catch (...) {
    block->time(slot).store(EventSlots::kFree, std::memory_order_relaxed);  // nothing writes it
    throw;
  }
  capture_ = {stream.queue(), seq};
  captured_.store(reinterpret_cast<std::uintptr_t>(block) | static_cast<std::uintptr_t>(slot),
                  std::memory_order_release);
}

Event::Capture Event::capture() const {
  std::lock_guard<base::SpinLock> lock(mu_);
  return capture_;
}

std::optional<std::uint64_t> Event::timestampNs() const {
  const std::uintptr_t word = captured_.load(std::memory_order_acquire);
  if (word == 0) return std::nullopt;
  const std::uint64_t t =
      capturedBlock(word)->time(static_cast<int>(word & kSlotMask)).load(std::memory_order_acquire);
  if (t == 0) return std::nullopt;
  return t;
}

bool Event::completed() const {
  if (shared_) return shared_->state().completed.load(std::memory_order_acquire) >= latestRecord();
  return captured_.load(std::memory_order_relaxed) == 0 || timestampNs().has_value();
}

void Event::wait() const {
  if (shared_) {
    const std::uint64_t record = latestRecord();
    device_.driver().waitShared(shared_->state(), record, (flags_ & h20EventBlockingSync) == 0);
    checkRecordSucceeded(record);
    return;
  }
  const Capture c = capture();
  if (c.recorded()) device_.driver().wait(c.queue, c.seq, (flags_ & h20EventBlockingSync) == 0);
}

}  // namespace h20::rt
