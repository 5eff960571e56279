/*
 * h20.hpp - optional header-only C++ layer over the H20 runtime C API (h20_runtime.h).
 *
 * What it gives:
 *  - h20::Error, an exception (derived from std::runtime_error) carrying the h20Error_t code and
 *    the runtime's detailed message; h20::check(code, context) and H20_CHECK(expr) turn a failed
 *    C call into that exception.
 *  - RAII owners, movable and not copyable: h20::Stream, h20::Event, h20::DeviceBuffer<T> (device
 *    memory of trivially copyable T), h20::PinnedBuffer<T> (page-locked host memory), and
 *    h20::DeviceGuard (sets the thread's current device, restores the previous one).
 *  - h20::launch(fn, grid, block, args, stream), which passes a trivially copyable argument struct
 *    by value, and h20::kernelArgs<T>(args) to read it back inside the kernel. h20LaunchKernel
 *    checks every 8-byte word of the arguments for addresses of other devices' memory, padding
 *    included: zero argument structs before filling them (memset, or `Args a{}` then assign), so
 *    that stale bytes in padding cannot look like such an address.
 *
 * Ownership and errors: constructors throw h20::Error when the runtime refuses; destructors never
 * throw (a failure to destroy/free is ignored, e.g. after h20DeviceReset invalidated the handle).
 * A moved-from object owns nothing: get() returns a null handle/pointer and the member functions
 * that need the object throw h20::Error(h20ErrorInvalidResourceHandle). Note that a null
 * h20Stream_t means the legacy default stream in the C API, so do not pass get() of a moved-from
 * Stream to C functions.
 *
 * Error messages: check() reads h20GetLastErrorMessage() when the thread's last error is the code
 * being reported, and consumes that last error (h20GetLastError), so that an error turned into an
 * exception is not reported a second time by a later h20GetLastError.
 *
 * Thread-safety: as the C API; an object may be used from several threads, but moving or
 * destroying it while another thread uses it is a race, as for any C++ object.
 *
 * Requires C++17. Includes only standard headers and h20_runtime.h.
 */
#ifndef H20_H20_HPP_
#define H20_H20_HPP_

#include <h20/h20_runtime.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace h20 {

/* ---- errors ---------------------------------------------------------------------------------- */

// An h20 call failed: code() is the h20Error_t it returned, message() the runtime's detailed
// message (or the code's description when the runtime had none), what() "context: name: message".
class Error : public std::runtime_error {
 public:
  Error(h20Error_t code, const std::string& message, const std::string& context = std::string())
      : std::runtime_error(compose(code, message, context)), code_(code), message_(message) {}

  h20Error_t code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  static std::string compose(h20Error_t code, const std::string& message,
                             const std::string& context) {
    std::string s;
    if (!context.empty()) s += context + ": ";
    s += h20GetErrorName(code);
    if (!message.empty()) s += std::string(": ") + message;
    return s;
  }

  h20Error_t code_;
  std::string message_;
};

namespace detail {

// The detailed message for `code`, consuming the thread's last error when it is `code`.
inline std::string takeMessage(h20Error_t code) {
  // Copy first: the message is only valid until the thread's next h20 call.
  const char* raw = h20GetLastErrorMessage();
  std::string message = raw != nullptr ? raw : "";
  if (h20PeekAtLastError() == code) {
    h20GetLastError();
  } else {
    message.clear();
  }
  if (message.empty()) message = h20GetErrorString(code);
  return message;
}

}  // namespace detail

// Throws h20::Error when `code` is not h20Success. `context` (e.g. the call) prefixes what().
inline void check(h20Error_t code, const char* context = nullptr) {
  if (code == h20Success) return;
  throw Error(code, detail::takeMessage(code), context != nullptr ? context : "");
}

// For status queries: true for h20Success, false for h20ErrorNotReady, throws otherwise.
inline bool checkReady(h20Error_t code, const char* context = nullptr) {
  if (code == h20ErrorNotReady) return false;
  check(code, context);
  return true;
}

}  // namespace h20

// Calls an h20 function and throws h20::Error (with the expression as context) on failure.
#define H20_CHECK(expr) ::h20::check((expr), #expr)

namespace h20 {

/* ---- devices --------------------------------------------------------------------------------- */

inline int deviceCount() {
  int n = 0;
  check(h20GetDeviceCount(&n), "h20GetDeviceCount");
  return n;
}

inline int getDevice() {
  int d = 0;
  check(h20GetDevice(&d), "h20GetDevice");
  return d;
}

inline void setDevice(int device) {
  check(h20SetDevice(device), "h20SetDevice");
}

inline void deviceSynchronize() {
  check(h20DeviceSynchronize(), "h20DeviceSynchronize");
}

inline h20DeviceProp deviceProperties(int device) {
  h20DeviceProp prop;
  std::memset(&prop, 0, sizeof prop);
  check(h20GetDeviceProperties(&prop, device), "h20GetDeviceProperties");
  return prop;
}

// Makes `device` current for the calling thread for the guard's lifetime.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(getDevice()) { setDevice(device); }
  ~DeviceGuard() { h20SetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

inline h20Dim3 dim3(unsigned int x, unsigned int y = 1, unsigned int z = 1) {
  h20Dim3 d;
  d.x = x;
  d.y = y;
  d.z = z;
  return d;
}

/* ---- streams and events ---------------------------------------------------------------------- */

namespace detail {

// Owns one runtime handle: movable, not copyable, destroyed with the object (errors ignored).
// Traits: Handle (the handle type), name (for messages), destroy(Handle).
template <class Traits>
class UniqueHandle {
 public:
  using Handle = typename Traits::Handle;

  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;

  // The handle (nullptr when moved-from).
  Handle get() const noexcept { return handle_; }
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  // Gives up ownership: the caller must destroy the returned handle.
  Handle release() noexcept { return std::exchange(handle_, nullptr); }

 protected:
  // Construction, moves and destruction only as part of a Stream or Event (no slicing).
  UniqueHandle() = default;
  UniqueHandle(UniqueHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  UniqueHandle& operator=(UniqueHandle&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~UniqueHandle() { reset(); }
  // Where a create call stores the new handle.
  Handle* out() noexcept { return &handle_; }
  // The handle, for a call that needs one; throws for a moved-from object.
  Handle handle() const {
    if (handle_ == nullptr)
      throw Error(h20ErrorInvalidResourceHandle, std::string("use of a moved-from ") + Traits::name,
                  Traits::name);
    return handle_;
  }

 private:
  void reset() noexcept {
    if (handle_ != nullptr) Traits::destroy(std::exchange(handle_, nullptr));
  }

  Handle handle_ = nullptr;
};

struct StreamTraits {
  using Handle = h20Stream_t;
  static constexpr const char* name = "h20::Stream";
  static void destroy(Handle h) noexcept { h20StreamDestroy(h); }
};

struct EventTraits {
  using Handle = h20Event_t;
  static constexpr const char* name = "h20::Event";
  static void destroy(Handle h) noexcept { h20EventDestroy(h); }
};

}  // namespace detail

class Event;

// Owns a stream created on the current device; destroyed (pending work still completes) with
// the object.
class Stream : public detail::UniqueHandle<detail::StreamTraits> {
 public:
  explicit Stream(unsigned int flags = h20StreamDefault) {
    check(h20StreamCreateWithFlags(out(), flags), "h20StreamCreateWithFlags");
  }
  Stream(unsigned int flags, int priority) {
    check(h20StreamCreateWithPriority(out(), flags, priority), "h20StreamCreateWithPriority");
  }

  void synchronize() const { check(h20StreamSynchronize(handle()), "h20StreamSynchronize"); }
  // True when all work enqueued so far has completed.
  bool query() const { return checkReady(h20StreamQuery(handle()), "h20StreamQuery"); }
  inline void wait(const Event& event) const;
  void launchHostFunc(h20HostFn_t fn, void* userData) const {
    check(h20LaunchHostFunc(handle(), fn, userData), "h20LaunchHostFunc");
  }
  int priority() const {
    int p = 0;
    check(h20StreamGetPriority(handle(), &p), "h20StreamGetPriority");
    return p;
  }
  unsigned int flags() const {
    unsigned int f = 0;
    check(h20StreamGetFlags(handle(), &f), "h20StreamGetFlags");
    return f;
  }

 private:
  friend class Event;
};

// Owns an event created on the current device.
class Event : public detail::UniqueHandle<detail::EventTraits> {
 public:
  explicit Event(unsigned int flags = h20EventDefault) {
    check(h20EventCreateWithFlags(out(), flags), "h20EventCreateWithFlags");
  }

  // Captures the work enqueued so far on `stream` (default: the legacy default stream).
  void record(h20Stream_t stream = nullptr) const {
    check(h20EventRecord(handle(), stream), "h20EventRecord");
  }
  void record(const Stream& stream) const { record(stream.handle()); }
  void synchronize() const { check(h20EventSynchronize(handle()), "h20EventSynchronize"); }
  // True when the captured work has completed (or the event was never recorded).
  bool query() const { return checkReady(h20EventQuery(handle()), "h20EventQuery"); }

  // Milliseconds from `start` to `end` (both recorded, completed and timing-enabled).
  static float elapsedMs(const Event& start, const Event& end) {
    float ms = 0.0f;
    check(h20EventElapsedTime(&ms, start.handle(), end.handle()), "h20EventElapsedTime");
    return ms;
  }

 private:
  friend class Stream;
};

inline void Stream::wait(const Event& event) const {
  check(h20StreamWaitEvent(handle(), event.handle(), 0), "h20StreamWaitEvent");
}

/* ---- memory ---------------------------------------------------------------------------------- */

namespace detail {

// Owns `size()` elements of T allocated by the runtime and released by Free (errors ignored):
// movable, not copyable. The allocation itself is the derived class's constructor's.
template <class T, h20Error_t (*Free)(void*)>
class OwnedArray {
  static_assert(std::is_trivially_copyable<T>::value,
                "h20 buffers hold raw bytes: T must be trivially copyable");

 public:
  OwnedArray(const OwnedArray&) = delete;
  OwnedArray& operator=(const OwnedArray&) = delete;

  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return count_; }
  std::size_t bytes() const noexcept { return count_ * sizeof(T); }
  bool empty() const noexcept { return count_ == 0; }

 protected:
  // Construction, moves and destruction only as part of a buffer class (no slicing).
  OwnedArray() noexcept = default;
  OwnedArray(OwnedArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  OwnedArray& operator=(OwnedArray&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  ~OwnedArray() { reset(); }
  // Takes ownership of `count` elements at `data`.
  void adopt(void* data, std::size_t count) noexcept {
    data_ = static_cast<T*>(data);
    count_ = count;
  }

 private:
  void reset() noexcept {
    if (data_ != nullptr) Free(std::exchange(data_, nullptr));
    count_ = 0;
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace detail

// Owns `size()` elements of T in device memory of the device current at construction.
// Uninitialised after construction (use memset or copyFrom).
template <class T>
class DeviceBuffer : public detail::OwnedArray<T, h20Free> {
  using Base = detail::OwnedArray<T, h20Free>;

 public:
  using Base::bytes;
  using Base::data;
  using Base::size;

  DeviceBuffer() noexcept = default;
  explicit DeviceBuffer(std::size_t count) {
    void* p = nullptr;
    check(h20Malloc(&p, count * sizeof(T)), "h20Malloc");
    this->adopt(p, count);
  }
  // Allocates host.size() elements and copies `host` into them (synchronously).
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    copyFrom(host.data(), host.size());
  }

  // Copies `n` elements from host memory to the start of the buffer (h20Memcpy semantics).
  void copyFrom(const T* host, std::size_t n) {
    check(h20Memcpy(data(), host, n * sizeof(T), h20MemcpyHostToDevice), "h20Memcpy");
  }
  void copyTo(T* host, std::size_t n) const {
    check(h20Memcpy(host, data(), n * sizeof(T), h20MemcpyDeviceToHost), "h20Memcpy");
  }
  void copyFromAsync(const T* host, std::size_t n, h20Stream_t stream) {
    check(h20MemcpyAsync(data(), host, n * sizeof(T), h20MemcpyHostToDevice, stream),
          "h20MemcpyAsync");
  }
  void copyToAsync(T* host, std::size_t n, h20Stream_t stream) const {
    check(h20MemcpyAsync(host, data(), n * sizeof(T), h20MemcpyDeviceToHost, stream),
          "h20MemcpyAsync");
  }
  // Fills every byte with `value` (legacy default stream, or `stream` when given).
  void memset(int value) { check(h20Memset(data(), value, bytes()), "h20Memset"); }
  void memsetAsync(int value, h20Stream_t stream) {
    check(h20MemsetAsync(data(), value, bytes(), stream), "h20MemsetAsync");
  }
  // The whole buffer copied to a host vector.
  std::vector<T> toHost() const {
    std::vector<T> host(size());
    if (size() != 0) copyTo(host.data(), size());
    return host;
  }
};

// Owns `size()` elements of T in page-locked host memory (h20HostAlloc).
template <class T>
class PinnedBuffer : public detail::OwnedArray<T, h20FreeHost> {
  using Base = detail::OwnedArray<T, h20FreeHost>;

 public:
  using Base::data;
  using Base::size;

  PinnedBuffer() noexcept = default;
  explicit PinnedBuffer(std::size_t count, unsigned int flags = h20HostAllocDefault) {
    void* p = nullptr;
    check(h20HostAlloc(&p, count * sizeof(T), flags), "h20HostAlloc");
    this->adopt(p, count);
  }

  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }
};

/* ---- kernels --------------------------------------------------------------------------------- */

// Enqueues `fn` over `grid` blocks of `block` threads on `stream`, passing a copy of `args`.
template <class Args>
void launch(h20KernelFn fn, h20Dim3 grid, h20Dim3 block, const Args& args,
            h20Stream_t stream = nullptr, std::size_t sharedMemBytes = 0) {
  static_assert(std::is_trivially_copyable<Args>::value,
                "kernel arguments are copied as bytes: Args must be trivially copyable");
  static_assert(sizeof(Args) <= H20_MAX_KERNEL_ARGS_BYTES, "kernel arguments too large");
  check(h20LaunchKernel(fn, grid, block, &args, sizeof(Args), sharedMemBytes, stream),
        "h20LaunchKernel");
}

inline void launch(h20KernelFn fn, h20Dim3 grid, h20Dim3 block, const Stream& stream,
                   std::size_t sharedMemBytes = 0) {
  if (!stream)
    throw Error(h20ErrorInvalidResourceHandle, "use of a moved-from h20::Stream", "h20::Stream");
  check(h20LaunchKernel(fn, grid, block, nullptr, 0, sharedMemBytes, stream.get()),
        "h20LaunchKernel");
}

template <class Args>
void launch(h20KernelFn fn, h20Dim3 grid, h20Dim3 block, const Args& args, const Stream& stream,
            std::size_t sharedMemBytes = 0) {
  if (!stream)
    throw Error(h20ErrorInvalidResourceHandle, "use of a moved-from h20::Stream", "h20::Stream");
  launch(fn, grid, block, args, stream.get(), sharedMemBytes);
}

// Inside a kernel: the argument struct passed to launch(), read without alignment assumptions.
template <class Args>
Args kernelArgs(const void* args) {
  static_assert(std::is_trivially_copyable<Args>::value, "Args must be trivially copyable");
  Args a;
  std::memcpy(&a, args, sizeof a);
  return a;
}

}  // namespace h20

#endif /* H20_H20_HPP_ */
