// util.hpp - small helpers over the runtime's C API shared by the library's files.
#pragma once

#include <h20/h20_runtime.h>

namespace h20::ccl {

// Makes `device` current for the calling thread while it lives, then restores the device that was
// current before. The library changes the current device only to reach a rank's default stream
// and to enable peer access; the caller never sees the change.
class DeviceGuard {
 public:
  DeviceGuard() { ok_ = h20GetDevice(&saved_) == h20Success; }
  explicit DeviceGuard(int device) : DeviceGuard() { set(device); }
  ~DeviceGuard() {
    if (ok_) h20SetDevice(saved_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  // Makes `device` current (errors surface at the next call that uses it).
  void set(int device) {
    if (device != current_) h20SetDevice(device);
    current_ = device;
  }

 private:
  int saved_ = 0;
  int current_ = -1;
  bool ok_ = false;
};

}  // namespace h20::ccl
