// stream.hpp - a stream: an in-order queue of work on one device, backed by a driver queue.
//
// The Stream owns its driver queue (released in the destructor; pending work still completes).
// Submission goes through Device::submit, which adds CUDA's implicit synchronisation between the
// legacy default stream and blocking streams. Kinds: the device's legacy default stream (NULL
// handle), per-thread default streams (h20StreamPerThread, blocking) and user streams.
#pragma once

#include "driver.hpp"

#include <atomic>
#include <cstdint>

namespace h20::rt {

class Device;

enum class StreamKind { legacy, perThread, user };

class Stream {
 public:
  Stream(Device& device, StreamKind kind, unsigned flags, int priority);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Device& device() const { return device_; }
  driver::QueueId queue() const { return queue_; }
  StreamKind kind() const { return kind_; }
  unsigned flags() const { return flags_; }
  int priority() const { return priority_; }
  // Synchronises with the legacy default stream (CUDA's "blocking stream").
  bool blocking() const;

  // The handle value shown in messages.
  std::uintptr_t tag() const { return tag_; }
  void setTag(std::uintptr_t tag) { tag_ = tag; }

  // What has been submitted to the stream's queue (the driver's own count, read without a call).
  driver::Seq lastSeq() const { return submitted_->load(std::memory_order_acquire); }
  bool idle() const;
  // Waits for everything submitted so far; does not check faults (Device does).
  void wait(bool spinFirst) const;

 private:
  friend class Device;
  Device& device_;
  StreamKind kind_;
  unsigned flags_;
  int priority_;
  driver::QueueId queue_;
  std::uintptr_t tag_ = 0;
  const std::atomic<driver::Seq>* submitted_;
  // Implicit-synchronisation bookkeeping, written under the device's submit mutex
  // (legacyWaited_ is also read without it, to skip the mutex when there is nothing to wait for).
  std::atomic<driver::Seq> legacyWaited_{0};  // legacy-stream seq this stream already waits for
  driver::Seq waitedByLegacy_ = 0;  // this stream's seq the legacy stream already waits for
};

}  // namespace h20::rt
