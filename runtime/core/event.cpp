// event.cpp - event recording and completion (see event.hpp).
#include "core/event.hpp"

#include "core/device.hpp"
#include "core/stream.hpp"

namespace h20::rt {

void Event::record(Stream& stream) {
  Capture c;
  if (timing()) c.timestampNs = std::make_shared<std::uint64_t>(0);
  c.queue = stream.queue();
  c.seq = stream.device().submit(stream, driver::MarkerCommand{c.timestampNs});
  std::lock_guard<std::mutex> lock(mu_);
  capture_ = std::move(c);
}

Event::Capture Event::capture() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_;
}

bool Event::completed() const {
  driver::QueueId queue;
  driver::Seq seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue = capture_.queue;
    seq = capture_.seq;
  }
  return seq == 0 || device_.driver().completed(queue) >= seq;
}

void Event::wait() const {
  const Capture c = capture();
  if (c.recorded()) device_.driver().wait(c.queue, c.seq, (flags_ & h20EventBlockingSync) == 0);
}

}  // namespace h20::rt
