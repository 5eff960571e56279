// api_guard.hpp - the one wrapper every extern "C" entry point runs its body in.
//
// guarded() initialises the runtime on first use, refuses calls from host functions and kernels
// (h20ErrorNotPermitted), turns rt::Error and std::bad_alloc into return codes, records the
// thread's last error with its message, and logs it. Bodies return h20Success or a status that is
// not an error (h20ErrorNotReady); every failure is thrown.
#pragma once

#include <h20/h20_runtime.h>

#include "core/error.hpp"
#include "core/runtime.hpp"

#include <h20_base/enum_value.hpp>

#include <cstring>
#include <exception>
#include <new>
#include <string>

namespace h20::capi {

// True while the calling thread runs engine work (a host function or a kernel), which may not call
// the API. Never initialises the runtime.
bool onEngineThread();

// Records `code` with "api: message" as the calling thread's last error; logs it; returns code.
h20Error_t recordError(const char* api, h20Error_t code, const std::string& message);

template <class Body>
h20Error_t guarded(const char* api, Body&& body) noexcept {
  try {
    rt::Runtime& runtime = rt::Runtime::get();
    if (runtime.driver().onEngineThread())
      return recordError(api, h20ErrorNotPermitted,
                         "the h20 API may not be called from a host function or a kernel");
    return body(runtime);
  } catch (const rt::Error& e) {
    return recordError(api, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return recordError(api, h20ErrorMemoryAllocation, "out of host memory");
  } catch (const std::exception& e) {
    return recordError(api, h20ErrorUnknown, e.what());
  } catch (...) {
    return recordError(api, h20ErrorUnknown, "unexpected exception");
  }
}

using base::rawEnum;

// Turns a failed driver status into the error the entry point returns.
inline void check(const driver::Status& status) {
  if (!status.ok()) throw rt::Error(status.code, status.message);
}

// Argument checks shared by the entry points.
template <class T>
void requireOut(T* ptr, const char* name) {
  if (ptr == nullptr) rt::fail(h20ErrorInvalidValue, "{} is NULL", name);
}

}  // namespace h20::capi
