// staging.hpp - host buffers that asynchronous copies from pageable memory stage their source in.
//
// h20MemcpyAsync from pageable memory copies the source into a staging buffer before it returns
// (CUDA's rule), and the engine copies from there when the stream reaches the copy. A fresh
// allocation per call costs more than the copy itself (the kernel maps and zeroes every page), so
// buffers are kept for reuse: acquire() hands out a buffer of at least the requested size, owned
// by the returned pointer, which gives it back when the copy that holds it is destroyed. At most
// kCachedBytes stay cached; larger leftovers are freed. Thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

namespace h20::rt {

class StagingPool {
 public:
  static constexpr std::size_t kCachedBytes = std::size_t{256} << 20;

  StagingPool() = default;
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  // A buffer of at least `bytes` bytes (contents undefined). Throws std::bad_alloc.
  std::shared_ptr<unsigned char[]> acquire(std::size_t bytes);
  // Bytes of the buffers kept for reuse now.
  std::size_t cachedBytes() const;

 private:
  void release(unsigned char* buffer, std::size_t capacity);

  mutable std::mutex mu_;
  std::multimap<std::size_t, unsigned char*> free_;  // by capacity
  std::size_t cachedBytes_ = 0;
};

}  // namespace h20::rt
