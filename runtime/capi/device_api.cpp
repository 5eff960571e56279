// device_api.cpp - device enumeration, selection, properties, synchronisation and reset.
#include "capi/api_guard.hpp"

using h20::capi::guarded;
using h20::capi::requireOut;
using h20::rt::fail;
using h20::rt::Runtime;

extern "C" {

H20_API h20Error_t h20GetDeviceCount(int* count) {
  if (count) *count = 0;
  return guarded("h20GetDeviceCount", [&](Runtime& rt) {
    requireOut(count, "count");
    *count = rt.deviceCount();
    if (*count == 0) fail(h20ErrorNoDevice, "no H20 device is visible (H20_VISIBLE_DEVICES)");
    return h20Success;
  });
}

H20_API h20Error_t h20SetDevice(int device) {
  return guarded("h20SetDevice", [&](Runtime& rt) {
    rt.device(device);
    Runtime::currentOrdinal() = device;
    return h20Success;
  });
}

H20_API h20Error_t h20GetDevice(int* device) {
  return guarded("h20GetDevice", [&](Runtime& rt) {
    requireOut(device, "device");
    if (rt.deviceCount() == 0) fail(h20ErrorNoDevice, "no H20 device is visible");
    *device = Runtime::currentOrdinal();
    return h20Success;
  });
}

H20_API h20Error_t h20GetDeviceProperties(h20DeviceProp* prop, int device) {
  return guarded("h20GetDeviceProperties", [&](Runtime& rt) {
    requireOut(prop, "prop");
    *prop = rt.device(device).props();
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceSynchronize(void) {
  return guarded("h20DeviceSynchronize", [&](Runtime& rt) {
    auto& d = rt.current();
    d.waitIdle();
    d.checkFault();
    d.poolTrim();
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceReset(void) {
  return guarded("h20DeviceReset", [&](Runtime& rt) {
    rt.resetDevice(rt.current());
    return h20Success;
  });
}

H20_API h20Error_t h20MemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  return guarded("h20MemGetInfo", [&](Runtime& rt) {
    requireOut(freeBytes, "free");
    requireOut(totalBytes, "total");
    auto& d = rt.current();
    rt.driver().memInfo(d.chip(), freeBytes, totalBytes);
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceGetMemoryUsed(size_t* usedBytes, int device) {
  return guarded("h20DeviceGetMemoryUsed", [&](Runtime& rt) {
    requireOut(usedBytes, "usedBytes");
    *usedBytes = rt.driver().memUsed(rt.device(device).chip());
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
  return guarded("h20DeviceGetStreamPriorityRange", [&](Runtime& rt) {
    // CUDA accepts either pointer as NULL.
    const auto& p = rt.current().props();
    if (leastPriority) *leastPriority = p.streamPriorityLowest;
    if (greatestPriority) *greatestPriority = p.streamPriorityHighest;
    return h20Success;
  });
}

}  // extern "C"
