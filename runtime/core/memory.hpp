// memory.hpp - what the runtime knows about memory: the registry of live allocations (device,
// pinned host, registered host) and the resolution of a pointer range against it.
//
// Every copy, memset and kernel-library pointer check goes through resolve(): a range must lie
// inside the one live allocation its first byte points into. Pointers the registry does not know
// are pageable host memory, unless they point into a chip's device memory range, in which case
// they are freed or never-allocated device memory and rejected. Thread-safe.
#pragma once

#include "driver.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <vector>

namespace h20::rt {

// ipcImport: another process's device memory, opened with h20IpcOpenMemHandle.
enum class AllocSource { deviceMalloc, devicePool, hostAlloc, hostRegistered, ipcImport };

struct Allocation {
  std::uintptr_t base = 0;
  std::size_t size = 0;       // bytes the caller asked for: the checked range
  std::size_t blockSize = 0;  // bytes actually reserved (device, pool, host mapping)
  AllocSource source = AllocSource::deviceMalloc;
  int device = 0;  // runtime ordinal
  unsigned flags = 0;

  bool isDevice() const {
    return source == AllocSource::deviceMalloc || source == AllocSource::devicePool ||
           source == AllocSource::ipcImport;
  }
  std::uintptr_t end() const { return base + size; }
};

// A resolved pointer: the allocation it lies in, or none for pageable host memory.
struct PointerInfo {
  std::optional<Allocation> allocation;
  bool isDevice() const { return allocation && allocation->isDevice(); }
  bool isPinnedHost() const { return allocation && !allocation->isDevice(); }
  bool isPageable() const { return !allocation; }
};

class MemoryRegistry {
 public:
  void add(const Allocation& a);
  // Adds `a` unless it overlaps a registered allocation (checked and added atomically).
  bool addIfFree(const Allocation& a);
  // Removes and returns the allocation that starts exactly at `base`, if any.
  std::optional<Allocation> remove(std::uintptr_t base);
  std::optional<Allocation> find(const void* p) const;
  std::optional<Allocation> findStart(const void* p) const;
  // True if [base, base+size) overlaps any registered allocation.
  bool overlaps(std::uintptr_t base, std::size_t size) const;
  std::vector<Allocation> allocationsOf(int device) const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::uintptr_t, Allocation> allocs_;
};

}  // namespace h20::rt
