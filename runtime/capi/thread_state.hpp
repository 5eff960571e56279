// thread_state.hpp - per-host-thread error state of the C API (CUDA's "last error").
#pragma once

#include <h20/h20_runtime.h>

#include <string>

namespace h20::capi {

struct ThreadErrorState {
  h20Error_t last = h20Success;
  std::string message;
};

ThreadErrorState& threadErrors();

}  // namespace h20::capi
