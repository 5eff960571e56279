// device.cpp - submission with implicit synchronisation, device-wide waits, the stream-ordered
// pool (see device.hpp).
#include "core/device.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/runtime.hpp"

#include <algorithm>

namespace h20::rt {

namespace {
constexpr std::size_t kPoolAlignment = 256;
}

Device::Device(Runtime& runtime, driver::Driver& driver, int ordinal, int chip)
    : runtime_(runtime),
      driver_(driver),
      ordinal_(ordinal),
      chip_(chip),
      props_(driver.properties(chip)) {
  legacy_ = std::make_shared<Stream>(*this, StreamKind::legacy, 0u, 0);
}

Device::~Device() {
  legacy_.reset();
  std::lock_guard<std::mutex> lock(poolMu_);
  for (auto& [size, block] : poolFree_)
    driver_.free(chip_, block.ptr);
}

std::shared_ptr<Stream> Device::createStream(StreamKind kind, unsigned flags, int priority) {
  return std::make_shared<Stream>(*this, kind, flags, priority);
}

void Device::streamCreated(Stream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.push_back(stream);
}

void Device::streamDestroyed(Stream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(std::find(streams_.begin(), streams_.end(), stream));
  // Its pending work still runs; device-wide waits must still cover it.
  if (driver_.completed(stream->queue()) < stream->lastSeq())
    retired_.push_back(Retired{stream->queue(), stream->lastSeq(), stream->blocking()});
}

std::shared_ptr<Stream> Device::perThreadStream() {
  // One cache per thread, indexed by device ordinal. At thread exit the streams are released
  // (their pending work still completes) unless the runtime has already shut down.
  struct Cache {
    std::vector<std::pair<std::uint64_t, std::shared_ptr<Stream>>> entries;
    ~Cache() {
      for (auto& e : entries) {
        // After shutdown the device is gone: the stream must not touch it.
        if (!Runtime::aliveForThreadExit()) new std::shared_ptr<Stream>(std::move(e.second));
      }
    }
  };
  thread_local Cache cache;
  const auto index = static_cast<std::size_t>(ordinal_);
  if (cache.entries.size() <= index) cache.entries.resize(index + 1);
  auto& entry = cache.entries[index];
  if (!entry.second || entry.first != generation()) {
    entry.second = createStream(StreamKind::perThread, 0u, 0);
    entry.second->setTag(reinterpret_cast<std::uintptr_t>(h20StreamPerThread));
    entry.first = generation();
  }
  return entry.second;
}

driver::Seq Device::submit(Stream& stream, driver::Command&& command) {
  checkFault();
  driver::Seq seq;
  if (stream.kind() == StreamKind::legacy) {
    // The legacy stream waits for the work already submitted to every blocking stream.
    std::lock_guard<std::mutex> lock(mu_);
    for (Stream* s : streams_) {
      if (!s->blocking()) continue;
      const driver::Seq last = s->lastSeq();
      if (last > s->waitedByLegacy_ && driver_.completed(s->queue()) < last) {
        driver_.submit(stream.queue(), driver::WaitCommand{s->queue(), last});
      }
      s->waitedByLegacy_ = std::max(s->waitedByLegacy_, last);
    }
    seq = driver_.submit(stream.queue(), std::move(command));
  } else if (stream.blocking() &&
             legacy_->lastSeq() > stream.legacyWaited_.load(std::memory_order_relaxed)) {
    // A blocking stream waits for the work already submitted to the legacy stream. (When the
    // legacy stream has nothing new, the common case, the submission needs no lock: a legacy
    // submission racing with it is unordered with it anyway.)
    std::lock_guard<std::mutex> lock(mu_);
    const driver::Seq last = legacy_->lastSeq();
    if (last > stream.legacyWaited_.load(std::memory_order_relaxed)) {
      if (driver_.completed(legacy_->queue()) < last)
        driver_.submit(stream.queue(), driver::WaitCommand{legacy_->queue(), last});
      stream.legacyWaited_.store(last, std::memory_order_relaxed);
    }
    seq = driver_.submit(stream.queue(), std::move(command));
  } else {
    seq = driver_.submit(stream.queue(), std::move(command));
  }
  return seq;
}

std::vector<Device::Target> Device::pendingTargets(bool blockingOnly) const {
  std::vector<Target> targets;
  std::lock_guard<std::mutex> lock(mu_);
  for (Stream* s : streams_) {
    if (blockingOnly && s->kind() != StreamKind::legacy && !s->blocking()) continue;
    if (const driver::Seq last = s->lastSeq(); last != 0) targets.emplace_back(s->queue(), last);
  }
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const Retired& r) {
                                  if (driver_.completed(r.queue) >= r.seq) return true;
                                  if (!blockingOnly || r.blocking)
                                    targets.emplace_back(r.queue, r.seq);
                                  return false;
                                }),
                 retired_.end());
  return targets;
}

driver::CopyCommand Device::copyCommand(const Device* dstOwner, const Device* srcOwner, void* dst,
                                        const void* src, std::size_t count) const {
  driver::CopyCommand c{dst, src, count, nullptr, false};
  auto foreignChip = [&](const Device* d) { return d && d != this ? d->chip() : -1; };
  c.otherChips = {foreignChip(dstOwner), foreignChip(srcOwner)};
  if (dstOwner && srcOwner && dstOwner != srcOwner) {
    const Device* other = dstOwner == this ? srcOwner : dstOwner;
    c.stageThroughHost = !copiesDirectTo(other->ordinal());
  }
  return c;
}

driver::Seq Device::submitLegacyAcross(std::initializer_list<Device*> others,
                                       driver::Command&& command) {
  std::vector<Device*> peers;
  for (Device* d : others)
    if (d && d != this && std::find(peers.begin(), peers.end(), d) == peers.end())
      peers.push_back(d);
  checkFault();
  for (Device* d : peers)
    d->checkFault();
  for (Device* d : peers) {
    // A marker on the peer's legacy stream stands for all its prior legacy and blocking work.
    const driver::Seq fence = d->submit(d->legacy(), driver::MarkerCommand{});
    submit(legacy(), driver::WaitCommand{d->legacy().queue(), fence});
  }
  const driver::Seq seq = submit(legacy(), std::move(command));
  for (Device* d : peers)
    d->submit(d->legacy(), driver::WaitCommand{legacy().queue(), seq});
  return seq;
}

void Device::waitIdle() {
  for (auto& [queue, seq] : pendingTargets(false))
    driver_.wait(queue, seq, true);
}

void Device::waitLegacy() {
  for (auto& [queue, seq] : pendingTargets(true))
    driver_.wait(queue, seq, true);
}

bool Device::legacyIdle() const {
  for (auto& [queue, seq] : pendingTargets(true))
    if (driver_.completed(queue) < seq) return false;
  return true;
}

void Device::checkFault() const {
  if (auto fault = driver_.fault(chip_)) {
    // An execution fault is logged once as an error, when the runtime first sees it.
    if (!faultLogged_.exchange(true))
      log(LogLevel::error, "device {} faulted: {}", ordinal_, fault->message);
    throw Error(fault->code, fmt::format("device {} is faulted until h20DeviceReset: {}", ordinal_,
                                         fault->message));
  }
}

void* Device::poolAllocate(std::size_t bytes, Stream& stream, std::size_t* blockSize) {
  const std::size_t size = (bytes + kPoolAlignment - 1) / kPoolAlignment * kPoolAlignment;
  {
    std::lock_guard<std::mutex> lock(poolMu_);
    // Best fit among blocks up to twice the size, reusable in stream order: freed on this very
    // stream (ordered before this allocation's uses) or freed by work that has executed.
    for (auto it = poolFree_.lower_bound(size); it != poolFree_.end() && it->first <= 2 * size;
         ++it) {
      const PoolBlock& b = it->second;
      if (b.queue == 0 || b.queue == stream.queue() || driver_.completed(b.queue) >= b.seq) {
        void* p = b.ptr;
        *blockSize = b.size;
        poolFree_.erase(it);
        return p;
      }
    }
  }
  void* p = nullptr;
  driver::Status s = driver_.allocate(chip_, size, &p);
  if (!s.ok() && s.code == h20ErrorMemoryAllocation) {
    poolTrim();
    s = driver_.allocate(chip_, size, &p);
  }
  if (!s.ok()) throw Error(s.code, s.message);
  *blockSize = size;
  return p;
}

void Device::poolFree(const Allocation& a, Stream& stream) {
  // The free is ordered on the caller's stream, which may belong to another device.
  const driver::Seq seq = stream.device().submit(stream, driver::MarkerCommand{});
  std::lock_guard<std::mutex> lock(poolMu_);
  poolFree_.emplace(a.blockSize,
                    PoolBlock{reinterpret_cast<void*>(a.base), a.blockSize, stream.queue(), seq});
}

void Device::poolRelease(const Allocation& a) {
  std::lock_guard<std::mutex> lock(poolMu_);
  poolFree_.emplace(a.blockSize, PoolBlock{reinterpret_cast<void*>(a.base), a.blockSize, 0, 0});
}

void Device::poolTrim() {
  std::lock_guard<std::mutex> lock(poolMu_);
  for (auto it = poolFree_.begin(); it != poolFree_.end();) {
    const PoolBlock& b = it->second;
    if (b.queue == 0 || driver_.completed(b.queue) >= b.seq) {
      driver_.free(chip_, b.ptr);
      it = poolFree_.erase(it);
    } else {
      ++it;
    }
  }
}

void Device::resetState() {
  poolTrim();
  driver_.resetChip(chip_);
  peers_.store(0, std::memory_order_release);
  faultLogged_.store(false);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace h20::rt
