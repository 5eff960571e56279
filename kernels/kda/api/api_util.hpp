// api_util.hpp - what the C API units of libh20kernels share (kda_api.cpp, layer_api.cpp):
// errors and the thread's message, argument checks of tensors in device memory, the device's
// launch limits, block scratch, and the varlen plan (cuSeqlens checked on the device, sequences
// ordered longest first). Internal; uses only the public runtime API.
#ifndef H20_KERNELS_KDA_API_API_UTIL_HPP_
#define H20_KERNELS_KDA_API_API_UTIL_HPP_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "h20/h20_runtime.h"
#include "kda_core.hpp"

namespace h20::kda::api {

// The calling thread's last error message (h20kdaGetLastErrorMessage).
inline thread_local std::string tlsLastError;

// Thrown inside the API layer only, caught at the C boundary (guarded).
struct ApiError {
  h20Error_t code;
  std::string message;
};

template <typename... Args>
[[noreturn]] void invalid(const char* fn, fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError{h20ErrorInvalidValue,
                 fmt::format("{}: {}", fn, fmt::format(f, std::forward<Args>(args)...))};
}

// Runs body; turns ApiError / exceptions into a return code and the thread's message.
template <typename Body>
h20Error_t guarded(const char* fn, Body&& body) {
  try {
    body();
    return h20Success;
  } catch (const ApiError& e) {
    tlsLastError = e.message;
    return e.code;
  } catch (const std::bad_alloc&) {
    tlsLastError = fmt::format("{}: out of host memory", fn);
    return h20ErrorMemoryAllocation;
  } catch (const std::exception& e) {
    tlsLastError = fmt::format("{}: {}", fn, e.what());
    return h20ErrorUnknown;
  } catch (...) {
    tlsLastError = fmt::format("{}: unknown exception", fn);
    return h20ErrorUnknown;
  }
}

// A runtime call failed: pass its code through with the runtime's message.
inline void checkRuntime(const char* fn, const char* call, h20Error_t err) {
  if (err == h20Success) return;
  throw ApiError{err, fmt::format("{}: {} failed with {}: {}", fn, call, h20GetErrorName(err),
                                  h20GetLastErrorMessage())};
}

inline const char* dtypeName(int t) {
  switch (t) {
    case H20_R_32F:
      return "H20_R_32F";
    case H20_R_16BF:
      return "H20_R_16BF";
    case H20_R_16F:
      return "H20_R_16F";
    default:
      return "unknown";
  }
}

inline DType checkDtype(const char* fn, const char* name, int t) {
  if (t == H20_R_32F) return DType::kF32;
  if (t == H20_R_16BF) return DType::kBF16;
  invalid(fn, "{} {} ({}) is not supported; use H20_R_16BF or H20_R_32F", name, t, dtypeName(t));
}

inline std::size_t mulChecked(const char* fn, std::initializer_list<std::int64_t> factors) {
  std::size_t r = 1;
  for (std::int64_t f : factors) {
    if (__builtin_mul_overflow(r, static_cast<std::size_t>(f), &r)) {
      invalid(fn, "the tensor sizes overflow size_t");
    }
  }
  return r;
}

// One tensor argument: where it is and how many bytes the problem reads or writes there.
struct Tensor {
  const char* name;
  const void* ptr;
  std::size_t bytes;
  std::string shape;  // for messages, e.g. "[B,T,H,K] = [1, 300, 2, 128] H20_R_16BF"
  std::size_t align;
};

inline const char* memoryTypeName(h20MemoryType t) {
  switch (t) {
    case h20MemoryTypeUnregistered:
      return "pageable host memory";
    case h20MemoryTypeHost:
      return "pinned host memory";
    case h20MemoryTypeDevice:
      return "device memory";
    case h20MemoryTypeManaged:
      return "managed memory";
  }
  return "unknown memory";
}

// Checks that [ptr, ptr + bytes) lies inside one live device allocation of `device`.
inline void checkDeviceTensor(const char* fn, const Tensor& t, int device) {
  if (reinterpret_cast<std::uintptr_t>(t.ptr) % t.align != 0) {
    invalid(fn, "{} ({}) is not aligned to its {}-byte elements", t.name, fmt::ptr(t.ptr), t.align);
  }
  h20PointerAttributes attr{};
  if (h20PointerGetAttributes(&attr, t.ptr) != h20Success) {
    invalid(fn, "{} ({}) is not in a live allocation: {}", t.name, fmt::ptr(t.ptr),
            h20GetLastErrorMessage());
  }
  if (attr.type != h20MemoryTypeDevice) {
    invalid(fn, "{} ({}) is {}, not device memory", t.name, fmt::ptr(t.ptr),
            memoryTypeName(attr.type));
  }
  if (attr.device != device) {
    invalid(fn, "{} ({}) is memory of device {}, but the current device is {}", t.name,
            fmt::ptr(t.ptr), attr.device, device);
  }
  void* base = nullptr;
  std::size_t size = 0;
  if (h20MemGetAddressRange(&base, &size, t.ptr) != h20Success) {
    invalid(fn, "{} ({}) is not in a live allocation: {}", t.name, fmt::ptr(t.ptr),
            h20GetLastErrorMessage());
  }
  const std::size_t offset =
      static_cast<std::size_t>(static_cast<const char*>(t.ptr) - static_cast<const char*>(base));
  if (size - offset < t.bytes) {
    invalid(fn,
            "{} ({}) must hold {} bytes ({}), but only {} bytes remain in its allocation {} ({} "
            "bytes) at offset {}",
            t.name, fmt::ptr(t.ptr), t.bytes, t.shape, size - offset, fmt::ptr(base), size, offset);
  }
}

inline Tensor sameShape(const Tensor& t, const char* name, const void* ptr) {
  Tensor r = t;
  r.name = name;
  r.ptr = ptr;
  return r;
}

inline bool overlaps(const Tensor& a, const Tensor& b) {
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.ptr),
             b0 = reinterpret_cast<std::uintptr_t>(b.ptr);
  return a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

inline void checkNoOverlap(const char* fn, const Tensor& written, const Tensor& other) {
  if (overlaps(written, other)) {
    invalid(fn, "{} ({}, {} bytes) overlaps {} ({}, {} bytes)", written.name, fmt::ptr(written.ptr),
            written.bytes, other.name, fmt::ptr(other.ptr), other.bytes);
  }
}

inline void requireNonNull(const char* fn, const char* name, const void* p) {
  if (p == nullptr) invalid(fn, "{} is NULL", name);
}

struct DeviceInfo {
  int device = 0;
  int workers = 1;
  std::size_t sharedMemOptin = 0;
  unsigned maxGridX = 1;
};

// The device the work runs on: the stream's (the current device's for NULL/per-thread).
inline DeviceInfo streamDevice(const char* fn, h20Stream_t stream) {
  DeviceInfo info;
  checkRuntime(fn, "h20StreamGetDevice", h20StreamGetDevice(stream, &info.device));
  h20DeviceProp prop{};
  checkRuntime(fn, "h20GetDeviceProperties", h20GetDeviceProperties(&prop, info.device));
  info.workers = std::max(1, prop.hostWorkerThreads);
  info.sharedMemOptin = prop.sharedMemPerBlockOptin;
  info.maxGridX = static_cast<unsigned>(std::max(1, prop.maxGridSize[0]));
  return info;
}

// Scratch of the widest value slab; blocks use their shared memory when it is large enough and

inline void* blockScratch(const h20KernelContext* ctx, std::size_t bytes) {
  if (ctx->sharedMem != nullptr && ctx->sharedMemBytes >= bytes) return ctx->sharedMem;
  struct Buffer {
    void* data = nullptr;
    std::size_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buf;
  if (buf.size < bytes) {
    std::free(buf.data);
    buf.data = std::aligned_alloc(64, bytes);
    buf.size = buf.data != nullptr ? bytes : 0;
  }
  return buf.data;
}

// The struct the caller passed, copied as far as its structSize reaches (later fields keep their
// defaults), after checking that size.
template <class Args>
Args copyArgs(const char* fn, const Args* in, std::size_t minSize, const char* typeName) {
  if (in == nullptr) invalid(fn, "args is NULL");
  if (in->structSize < minSize || in->structSize > sizeof(Args)) {
    invalid(fn, "args->structSize {} is outside [{}, {}] (set it to sizeof({}))", in->structSize,
            minSize, sizeof(Args), typeName);
  }
  Args a{};
  std::memcpy(&a, in, in->structSize);
  return a;
}

inline void reportFault(const h20KernelContext* ctx, const std::string& message) {
  h20KernelReportFault(ctx, h20ErrorLaunchFailure, message.c_str());
}

// The grid of `blocks` blocks (`what` they are, for the message), checked against the device.
inline unsigned gridSize(const char* fn, std::int64_t blocks, const DeviceInfo& dev,
                         const char* what) {
  if (blocks > std::int64_t(dev.maxGridX)) {
    invalid(fn, "the problem needs {} blocks ({}), more than the device's maxGridSize[0] = {}",
            blocks, what, dev.maxGridX);
  }
  return static_cast<unsigned>(blocks);
}

// ---- varlen plans -------------------------------------------------------------------------------

// A varlen problem's plan in device memory, written by a one-block kernel that checks cuSeqlens
// when the stream reaches it: [status][numSeqs x (tokenBegin, tokenEnd, sequence)][order: int32 x
// numSeqs], the entries longest sequence first.
inline constexpr std::int64_t kPlanValid = 1;
inline constexpr std::int64_t kPlanInvalid = 2;

inline std::size_t planBytes(int numSeqs) {
  return sizeof(std::int64_t) * (1 + 3 * std::size_t(numSeqs)) + sizeof(std::int32_t) * numSeqs;
}

struct VarlenPlanArgs {
  const std::int64_t* cuSeqlens;
  std::int64_t* plan;
  std::int64_t totalTokens;
  int numSeqs;
  const char* fn;  // a string literal, for the fault's message
};

inline void varlenPlanKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const VarlenPlanArgs*>(raw);
  std::int64_t* entries = a.plan + 1;
  auto* order = reinterpret_cast<std::int32_t*>(a.plan + 1 + 3 * std::size_t(a.numSeqs));
  std::string error;
  if (!planVarlen(a.cuSeqlens, a.numSeqs, a.totalTokens, order, &error)) {
    a.plan[0] = kPlanInvalid;
    reportFault(ctx, fmt::format("{}: {}", a.fn, error));
    return;
  }
  for (int r = 0; r < a.numSeqs; ++r) {
    const int s = order[r];
    entries[3 * r] = a.cuSeqlens[s];
    entries[3 * r + 1] = a.cuSeqlens[s + 1];
    entries[3 * r + 2] = s;
  }
  a.plan[0] = kPlanValid;
}

// Entry `rank` of a plan: the tokens and the sequence (its state slot); false when the plan
// kernel found cuSeqlens invalid (and reported it): the block then does nothing.
inline bool planEntry(const std::int64_t* plan, std::int64_t rank, std::int64_t* tokenBegin,
                      std::int64_t* tokenEnd, std::int64_t* sequence) {
  if (plan[0] != kPlanValid) return false;
  const std::int64_t* e = plan + 1 + 3 * rank;
  *tokenBegin = e[0];
  *tokenEnd = e[1];
  *sequence = e[2];
  return true;
}

// Allocates a plan (stream-ordered), enqueues the plan kernel, then `launch(plan)` (which
// enqueues the kernels that read it and returns the first failure), then frees the plan in
// stream order (at once if nothing was enqueued). Throws ApiError.
template <class Launch>
void launchWithVarlenPlan(const char* fn, const std::int64_t* cuSeqlens, int numSeqs,
                          std::int64_t totalTokens, h20Stream_t stream, Launch launch) {
  void* plan = nullptr;
  checkRuntime(fn, "h20MallocAsync", h20MallocAsync(&plan, planBytes(numSeqs), stream));
  VarlenPlanArgs pa{cuSeqlens, static_cast<std::int64_t*>(plan), totalTokens, numSeqs, fn};
  const h20Dim3 one{1, 1, 1};
  h20Error_t err = h20LaunchKernel(&varlenPlanKernel, one, one, &pa, sizeof(pa), 0, stream);
  if (err == h20Success) err = launch(static_cast<std::int64_t*>(plan));
  const std::string launchMessage = err != h20Success ? h20GetLastErrorMessage() : "";
  const h20Error_t freeErr = h20FreeAsync(plan, stream);
  if (err != h20Success) {
    throw ApiError{err, fmt::format("{}: h20LaunchKernel failed with {}: {}", fn,
                                    h20GetErrorName(err), launchMessage)};
  }
  checkRuntime(fn, "h20FreeAsync", freeErr);
}

}  // namespace h20::kda::api

#endif  // H20_KERNELS_KDA_API_API_UTIL_HPP_
