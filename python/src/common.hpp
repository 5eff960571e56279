// common.hpp - what every part of the h20 Python module shares: element types, raising
// h20.Error from a failed C API call, calls made with the GIL released, the calling thread's
// current stream, and a guard that switches the current device for the length of a scope.
//
// The module calls only the public C API (include/h20/*.h). It owns no runtime state of its own
// beyond the per-thread stack of streams made current by `with h20.Stream(...)`.
#pragma once

#include <h20/h20_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>

namespace h20py {

namespace py = pybind11;

// ---- element types -------------------------------------------------------------------------

enum class DType : int {
  kFloat16 = 0,
  kBFloat16 = 1,
  kFloat32 = 2,
  kFloat64 = 3,
  kInt8 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kUInt8 = 8,
  kUInt16 = 9,
  kBool = 10,
};
constexpr int kNumDTypes = 11;

struct DTypeInfo {
  const char* name;       // "float32": the h20 / NumPy / PyTorch name
  int itemsize;           // bytes
  std::uint8_t dlCode;    // DLPack type code
  const char* numpyChar;  // NumPy type character ("" where NumPy has no such type)
};

const DTypeInfo& info(DType t);
// Parses a dtype argument: an h20.dtype, its name ("bfloat16"), a NumPy dtype or scalar type, a
// torch.dtype. Raises TypeError naming `what` for anything else.
DType parseDType(py::handle obj, const char* what);
// The h20 element type of a DLPack type; false if there is none.
bool fromDLPack(std::uint8_t code, std::uint8_t bits, DType* out);
// The type of a buffer-protocol format string ("<f", "e", "q", ...); false if unsupported.
bool fromBufferFormat(const std::string& format, std::size_t itemsize, DType* out);

// ---- errors --------------------------------------------------------------------------------

enum class Lib { kRuntime, kKda, kCcl };

// The detailed message of the calling thread's last failed call of that library.
std::string lastMessage(Lib lib);
// Raises the h20.Error subclass of `code` (GIL held).
[[noreturn]] void raiseError(h20Error_t code, const char* call, const std::string& message);

// Checks the result of a call made with the GIL held.
inline void check(h20Error_t err, const char* call, Lib lib = Lib::kRuntime) {
  if (err != h20Success) raiseError(err, call, lastMessage(lib));
}

// Runs f (returning h20Error_t) with the GIL released and raises on failure. The message is
// read before the GIL is taken back, on the thread that made the call.
template <typename F>
void callNoGil(const char* call, F&& f, Lib lib = Lib::kRuntime) {
  h20Error_t err;
  std::string message;
  {
    py::gil_scoped_release nogil;
    err = f();
    if (err != h20Success) message = lastMessage(lib);
  }
  if (err != h20Success) raiseError(err, call, message);
}

// ValueError / TypeError with a formatted message.
[[noreturn]] void valueError(const std::string& message);
[[noreturn]] void typeError(const std::string& message);

// An integer argument: anything with __index__ except bool (TypeError naming `what` otherwise),
// that fits in 64 bits (ValueError otherwise).
std::int64_t intArg(py::handle obj, const char* what);
// A real-number argument (TypeError naming `what` otherwise).
double floatArg(py::handle obj, const char* what);

// ---- devices and streams -------------------------------------------------------------------

int currentDevice();
int deviceCount();
// Raises h20.InvalidDeviceError (a ValueError) naming `what` when the ordinal is out of range.
void checkDeviceOrdinal(long long device, const char* what);

// Objects of this module that hold a device's resources (allocations, streams, events,
// communicators): Device.reset() refuses to destroy them under their owners' feet.
void countDeviceObject(int device, int delta);
int liveDeviceObjects(int device);

// Makes `device` current for the scope and restores the previous one after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

// The calling thread's current stream: the innermost `with h20.Stream(...)` block's stream, or
// NULL (the current device's legacy default stream) outside any.
struct StreamRef {
  h20Stream_t handle = nullptr;
  int device = -1;  // -1: the current device (legacy stream)
};
StreamRef currentStream();
// `with stream:` entry and exit. The stack keeps a reference to the Python object (released at
// exit) and the device that was current before, which exit restores.
void pushStream(StreamRef s, PyObject* owner, int previousDevice);
// Returns the device to restore; -1 when the stack was empty.
int popStream();
// The Python object of the current stream, or None.
py::object currentStreamObject();

// A stream argument: None (the current stream), an h20.Stream or an integer handle.
StreamRef streamArg(py::handle obj, const char* what);
// The device a stream's work runs on.
int streamDevice(const StreamRef& s);

// Runs fn(arg) with the GIL released when the calling thread holds it (and the interpreter is
// not finalizing); for destructors, which may run with or without it.
void releaseGilAndRun(void (*fn)(void*), void* arg);

void initRuntime(py::module_& m);
void initArray(py::module_& m);
void initKda(py::module_& m);
void initCcl(py::module_& m);

}  // namespace h20py
