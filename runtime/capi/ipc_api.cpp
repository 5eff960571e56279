// ipc_api.cpp - interprocess memory and event handles (h20Ipc*). The driver does the work (the
// device daemon exports, maps and reference-counts); this file checks arguments and keeps the
// allocation registry and the event table in step, so that imported memory resolves like any
// device allocation and an imported event is an event like any other.
#include "capi/api_guard.hpp"

#include <cstring>
#include <mutex>

using h20::capi::check;
using h20::capi::guarded;
using h20::capi::requireOut;
using h20::rt::Allocation;
using h20::rt::AllocSource;
using h20::rt::Device;
using h20::rt::fail;
using h20::rt::Runtime;

namespace {

// The runtime device that maps `chip`, or throws h20ErrorInvalidDevice.
Device& deviceOfChip(Runtime& rt, int chip) {
  for (int d = 0; d < rt.deviceCount(); ++d)
    if (rt.device(d).chip() == chip) return rt.device(d);
  fail(h20ErrorInvalidDevice,
       "the memory belongs to chip {}, which is not visible in this process (H20_VISIBLE_DEVICES)",
       chip);
}

}  // namespace

extern "C" {

H20_API h20Error_t h20IpcGetMemHandle(h20IpcMemHandle_t* handle, void* devPtr) {
  return guarded("h20IpcGetMemHandle", [&](Runtime& rt) {
    requireOut(handle, "handle");
    auto a = rt.memory().findStart(devPtr);
    if (!a || a->source != AllocSource::deviceMalloc) {
      if (auto inside = rt.memory().find(devPtr); inside && inside->isDevice())
        fail(h20ErrorInvalidValue,
             "devPtr {} is not the base of an h20Malloc allocation (it lies in {} allocation "
             "{:#x})",
             devPtr,
             inside->source == AllocSource::devicePool  ? "the stream-ordered"
             : inside->source == AllocSource::ipcImport ? "the imported"
                                                        : "the",
             inside->base);
      fail(h20ErrorInvalidValue, "devPtr {} is not a live device allocation", devPtr);
    }
    Device& d = rt.device(a->device);
    d.checkFault();
    h20::driver::IpcHandleBytes bytes{};
    check(rt.driver().exportMemory(d.chip(), devPtr, &bytes));
    std::memcpy(handle->reserved, bytes.data(), bytes.size());
    return h20Success;
  });
}

H20_API h20Error_t h20IpcOpenMemHandle(void** devPtr, h20IpcMemHandle_t handle,
                                       unsigned int flags) {
  return guarded("h20IpcOpenMemHandle", [&](Runtime& rt) {
    requireOut(devPtr, "devPtr");
    *devPtr = nullptr;
    if (flags != h20IpcMemLazyEnablePeerAccess)
      fail(h20ErrorInvalidValue, "flags {:#x} must be h20IpcMemLazyEnablePeerAccess", flags);
    Device& current = rt.current();
    current.checkFault();
    h20::driver::IpcHandleBytes bytes{};
    std::memcpy(bytes.data(), handle.reserved, bytes.size());
    std::lock_guard<std::mutex> lock(rt.importsMutex());
    h20::driver::ImportedMemory m;
    check(rt.driver().importMemory(bytes, &m));
    Device* owner = nullptr;
    try {
      owner = &deviceOfChip(rt, m.chip);
      owner->checkFault();
    } catch (...) {
      bool last;
      rt.driver().closeImport(m.ptr, &last);
      throw;
    }
    if (m.firstMapping)
      rt.memory().add(Allocation{reinterpret_cast<std::uintptr_t>(m.ptr), m.bytes, m.bytes,
                                 AllocSource::ipcImport, owner->ordinal(), 0});
    if (owner != &current &&
        rt.driver().topology().link(current.chip(), owner->chip()).accessSupported())
      current.setPeer(owner->ordinal(), true);
    *devPtr = m.ptr;
    return h20Success;
  });
}

H20_API h20Error_t h20IpcCloseMemHandle(void* devPtr) {
  return guarded("h20IpcCloseMemHandle", [&](Runtime& rt) {
    auto isImport = [&] {
      auto a = rt.memory().findStart(devPtr);
      return a && a->source == AllocSource::ipcImport;
    };
    if (!isImport())
      fail(h20ErrorInvalidValue, "devPtr {} is not memory opened with h20IpcOpenMemHandle", devPtr);
    // Work still using the memory finishes first, on every device: kernels and copies of other
    // devices may read it (peer access), and the last reference unmaps it.
    for (int d = 0; d < rt.deviceCount(); ++d)
      rt.device(d).waitIdle();
    std::lock_guard<std::mutex> lock(rt.importsMutex());
    if (!isImport())  // closed by another thread meanwhile
      fail(h20ErrorInvalidValue, "devPtr {} is not memory opened with h20IpcOpenMemHandle", devPtr);
    bool last = false;
    check(rt.driver().closeImport(devPtr, &last));
    if (last) rt.memory().remove(reinterpret_cast<std::uintptr_t>(devPtr));
    return h20Success;
  });
}

H20_API h20Error_t h20IpcGetEventHandle(h20IpcEventHandle_t* handle, h20Event_t event) {
  return guarded("h20IpcGetEventHandle", [&](Runtime& rt) {
    requireOut(handle, "handle");
    auto e = rt.event(event);
    if (!e->shared())
      fail(h20ErrorInvalidResourceHandle,
           "event {} was not created with h20EventInterprocess | h20EventDisableTiming",
           static_cast<const void*>(event));
    h20::driver::IpcHandleBytes bytes{};
    check(rt.driver().exportEvent(*e->shared(), &bytes));
    std::memcpy(handle->reserved, bytes.data(), bytes.size());
    return h20Success;
  });
}

H20_API h20Error_t h20IpcOpenEventHandle(h20Event_t* event, h20IpcEventHandle_t handle) {
  return guarded("h20IpcOpenEventHandle", [&](Runtime& rt) {
    requireOut(event, "event");
    h20::driver::IpcHandleBytes bytes{};
    std::memcpy(bytes.data(), handle.reserved, bytes.size());
    std::shared_ptr<h20::driver::SharedEvent> shared;
    int chip = -1;
    check(rt.driver().importEvent(bytes, &shared, &chip));
    Device& d = deviceOfChip(rt, chip);  // on failure `shared` goes, closing the import
    *event = rt.addEvent(std::make_shared<h20::rt::Event>(
        d, h20EventInterprocess | h20EventDisableTiming, std::move(shared)));
    return h20Success;
  });
}

}  // extern "C"
