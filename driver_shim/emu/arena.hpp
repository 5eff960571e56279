// arena.hpp - one emulated chip's device memory: a reserved address range and the allocator
// that carves it.
//
// The arena reserves the chip's whole capacity as address space up front (MAP_NORESERVE, so
// nothing is backed until touched) and hands out 256-byte-aligned blocks with a best-fit,
// address-ordered free list that coalesces neighbours on free. Freed runs of whole pages are
// returned to the host (MADV_DONTNEED). The arena knows nothing of the host backing budget; the
// emulator charges that before asking the arena. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

namespace h20::emu {

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

  std::size_t capacity() const { return capacity_; }
  std::size_t used() const;
  std::uintptr_t begin() const { return reinterpret_cast<std::uintptr_t>(base_); }
  std::uintptr_t end() const { return begin() + capacity_; }
  // Size of the largest free block (for diagnostics and tests of coalescing).
  std::size_t largestFreeBlock() const;
  std::size_t freeBlockCount() const;

 private:
  void insertFree(std::size_t offset, std::size_t size);
  void eraseFree(std::map<std::size_t, std::size_t>::iterator it);

  char* base_ = nullptr;
  std::size_t capacity_ = 0;
  mutable std::mutex mu_;
  std::map<std::size_t, std::size_t> freeByOffset_;           // offset -> size
  std::set<std::pair<std::size_t, std::size_t>> freeBySize_;  // (size, offset)
  std::unordered_map<std::size_t, std::size_t> live_;         // offset -> size
  std::size_t used_ = 0;
};

}  // namespace h20::emu
