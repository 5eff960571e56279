// runtime.hpp - the one object that owns the driver, the visible devices, the handle tables and
// the memory registry. Created on the first API call, destroyed at process exit.
//
// Handles given to users (h20Stream_t, h20Event_t) are ids, never pointers: a destroyed handle
// is detected reliably (ids are not reused) and reported as h20ErrorInvalidResourceHandle. All
// handle tables draw their ids from one counter, so a handle of one kind is never a valid handle
// of another (an event passed as a stream is rejected, not taken for a stream).
// The C API keeps CUDA's per-thread current device on top of this object.
#pragma once

#include "core/config.hpp"
#include "core/device.hpp"
#include "core/event.hpp"
#include "core/memory.hpp"
#include "core/staging.hpp"
#include "core/stream.hpp"
#include "driver.hpp"

#include <h20_base/spin_lock.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

namespace h20::rt {

// The ids of every handle kind: far from the special stream handles (0x1, 0x2) and 16-byte spaced
// like real pointers.
class HandleSpace {
 public:
  std::uintptr_t next() { return next_.fetch_add(16, std::memory_order_relaxed); }

 private:
  std::atomic<std::uintptr_t> next_{0x1000};
};

template <class T>
class HandleTable {
 public:
  explicit HandleTable(HandleSpace& space) : space_(space) {}
  std::uintptr_t add(std::shared_ptr<T> object) {
    const std::uintptr_t id = space_.next();
    std::unique_lock<base::ReadMostlyLock> lock(mu_);
    objects_.emplace(id, std::move(object));
    return id;
  }
  std::shared_ptr<T> find(std::uintptr_t id) const {
    std::shared_lock<base::ReadMostlyLock> lock(mu_);
    auto it = objects_.find(id);
    return it == objects_.end() ? nullptr : it->second;
  }
  // Calls fn with the object (nullptr if none) while the table cannot remove it: no reference is
  // counted, so a short call pays two atomic operations instead of four. fn must be short (it
  // holds off h20*Destroy of this kind) and must not look up this table again (a waiting remover
  // keeps new lookups out).
  template <class Fn>
  decltype(auto) with(std::uintptr_t id, Fn&& fn) const {
    std::shared_lock<base::ReadMostlyLock> lock(mu_);
    auto it = objects_.find(id);
    return fn(it == objects_.end() ? nullptr : it->second.get());
  }
  std::shared_ptr<T> remove(std::uintptr_t id) {
    std::unique_lock<base::ReadMostlyLock> lock(mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return nullptr;
    auto object = std::move(it->second);
    objects_.erase(it);
    return object;
  }
  template <class Pred>
  std::vector<std::shared_ptr<T>> removeIf(Pred pred) {
    std::vector<std::shared_ptr<T>> out;
    std::unique_lock<base::ReadMostlyLock> lock(mu_);
    for (auto it = objects_.begin(); it != objects_.end();) {
      if (pred(*it->second)) {
        out.push_back(std::move(it->second));
        it = objects_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

 private:
  HandleSpace& space_;
  mutable base::ReadMostlyLock mu_;
  std::unordered_map<std::uintptr_t, std::shared_ptr<T>> objects_;
};

class Runtime {
 public:
  // The process's runtime, initialised on first use. Throws Error: h20ErrorInitializationError
  // (bad configuration; sticky) or h20ErrorRuntimeUnloading (after shutdown).
  static Runtime& get();
  // False once shutdown has begun (thread-exit cleanup must then leave runtime objects alone).
  static bool aliveForThreadExit();

  explicit Runtime(const RuntimeConfig& config);
  ~Runtime();

  driver::Driver& driver() const { return *driver_; }
  MemoryRegistry& memory() { return memory_; }
  StagingPool& staging() { return staging_; }
  int deviceCount() const { return static_cast<int>(devices_.size()); }
  // Throws h20ErrorInvalidDevice (or h20ErrorNoDevice when none is visible).
  Device& device(int ordinal) const;
  // The calling thread's current device.
  Device& current() const;
  static int& currentOrdinal();

  // Streams: NULL and h20StreamLegacy are the current device's legacy stream,
  // h20StreamPerThread its per-thread stream. Throws h20ErrorInvalidResourceHandle.
  std::shared_ptr<Stream> stream(h20Stream_t handle, const char* argName = "stream") const;
  // Calls fn(Stream&) for the handle, as stream() resolves it, without counting a reference (see
  // HandleTable::with): for short, non-blocking calls that look up no other stream.
  template <class Fn>
  decltype(auto) withStream(h20Stream_t handle, Fn&& fn) const {
    if (handle == nullptr || handle == h20StreamLegacy) return fn(current().legacy());
    if (handle == h20StreamPerThread) return fn(*current().perThreadStream());
    return streams_.with(reinterpret_cast<std::uintptr_t>(handle),
                         [&](Stream* s) -> decltype(auto) {
                           if (!s) failUnknownStream(handle, "stream");
                           return fn(*s);
                         });
  }
  h20Stream_t addStream(std::shared_ptr<Stream> stream);
  void destroyStream(h20Stream_t handle);

  std::shared_ptr<Event> event(h20Event_t handle, const char* argName = "event") const;
  // As withStream, for an event (fn must look up no other event).
  template <class Fn>
  decltype(auto) withEvent(h20Event_t handle, Fn&& fn) const {
    return events_.with(reinterpret_cast<std::uintptr_t>(handle), [&](Event* e) -> decltype(auto) {
      if (!e) failUnknownEvent(handle, "event");
      return fn(*e);
    });
  }
  h20Event_t addEvent(std::shared_ptr<Event> event);
  void destroyEvent(h20Event_t handle);

  // Resolves [ptr, ptr+count) for a copy or memset; throws h20ErrorInvalidValue naming `what`
  // when the range leaves its allocation or points into freed device memory, and the device's
  // fault when it is the memory of a faulted device.
  PointerInfo resolve(const char* what, const void* ptr, std::size_t count) const;
  // The device whose memory range contains ptr, or -1.
  int deviceOwningAddress(const void* ptr) const;
  // A device whose memory range overlaps [base, base+size) (no wrap-around), or -1.
  int deviceOverlapping(std::uintptr_t base, std::size_t size) const;

  [[noreturn]] static void failUnknownStream(h20Stream_t handle, const char* argName);
  [[noreturn]] static void failUnknownEvent(h20Event_t handle, const char* argName);

  // h20DeviceReset: waits, then destroys the device's streams, events and allocations.
  void resetDevice(Device& device);

  // Serialises opening and closing interprocess memory (h20IpcOpenMemHandle/CloseMemHandle,
  // h20DeviceReset): the driver's reference count and the allocation registry change together.
  std::mutex& importsMutex() { return importsMu_; }

  // Keeps a destroyed event's slots until every marker pending on them has run (checked whenever
  // another block arrives; the rest go when the runtime does, after the driver has drained).
  void keepUntilRun(std::unique_ptr<EventSlots> slots);

 private:
  std::unique_ptr<driver::Driver> driver_;
  std::vector<std::unique_ptr<Device>> devices_;
  std::vector<driver::AddressRange> ranges_;  // per device
  MemoryRegistry memory_;
  StagingPool staging_;  // outlives the driver: its queues hold staging buffers until destroyed
  HandleSpace handles_;
  std::mutex importsMu_;
  std::mutex pendingSlotsMu_;
  std::vector<std::unique_ptr<EventSlots>> pendingSlots_;
  std::size_t pendingPruneAt_ = 16;
  HandleTable<Stream> streams_{handles_};
  HandleTable<Event> events_{handles_};
};

}  // namespace h20::rt
