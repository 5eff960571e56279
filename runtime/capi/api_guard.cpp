// api_guard.cpp - the thread's last error and the error log (see api_guard.hpp).
#include "capi/api_guard.hpp"

#include "capi/thread_state.hpp"
#include "core/log.hpp"

namespace h20::capi {

bool onEngineThread() {
  return rt::Runtime::aliveForThreadExit() && rt::Runtime::get().driver().onEngineThread();
}

ThreadErrorState& threadErrors() {
  thread_local ThreadErrorState caller;
  thread_local ThreadErrorState engineWork;
  return onEngineThread() ? engineWork : caller;
}

h20Error_t recordError(const char* api, h20Error_t code, const std::string& message) {
  if (code == h20Success || code == h20ErrorNotReady) return code;
  ThreadErrorState& state = threadErrors();
  state.last = code;
  state.message = fmt::format("{}: {}", api, message);
  // A returned error is the caller's to handle (and many are expected, e.g. "already enabled"),
  // so it is logged as a warning: silent by default, shown with H20_LOG_LEVEL=warning.
  rt::log(rt::LogLevel::warning, "{} ({})", state.message, h20GetErrorName(code));
  return code;
}

}  // namespace h20::capi
