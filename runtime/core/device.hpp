// device.hpp - one visible device: its chip, properties, streams, submission and memory pool.
//
// The Device owns its legacy default stream and the stream-ordered memory pool, and knows every
// live stream of the device (to synchronise them all and to apply the legacy stream's implicit
// synchronisation). It does not own user streams, events or handles: the Runtime does.
#pragma once

#include "core/memory.hpp"
#include "core/stream.hpp"
#include "driver.hpp"

#include <atomic>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace h20::rt {

class Runtime;

class Device {
 public:
  Device(Runtime& runtime, driver::Driver& driver, int ordinal, int chip);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  int ordinal() const { return ordinal_; }
  int chip() const { return chip_; }
  const h20DeviceProp& props() const { return props_; }
  driver::Driver& driver() const { return driver_; }
  Runtime& runtime() const { return runtime_; }
  Stream& legacy() const { return *legacy_; }

  std::shared_ptr<Stream> createStream(StreamKind kind, unsigned flags, int priority);
  // The calling thread's per-thread default stream on this device, created on first use.
  std::shared_ptr<Stream> perThreadStream();

  // Enqueues `command` on `stream` after the implicit synchronisation CUDA defines between the
  // legacy stream and blocking streams. Throws h20ErrorLaunchFailure if the device is faulted.
  driver::Seq submit(Stream& stream, driver::Command&& command);
  // A copy run by this device from srcOwner's memory to dstOwner's (nullptr: host memory). Between
  // two devices' memory it goes over the link when this device has peer access to the other one,
  // else through host memory; devices other than this one are named in the command, so that the
  // copy is skipped if one of them faults before it runs.
  driver::CopyCommand copyCommand(const Device* dstOwner, const Device* srcOwner, void* dst,
                                  const void* src, std::size_t count) const;
  // Submits `command` to this device's legacy stream as an operation of the legacy streams of this
  // device and of every device in `others` (nullptrs and this device are skipped): it runs after
  // all work submitted so far to any of those legacy streams, and so to their blocking streams,
  // and their later legacy work runs after it. Every device's fault is checked before anything is
  // enqueued. The rule of h20MemcpyPeer, and of legacy-stream copies and memsets that touch
  // another device's memory.
  driver::Seq submitLegacyAcross(std::initializer_list<Device*> others, driver::Command&& command);
  // Waits for all work of the device, including that of streams destroyed meanwhile. Concurrent
  // callers each wait for everything submitted before their call.
  void waitIdle();
  // What synchronising the legacy stream waits for: its own work and, as every legacy-stream
  // operation is ordered after them, the work submitted so far to the device's blocking streams
  // (destroyed ones included).
  void waitLegacy();
  bool legacyIdle() const;
  // Throws the device's sticky fault as h20ErrorLaunchFailure (or its own code), if any.
  void checkFault() const;
  std::uint64_t nextLaunchId() { return launches_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Bumped by reset: per-thread streams from before are not used again.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Stream-ordered pool.
  // *blockSize receives the bytes reserved (what the pool gets back at free).
  void* poolAllocate(std::size_t bytes, Stream& stream, std::size_t* blockSize);
  void poolFree(const Allocation& allocation, Stream& stream);
  // Returns a block to the pool as immediately reusable (h20Free of pool memory, after a sync).
  void poolRelease(const Allocation& allocation);
  // Gives pool blocks whose frees have executed back to the device.
  void poolTrim();

  // Peer access from this device to `peer` (runtime ordinals, < 64).
  bool peerEnabled(int peer) const { return (peers_.load(std::memory_order_acquire) >> peer) & 1u; }
  // Whether a copy run by this device between its memory and `other`'s goes over a chip link
  // (peer access enabled) rather than through host memory.
  bool copiesDirectTo(int other) const { return other == ordinal_ || peerEnabled(other); }
  // Returns false if the state was already as requested.
  bool setPeer(int peer, bool enabled) {
    const std::uint64_t bit = std::uint64_t{1} << peer;
    const std::uint64_t old = enabled ? peers_.fetch_or(bit) : peers_.fetch_and(~bit);
    return ((old & bit) != 0) != enabled;
  }

  // Part of h20DeviceReset: drops the pool, clears the chip's fault, starts a new generation.
  void resetState();

 private:
  friend class Stream;
  void streamCreated(Stream* stream);
  void streamDestroyed(Stream* stream);
  // (queue, last seq) of every stream with pending work (blockingOnly: the legacy stream and the
  // blocking streams); drops retired entries that have completed.
  using Target = std::pair<driver::QueueId, driver::Seq>;
  std::vector<Target> pendingTargets(bool blockingOnly) const;

  Runtime& runtime_;
  driver::Driver& driver_;
  int ordinal_;
  int chip_;
  h20DeviceProp props_;
  std::shared_ptr<Stream> legacy_;
  std::atomic<std::uint64_t> launches_{0};
  std::atomic<std::uint64_t> generation_{1};
  std::atomic<std::uint64_t> peers_{0};
  mutable std::atomic<bool> faultLogged_{false};

  // Guards streams_ and retired_, and orders submissions that need implicit synchronisation.
  mutable std::mutex mu_;
  std::vector<Stream*> streams_;
  // Destroyed streams whose work was still pending. An entry stays until that work has completed
  // (removed by whoever sees it completed), so every waiter covers it.
  struct Retired {
    driver::QueueId queue;
    driver::Seq seq;
    bool blocking;
  };
  mutable std::vector<Retired> retired_;

  struct PoolBlock {
    void* ptr;
    std::size_t size;
    driver::QueueId queue;  // the free's stream; 0 = reusable by anyone
    driver::Seq seq;
  };
  std::mutex poolMu_;
  std::multimap<std::size_t, PoolBlock> poolFree_;  // by size
};

}  // namespace h20::rt
