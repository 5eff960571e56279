// host_memory.hpp - pinned host memory placement for the emulated chips (libnuma).
//
// Owns the question "which host NUMA node is this chip attached to" and the allocation of host
// buffers on that node. Where the host has no NUMA support (or a single node) everything works
// and the node is reported honestly (-1 without NUMA support).
#pragma once

#include <cstddef>
#include <vector>

namespace h20::emu {

class HostMemory {
 public:
  HostMemory();
  // NUMA nodes of the host (1 when NUMA is unsupported), and whether libnuma works here.
  int nodeCount() const { return nodes_; }
  bool numaAvailable() const { return numa_; }
  // Host CPUs of each NUMA node (one entry with every CPU when NUMA is unsupported).
  std::vector<std::vector<int>> cpusOfNodes() const;
  // Bytes of physical memory of the host (8 GiB when the system does not say).
  static std::size_t physicalMemory();
  // Page-aligned, zero-filled memory on `node` (any node for -1). nullptr on failure.
  void* allocate(std::size_t bytes, int node) const;
  void release(void* ptr, std::size_t bytes) const;

 private:
  bool numa_ = false;
  int nodes_ = 1;
};

}  // namespace h20::emu
