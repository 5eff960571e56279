// arena.cpp - best-fit coalescing allocator over a lazily backed reservation (see arena.hpp).
#include "emu/arena.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace h20::emu {

namespace {
constexpr std::size_t roundUp(std::size_t v, std::size_t a) {
  return (v + a - 1) / a * a;
}
// Returning pages to the host costs a system call; small frees keep their pages.
constexpr std::size_t kReleaseThreshold = 1u << 20;
}  // namespace

Arena::Arena(std::size_t capacity) : capacity_(roundUp(capacity, kAlignment)) {
  void* p = mmap(nullptr, capacity_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    capacity_ = 0;
    return;
  }
  base_ = static_cast<char*>(p);
  insertFree(0, capacity_);
}

Arena::~Arena() {
  if (base_) munmap(base_, capacity_);
}

void Arena::insertFree(std::size_t offset, std::size_t size) {
  freeByOffset_.emplace(offset, size);
  freeBySize_.emplace(size, offset);
}

void Arena::eraseFree(std::map<std::size_t, std::size_t>::iterator it) {
  freeBySize_.erase({it->second, it->first});
  freeByOffset_.erase(it);
}

void* Arena::allocate(std::size_t bytes, std::size_t* granted) {
  if (bytes == 0 || bytes > capacity_) return nullptr;  // also keeps roundUp from overflowing
  const std::size_t size = roundUp(bytes, kAlignment);
  std::lock_guard<std::mutex> lock(mu_);
  auto fit = freeBySize_.lower_bound({size, 0});
  if (fit == freeBySize_.end()) return nullptr;
  const std::size_t blockSize = fit->first;
  const std::size_t offset = fit->second;
  eraseFree(freeByOffset_.find(offset));
  if (blockSize > size) insertFree(offset + size, blockSize - size);
  live_.emplace(offset, size);
  used_ += size;
  if (granted) *granted = size;
  return base_ + offset;
}

std::size_t Arena::free(void* ptr) {
  auto* p = static_cast<char*>(ptr);
  if (!base_ || p < base_ || p >= base_ + capacity_) return 0;
  std::size_t offset = static_cast<std::size_t>(p - base_);
  std::size_t size;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto live = live_.find(offset);
    if (live == live_.end()) return 0;
    size = live->second;
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
    // Drop the pages while still holding the lock: once the block is allocatable again, a new
    // owner's data must not be discarded.
    if (size >= kReleaseThreshold) {
      const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
      const std::size_t releaseBegin = roundUp(offset, page);
      const std::size_t releaseEnd = (offset + size) / page * page;
      if (releaseEnd > releaseBegin)
        madvise(base_ + releaseBegin, releaseEnd - releaseBegin, MADV_DONTNEED);
    }
    insertFree(start, len);
  }
  return size;
}

std::size_t Arena::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

std::size_t Arena::largestFreeBlock() const {
  std::lock_guard<std::mutex> lock(mu_);
  return freeBySize_.empty() ? 0 : freeBySize_.rbegin()->first;
}

std::size_t Arena::freeBlockCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return freeByOffset_.size();
}

}  // namespace h20::emu
