// event.cpp - event recording and completion (see event.hpp).
#include "core/event.hpp"

#include "core/device.hpp"
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

void Event::record(Stream& stream) {
  EventSlots* block;
  int slot = -1;
  {
    std::lock_guard<base::SpinLock> lock(mu_);
    if (block_) {
      for (int i = 1; i <= kSlots && slot < 0; ++i) {
        const int s = (current_ + i) % kSlots;
        const bool isCurrent = block_.get() == captured_ && s == current_;
        // A slot with a time is free: its marker has run (the write this load acquires).
        if (!isCurrent && block_->time(s).load(std::memory_order_acquire) != 0) slot = s;
      }
    }
    if (slot < 0) {
      // Every slot waits for its marker (or none exists yet): a fresh block. Retired blocks whose
      // markers have all run go, except the one capture_ still reads; looked at only when their
      // number has doubled, so that a long queue of pending records costs O(1) each.
      if (block_) retired_.push_back(std::move(block_));
      if (retired_.size() >= pruneAt_) {
        retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                      [&](const std::unique_ptr<EventSlots>& b) {
                                        return b.get() != captured_ && b->allRun();
                                      }),
                       retired_.end());
        pruneAt_ = std::max<std::size_t>(kPruneMin, 2 * retired_.size());
      }
      block_ = std::make_unique<EventSlots>();
      slot = 0;
    }
    block_->time(slot).store(0, std::memory_order_relaxed);
    block = block_.get();
  }
  driver::Seq seq;
  try {
    seq = stream.device().submit(stream, driver::MarkerCommand{&block->time(slot)});
  } catch (...) {
    block->time(slot).store(EventSlots::kFree, std::memory_order_relaxed);  // nothing writes it
    throw;
  }
  std::lock_guard<base::SpinLock> lock(mu_);
  capture_ = {stream.queue(), seq};
  captured_ = block;
  current_ = slot;
}

Event::Capture Event::capture() const {
  std::lock_guard<base::SpinLock> lock(mu_);
  return capture_;
}

std::uint64_t Event::currentTime() const {
  return captured_->time(current_).load(std::memory_order_acquire);
}

bool Event::completed() const {
  std::lock_guard<base::SpinLock> lock(mu_);
  return !capture_.recorded() || currentTime() != 0;
}

std::optional<std::uint64_t> Event::timestampNs() const {
  std::lock_guard<base::SpinLock> lock(mu_);
  if (!capture_.recorded()) return std::nullopt;
  const std::uint64_t t = currentTime();
  if (t == 0) return std::nullopt;
  return t;
}

void Event::wait() const {
  const Capture c = capture();
  if (c.recorded()) device_.driver().wait(c.queue, c.seq, (flags_ & h20EventBlockingSync) == 0);
}

}  // namespace h20::rt
