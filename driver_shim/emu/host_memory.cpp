// host_memory.cpp - NUMA-aware host allocation (see host_memory.hpp).
#include "emu/host_memory.hpp"

#include <numa.h>
#include <sys/mman.h>

namespace h20::emu {

HostMemory::HostMemory() {
  numa_ = numa_available() >= 0;
  if (numa_) nodes_ = numa_max_node() + 1;
}

int HostMemory::nodeOfChip(int chip, int chipCount) const {
  if (!numa_) return -1;
  if (chipCount <= 0 || nodes_ <= 1) return 0;
  return chip * nodes_ / chipCount;
}

void* HostMemory::allocate(std::size_t bytes, int node) const {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  // Bind before first touch so the pages are faulted in on the chip's node.
  if (numa_ && node >= 0 && nodes_ > 1) numa_tonode_memory(p, bytes, node);
  return p;
}

void HostMemory::release(void* ptr, std::size_t bytes) const {
  if (ptr) munmap(ptr, bytes);
}

}  // namespace h20::emu
