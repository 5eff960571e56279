// emulator.cpp - the embedded software-emulated H20 server: the Driver implementation that ties
// together per-chip memory arenas, the host backing budget, pinned host memory, the execution
// engine and per-chip fault state.
//
// Modelled chip (per chip): 96 GiB HBM at 4.0 TB/s, 148 TFLOP/s dense BF16, 60 MB L2, 78 SMs,
// PCIe Gen5 x16 to the host. These are reported as properties; the emulator's real speed is that
// of the host CPU.
#include "driver.hpp"
#include "emu/arena.hpp"
#include "emu/engine.hpp"
#include "emu/host_memory.hpp"
#include "emu/topology.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

namespace h20::driver {

namespace {

constexpr std::size_t kGiB = std::size_t{1} << 30;
constexpr std::size_t kChipMemory = 96 * kGiB;
constexpr int kDriverVersion =
    1000 * H20_VERSION_MAJOR + 10 * H20_VERSION_MINOR + H20_VERSION_PATCH;
// PCI bus numbers of the eight accelerator slots of a typical two-socket 8-GPU server.
constexpr int kBusIds[] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};

std::size_t hostPhysicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                               : 8 * kGiB;
}

class Emulator final : public Driver, public emu::FaultRegistry {
 public:
  explicit Emulator(const EmuConfig& config) : chipCount_(config.chips) {
    budget_ = config.backingBudgetBytes ? config.backingBudgetBytes : hostPhysicalMemory() / 2;
    const int workers = config.workerThreads > 0
                            ? config.workerThreads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int c = 0; c < chipCount_; ++c) {
      auto chip = std::make_unique<Chip>();
      chip->arena = std::make_unique<emu::Arena>(kChipMemory);
      if (!chip->arena->reserved()) {
        // The host refused a 96 GiB reservation (strict overcommit): reserve what may be backed.
        chip->arena = std::make_unique<emu::Arena>(std::min(kChipMemory, budget_));
      }
      chips_.push_back(std::move(chip));
    }
    topologyOk_ = emu::loadTopology(config.topology, chipCount_,
                                    host_.numaAvailable() ? host_.nodeCount() : 0,
                                    host_.cpusOfNodes(), &topology_, &topologyError_);
    engine_ = std::make_unique<emu::Engine>(workerGroups(workers, config.workerThreads > 0), this);
  }

  Status init() const {
    if (!topologyOk_) return {h20ErrorInitializationError, topologyError_};
    for (int c = 0; c < chipCount_; ++c) {
      if (!chips_[static_cast<std::size_t>(c)]->arena->reserved())
        return {h20ErrorInitializationError,
                fmt::format("emulator: cannot reserve address space for chip {}", c)};
    }
    return {};
  }

  std::string name() const override { return "h20-emu"; }
  int version() const override { return kDriverVersion; }
  int chipCount() const override { return chipCount_; }

  h20DeviceProp properties(int chip) const override {
    h20DeviceProp p{};
    std::snprintf(p.name, sizeof p.name, "%s", "H20 (emulated)");
    p.totalGlobalMem = chips_[static_cast<std::size_t>(chip)]->arena->capacity();
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
    std::snprintf(p.pciBusId, sizeof p.pciBusId, "%04x:%02x:%02x.0", p.pciDomainID,
                  p.pciBusID & 0xff, p.pciDeviceID);
    p.numaNode = topology_.attachment[static_cast<std::size_t>(chip)].numaNode;
    p.memoryBandwidth = 4.0e12;
    p.peakBf16Flops = 148.0e12;
    p.hostLinkBandwidth = topology_.attachment[static_cast<std::size_t>(chip)].hostBandwidth;
    p.streamPriorityLowest = emu::Engine::kPriorityLowest;
    p.streamPriorityHighest = emu::Engine::kPriorityHighest;
    p.emulated = 1;
    p.hostWorkerThreads = workerCount(chip);
    return p;
  }

  Status allocate(int chip, std::size_t bytes, void** out) override {
    auto& arena = *chips_[static_cast<std::size_t>(chip)]->arena;
    if (bytes > arena.capacity())
      return {h20ErrorMemoryAllocation,
              fmt::format("{} bytes requested on chip {}, which has {} bytes of memory", bytes,
                          chip, arena.capacity())};
    const std::size_t rounded =
        (bytes + emu::Arena::kAlignment - 1) / emu::Arena::kAlignment * emu::Arena::kAlignment;
    if (rounded > arena.capacity() - arena.used())
      return {h20ErrorMemoryAllocation,
              fmt::format("out of device memory on chip {}: {} bytes requested, {} of {} bytes "
                          "free",
                          chip, bytes, arena.capacity() - arena.used(), arena.capacity())};
    std::size_t used = budgetUsed_.load();
    do {
      if (used + rounded > budget_)
        return {h20ErrorMemoryAllocation,
                fmt::format("emulator host backing budget exhausted: {} bytes requested on chip "
                            "{}, {} of the {}-byte budget in use (raise H20_EMU_MEMORY_BUDGET)",
                            bytes, chip, used, budget_)};
    } while (!budgetUsed_.compare_exchange_weak(used, used + rounded));
    std::size_t granted = 0;
    void* p = arena.allocate(bytes, &granted);
    if (!p) {
      budgetUsed_.fetch_sub(rounded);
      return {h20ErrorMemoryAllocation,
              fmt::format("out of device memory on chip {}: no free block of {} bytes "
                          "(fragmented; largest free block {} bytes)",
                          chip, rounded, arena.largestFreeBlock())};
    }
    *out = p;
    return {};
  }

  Status free(int chip, void* ptr) override {
    const std::size_t released = chips_[static_cast<std::size_t>(chip)]->arena->free(ptr);
    if (released == 0)
      return {h20ErrorInvalidValue,
              fmt::format("{} is not the start of a live allocation on chip {}", ptr, chip)};
    budgetUsed_.fetch_sub(released);
    return {};
  }

  void memInfo(int chip, std::size_t* freeBytes, std::size_t* totalBytes) const override {
    const auto& arena = *chips_[static_cast<std::size_t>(chip)]->arena;
    const std::size_t used = budgetUsed_.load();
    const std::size_t budgetLeft = used >= budget_ ? 0 : budget_ - used;
    *totalBytes = arena.capacity();
    *freeBytes = std::min(arena.capacity() - arena.used(), budgetLeft);
  }

  std::size_t memUsed(int chip) const override {
    return chips_[static_cast<std::size_t>(chip)]->arena->used();
  }

  AddressRange addressRange(int chip) const override {
    const auto& arena = *chips_[static_cast<std::size_t>(chip)]->arena;
    return {arena.begin(), arena.end()};
  }

  Status allocateHost(int chip, std::size_t bytes, void** out) override {
    void* p = host_.allocate(bytes, topology_.attachment[static_cast<std::size_t>(chip)].numaNode);
    if (!p)
      return {h20ErrorMemoryAllocation,
              fmt::format("cannot allocate {} bytes of pinned host memory", bytes)};
    *out = p;
    return {};
  }

  void freeHost(void* ptr, std::size_t bytes) override { host_.release(ptr, bytes); }

  QueueId createQueue(int chip, int priority) override {
    return engine_->createQueue(chip, priority, nodeGroup(chip));
  }
  void destroyQueue(QueueId queue) override { engine_->destroyQueue(queue); }
  Seq submit(QueueId queue, Command&& command) override {
    return engine_->submit(queue, std::move(command));
  }
  Seq completed(QueueId queue) const override { return engine_->completed(queue); }
  Seq submitted(QueueId queue) const override { return engine_->submitted(queue); }
  const std::atomic<Seq>& submittedCounter(QueueId queue) const override {
    return engine_->submittedCounter(queue);
  }
  void wait(QueueId queue, Seq seq, bool spinFirst) override {
    engine_->wait(queue, seq, spinFirst);
  }

  const Topology& topology() const override { return topology_; }

  std::optional<Fault> fault(int chip) const override {
    const auto& c = *chips_[static_cast<std::size_t>(chip)];
    if (!c.faulted.load(std::memory_order_acquire)) return std::nullopt;
    std::lock_guard<std::mutex> lock(c.faultMu);
    return c.fault;
  }

  void resetChip(int chip) override {
    auto& c = *chips_[static_cast<std::size_t>(chip)];
    std::lock_guard<std::mutex> lock(c.faultMu);
    c.fault = Fault{};
    c.faulted.store(false, std::memory_order_release);
  }

  bool onEngineThread() const override { return engine_->onWorkerThread(); }
  int workerCount(int chip) const override { return engine_->workersOfNode(nodeGroup(chip)); }

  // One worker group per host NUMA node when the host has several (pinned to the node's CPUs,
  // serving the chips attached to it); a single unpinned group otherwise.
  std::vector<emu::Engine::NodeWorkers> workerGroups(int workers, bool configured) const {
    const int nodes = host_.numaAvailable() ? host_.nodeCount() : 1;
    if (nodes <= 1) return {emu::Engine::NodeWorkers{workers, {}}};
    const auto cpus = host_.cpusOfNodes();
    std::vector<emu::Engine::NodeWorkers> groups(static_cast<std::size_t>(nodes));
    for (int n = 0; n < nodes; ++n) {
      auto& g = groups[static_cast<std::size_t>(n)];
      g.cpus = cpus[static_cast<std::size_t>(n)];
      g.workers =
          configured ? std::max(1, workers / nodes) : std::max(1, static_cast<int>(g.cpus.size()));
    }
    return groups;
  }
  int nodeGroup(int chip) const {
    return std::max(0, topology_.attachment[static_cast<std::size_t>(chip)].numaNode);
  }

  // emu::FaultRegistry
  bool faulted(int chip) const override {
    return chips_[static_cast<std::size_t>(chip)]->faulted.load(std::memory_order_acquire);
  }
  void raise(int chip, Fault fault) override {
    auto& c = *chips_[static_cast<std::size_t>(chip)];
    std::lock_guard<std::mutex> lock(c.faultMu);
    if (c.faulted.load(std::memory_order_relaxed)) return;  // the first fault is the cause
    c.fault = std::move(fault);
    c.faulted.store(true, std::memory_order_release);
  }

 private:
  struct Chip {
    std::unique_ptr<emu::Arena> arena;
    mutable std::mutex faultMu;
    std::atomic<bool> faulted{false};
    Fault fault;
  };

  int chipCount_;
  std::size_t budget_ = 0;
  std::atomic<std::size_t> budgetUsed_{0};
  emu::HostMemory host_;
  Topology topology_;
  bool topologyOk_ = false;
  std::string topologyError_;
  std::vector<std::unique_ptr<Chip>> chips_;
  // Last member: its workers must stop before the chips they run on go away.
  std::unique_ptr<emu::Engine> engine_;
};

}  // namespace

std::unique_ptr<Driver> createEmulator(const EmuConfig& config, Status* status) {
  auto emu = std::make_unique<Emulator>(config);
  Status s = emu->init();
  if (status) *status = s;
  if (!s.ok()) return nullptr;
  return emu;
}

}  // namespace h20::driver
