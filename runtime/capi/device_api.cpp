// device_api.cpp - device enumeration, selection, properties and attributes, synchronisation,
// reset, compute modes and the processes using a device.
#include "capi/api_guard.hpp"

#include <cstdio>
#include <vector>

using h20::capi::check;
using h20::capi::guarded;
using h20::capi::rawEnum;
using h20::capi::requireOut;
using h20::rt::Device;
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
    Device& d = rt.device(device);
    *prop = d.props();
    // The one property that changes: another process may set it (h20-smi -c).
    check(rt.driver().computeMode(d.chip(), &prop->computeMode));
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
    check(rt.driver().memInfo(d.chip(), freeBytes, totalBytes));
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

H20_API h20Error_t h20DeviceGetAttribute(int* value, h20DeviceAttr attr, int device) {
  return guarded("h20DeviceGetAttribute", [&](Runtime& rt) {
    requireOut(value, "value");
    Device& d = rt.device(device);
    const h20DeviceProp& p = d.props();
    switch (rawEnum(attr)) {
      case h20DevAttrMaxThreadsPerBlock:
        *value = p.maxThreadsPerBlock;
        break;
      case h20DevAttrWarpSize:
        *value = p.warpSize;
        break;
      case h20DevAttrMultiProcessorCount:
        *value = p.multiProcessorCount;
        break;
      case h20DevAttrComputeMode:
        check(rt.driver().computeMode(d.chip(), value));
        break;
      case h20DevAttrConcurrentKernels:
        *value = p.concurrentKernels;
        break;
      case h20DevAttrPciBusId:
        *value = p.pciBusID;
        break;
      case h20DevAttrPciDeviceId:
        *value = p.pciDeviceID;
        break;
      case h20DevAttrComputeCapabilityMajor:
        *value = p.major;
        break;
      case h20DevAttrComputeCapabilityMinor:
        *value = p.minor;
        break;
      default:
        fail(h20ErrorInvalidValue, "attr {} is not a h20DeviceAttr", rawEnum(attr));
    }
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceSetComputeMode(int device, int mode) {
  return guarded("h20DeviceSetComputeMode", [&](Runtime& rt) {
    Device& d = rt.device(device);
    if (mode != h20ComputeModeDefault && mode != h20ComputeModeProhibited &&
        mode != h20ComputeModeExclusiveProcess)
      fail(h20ErrorInvalidValue,
           "mode {} is not h20ComputeModeDefault, h20ComputeModeProhibited or "
           "h20ComputeModeExclusiveProcess",
           mode);
    check(rt.driver().setComputeMode(d.chip(), mode));
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceGetProcesses(int device, h20ProcessInfo* infos, int capacity,
                                         int* count) {
  return guarded("h20DeviceGetProcesses", [&](Runtime& rt) {
    requireOut(count, "count");
    if (capacity < 0) fail(h20ErrorInvalidValue, "capacity {} is negative", capacity);
    if (capacity > 0) requireOut(infos, "infos");
    Device& d = rt.device(device);
    std::vector<h20::driver::Driver::ProcessUse> all;
    check(rt.driver().processes(&all));
    int n = 0;
    for (const auto& u : all) {
      if (u.chip != d.chip()) continue;
      if (n < capacity) {
        h20ProcessInfo& info = infos[n];
        info = h20ProcessInfo{};
        info.pid = u.pid;
        info.device = d.ordinal();
        info.usedMemory = u.bytes;
        std::snprintf(info.name, sizeof info.name, "%s", u.name.c_str());
      }
      ++n;
    }
    *count = n;
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
