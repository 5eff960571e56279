// runtime.cpp - initialisation, shutdown, devices, handles and pointer resolution (see
// runtime.hpp).
#include "core/runtime.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>

namespace h20::rt {

namespace {

// forked: this process is a child forked after initialisation. The runtime it inherited cannot
// work (fork copies only the calling thread: the engine's workers are gone) and cannot be torn
// down (that would wait for them): it is abandoned, and every call fails, as CUDA's does.
enum class State { uninitialised, ready, failed, unloading, forked };

struct Global {
  std::mutex mu;
  std::atomic<State> state{State::uninitialised};
  Runtime* instance = nullptr;
  h20Error_t initCode = h20Success;
  std::string initMessage;
  static void prepareFork();
  static void parentAfterFork();
  static void childAfterFork();
  Global() {
    pthread_atfork(&Global::prepareFork, &Global::parentAfterFork, &Global::childAfterFork);
  }
  // Destroyed at process exit after the application's own static objects (this library's
  // statics are constructed first): shut the runtime down cleanly, joining its workers.
  ~Global() {
    std::lock_guard<std::mutex> lock(mu);
    const State was = state.load();
    state.store(State::unloading);
    // A forked child's runtime is abandoned, not destroyed; the pointer stays, so that leak
    // checkers see it as reachable.
    if (was == State::forked) return;
    if (was == State::ready) delete instance;
    instance = nullptr;
  }
};
Global gGlobal;

// fork() while another thread initialises the runtime waits for that to finish, so the child sees
// either no runtime or a complete one.
void Global::prepareFork() {
  gGlobal.mu.lock();
}
void Global::parentAfterFork() {
  gGlobal.mu.unlock();
}
void Global::childAfterFork() {
  if (gGlobal.state.load() == State::ready) gGlobal.state.store(State::forked);
  gGlobal.mu.unlock();
}

}  // namespace

Runtime& Runtime::get() {
  State s = gGlobal.state.load(std::memory_order_acquire);
  if (s == State::ready) return *gGlobal.instance;
  std::lock_guard<std::mutex> lock(gGlobal.mu);
  s = gGlobal.state.load(std::memory_order_acquire);
  if (s == State::uninitialised) {
    try {
      RuntimeConfig config = parseConfig([](const char* name) { return std::getenv(name); });
      setLogLevel(config.logLevel);
      gGlobal.instance = new Runtime(config);
      gGlobal.state.store(State::ready, std::memory_order_release);
      return *gGlobal.instance;
    } catch (const Error& e) {
      gGlobal.initCode = e.code();
      gGlobal.initMessage = e.what();
    } catch (const std::exception& e) {
      gGlobal.initCode = h20ErrorInitializationError;
      gGlobal.initMessage = e.what();
    }
    gGlobal.state.store(State::failed, std::memory_order_release);
    s = State::failed;
  }
  if (s == State::ready) return *gGlobal.instance;
  if (s == State::failed)
    throw Error(h20ErrorInitializationError,
                fmt::format("runtime initialisation failed: {}", gGlobal.initMessage));
  if (s == State::forked)
    throw Error(h20ErrorInitializationError,
                "this process was forked after the runtime was initialised: the runtime cannot be "
                "used in the child (initialise it after fork(), or start the child with exec)");
  throw Error(h20ErrorRuntimeUnloading, "the runtime has shut down (process exit)");
}

bool Runtime::aliveForThreadExit() {
  return gGlobal.state.load(std::memory_order_acquire) == State::ready;
}

Runtime::Runtime(const RuntimeConfig& config) {
  driver::Status status;
  driver_ = driver::createDriver(config.driver, &status);
  if (!driver_) throw Error(h20ErrorInitializationError, status.message);
  std::vector<int> chips;
  if (config.visibleDevices) {
    chips = parseVisibleDevices(*config.visibleDevices, driver_->chipCount());
  } else {
    for (int c = 0; c < driver_->chipCount(); ++c)
      chips.push_back(c);
  }
  for (int chip : chips) {
    devices_.push_back(
        std::make_unique<Device>(*this, *driver_, static_cast<int>(devices_.size()), chip));
    ranges_.push_back(driver_->addressRange(chip));
  }
  log(LogLevel::info, "runtime initialised: {} with {} chips, {} visible, {} workers",
      driver_->name(), driver_->chipCount(), devices_.size(), driver_->workerCount(0));
}

Runtime::~Runtime() {
  // Let pending work finish before the engine goes: nothing enqueued is dropped silently.
  for (auto& d : devices_)
    d->waitIdle();
  streams_.removeIf([](const Stream&) { return true; });
  events_.removeIf([](const Event&) { return true; });
  devices_.clear();
  driver_.reset();
  pendingSlots_.clear();  // no marker is left to write to them
}

void Runtime::keepUntilRun(std::unique_ptr<EventSlots> slots) {
  std::lock_guard<std::mutex> lock(pendingSlotsMu_);
  // Pruned when their number has doubled: O(1) per block however many are pending.
  if (pendingSlots_.size() >= pendingPruneAt_) {
    pendingSlots_.erase(
        std::remove_if(pendingSlots_.begin(), pendingSlots_.end(),
                       [](const std::unique_ptr<EventSlots>& b) { return b->allRun(); }),
        pendingSlots_.end());
    pendingPruneAt_ = std::max<std::size_t>(16, 2 * pendingSlots_.size());
  }
  pendingSlots_.push_back(std::move(slots));
}

int& Runtime::currentOrdinal() {
  thread_local int ordinal = 0;
  return ordinal;
}

Device& Runtime::device(int ordinal) const {
  if (devices_.empty()) fail(h20ErrorNoDevice, "no H20 device is visible (H20_VISIBLE_DEVICES)");
  if (ordinal < 0 || ordinal >= deviceCount())
    fail(h20ErrorInvalidDevice, "device {} does not exist ({} devices are visible: 0..{})", ordinal,
         deviceCount(), deviceCount() - 1);
  return *devices_[static_cast<std::size_t>(ordinal)];
}

Device& Runtime::current() const {
  return device(currentOrdinal());
}

std::shared_ptr<Stream> Runtime::stream(h20Stream_t handle, const char* argName) const {
  if (handle == nullptr || handle == h20StreamLegacy) {
    Device& d = current();
    // The legacy stream lives as long as its device; hand out a non-owning reference.
    return std::shared_ptr<Stream>(std::shared_ptr<Stream>{}, &d.legacy());
  }
  if (handle == h20StreamPerThread) return current().perThreadStream();
  auto s = streams_.find(reinterpret_cast<std::uintptr_t>(handle));
  if (!s) failUnknownStream(handle, argName);
  return s;
}

void Runtime::failUnknownStream(h20Stream_t handle, const char* argName) {
  fail(h20ErrorInvalidResourceHandle, "{} {} is not a live stream (destroyed or never created)",
       argName, static_cast<const void*>(handle));
}

void Runtime::failUnknownEvent(h20Event_t handle, const char* argName) {
  fail(h20ErrorInvalidResourceHandle, "{} {} is not a live event (destroyed or never created)",
       argName, static_cast<const void*>(handle));
}

h20Stream_t Runtime::addStream(std::shared_ptr<Stream> stream) {
  Stream* raw = stream.get();
  const std::uintptr_t id = streams_.add(std::move(stream));
  raw->setTag(id);
  return reinterpret_cast<h20Stream_t>(id);
}

void Runtime::destroyStream(h20Stream_t handle) {
  if (handle == nullptr || handle == h20StreamLegacy || handle == h20StreamPerThread)
    fail(h20ErrorInvalidResourceHandle, "the default stream {} cannot be destroyed",
         static_cast<const void*>(handle));
  if (!streams_.remove(reinterpret_cast<std::uintptr_t>(handle)))
    fail(h20ErrorInvalidResourceHandle,
         "stream {} is not a live stream (destroyed or never created)",
         static_cast<const void*>(handle));
}

std::shared_ptr<Event> Runtime::event(h20Event_t handle, const char* argName) const {
  auto e = events_.find(reinterpret_cast<std::uintptr_t>(handle));
  if (!e) failUnknownEvent(handle, argName);
  return e;
}

h20Event_t Runtime::addEvent(std::shared_ptr<Event> event) {
  return reinterpret_cast<h20Event_t>(events_.add(std::move(event)));
}

void Runtime::destroyEvent(h20Event_t handle) {
  if (!events_.remove(reinterpret_cast<std::uintptr_t>(handle)))
    fail(h20ErrorInvalidResourceHandle, "event {} is not a live event (destroyed or never created)",
         static_cast<const void*>(handle));
}

int Runtime::deviceOwningAddress(const void* ptr) const {
  const auto p = reinterpret_cast<std::uintptr_t>(ptr);
  for (std::size_t d = 0; d < ranges_.size(); ++d)
    if (ranges_[d].contains(p)) return static_cast<int>(d);
  return -1;
}

int Runtime::deviceOverlapping(std::uintptr_t base, std::size_t size) const {
  for (std::size_t d = 0; d < ranges_.size(); ++d)
    if (base < ranges_[d].end && ranges_[d].begin - std::min(ranges_[d].begin, base) < size)
      return static_cast<int>(d);
  return -1;
}

PointerInfo Runtime::resolve(const char* what, const void* ptr, std::size_t count) const {
  PointerInfo info;
  info.allocation = memory_.find(ptr);
  if (info.allocation) {
    const Allocation& a = *info.allocation;
    // A faulted device's memory cannot be used by any device (CUDA: the context is unusable).
    if (a.isDevice()) device(a.device).checkFault();
    const std::size_t offset = reinterpret_cast<std::uintptr_t>(ptr) - a.base;
    const std::size_t remaining = a.size - std::min(offset, a.size);
    if (count > remaining)
      fail(h20ErrorInvalidValue,
           "{}: count {} exceeds the {} bytes remaining in {} allocation {:#x} ({} bytes) at "
           "offset {}",
           what, count, remaining, a.isDevice() ? "device" : "pinned host", a.base, a.size, offset);
    return info;
  }
  const int owner = deviceOwningAddress(ptr);
  if (owner >= 0)
    fail(h20ErrorInvalidValue,
         "{}: {} points into device {}'s memory but not into a live allocation (freed or never "
         "allocated)",
         what, ptr, owner);
  return info;
}

void Runtime::resetDevice(Device& device) {
  device.waitIdle();
  const int ordinal = device.ordinal();
  streams_.removeIf([&](const Stream& s) { return &s.device() == &device; });
  events_.removeIf([&](const Event& e) { return &e.device() == &device; });
  for (const Allocation& a : memory_.allocationsOf(ordinal)) {
    memory_.remove(a.base);
    if (a.source == AllocSource::devicePool) {
      device.poolRelease(a);
    } else if (a.source == AllocSource::ipcImport) {
      // Every reference this process opened goes with the reset.
      std::lock_guard<std::mutex> lock(importsMu_);
      for (bool last = false; !last;)
        if (!driver_->closeImport(reinterpret_cast<void*>(a.base), &last).ok()) break;
    } else {
      driver_->free(device.chip(), reinterpret_cast<void*>(a.base));
    }
  }
  device.waitIdle();  // streams destroyed above may still have had work in flight
  device.resetState();
}

}  // namespace h20::rt
