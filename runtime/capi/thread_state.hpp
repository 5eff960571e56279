// thread_state.hpp - per-host-thread error state of the C API (CUDA's "last error").
//
// Work that the engine runs (host functions, kernels) has a last error of its own on every
// thread: a host thread waiting for a stream may run that stream's ready work itself, and the
// errors that work provokes (h20ErrorNotPermitted for API calls) must not become the waiting
// caller's last error.
#pragma once

#include <h20/h20_runtime.h>

#include <string>

namespace h20::capi {

struct ThreadErrorState {
  h20Error_t last = h20Success;
  std::string message;
};

// The calling thread's state: the engine-work one while the thread runs engine work.
ThreadErrorState& threadErrors();

}  // namespace h20::capi
