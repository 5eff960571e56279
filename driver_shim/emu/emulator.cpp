// emulator.cpp - the embedded software-emulated H20 server: a LocalDriver whose device memory is
// an in-process arena per chip, charged against one host backing budget.
#include "driver.hpp"
#include "emu/arena.hpp"
#include "emu/local_driver.hpp"
#include "emu/topology.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>

namespace h20::driver {

namespace {

class Emulator final : public emu::LocalDriver {
 public:
  explicit Emulator(const EmuConfig& config) {
    budget_ = config.backingBudgetBytes ? config.backingBudgetBytes
                                        : emu::HostMemory::physicalMemory() / 2;
    for (int c = 0; c < config.chips; ++c) {
      auto arena = std::make_unique<emu::Arena>(emu::kChipMemory);
      if (!arena->reserved()) {
        // The host refused a 96 GiB reservation (strict overcommit): reserve what may be backed.
        arena = std::make_unique<emu::Arena>(std::min(emu::kChipMemory, budget_));
      }
      arenas_.push_back(std::move(arena));
    }
    const auto& host = hostMemory();
    Topology topology;
    if (!emu::loadTopology(config.topology, config.chips,
                           host.numaAvailable() ? host.nodeCount() : 0, host.cpusOfNodes(),
                           &topology, &error_))
      return;
    for (int c = 0; c < config.chips; ++c) {
      if (!arenas_[static_cast<std::size_t>(c)]->reserved()) {
        error_ = fmt::format("emulator: cannot reserve address space for chip {}", c);
        return;
      }
    }
    start(std::move(topology), config.workerThreads);
    ok_ = true;
  }
  ~Emulator() override { stop(); }

  Status init() const { return ok_ ? Status{} : Status{h20ErrorInitializationError, error_}; }

  std::string name() const override { return "h20-emu"; }

  Status allocate(int chip, std::size_t bytes, void** out) override {
    auto& arena = *arenas_[static_cast<std::size_t>(chip)];
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
    const std::size_t released = arenas_[static_cast<std::size_t>(chip)]->free(ptr);
    if (released == 0)
      return {h20ErrorInvalidValue,
              fmt::format("{} is not the start of a live allocation on chip {}", ptr, chip)};
    budgetUsed_.fetch_sub(released);
    return {};
  }

  Status memInfo(int chip, std::size_t* freeBytes, std::size_t* totalBytes) const override {
    const auto& arena = *arenas_[static_cast<std::size_t>(chip)];
    const std::size_t used = budgetUsed_.load();
    const std::size_t budgetLeft = used >= budget_ ? 0 : budget_ - used;
    *totalBytes = arena.capacity();
    *freeBytes = std::min(arena.capacity() - arena.used(), budgetLeft);
    return {};
  }

  std::size_t memUsed(int chip) const override {
    return arenas_[static_cast<std::size_t>(chip)]->used();
  }

  Status exportMemory(int, void*, IpcHandleBytes*) override { return notInterprocess(); }
  Status importMemory(const IpcHandleBytes&, ImportedMemory*) override { return notInterprocess(); }
  Status closeImport(void*, bool*) override { return notInterprocess(); }
  Status processes(std::vector<ProcessUse>* out) const override {
    out->clear();
    for (int c = 0; c < chipCount(); ++c)
      if (const std::size_t used = memUsed(c))
        out->push_back({static_cast<int>(getpid()), emu::processName(), c, used});
    return {};
  }
  Status computeMode(int, int* mode) const override {
    *mode = h20ComputeModeDefault;
    return {};
  }
  Status setComputeMode(int, int) override {
    return {h20ErrorNotSupported,
            "compute modes need the device daemon: the embedded emulator serves one process "
            "(start h20d and set H20_DRIVER=daemon)"};
  }
  Status createSharedEvent(int, std::shared_ptr<SharedEvent>*) override {
    return notInterprocess();
  }
  Status exportEvent(const SharedEvent&, IpcHandleBytes*) override { return notInterprocess(); }
  Status importEvent(const IpcHandleBytes&, std::shared_ptr<SharedEvent>*, int*) override {
    return notInterprocess();
  }

  AddressRange addressRange(int chip) const override {
    const auto& arena = *arenas_[static_cast<std::size_t>(chip)];
    return {arena.begin(), arena.end()};
  }

 protected:
  std::size_t chipMemory(int chip) const override {
    return arenas_[static_cast<std::size_t>(chip)]->capacity();
  }

 private:
  static Status notInterprocess();
  bool ok_ = false;
  std::string error_;
  std::size_t budget_ = 0;
  std::atomic<std::size_t> budgetUsed_{0};
  std::vector<std::unique_ptr<emu::Arena>> arenas_;
};

Status Emulator::notInterprocess() {
  return {h20ErrorNotSupported,
          "interprocess memory and events need the device daemon: the embedded emulator serves "
          "one process (start h20d and set H20_DRIVER=daemon)"};
}

}  // namespace

std::unique_ptr<Driver> createEmulator(const EmuConfig& config, Status* status) {
  auto emu = std::make_unique<Emulator>(config);
  Status s = emu->init();
  if (status) *status = s;
  if (!s.ok()) return nullptr;
  return emu;
}

}  // namespace h20::driver
