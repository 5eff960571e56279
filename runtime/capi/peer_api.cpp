// peer_api.cpp - topology queries, peer access and copies between devices.
#include "capi/api_guard.hpp"

#include <algorithm>

using h20::capi::guarded;
using h20::capi::requireOut;
using h20::driver::PeerLink;
using h20::rt::Device;
using h20::rt::fail;
using h20::rt::PointerInfo;
using h20::rt::Runtime;

namespace {

const PeerLink& linkBetween(Runtime& rt, const Device& a, const Device& b) {
  return rt.driver().topology().link(a.chip(), b.chip());
}

int linkKindValue(h20::driver::LinkKind kind) {
  switch (kind) {
    case h20::driver::LinkKind::direct:
      return h20P2PLinkDirect;
    case h20::driver::LinkKind::switched:
      return h20P2PLinkSwitch;
    case h20::driver::LinkKind::self:  // not reached: equal devices are rejected before
    case h20::driver::LinkKind::host:
      break;
  }
  return h20P2PLinkHost;
}

// Both ranges must be device memory of the named devices.
void checkPeerRange(Runtime& rt, const char* what, const void* ptr, int device, std::size_t count) {
  if (!ptr) fail(h20ErrorInvalidValue, "{} is NULL (count {})", what, count);
  const PointerInfo info = rt.resolve(what, ptr, count);
  if (!info.isDevice() || info.allocation->device != device)
    fail(h20ErrorInvalidValue, "{} {} is not device memory of device {}", what, ptr, device);
}

}  // namespace

extern "C" {

H20_API h20Error_t h20DeviceCanAccessPeer(int* canAccessPeer, int device, int peerDevice) {
  return guarded("h20DeviceCanAccessPeer", [&](Runtime& rt) {
    requireOut(canAccessPeer, "canAccessPeer");
    Device& a = rt.device(device);
    Device& b = rt.device(peerDevice);
    *canAccessPeer = device != peerDevice && linkBetween(rt, a, b).accessSupported();
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceGetP2PAttribute(int* value, h20DeviceP2PAttr attr, int srcDevice,
                                            int dstDevice) {
  return guarded("h20DeviceGetP2PAttribute", [&](Runtime& rt) {
    requireOut(value, "value");
    Device& a = rt.device(srcDevice);
    Device& b = rt.device(dstDevice);
    if (srcDevice == dstDevice)
      fail(h20ErrorInvalidDevice, "srcDevice and dstDevice are both {}", srcDevice);
    const PeerLink& l = linkBetween(rt, a, b);
    const int attrValue = h20::capi::rawEnum(attr);
    switch (attrValue) {
      case h20DevP2PAttrPerformanceRank:
        *value = l.performanceRank();
        break;
      case h20DevP2PAttrAccessSupported:
        *value = l.accessSupported();
        break;
      case h20DevP2PAttrNativeAtomicSupported:
        *value = l.accessSupported();
        break;
      case h20DevP2PAttrLinkBandwidthMBps:
        *value = static_cast<int>(l.bandwidth / 1.0e6);
        break;
      case h20DevP2PAttrHopCount:
        *value = l.hops;
        break;
      case h20DevP2PAttrLinkKind:
        *value = linkKindValue(l.kind);
        break;
      default:
        fail(h20ErrorInvalidValue, "attr {} is not a h20DeviceP2PAttr", attrValue);
    }
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceEnablePeerAccess(int peerDevice, unsigned int flags) {
  return guarded("h20DeviceEnablePeerAccess", [&](Runtime& rt) {
    if (flags != 0) fail(h20ErrorInvalidValue, "flags {:#x} must be 0", flags);
    Device& self = rt.current();
    Device& peer = rt.device(peerDevice);
    if (&self == &peer)
      fail(h20ErrorInvalidDevice, "peerDevice {} is the current device", peerDevice);
    if (!linkBetween(rt, self, peer).accessSupported())
      fail(h20ErrorPeerAccessUnsupported,
           "devices {} and {} have no chip-to-chip link in topology '{}'", self.ordinal(),
           peerDevice, rt.driver().topology().name);
    if (!self.setPeer(peerDevice, true))
      fail(h20ErrorPeerAccessAlreadyEnabled, "device {} can already access device {}",
           self.ordinal(), peerDevice);
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceDisablePeerAccess(int peerDevice) {
  return guarded("h20DeviceDisablePeerAccess", [&](Runtime& rt) {
    Device& self = rt.current();
    rt.device(peerDevice);
    if (!self.setPeer(peerDevice, false))
      fail(h20ErrorPeerAccessNotEnabled, "device {} has no peer access to device {}",
           self.ordinal(), peerDevice);
    return h20Success;
  });
}

H20_API h20Error_t h20DeviceGetCpuAffinity(int device, int* cpus, int capacity, int* count,
                                           int* numaNode) {
  return guarded("h20DeviceGetCpuAffinity", [&](Runtime& rt) {
    requireOut(count, "count");
    if (capacity < 0 || (capacity > 0 && !cpus))
      fail(h20ErrorInvalidValue, "cpus {} with capacity {}", static_cast<void*>(cpus), capacity);
    const auto& at =
        rt.driver().topology().attachment[static_cast<std::size_t>(rt.device(device).chip())];
    const int n = static_cast<int>(at.cpus.size());
    std::copy_n(at.cpus.begin(), std::min(n, capacity), cpus);
    *count = n;
    if (numaNode) *numaNode = at.numaNode;
    return h20Success;
  });
}

H20_API h20Error_t h20MemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice,
                                      size_t count, h20Stream_t stream) {
  return guarded("h20MemcpyPeerAsync", [&](Runtime& rt) {
    auto s = rt.stream(stream);
    rt.device(dstDevice);
    rt.device(srcDevice);
    if (count == 0) return h20Success;
    // resolve() also fails the call, before anything is enqueued, if either device is faulted.
    checkPeerRange(rt, "dst", dst, dstDevice, count);
    checkPeerRange(rt, "src", src, srcDevice, count);
    Device& runner = s->device();
    runner.submit(
        *s, runner.copyCommand(&rt.device(dstDevice), &rt.device(srcDevice), dst, src, count));
    return h20Success;
  });
}

H20_API h20Error_t h20MemcpyPeer(void* dst, int dstDevice, const void* src, int srcDevice,
                                 size_t count) {
  return guarded("h20MemcpyPeer", [&](Runtime& rt) {
    Device& to = rt.device(dstDevice);
    Device& from = rt.device(srcDevice);
    if (count == 0) return h20Success;
    checkPeerRange(rt, "dst", dst, dstDevice, count);
    checkPeerRange(rt, "src", src, srcDevice, count);
    to.submitLegacyAcross({&from}, to.copyCommand(&to, &from, dst, src, count));
    return h20Success;
  });
}

}  // extern "C"
