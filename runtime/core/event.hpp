// event.hpp - an event: a marker recorded into a stream, queryable and timed.
//
// Recording enqueues a marker command; the event remembers the (queue, sequence number) of its
// most recent record and, for timing events, the slot the marker writes its completion time to.
// Re-recording replaces the capture; a pending capture that is replaced or whose event is
// destroyed still completes harmlessly (the slot is shared).
#pragma once

#include "driver.hpp"

#include <cstdint>
#include <memory>
#include <mutex>

namespace h20::rt {

class Device;
class Stream;

class Event {
 public:
  struct Capture {
    driver::QueueId queue = 0;
    driver::Seq seq = 0;
    std::shared_ptr<std::uint64_t> timestampNs;  // null for h20EventDisableTiming
    bool recorded() const { return seq != 0; }
  };

  Event(Device& device, unsigned flags) : device_(device), flags_(flags) {}
  Device& device() const { return device_; }
  unsigned flags() const { return flags_; }
  bool timing() const { return (flags_ & h20EventDisableTiming) == 0; }

  void record(Stream& stream);
  Capture capture() const;
  // True if never recorded or the captured work has completed.
  bool completed() const;
  void wait() const;

 private:
  Device& device_;
  unsigned flags_;
  mutable std::mutex mu_;
  Capture capture_;
};

}  // namespace h20::rt
