// memory_api.cpp - allocation, copies, memset, stream-ordered pool and pointer attributes.
//
// Every range is resolved against the allocation registry before anything is enqueued, so a bad
// range fails with h20ErrorInvalidValue and nothing is written. Host synchronisation follows
// CUDA's "API synchronization behavior" (see h20_runtime.h).
#include "capi/api_guard.hpp"

#include <cstring>
#include <memory>

using h20::capi::check;
using h20::capi::guarded;
using h20::capi::requireOut;
using h20::rt::Allocation;
using h20::rt::AllocSource;
using h20::rt::Device;
using h20::rt::fail;
using h20::rt::PointerInfo;
using h20::rt::Runtime;
using h20::rt::Stream;

namespace {

const char* kindName(int kind) {
  switch (kind) {
    case h20MemcpyHostToHost:
      return "h20MemcpyHostToHost";
    case h20MemcpyHostToDevice:
      return "h20MemcpyHostToDevice";
    case h20MemcpyDeviceToHost:
      return "h20MemcpyDeviceToHost";
    case h20MemcpyDeviceToDevice:
      return "h20MemcpyDeviceToDevice";
    case h20MemcpyDefault:
      return "h20MemcpyDefault";
  }
  return "?";
}

std::string describe(const PointerInfo& p) {
  if (!p.allocation) return "pageable host memory";
  return fmt::format("{} memory (allocation {:#x}, {} bytes)",
                     p.isDevice() ? "device" : "pinned host", p.allocation->base,
                     p.allocation->size);
}

// The device whose memory `p` is, or nullptr for host memory.
Device* owner(Runtime& rt, const PointerInfo& p) {
  return p.isDevice() ? &rt.device(p.allocation->device) : nullptr;
}

// Submits a copy or memset to `stream`. On a legacy stream, touching other devices' memory (the
// `owners` that are not the stream's device) makes it an operation of their legacy streams too
// (Device::submitLegacyAcross); on other streams it is ordered on `stream` only, as
// h20MemcpyPeerAsync.
h20::driver::Seq submitOn(Device& device, Stream& stream, std::initializer_list<Device*> owners,
                          h20::driver::Command&& command) {
  if (stream.kind() == h20::rt::StreamKind::legacy)
    return device.submitLegacyAcross(owners, std::move(command));
  return device.submit(stream, std::move(command));
}

// True if work submitted to `stream` now would start at once: nothing pending on it nor on the
// streams its implicit synchronisation waits for.
bool nothingAhead(Device& device, Stream& stream) {
  if (stream.kind() == h20::rt::StreamKind::legacy) return device.legacyIdle();
  return stream.idle() && (!stream.blocking() || device.legacy().idle());
}

// Enqueues (and, where CUDA's rules say so, waits for) one copy. stream == nullptr: h20Memcpy.
// `kind` is the caller's h20MemcpyKind read as an int (it may be any value).
void copy(Runtime& rt, void* dst, const void* src, std::size_t count, int kind,
          h20Stream_t streamHandle, bool async) {
  if (kind < h20MemcpyHostToHost || kind > h20MemcpyDefault)
    fail(h20ErrorInvalidValue, "kind {} is not a h20MemcpyKind", kind);
  std::shared_ptr<Stream> stream = rt.stream(async ? streamHandle : nullptr);
  if (count == 0) return;
  if (!dst) fail(h20ErrorInvalidValue, "dst is NULL (count {})", count);
  if (!src) fail(h20ErrorInvalidValue, "src is NULL (count {})", count);
  const PointerInfo d = rt.resolve("dst", dst, count);
  const PointerInfo s = rt.resolve("src", src, count);
  const auto db = reinterpret_cast<std::uintptr_t>(dst), sb = reinterpret_cast<std::uintptr_t>(src);
  if (db < sb + count && sb < db + count)
    fail(h20ErrorInvalidValue, "src {} and dst {} overlap ({} bytes)", src, dst, count);

  bool kindOk = true;
  switch (kind) {
    case h20MemcpyHostToHost:
      kindOk = !d.isDevice() && !s.isDevice();
      break;
    case h20MemcpyHostToDevice:
      kindOk = d.isDevice() && !s.isDevice();
      break;
    case h20MemcpyDeviceToHost:
      kindOk = !d.isDevice() && s.isDevice();
      break;
    case h20MemcpyDeviceToDevice:
      kindOk = d.isDevice() && s.isDevice();
      break;
    case h20MemcpyDefault:
      break;
  }
  if (!kindOk)
    fail(h20ErrorInvalidValue, "kind {} does not match the pointers: dst {} is {}, src {} is {}",
         kindName(kind), dst, describe(d), src, describe(s));

  Device& device = stream->device();
  Device* const dOwner = owner(rt, d);
  Device* const sOwner = owner(rt, s);
  h20::driver::CopyCommand cmd = device.copyCommand(dOwner, sOwner, dst, src, count);
  // CUDA consumes a pageable source before an asynchronous copy returns, so the caller may reuse
  // the buffer. When nothing is ahead of the copy it runs from the source at once and the call
  // waits for it (as fast as h20Memcpy); else the source is staged in a reused host buffer.
  bool consumeNow = false;
  if (async && s.isPageable() && !d.isPageable()) {
    if ((!dOwner || dOwner == &device) && nothingAhead(device, *stream)) {
      consumeNow = true;
    } else {
      std::shared_ptr<unsigned char[]> staging = rt.staging().acquire(count);
      std::memcpy(staging.get(), src, count);
      cmd.src = staging.get();
      cmd.keepAlive = std::move(staging);
    }
  }
  const h20::driver::Seq seq = submitOn(device, *stream, {dOwner, sOwner}, std::move(cmd));
  // Device-to-device copies never block the host; copies into pageable memory always do; the
  // synchronous h20Memcpy blocks for every other direction too.
  const bool deviceToDevice = d.isDevice() && s.isDevice();
  const bool wait = consumeNow || (!deviceToDevice && (d.isPageable() || !async));
  if (wait) {
    rt.driver().wait(stream->queue(), seq, true);
    device.checkFault();
  }
}

void memset(Runtime& rt, void* dst, int value, std::size_t count, h20Stream_t streamHandle) {
  std::shared_ptr<Stream> stream = rt.stream(streamHandle);
  if (count == 0) return;
  if (!dst) fail(h20ErrorInvalidValue, "devPtr is NULL (count {})", count);
  const PointerInfo d = rt.resolve("devPtr", dst, count);
  if (d.isPageable())
    fail(h20ErrorInvalidValue, "devPtr {} is pageable host memory, not device or pinned memory",
         dst);
  Device& device = stream->device();
  Device* const dOwner = owner(rt, d);
  h20::driver::FillCommand cmd{dst, static_cast<unsigned char>(value), count};
  cmd.otherChip = dOwner && dOwner != &device ? dOwner->chip() : -1;
  submitOn(device, *stream, {dOwner}, std::move(cmd));
}

void releaseHost(Runtime& rt, const Allocation& a) {
  rt.memory().remove(a.base);
  rt.driver().freeHost(reinterpret_cast<void*>(a.base), a.blockSize);
}

}  // namespace

extern "C" {

H20_API h20Error_t h20Malloc(void** devPtr, size_t size) {
  return guarded("h20Malloc", [&](Runtime& rt) {
    requireOut(devPtr, "devPtr");
    *devPtr = nullptr;
    Device& d = rt.current();
    d.checkFault();
    if (size == 0) return h20Success;
    void* p = nullptr;
    auto status = rt.driver().allocate(d.chip(), size, &p);
    check(status);
    // The driver accepted the size, so it is at most the device's capacity: no overflow here.
    const std::size_t block = (size + 255) / 256 * 256;
    rt.memory().add(Allocation{reinterpret_cast<std::uintptr_t>(p), size, block,
                               AllocSource::deviceMalloc, d.ordinal(), 0});
    *devPtr = p;
    return h20Success;
  });
}

H20_API h20Error_t h20Free(void* devPtr) {
  return guarded("h20Free", [&](Runtime& rt) {
    if (!devPtr) return h20Success;
    auto a = rt.memory().findStart(devPtr);
    if (!a || !a->isDevice()) {
      if (auto inside = rt.memory().find(devPtr); inside && inside->isDevice())
        fail(h20ErrorInvalidValue, "devPtr {} is {} bytes into allocation {:#x}, not its start",
             devPtr, reinterpret_cast<std::uintptr_t>(devPtr) - inside->base, inside->base);
      fail(h20ErrorInvalidValue, "devPtr {} is not a live device allocation", devPtr);
    }
    if (a->source == AllocSource::ipcImport)
      fail(h20ErrorInvalidValue,
           "devPtr {} was opened with h20IpcOpenMemHandle: close it with h20IpcCloseMemHandle",
           devPtr);
    Device& d = rt.device(a->device);
    d.waitIdle();  // as cudaFree: work still using the memory finishes first
    if (!rt.memory().remove(a->base))
      fail(h20ErrorInvalidValue, "devPtr {} was freed concurrently", devPtr);
    if (a->source == AllocSource::devicePool) {
      d.poolRelease(*a);
    } else {
      auto status = rt.driver().free(d.chip(), devPtr);
      check(status);
    }
    return h20Success;
  });
}

H20_API h20Error_t h20HostAlloc(void** pHost, size_t size, unsigned int flags) {
  return guarded("h20HostAlloc", [&](Runtime& rt) {
    requireOut(pHost, "pHost");
    *pHost = nullptr;
    const unsigned known = h20HostAllocPortable | h20HostAllocMapped | h20HostAllocWriteCombined;
    if (flags & ~known) fail(h20ErrorInvalidValue, "flags {:#x} has unknown bits", flags);
    if (size == 0) return h20Success;
    Device& d = rt.current();
    void* p = nullptr;
    auto status = rt.driver().allocateHost(d.chip(), size, &p);
    check(status);
    rt.memory().add(Allocation{reinterpret_cast<std::uintptr_t>(p), size, size,
                               AllocSource::hostAlloc, d.ordinal(), flags});
    *pHost = p;
    return h20Success;
  });
}

H20_API h20Error_t h20MallocHost(void** ptr, size_t size) {
  if (!ptr) {
    return guarded("h20MallocHost",
                   [&](Runtime&) -> h20Error_t { fail(h20ErrorInvalidValue, "ptr is NULL"); });
  }
  return h20HostAlloc(ptr, size, h20HostAllocDefault);
}

H20_API h20Error_t h20FreeHost(void* ptr) {
  return guarded("h20FreeHost", [&](Runtime& rt) {
    if (!ptr) return h20Success;
    auto a = rt.memory().findStart(ptr);
    if (!a || a->source != AllocSource::hostAlloc)
      fail(h20ErrorInvalidValue, "ptr {} was not allocated by h20MallocHost/h20HostAlloc", ptr);
    // Asynchronous copies may still read or write it, on any device.
    for (int i = 0; i < rt.deviceCount(); ++i)
      rt.device(i).waitIdle();
    releaseHost(rt, *a);
    return h20Success;
  });
}

H20_API h20Error_t h20HostRegister(void* ptr, size_t size, unsigned int flags) {
  return guarded("h20HostRegister", [&](Runtime& rt) {
    if (!ptr) fail(h20ErrorInvalidValue, "ptr is NULL");
    if (size == 0) fail(h20ErrorInvalidValue, "size is 0");
    const unsigned known = h20HostRegisterPortable | h20HostRegisterMapped |
                           h20HostRegisterIoMemory | h20HostRegisterReadOnly;
    if (flags & ~known) fail(h20ErrorInvalidValue, "flags {:#x} has unknown bits", flags);
    if (flags & h20HostRegisterIoMemory)
      fail(h20ErrorNotSupported, "h20HostRegisterIoMemory is not supported on the emulated device");
    const auto base = reinterpret_cast<std::uintptr_t>(ptr);
    if (size > UINTPTR_MAX - base)
      fail(h20ErrorInvalidValue, "range {} (+{} bytes) runs past the end of the address space", ptr,
           size);
    if (const int owner = rt.deviceOverlapping(base, size); owner >= 0)
      fail(h20ErrorInvalidValue, "range {} (+{} bytes) overlaps device {}'s memory", ptr, size,
           owner);
    const Allocation a{base, size, size, AllocSource::hostRegistered, Runtime::currentOrdinal(),
                       flags};
    if (!rt.memory().addIfFree(a))
      fail(h20ErrorHostMemoryAlreadyRegistered,
           "range {} (+{} bytes) overlaps memory that is already pinned or registered", ptr, size);
    return h20Success;
  });
}

H20_API h20Error_t h20HostUnregister(void* ptr) {
  return guarded("h20HostUnregister", [&](Runtime& rt) {
    auto a = rt.memory().findStart(ptr);
    if (!a || a->source != AllocSource::hostRegistered)
      fail(h20ErrorHostMemoryNotRegistered, "ptr {} is not the start of a registered range", ptr);
    rt.memory().remove(a->base);
    return h20Success;
  });
}

H20_API h20Error_t h20HostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags) {
  return guarded("h20HostGetDevicePointer", [&](Runtime& rt) {
    requireOut(pDevice, "pDevice");
    if (flags != 0) fail(h20ErrorInvalidValue, "flags {:#x} must be 0", flags);
    auto a = rt.memory().find(pHost);
    if (!a || a->isDevice())
      fail(h20ErrorInvalidValue, "pHost {} is not pinned or registered host memory", pHost);
    *pDevice = pHost;  // unified addressing: the same address on both sides
    return h20Success;
  });
}

H20_API h20Error_t h20PointerGetAttributes(h20PointerAttributes* attributes, const void* ptr) {
  return guarded("h20PointerGetAttributes", [&](Runtime& rt) {
    requireOut(attributes, "attributes");
    h20PointerAttributes out{};
    auto a = rt.memory().find(ptr);
    if (a && a->isDevice()) {
      out.type = h20MemoryTypeDevice;
      out.device = a->device;
      out.devicePointer = const_cast<void*>(ptr);
    } else if (a) {
      out.type = h20MemoryTypeHost;
      out.device = a->device;
      out.devicePointer = const_cast<void*>(ptr);
      out.hostPointer = const_cast<void*>(ptr);
    } else {
      if (const int owner = rt.deviceOwningAddress(ptr); owner >= 0)
        fail(h20ErrorInvalidValue,
             "ptr {} points into device {}'s memory but not into a live allocation", ptr, owner);
      out.type = h20MemoryTypeUnregistered;
      out.device = -2;
    }
    *attributes = out;
    return h20Success;
  });
}

H20_API h20Error_t h20MemGetAddressRange(void** base, size_t* size, const void* ptr) {
  return guarded("h20MemGetAddressRange", [&](Runtime& rt) {
    auto a = rt.memory().find(ptr);
    if (!a)
      fail(h20ErrorInvalidValue, "ptr {} is not in a live device, pinned or registered allocation",
           ptr);
    if (base) *base = reinterpret_cast<void*>(a->base);
    if (size) *size = a->size;
    return h20Success;
  });
}

H20_API h20Error_t h20Memcpy(void* dst, const void* src, size_t count, h20MemcpyKind kind) {
  return guarded("h20Memcpy", [&](Runtime& rt) {
    copy(rt, dst, src, count, h20::capi::rawEnum(kind), nullptr, false);
    return h20Success;
  });
}

H20_API h20Error_t h20MemcpyAsync(void* dst, const void* src, size_t count, h20MemcpyKind kind,
                                  h20Stream_t stream) {
  return guarded("h20MemcpyAsync", [&](Runtime& rt) {
    copy(rt, dst, src, count, h20::capi::rawEnum(kind), stream, true);
    return h20Success;
  });
}

H20_API h20Error_t h20Memset(void* devPtr, int value, size_t count) {
  return guarded("h20Memset", [&](Runtime& rt) {
    memset(rt, devPtr, value, count, nullptr);
    return h20Success;
  });
}

H20_API h20Error_t h20MemsetAsync(void* devPtr, int value, size_t count, h20Stream_t stream) {
  return guarded("h20MemsetAsync", [&](Runtime& rt) {
    memset(rt, devPtr, value, count, stream);
    return h20Success;
  });
}

H20_API h20Error_t h20MallocAsync(void** devPtr, size_t size, h20Stream_t stream) {
  return guarded("h20MallocAsync", [&](Runtime& rt) {
    requireOut(devPtr, "devPtr");
    *devPtr = nullptr;
    std::shared_ptr<Stream> s = rt.stream(stream);
    Device& d = s->device();
    d.checkFault();
    if (size == 0) return h20Success;
    std::size_t block = 0;
    void* p = d.poolAllocate(size, *s, &block);
    rt.memory().add(Allocation{reinterpret_cast<std::uintptr_t>(p), size, block,
                               AllocSource::devicePool, d.ordinal(), 0});
    *devPtr = p;
    return h20Success;
  });
}

H20_API h20Error_t h20FreeAsync(void* devPtr, h20Stream_t stream) {
  return guarded("h20FreeAsync", [&](Runtime& rt) {
    std::shared_ptr<Stream> s = rt.stream(stream);
    if (!devPtr) return h20Success;
    auto a = rt.memory().findStart(devPtr);
    if (!a || a->source != AllocSource::devicePool)
      fail(h20ErrorInvalidValue, "devPtr {} is not a live allocation of h20MallocAsync", devPtr);
    if (!rt.memory().remove(a->base))
      fail(h20ErrorInvalidValue, "devPtr {} was freed concurrently", devPtr);
    rt.device(a->device).poolFree(*a, *s);
    return h20Success;
  });
}

}  // extern "C"
