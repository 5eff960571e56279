// staging.cpp - reusable staging buffers (see staging.hpp).
#include "core/staging.hpp"

#include <new>

namespace h20::rt {

namespace {
// Capacities are rounded up to a power of two (at least 64 KiB) so that a buffer serves the
// sizes near it.
std::size_t capacityFor(std::size_t bytes) {
  std::size_t c = std::size_t{64} << 10;
  while (c < bytes && c <= (SIZE_MAX >> 1))
    c <<= 1;
  return c < bytes ? bytes : c;
}
}  // namespace

StagingPool::~StagingPool() {
  for (auto& [capacity, buffer] : free_)
    delete[] buffer;
}

std::shared_ptr<unsigned char[]> StagingPool::acquire(std::size_t bytes) {
  const std::size_t capacity = capacityFor(bytes);
  unsigned char* buffer = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = free_.find(capacity); it != free_.end()) {
      buffer = it->second;
      free_.erase(it);
      cachedBytes_ -= capacity;
    }
  }
  if (!buffer) buffer = new unsigned char[capacity];
  return std::shared_ptr<unsigned char[]>(
      buffer, [this, capacity](unsigned char* b) { release(b, capacity); });
}

std::size_t StagingPool::cachedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cachedBytes_;
}

void StagingPool::release(unsigned char* buffer, std::size_t capacity) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cachedBytes_ + capacity <= kCachedBytes) {
      free_.emplace(capacity, buffer);
      cachedBytes_ += capacity;
      return;
    }
  }
  delete[] buffer;
}

}  // namespace h20::rt
