// error.hpp - how libh20ccl reports errors internally.
//
// Internal code throws ccl::Error (a code and a message with values); the C entry points in
// api.cpp catch it, store the message as the thread's last error and return the code. Runtime
// calls are wrapped with check(), which turns a failed h20* call into an Error carrying the
// runtime's own message, so a caller of the library sees why the runtime refused.
#pragma once

#include <h20/h20_runtime.h>

#include <fmt/format.h>

#include <exception>
#include <string>
#include <utility>

namespace h20::ccl {

class Error : public std::exception {
 public:
  Error(h20Error_t code, std::string message) : code_(code), message_(std::move(message)) {}
  h20Error_t code() const { return code_; }
  const std::string& message() const { return message_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  h20Error_t code_;
  std::string message_;
};

template <class... Args>
[[noreturn]] void fail(h20Error_t code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

// Throws Error(rc, "<what>: <runtime message>") unless rc is h20Success.
void check(h20Error_t rc, const char* what);

// Name of a data type for messages ("H20_R_32F"), or "h20DataType(<n>)".
std::string typeName(h20DataType type);

}  // namespace h20::ccl
