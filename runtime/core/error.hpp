// error.hpp - the runtime's internal error type.
//
// Runtime code reports a failed request by throwing Error with the h20Error_t the caller will
// receive and a message naming the argument and its value. The C API layer (capi/) catches it,
// records it as the thread's last error, logs it and returns the code. Nothing else is thrown on
// purpose; std::bad_alloc becomes h20ErrorMemoryAllocation there.
#pragma once

#include <h20/h20_runtime.h>

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace h20::rt {

class Error : public std::runtime_error {
 public:
  Error(h20Error_t code, std::string message)
      : std::runtime_error(std::move(message)), code_(code) {}
  h20Error_t code() const { return code_; }

 private:
  h20Error_t code_;
};

template <class... Args>
[[noreturn]] void fail(h20Error_t code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace h20::rt
