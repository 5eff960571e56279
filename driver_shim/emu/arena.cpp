// arena.cpp - best-fit coalescing offset allocator, and the emulator's lazily backed reservation
// carved with it (see arena.hpp).
#include "emu/arena.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace h20::emu {

namespace {
// Returning pages to the host costs a system call; small frees keep their pages.
constexpr std::size_t kReleaseThreshold = 1u << 20;
// The x86-64 transparent huge page.
constexpr std::size_t kHugePage = std::size_t(2) << 20;
}  // namespace

OffsetAllocator::OffsetAllocator(std::size_t capacity, std::size_t alignment)
    : alignment_(alignment), capacity_(capacity / alignment * alignment) {
  if (capacity_ > 0) insertFree(0, capacity_);
}

void OffsetAllocator::insertFree(std::size_t offset, std::size_t size) {
  freeByOffset_.emplace(offset, size);
  freeBySize_.emplace(size, offset);
}

void OffsetAllocator::eraseFree(std::map<std::size_t, std::size_t>::iterator it) {
  freeBySize_.erase({it->second, it->first});
  freeByOffset_.erase(it);
}

std::size_t OffsetAllocator::allocate(std::size_t bytes, std::size_t* granted) {
  if (bytes == 0 || bytes > capacity_) return kNone;  // also keeps rounded() from overflowing
  const std::size_t size = rounded(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  auto fit = freeBySize_.lower_bound({size, 0});
  if (fit == freeBySize_.end()) return kNone;
  const std::size_t blockSize = fit->first;
  const std::size_t offset = fit->second;
  eraseFree(freeByOffset_.find(offset));
  if (blockSize > size) insertFree(offset + size, blockSize - size);
  live_.emplace(offset, size);
  used_ += size;
  if (granted) *granted = size;
  return offset;
}

std::size_t OffsetAllocator::free(std::size_t offset,
                                  const std::function<void(std::size_t, std::size_t)>& onRelease) {
  std::lock_guard<std::mutex> lock(mu_);
  auto live = live_.find(offset);
  if (live == live_.end()) return 0;
  const std::size_t size = live->second;
  live_.erase(live);
  used_ -= size;

  std::size_t start = offset, len = size;
  auto next = freeByOffset_.lower_bound(offset);
  if (next != freeByOffset_.end() && next->first == offset + size) {
    len += next->second;
    eraseFree(next);
  }
  auto after = freeByOffset_.lower_bound(offset);
  if (after != freeByOffset_.begin()) {
    auto prev = std::prev(after);
    if (prev->first + prev->second == offset) {
      start = prev->first;
      len += prev->second;
      eraseFree(prev);
    }
  }
  // Still under the lock: once the block is allocatable again, a new owner's data must not be
  // touched by the release.
  if (onRelease) onRelease(offset, size);
  insertFree(start, len);
  return size;
}

std::size_t OffsetAllocator::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

std::size_t OffsetAllocator::largestFreeBlock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return freeBySize_.empty() ? 0 : freeBySize_.rbegin()->first;
}

std::size_t OffsetAllocator::freeBlockCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return freeByOffset_.size();
}

Arena::Arena(std::size_t capacity) : blocks_(capacity + kAlignment - 1, kAlignment) {
  // Reserve a huge page more than needed and keep the 2 MiB-aligned part, so that the kernel can
  // back the arena with transparent huge pages (MADV_HUGEPAGE: wanted even where THP is in
  // "madvise" mode). Kernels walk tensors row by row with strides of kilobytes, so with 4 KiB
  // pages nearly every row costs a TLB miss (measured: the KDA prefill at T = 4096, H = 16 is
  // 12-17 % faster on huge pages). A real device maps its memory in large pages too.
  const std::size_t bytes = blocks_.capacity();
  const std::size_t reserve = bytes + kHugePage;
  void* p = mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  char* raw = static_cast<char*>(p);
  char* aligned = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + kHugePage - 1) /
                                          kHugePage * kHugePage);
  if (aligned > raw) munmap(raw, static_cast<std::size_t>(aligned - raw));
  const std::size_t tail = static_cast<std::size_t>(raw + reserve - (aligned + bytes));
  if (tail > 0) munmap(aligned + bytes, tail);
  base_ = aligned;
  madvise(base_, bytes, MADV_HUGEPAGE);  // advice only: a kernel without THP ignores it
}

Arena::~Arena() {
  if (base_) munmap(base_, blocks_.capacity());
}

void* Arena::allocate(std::size_t bytes, std::size_t* granted) {
  if (!base_) return nullptr;
  const std::size_t offset = blocks_.allocate(bytes, granted);
  return offset == OffsetAllocator::kNone ? nullptr : base_ + offset;
}

std::size_t Arena::free(void* ptr) {
  auto* p = static_cast<char*>(ptr);
  if (!base_ || p < base_ || p >= base_ + blocks_.capacity()) return 0;
  return blocks_.free(static_cast<std::size_t>(p - base_),
                      [this](std::size_t off, std::size_t size) {
                        if (size < kReleaseThreshold) return;
                        const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
                        const std::size_t releaseBegin = (off + page - 1) / page * page;
                        const std::size_t releaseEnd = (off + size) / page * page;
                        if (releaseEnd > releaseBegin)
                          madvise(base_ + releaseBegin, releaseEnd - releaseBegin, MADV_DONTNEED);
                      });
}

}  // namespace h20::emu
