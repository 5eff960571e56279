// runtime.hpp - the Python objects over the runtime's devices, streams and events:
// h20.Device, h20.Stream and h20.Event (bound in runtime.cpp).
#pragma once

#include "common.hpp"

namespace h20py {

// h20.Device: a visible chip, by ordinal (checked when made).
struct Device {
  int index = 0;
};

// h20.Stream: an owned stream of one device, destroyed with the object (h20StreamDestroy
// returns at once; work already enqueued still completes).
class Stream {
 public:
  Stream(int device, bool nonBlocking, int priority);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  h20Stream_t handle() const { return handle_; }
  int device() const { return device_; }
  StreamRef ref() const { return {handle_, device_}; }

 private:
  h20Stream_t handle_ = nullptr;
  int device_ = 0;
};

// h20.Event: an owned event of one device.
class Event {
 public:
  Event(int device, unsigned flags);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  h20Event_t handle() const { return handle_; }
  int device() const { return device_; }
  unsigned flags() const { return flags_; }

 private:
  h20Event_t handle_ = nullptr;
  int device_ = 0;
  unsigned flags_ = 0;
};

// A device argument: None (the current device), an int ordinal or an h20.Device; checked.
int deviceArg(py::handle obj, const char* what);

}  // namespace h20py
