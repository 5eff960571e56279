// host_memory.cpp - NUMA-aware host allocation (see host_memory.hpp).
#include "emu/host_memory.hpp"

#include <numa.h>
#include <sys/mman.h>
#include <unistd.h>

namespace h20::emu {

HostMemory::HostMemory() {
  numa_ = numa_available() >= 0;
  if (numa_) nodes_ = numa_max_node() + 1;
}

std::vector<std::vector<int>> HostMemory::cpusOfNodes() const {
  const int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<std::vector<int>> out(static_cast<std::size_t>(nodes_));
  for (int cpu = 0; cpu < cpus; ++cpu) {
    const int node = numa_ ? numa_node_of_cpu(cpu) : 0;
    if (node >= 0 && node < nodes_) out[static_cast<std::size_t>(node)].push_back(cpu);
  }
  return out;
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

std::size_t HostMemory::physicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : std::size_t{8} << 30;
}

}  // namespace h20::emu
