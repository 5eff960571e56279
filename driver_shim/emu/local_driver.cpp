// local_driver.cpp - the execution half shared by the in-process backends (see local_driver.hpp).
//
// Modelled chip (per chip): 96 GiB HBM at 4.0 TB/s, 148 TFLOP/s dense BF16, 60 MB L2, 78 SMs,
// PCIe Gen5 x16 to the host. These are reported as properties; the emulator's real speed is that
// of the host CPU.
#include "emu/local_driver.hpp"

#include "emu/shared_wait.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <thread>

namespace h20::emu {

namespace {
// PCI bus numbers of the eight accelerator slots of a typical two-socket 8-GPU server.
constexpr int kBusIds[] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};
}  // namespace

std::string processName() {
  std::ifstream comm("/proc/self/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

h20DeviceProp chipProperties(int chip, std::size_t memoryBytes, const driver::ChipAttachment& at,
                             int workerThreads) {
  h20DeviceProp p{};
  std::snprintf(p.name, sizeof p.name, "%s", "H20 (emulated)");
  p.totalGlobalMem = memoryBytes;
  p.sharedMemPerBlock = 48 * 1024;
  p.sharedMemPerBlockOptin = 227 * 1024;
  p.warpSize = 32;
  p.maxThreadsPerBlock = 1024;
  p.maxThreadsDim[0] = 1024;
  p.maxThreadsDim[1] = 1024;
  p.maxThreadsDim[2] = 64;
  p.maxGridSize[0] = 0x7fffffff;
  p.maxGridSize[1] = 65535;
  p.maxGridSize[2] = 65535;
  p.clockRate = 1980000;
  // 6144-bit HBM3 at 2.604 GHz (double data rate) gives the chip's 4.0 TB/s.
  p.memoryClockRate = 2604000;
  p.memoryBusWidth = 6144;
  p.major = 9;
  p.minor = 0;
  p.multiProcessorCount = 78;
  p.l2CacheSize = 60 * 1024 * 1024;
  p.asyncEngineCount = 2;
  p.concurrentKernels = 1;
  p.unifiedAddressing = 1;
  p.canMapHostMemory = 1;
  p.integrated = 0;
  p.pciDomainID = 0;
  p.pciBusID = chip < 8 ? kBusIds[chip] : 0x100 - 8 + chip % 8;
  p.pciDeviceID = chip < 8 ? 0 : chip / 8;
  std::snprintf(p.pciBusId, sizeof p.pciBusId, "%04x:%02x:%02x.0", p.pciDomainID, p.pciBusID & 0xff,
                p.pciDeviceID);
  p.numaNode = at.numaNode;
  p.memoryBandwidth = 4.0e12;
  p.peakBf16Flops = 148.0e12;
  p.hostLinkBandwidth = at.hostBandwidth;
  p.streamPriorityLowest = Engine::kPriorityLowest;
  p.streamPriorityHighest = Engine::kPriorityHighest;
  p.emulated = 1;
  p.hostWorkerThreads = workerThreads;
  return p;
}

LocalDriver::~LocalDriver() = default;

void LocalDriver::start(driver::Topology topology, int workerThreads) {
  topology_ = std::move(topology);
  faults_ = std::make_unique<ChipFault[]>(static_cast<std::size_t>(topology_.chips));
  const int workers = workerThreads > 0
                          ? workerThreads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  engine_ = std::make_unique<Engine>(workerGroups(workers, workerThreads > 0), this);
}

h20DeviceProp LocalDriver::properties(int chip) const {
  return chipProperties(chip, chipMemory(chip),
                        topology_.attachment[static_cast<std::size_t>(chip)], workerCount(chip));
}

driver::Status LocalDriver::allocateHost(int chip, std::size_t bytes, void** out) {
  void* p = host_.allocate(bytes, topology_.attachment[static_cast<std::size_t>(chip)].numaNode);
  if (!p)
    return {h20ErrorMemoryAllocation,
            fmt::format("cannot allocate {} bytes of pinned host memory", bytes)};
  *out = p;
  return {};
}

driver::QueueId LocalDriver::createQueue(int chip, int priority) {
  return engine_->createQueue(chip, priority, nodeGroup(chip));
}

void LocalDriver::waitShared(const driver::SharedEventState& state, std::uint64_t value,
                             bool spinFirst) {
  emu::waitShared(state, value, spinFirst);
}

std::optional<driver::Fault> LocalDriver::fault(int chip) const {
  const auto& c = faults_[static_cast<std::size_t>(chip)];
  if (!c.faulted.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard<std::mutex> lock(c.mu);
  return c.fault;
}

void LocalDriver::resetChip(int chip) {
  auto& c = faults_[static_cast<std::size_t>(chip)];
  std::lock_guard<std::mutex> lock(c.mu);
  c.fault = driver::Fault{};
  c.faulted.store(false, std::memory_order_release);
}

bool LocalDriver::faulted(int chip) const {
  return faults_[static_cast<std::size_t>(chip)].faulted.load(std::memory_order_acquire);
}

void LocalDriver::raise(int chip, driver::Fault fault) {
  auto& c = faults_[static_cast<std::size_t>(chip)];
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.faulted.load(std::memory_order_relaxed)) return;  // the first fault is the cause
  c.fault = std::move(fault);
  c.faulted.store(true, std::memory_order_release);
}

// One worker group per host NUMA node when the host has several (pinned to the node's CPUs,
// serving the chips attached to it); a single unpinned group otherwise.
std::vector<Engine::NodeWorkers> LocalDriver::workerGroups(int workers, bool configured) const {
  const int nodes = host_.numaAvailable() ? host_.nodeCount() : 1;
  if (nodes <= 1) return {Engine::NodeWorkers{workers, {}}};
  const auto cpus = host_.cpusOfNodes();
  std::vector<Engine::NodeWorkers> groups(static_cast<std::size_t>(nodes));
  for (int n = 0; n < nodes; ++n) {
    auto& g = groups[static_cast<std::size_t>(n)];
    g.cpus = cpus[static_cast<std::size_t>(n)];
    g.workers =
        configured ? std::max(1, workers / nodes) : std::max(1, static_cast<int>(g.cpus.size()));
  }
  return groups;
}

int LocalDriver::nodeGroup(int chip) const {
  return std::max(0, topology_.attachment[static_cast<std::size_t>(chip)].numaNode);
}

}  // namespace h20::emu
