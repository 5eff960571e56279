// arena.hpp - one emulated chip's device memory: the allocator of a chip's offsets, and the
// reserved address range the embedded emulator carves with it.
//
// OffsetAllocator hands out aligned blocks of [0, capacity) with a best-fit, address-ordered free
// list that coalesces neighbours on free. It owns no memory: the embedded emulator's Arena maps
// its blocks into one reservation, the device daemon maps each block as a shared-memory object at
// the same offset of every process's range for the chip. Thread-safe.
//
// Arena reserves the chip's whole capacity as address space up front (MAP_NORESERVE, so nothing
// is backed until touched) and returns freed runs of whole pages to the host (MADV_DONTNEED). It
// knows nothing of the host backing budget; the emulator charges that before asking the arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

namespace h20::emu {

class OffsetAllocator {
 public:
  // alignment: a power of two; capacity is rounded up to it.
  OffsetAllocator(std::size_t capacity, std::size_t alignment);
  OffsetAllocator(const OffsetAllocator&) = delete;
  OffsetAllocator& operator=(const OffsetAllocator&) = delete;

  // The offset of a new block of at least `bytes` (granted: its size), or kNone when no free
  // block is large enough or bytes is 0.
  static constexpr std::size_t kNone = ~std::size_t{0};
  std::size_t allocate(std::size_t bytes, std::size_t* granted);
  // Returns the bytes released, or 0 when `offset` is not the start of a live block. onRelease
  // runs with (offset, size) before the block can be handed out again.
  std::size_t free(std::size_t offset,
                   const std::function<void(std::size_t, std::size_t)>& onRelease = {});

  std::size_t capacity() const { return capacity_; }
  std::size_t alignment() const { return alignment_; }
  // `bytes` rounded up to the alignment (bytes <= capacity, so it cannot overflow).
  std::size_t rounded(std::size_t bytes) const {
    return (bytes + alignment_ - 1) / alignment_ * alignment_;
  }
  std::size_t used() const;
  std::size_t largestFreeBlock() const;
  std::size_t freeBlockCount() const;

 private:
  void insertFree(std::size_t offset, std::size_t size);
  void eraseFree(std::map<std::size_t, std::size_t>::iterator it);

  std::size_t alignment_;
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::map<std::size_t, std::size_t> freeByOffset_;           // offset -> size
  std::set<std::pair<std::size_t, std::size_t>> freeBySize_;  // (size, offset)
  std::unordered_map<std::size_t, std::size_t> live_;         // offset -> size
  std::size_t used_ = 0;
};

class Arena {
 public:
  static constexpr std::size_t kAlignment = 256;

  // Reserves `capacity` bytes of address space. reserved() is false if the host refused.
  explicit Arena(std::size_t capacity);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  bool reserved() const { return base_ != nullptr; }
  // Returns nullptr when no free block is large enough. bytes must be > 0.
  void* allocate(std::size_t bytes, std::size_t* granted);
  // Returns the bytes released, or 0 when ptr is not the start of a live block.
  std::size_t free(void* ptr);

  std::size_t capacity() const { return reserved() ? blocks_.capacity() : 0; }
  std::size_t used() const { return blocks_.used(); }
  std::uintptr_t begin() const { return reinterpret_cast<std::uintptr_t>(base_); }
  std::uintptr_t end() const { return begin() + capacity(); }
  // Size of the largest free block (for diagnostics and tests of coalescing).
  std::size_t largestFreeBlock() const { return blocks_.largestFreeBlock(); }
  std::size_t freeBlockCount() const { return blocks_.freeBlockCount(); }

 private:
  OffsetAllocator blocks_;
  char* base_ = nullptr;
};

}  // namespace h20::emu
