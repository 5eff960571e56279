// stream.cpp - stream lifetime and completion (see stream.hpp).
#include "core/stream.hpp"

#include "core/device.hpp"

namespace h20::rt {

Stream::Stream(Device& device, StreamKind kind, unsigned flags, int priority)
    : device_(device),
      kind_(kind),
      flags_(flags),
      priority_(priority),
      queue_(device.driver().createQueue(device.chip(), priority)),
      submitted_(&device.driver().submittedCounter(queue_)) {
  device_.streamCreated(this);
}

Stream::~Stream() {
  device_.streamDestroyed(this);
  device_.driver().destroyQueue(queue_);
}

bool Stream::blocking() const {
  return kind_ != StreamKind::legacy && (flags_ & h20StreamNonBlocking) == 0;
}

bool Stream::idle() const {
  return device_.driver().completed(queue_) >= lastSeq();
}

void Stream::wait(bool spinFirst) const {
  const driver::Seq seq = lastSeq();
  if (seq != 0) device_.driver().wait(queue_, seq, spinFirst);
}

}  // namespace h20::rt
