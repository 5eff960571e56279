// local_driver.hpp - what every backend that executes in this process shares: the engine that
// runs the queues, pinned host memory, the topology, the chips' properties and this process's
// fault state.
//
// The embedded emulator (emulator.cpp) and the device daemon's client (daemon/client.cpp) are
// both LocalDrivers: they differ only in where device memory comes from (an in-process arena, or
// shared-memory objects made by h20d) and in who else may fault a chip. Execution never leaves
// the process, so a launch costs the same with either backend.
#pragma once

#include "driver.hpp"
#include "emu/engine.hpp"
#include "emu/host_memory.hpp"

#include <memory>
#include <mutex>
#include <vector>

namespace h20::emu {

// Memory of one emulated chip: 96 GiB of HBM.
inline constexpr std::size_t kChipMemory = std::size_t{96} << 30;
// The driver version both backends report (1000 * major + 10 * minor + patch, as CUDA's).
inline constexpr int kDriverVersion =
    1000 * H20_VERSION_MAJOR + 10 * H20_VERSION_MINOR + H20_VERSION_PATCH;

// This process's name (its /proc/self/comm), for process lists.
std::string processName();

// The properties of chip `chip` of an emulated box (name, limits, clocks, PCI location, ...).
h20DeviceProp chipProperties(int chip, std::size_t memoryBytes, const driver::ChipAttachment& at,
                             int workerThreads);

class LocalDriver : public driver::Driver, public FaultRegistry {
 public:
  ~LocalDriver() override;

  int version() const override { return kDriverVersion; }
  int chipCount() const override { return topology_.chips; }
  h20DeviceProp properties(int chip) const override;

  driver::Status allocateHost(int chip, std::size_t bytes, void** out) override;
  void freeHost(void* ptr, std::size_t bytes) override { host_.release(ptr, bytes); }

  driver::QueueId createQueue(int chip, int priority) override;
  void destroyQueue(driver::QueueId queue) override { engine_->destroyQueue(queue); }
  driver::Seq submit(driver::QueueId queue, driver::Command&& command) override {
    return engine_->submit(queue, std::move(command));
  }
  driver::Seq completed(driver::QueueId queue) const override { return engine_->completed(queue); }
  driver::Seq submitted(driver::QueueId queue) const override { return engine_->submitted(queue); }
  const std::atomic<driver::Seq>& submittedCounter(driver::QueueId queue) const override {
    return engine_->submittedCounter(queue);
  }
  void wait(driver::QueueId queue, driver::Seq seq, bool spinFirst) override {
    engine_->wait(queue, seq, spinFirst);
  }

  void waitShared(const driver::SharedEventState& state, std::uint64_t value,
                  bool spinFirst) override;

  const driver::Topology& topology() const override { return topology_; }

  // This process's faults (a kernel or host function that failed here). A backend whose chips
  // can also be faulted from outside adds those in its overrides.
  std::optional<driver::Fault> fault(int chip) const override;
  void resetChip(int chip) override;
  bool faulted(int chip) const override;
  void raise(int chip, driver::Fault fault) override;

  bool onEngineThread() const override { return engine_->onWorkerThread(); }
  int workerCount(int chip) const override { return engine_->workersOfNode(nodeGroup(chip)); }

  const HostMemory& hostMemory() const { return host_; }

 protected:
  LocalDriver() = default;
  // Takes the box's topology and starts the engine (workerThreads 0: one per host core).
  void start(driver::Topology topology, int workerThreads);
  // Joins the engine's workers: a derived destructor calls it before its memory goes away.
  void stop() { engine_.reset(); }
  // The bytes of device memory chip `chip` has (reported as totalGlobalMem).
  virtual std::size_t chipMemory(int chip) const = 0;

 private:
  std::vector<Engine::NodeWorkers> workerGroups(int workers, bool configured) const;
  int nodeGroup(int chip) const;

  struct ChipFault {
    mutable std::mutex mu;
    std::atomic<bool> faulted{false};
    driver::Fault fault;
  };
  HostMemory host_;
  driver::Topology topology_;
  std::unique_ptr<ChipFault[]> faults_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace h20::emu
