// misuse_test.cpp - the table of documented misuses of the runtime API (h20_runtime.h).
//
// One row per error condition a header comment (or the header's conventions: enums out of range,
// handles of the wrong kind, calls from host functions) documents for a public function: NULL
// outputs, bad device ordinals, bad sizes, out-of-range enum values, destroyed, default, garbage
// and wrong-kind handles, freed pointers, unregistered and already registered host memory,
// SIZE_MAX sizes, bad launch configurations. Every row checks that the call returns the documented
// code, stores it as the thread's last error with a message, writes nothing (every buffer the
// row could reach keeps its bytes; a launch that should have failed would scribble over them),
// and leaves the runtime usable (an ordinary copy on a stream works afterwards). Calls from
// inside a host function and a kernel (h20ErrorNotPermitted) and h20ErrorPeerAccessUnsupported
// (needs a topology with unlinked chips, so a child process) have their own tests below.
#include "c_callers.h"
#include "child_process.hpp"
#include "h20_test.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kBytes = 4096;

// Kernel that fills [ptr, ptr + n) with 0xEE: a launch that should have been refused shows.
struct ScribbleArgs {
  unsigned char* ptr;
  std::size_t n;
};
void ScribbleKernel(const h20KernelContext* ctx, const void* args) {
  ScribbleArgs a;
  std::memcpy(&a, args, sizeof a);
  if (ctx->blockIdx.x == 0 && a.ptr) std::memset(a.ptr, 0xEE, a.n);
}
void ScribbleHostFn(void* p) {
  std::memset(p, 0xEE, kBytes);
}

// Everything a row may touch, made fresh for each row, each buffer with its own pattern.
struct Ctx {
  int devices = 0;
  h20DeviceProp prop{};
  unsigned char* d0 = nullptr;    // device 0
  unsigned char* d1 = nullptr;    // device 1 (when there are two)
  unsigned char* pool = nullptr;  // h20MallocAsync on s
  unsigned char* freedDev = nullptr;
  unsigned char* freedPool = nullptr;
  unsigned char* pinned = nullptr;  // 2 * kBytes
  std::vector<unsigned char> pageable = std::vector<unsigned char>(kBytes);
  std::vector<unsigned char> registered = std::vector<unsigned char>(2 * kBytes);
  h20Stream_t s = nullptr;   // device 0
  h20Stream_t s1 = nullptr;  // device 1
  h20Stream_t deadStream = nullptr;
  h20Event_t e = nullptr;          // device 0, recorded and complete
  h20Event_t eNoTiming = nullptr;  // h20EventDisableTiming, recorded
  h20Event_t eNever = nullptr;     // never recorded
  h20Event_t deadEvent = nullptr;
  h20Stream_t EventAsStream() const { return reinterpret_cast<h20Stream_t>(e); }
  h20Event_t StreamAsEvent() const { return reinterpret_cast<h20Event_t>(s); }
  static h20Stream_t GarbageStream() { return reinterpret_cast<h20Stream_t>(std::uintptr_t{0x7}); }
  static h20Event_t GarbageEvent() { return reinterpret_cast<h20Event_t>(std::uintptr_t{0x7}); }
  h20Error_t Launch(h20Dim3 grid, h20Dim3 block, const void* args, std::size_t argsBytes,
                    std::size_t shared, h20Stream_t stream, h20KernelFn fn = ScribbleKernel) {
    return h20LaunchKernel(fn, grid, block, args, argsBytes, shared, stream);
  }
  ScribbleArgs Args(unsigned char* p) const {
    ScribbleArgs a;
    std::memset(&a, 0, sizeof a);
    a.ptr = p;
    a.n = kBytes;
    return a;
  }
};

struct Row {
  const char* name;
  std::function<h20Error_t(Ctx&)> call;
  h20Error_t expected;
  int devices = 1;            // devices the row needs
  bool embeddedOnly = false;  // a misuse only of the embedded emulator (no device daemon)
};

// gtest prints a failing parameter by its name.
void PrintTo(const Row& row, std::ostream* os) {
  *os << row.name;
}

constexpr h20Dim3 kOne{1, 1, 1};

// clang-format off
const std::vector<Row>& Rows() {
  static const std::vector<Row> rows = {
    // ---- versions, errors, devices ----
    {"RuntimeGetVersion_NullOut", [](Ctx&) { return h20RuntimeGetVersion(nullptr); }, h20ErrorInvalidValue},
    {"DriverGetVersion_NullOut", [](Ctx&) { return h20DriverGetVersion(nullptr); }, h20ErrorInvalidValue},
    {"GetDeviceCount_NullOut", [](Ctx&) { return h20GetDeviceCount(nullptr); }, h20ErrorInvalidValue},
    {"SetDevice_Negative", [](Ctx&) { return h20SetDevice(-1); }, h20ErrorInvalidDevice},
    {"SetDevice_Count", [](Ctx& c) { return h20SetDevice(c.devices); }, h20ErrorInvalidDevice},
    {"SetDevice_IntMin", [](Ctx&) { return h20SetDevice(INT_MIN); }, h20ErrorInvalidDevice},
    {"GetDevice_NullOut", [](Ctx&) { return h20GetDevice(nullptr); }, h20ErrorInvalidValue},
    {"GetDeviceProperties_NullOut", [](Ctx&) { return h20GetDeviceProperties(nullptr, 0); }, h20ErrorInvalidValue},
    {"GetDeviceProperties_Negative", [](Ctx& c) { return h20GetDeviceProperties(&c.prop, -1); }, h20ErrorInvalidDevice},
    {"GetDeviceProperties_Count", [](Ctx& c) { return h20GetDeviceProperties(&c.prop, c.devices); }, h20ErrorInvalidDevice},
    {"MemGetInfo_NullFree", [](Ctx&) { size_t t; return h20MemGetInfo(nullptr, &t); }, h20ErrorInvalidValue},
    {"MemGetInfo_NullTotal", [](Ctx&) { size_t f; return h20MemGetInfo(&f, nullptr); }, h20ErrorInvalidValue},
    {"DeviceGetMemoryUsed_NullOut", [](Ctx&) { return h20DeviceGetMemoryUsed(nullptr, 0); }, h20ErrorInvalidValue},
    {"DeviceGetMemoryUsed_BadDevice", [](Ctx& c) { size_t u; return h20DeviceGetMemoryUsed(&u, c.devices); }, h20ErrorInvalidDevice},
    // ---- topology and peer access ----
    {"DeviceCanAccessPeer_NullOut", [](Ctx&) { return h20DeviceCanAccessPeer(nullptr, 0, 0); }, h20ErrorInvalidValue},
    {"DeviceCanAccessPeer_BadDevice", [](Ctx&) { int v; return h20DeviceCanAccessPeer(&v, -1, 0); }, h20ErrorInvalidDevice},
    {"DeviceCanAccessPeer_BadPeer", [](Ctx& c) { int v; return h20DeviceCanAccessPeer(&v, 0, c.devices); }, h20ErrorInvalidDevice},
    {"DeviceGetAttribute_NullOut", [](Ctx&) { return h20test_DeviceAttribute(nullptr, h20DevAttrWarpSize, 0); }, h20ErrorInvalidValue},
    {"DeviceGetAttribute_Attr0", [](Ctx&) { int v; return h20test_DeviceAttribute(&v, 0, 0); }, h20ErrorInvalidValue},
    {"DeviceGetAttribute_Attr99", [](Ctx&) { int v; return h20test_DeviceAttribute(&v, 99, 0); }, h20ErrorInvalidValue},
    {"DeviceGetAttribute_AttrNegative", [](Ctx&) { int v; return h20test_DeviceAttribute(&v, -1, 0); }, h20ErrorInvalidValue},
    {"DeviceGetAttribute_BadDevice", [](Ctx&) { int v; return h20test_DeviceAttribute(&v, h20DevAttrWarpSize, 99); }, h20ErrorInvalidDevice},
    {"DeviceSetComputeMode_Mode1", [](Ctx&) { return h20DeviceSetComputeMode(0, 1); }, h20ErrorInvalidValue},
    {"DeviceSetComputeMode_BadDevice", [](Ctx&) { return h20DeviceSetComputeMode(-1, 0); }, h20ErrorInvalidDevice},
    {"DeviceSetComputeMode_Default", [](Ctx&) { return h20DeviceSetComputeMode(0, h20ComputeModeDefault); }, h20ErrorNotSupported, 1, true},
    {"DeviceGetProcesses_NullCount", [](Ctx&) { return h20DeviceGetProcesses(0, nullptr, 0, nullptr); }, h20ErrorInvalidValue},
    {"DeviceGetProcesses_NullInfos", [](Ctx&) { int n; return h20DeviceGetProcesses(0, nullptr, 4, &n); }, h20ErrorInvalidValue},
    {"DeviceGetProcesses_NegativeCapacity", [](Ctx&) { int n; return h20DeviceGetProcesses(0, nullptr, -1, &n); }, h20ErrorInvalidValue},
    {"DeviceGetProcesses_BadDevice", [](Ctx&) { int n; return h20DeviceGetProcesses(99, nullptr, 0, &n); }, h20ErrorInvalidDevice},
    {"DeviceGetP2PAttribute_NullOut", [](Ctx&) { return h20test_P2PAttribute(nullptr, h20DevP2PAttrAccessSupported, 0, 1); }, h20ErrorInvalidValue, 2},
    {"DeviceGetP2PAttribute_Attr99", [](Ctx&) { int v; return h20test_P2PAttribute(&v, 99, 0, 1); }, h20ErrorInvalidValue, 2},
    {"DeviceGetP2PAttribute_Attr0", [](Ctx&) { int v; return h20test_P2PAttribute(&v, 0, 0, 1); }, h20ErrorInvalidValue, 2},
    {"DeviceGetP2PAttribute_AttrNegative", [](Ctx&) { int v; return h20test_P2PAttribute(&v, -1, 0, 1); }, h20ErrorInvalidValue, 2},
    {"DeviceGetP2PAttribute_BadSrc", [](Ctx&) { int v; return h20test_P2PAttribute(&v, h20DevP2PAttrAccessSupported, -1, 0); }, h20ErrorInvalidDevice},
    {"DeviceGetP2PAttribute_BadDst", [](Ctx& c) { int v; return h20test_P2PAttribute(&v, h20DevP2PAttrAccessSupported, 0, c.devices); }, h20ErrorInvalidDevice},
    {"DeviceEnablePeerAccess_Flags", [](Ctx&) { return h20DeviceEnablePeerAccess(1, 1); }, h20ErrorInvalidValue, 2},
    {"DeviceEnablePeerAccess_Self", [](Ctx&) { return h20DeviceEnablePeerAccess(0, 0); }, h20ErrorInvalidDevice},
    {"DeviceEnablePeerAccess_BadPeer", [](Ctx& c) { return h20DeviceEnablePeerAccess(c.devices, 0); }, h20ErrorInvalidDevice},
    {"DeviceEnablePeerAccess_Negative", [](Ctx&) { return h20DeviceEnablePeerAccess(-1, 0); }, h20ErrorInvalidDevice},
    {"DeviceEnablePeerAccess_AlreadyEnabled", [](Ctx&) {
       if (h20DeviceEnablePeerAccess(1, 0) != h20Success) return h20ErrorUnknown;
       return h20DeviceEnablePeerAccess(1, 0); }, h20ErrorPeerAccessAlreadyEnabled, 2},
    {"DeviceDisablePeerAccess_NotEnabled", [](Ctx&) { return h20DeviceDisablePeerAccess(1); }, h20ErrorPeerAccessNotEnabled, 2},
    {"DeviceDisablePeerAccess_BadPeer", [](Ctx& c) { return h20DeviceDisablePeerAccess(c.devices); }, h20ErrorInvalidDevice},
    {"DeviceGetCpuAffinity_NullCount", [](Ctx&) { int cpus[4]; return h20DeviceGetCpuAffinity(0, cpus, 4, nullptr, nullptr); }, h20ErrorInvalidValue},
    {"DeviceGetCpuAffinity_NullCpus", [](Ctx&) { int n; return h20DeviceGetCpuAffinity(0, nullptr, 4, &n, nullptr); }, h20ErrorInvalidValue},
    {"DeviceGetCpuAffinity_NegativeCapacity", [](Ctx&) { int cpus[4], n; return h20DeviceGetCpuAffinity(0, cpus, -1, &n, nullptr); }, h20ErrorInvalidValue},
    {"DeviceGetCpuAffinity_BadDevice", [](Ctx& c) { int n; return h20DeviceGetCpuAffinity(c.devices, nullptr, 0, &n, nullptr); }, h20ErrorInvalidDevice},
    // ---- allocation ----
    {"Malloc_NullOut", [](Ctx&) { return h20Malloc(nullptr, 64); }, h20ErrorInvalidValue},
    {"Malloc_SizeMax", [](Ctx&) { void* p; return h20Malloc(&p, SIZE_MAX); }, h20ErrorMemoryAllocation},
    {"Malloc_BeyondDevice", [](Ctx& c) { void* p; return h20Malloc(&p, c.prop.totalGlobalMem * 2); }, h20ErrorMemoryAllocation},
    {"Free_Interior", [](Ctx& c) { return h20Free(c.d0 + 256); }, h20ErrorInvalidValue},
    {"Free_Freed", [](Ctx& c) { return h20Free(c.freedDev); }, h20ErrorInvalidValue},
    {"Free_Pinned", [](Ctx& c) { return h20Free(c.pinned); }, h20ErrorInvalidValue},
    {"Free_Pageable", [](Ctx& c) { return h20Free(c.pageable.data()); }, h20ErrorInvalidValue},
    {"MallocHost_NullOut", [](Ctx&) { return h20MallocHost(nullptr, 64); }, h20ErrorInvalidValue},
    {"MallocHost_SizeMax", [](Ctx&) { void* p; return h20MallocHost(&p, SIZE_MAX); }, h20ErrorMemoryAllocation},
    {"HostAlloc_NullOut", [](Ctx&) { return h20HostAlloc(nullptr, 64, 0); }, h20ErrorInvalidValue},
    {"HostAlloc_UnknownFlags", [](Ctx&) { void* p; return h20HostAlloc(&p, 64, 0x80); }, h20ErrorInvalidValue},
    {"HostAlloc_SizeMax", [](Ctx&) { void* p; return h20HostAlloc(&p, SIZE_MAX, 0); }, h20ErrorMemoryAllocation},
    {"FreeHost_Device", [](Ctx& c) { return h20FreeHost(c.d0); }, h20ErrorInvalidValue},
    {"FreeHost_Pageable", [](Ctx& c) { return h20FreeHost(c.pageable.data()); }, h20ErrorInvalidValue},
    {"FreeHost_Interior", [](Ctx& c) { return h20FreeHost(c.pinned + 64); }, h20ErrorInvalidValue},
    {"FreeHost_Registered", [](Ctx& c) { return h20FreeHost(c.registered.data()); }, h20ErrorInvalidValue},
    {"HostRegister_Null", [](Ctx&) { return h20HostRegister(nullptr, 64, 0); }, h20ErrorInvalidValue},
    {"HostRegister_ZeroSize", [](Ctx& c) { return h20HostRegister(c.pageable.data(), 0, 0); }, h20ErrorInvalidValue},
    {"HostRegister_SizeMax", [](Ctx& c) { return h20HostRegister(c.pageable.data(), SIZE_MAX, 0); }, h20ErrorInvalidValue},
    {"HostRegister_WrapsAddressSpace", [](Ctx& c) {
       return h20HostRegister(c.pageable.data(), SIZE_MAX - reinterpret_cast<std::uintptr_t>(c.pageable.data()) + 2, 0); }, h20ErrorInvalidValue},
    {"HostRegister_UnknownFlags", [](Ctx& c) { return h20HostRegister(c.pageable.data(), kBytes, 0x40); }, h20ErrorInvalidValue},
    {"HostRegister_IoMemory", [](Ctx& c) { return h20HostRegister(c.pageable.data(), kBytes, h20HostRegisterIoMemory); }, h20ErrorNotSupported},
    {"HostRegister_DeviceMemory", [](Ctx& c) { return h20HostRegister(c.d0, kBytes, 0); }, h20ErrorInvalidValue},
    {"HostRegister_Again", [](Ctx& c) { return h20HostRegister(c.registered.data(), c.registered.size(), 0); }, h20ErrorHostMemoryAlreadyRegistered},
    {"HostRegister_Overlapping", [](Ctx& c) { return h20HostRegister(c.registered.data() + 100, 64, 0); }, h20ErrorHostMemoryAlreadyRegistered},
    {"HostRegister_Pinned", [](Ctx& c) { return h20HostRegister(c.pinned, kBytes, 0); }, h20ErrorHostMemoryAlreadyRegistered},
    {"HostUnregister_NotRegistered", [](Ctx& c) { return h20HostUnregister(c.pageable.data()); }, h20ErrorHostMemoryNotRegistered},
    {"HostUnregister_Null", [](Ctx&) { return h20HostUnregister(nullptr); }, h20ErrorHostMemoryNotRegistered},
    {"HostUnregister_Interior", [](Ctx& c) { return h20HostUnregister(c.registered.data() + 64); }, h20ErrorHostMemoryNotRegistered},
    {"HostUnregister_Pinned", [](Ctx& c) { return h20HostUnregister(c.pinned); }, h20ErrorHostMemoryNotRegistered},
    {"HostGetDevicePointer_NullOut", [](Ctx& c) { return h20HostGetDevicePointer(nullptr, c.pinned, 0); }, h20ErrorInvalidValue},
    {"HostGetDevicePointer_Flags", [](Ctx& c) { void* p; return h20HostGetDevicePointer(&p, c.pinned, 1); }, h20ErrorInvalidValue},
    {"HostGetDevicePointer_Pageable", [](Ctx& c) { void* p; return h20HostGetDevicePointer(&p, c.pageable.data(), 0); }, h20ErrorInvalidValue},
    {"MemGetAddressRange_Pageable", [](Ctx& c) { void* b; size_t n; return h20MemGetAddressRange(&b, &n, c.pageable.data()); }, h20ErrorInvalidValue},
    {"MemGetAddressRange_Freed", [](Ctx& c) { void* b; size_t n; return h20MemGetAddressRange(&b, &n, c.freedDev); }, h20ErrorInvalidValue},
    {"PointerGetAttributes_NullOut", [](Ctx& c) { return h20PointerGetAttributes(nullptr, c.d0); }, h20ErrorInvalidValue},
    {"PointerGetAttributes_Freed", [](Ctx& c) { h20PointerAttributes a; return h20PointerGetAttributes(&a, c.freedDev); }, h20ErrorInvalidValue},
    {"MallocAsync_NullOut", [](Ctx& c) { return h20MallocAsync(nullptr, 64, c.s); }, h20ErrorInvalidValue},
    {"MallocAsync_SizeMax", [](Ctx& c) { void* p; return h20MallocAsync(&p, SIZE_MAX, c.s); }, h20ErrorMemoryAllocation},
    {"MallocAsync_DestroyedStream", [](Ctx& c) { void* p; return h20MallocAsync(&p, 64, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"MallocAsync_EventAsStream", [](Ctx& c) { void* p; return h20MallocAsync(&p, 64, c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
    {"FreeAsync_Interior", [](Ctx& c) { return h20FreeAsync(c.pool + 64, c.s); }, h20ErrorInvalidValue},
    {"FreeAsync_Freed", [](Ctx& c) { return h20FreeAsync(c.freedPool, c.s); }, h20ErrorInvalidValue},
    {"FreeAsync_DestroyedStream", [](Ctx& c) { return h20FreeAsync(c.pool, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"FreeAsync_GarbageStream", [](Ctx& c) { return h20FreeAsync(c.pool, Ctx::GarbageStream()); }, h20ErrorInvalidResourceHandle},
    // ---- copies and memsets ----
    {"Memcpy_Kind99", [](Ctx& c) { return h20test_MemcpyKind(c.d0, c.pinned, 64, 99); }, h20ErrorInvalidValue},
    {"Memcpy_KindNegative", [](Ctx& c) { return h20test_MemcpyKind(c.d0, c.pinned, 64, -1); }, h20ErrorInvalidValue},
    {"Memcpy_Kind5", [](Ctx& c) { return h20test_MemcpyKind(c.d0, c.pinned, 64, 5); }, h20ErrorInvalidValue},
    {"Memcpy_DstPastEnd", [](Ctx& c) { return h20Memcpy(c.d0, c.pinned, kBytes + 1, h20MemcpyHostToDevice); }, h20ErrorInvalidValue},
    {"Memcpy_SrcPastEnd", [](Ctx& c) { return h20Memcpy(c.pinned, c.d0 + 1, kBytes, h20MemcpyDeviceToHost); }, h20ErrorInvalidValue},
    {"Memcpy_PinnedPastEnd", [](Ctx& c) { return h20Memcpy(c.pinned + 2 * kBytes - 8, c.d0, 16, h20MemcpyDeviceToHost); }, h20ErrorInvalidValue},
    {"Memcpy_CountSizeMax", [](Ctx& c) { return h20Memcpy(c.d0, c.pinned, SIZE_MAX, h20MemcpyHostToDevice); }, h20ErrorInvalidValue},
    {"Memcpy_NullDst", [](Ctx& c) { return h20Memcpy(nullptr, c.pinned, 64, h20MemcpyHostToDevice); }, h20ErrorInvalidValue},
    {"Memcpy_NullSrc", [](Ctx& c) { return h20Memcpy(c.d0, nullptr, 64, h20MemcpyHostToDevice); }, h20ErrorInvalidValue},
    {"Memcpy_FreedDst", [](Ctx& c) { return h20Memcpy(c.freedDev, c.pinned, 64, h20MemcpyDefault); }, h20ErrorInvalidValue},
    {"Memcpy_FreedSrc", [](Ctx& c) { return h20Memcpy(c.pageable.data(), c.freedDev, 64, h20MemcpyDefault); }, h20ErrorInvalidValue},
    {"MemcpyAsync_Kind99", [](Ctx& c) { return h20test_MemcpyAsyncKind(c.d0, c.pinned, 64, 99, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_KindNegative", [](Ctx& c) { return h20test_MemcpyAsyncKind(c.d0, c.pinned, 64, -1, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_DstPastEnd", [](Ctx& c) { return h20MemcpyAsync(c.d0 + 8, c.pinned, kBytes, h20MemcpyHostToDevice, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_CountSizeMax", [](Ctx& c) { return h20MemcpyAsync(c.pageable.data(), c.d0, SIZE_MAX, h20MemcpyDeviceToHost, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_NullDst", [](Ctx& c) { return h20MemcpyAsync(nullptr, c.d0, 64, h20MemcpyDefault, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_FreedSrc", [](Ctx& c) { return h20MemcpyAsync(c.d0, c.freedDev, 64, h20MemcpyDeviceToDevice, c.s); }, h20ErrorInvalidValue},
    {"MemcpyAsync_DestroyedStream", [](Ctx& c) { return h20MemcpyAsync(c.d0, c.pinned, 64, h20MemcpyHostToDevice, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"MemcpyAsync_EventAsStream", [](Ctx& c) { return h20MemcpyAsync(c.d0, c.pinned, 64, h20MemcpyHostToDevice, c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
    {"MemcpyAsync_GarbageStream", [](Ctx& c) { return h20MemcpyAsync(c.d0, c.pinned, 64, h20MemcpyHostToDevice, Ctx::GarbageStream()); }, h20ErrorInvalidResourceHandle},
    {"MemcpyPeer_BadDstDevice", [](Ctx& c) { return h20MemcpyPeer(c.d0, -1, c.d1, 1, 64); }, h20ErrorInvalidDevice, 2},
    {"MemcpyPeer_BadSrcDevice", [](Ctx& c) { return h20MemcpyPeer(c.d0, 0, c.d1, c.devices, 64); }, h20ErrorInvalidDevice, 2},
    {"MemcpyPeer_DstOfOtherDevice", [](Ctx& c) { return h20MemcpyPeer(c.d0, 1, c.d1, 1, 64); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeer_SrcOfOtherDevice", [](Ctx& c) { return h20MemcpyPeer(c.d0, 0, c.d1, 0, 64); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeer_HostDst", [](Ctx& c) { return h20MemcpyPeer(c.pinned, 0, c.d1, 1, 64); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeer_PastEnd", [](Ctx& c) { return h20MemcpyPeer(c.d0, 0, c.d1 + 64, 1, kBytes); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeer_CountSizeMax", [](Ctx& c) { return h20MemcpyPeer(c.d0, 0, c.d1, 1, SIZE_MAX); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeer_FreedSrc", [](Ctx& c) { return h20MemcpyPeer(c.d0, 0, c.freedDev, 0, 64); }, h20ErrorInvalidValue},
    {"MemcpyPeer_NullDst", [](Ctx& c) { return h20MemcpyPeer(nullptr, 0, c.d1, 1, 64); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeerAsync_BadDevice", [](Ctx& c) { return h20MemcpyPeerAsync(c.d0, 0, c.d1, 99, 64, c.s); }, h20ErrorInvalidDevice, 2},
    {"MemcpyPeerAsync_DstOfOtherDevice", [](Ctx& c) { return h20MemcpyPeerAsync(c.d0, 1, c.d1, 1, 64, c.s); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeerAsync_PastEnd", [](Ctx& c) { return h20MemcpyPeerAsync(c.d0 + 1, 0, c.d1, 1, kBytes, c.s); }, h20ErrorInvalidValue, 2},
    {"MemcpyPeerAsync_DestroyedStream", [](Ctx& c) { return h20MemcpyPeerAsync(c.d0, 0, c.d1, 1, 64, c.deadStream); }, h20ErrorInvalidResourceHandle, 2},
    {"MemcpyPeerAsync_EventAsStream", [](Ctx& c) { return h20MemcpyPeerAsync(c.d0, 0, c.d1, 1, 64, c.EventAsStream()); }, h20ErrorInvalidResourceHandle, 2},
    {"Memset_Null", [](Ctx&) { return h20Memset(nullptr, 1, 64); }, h20ErrorInvalidValue},
    {"Memset_PastEnd", [](Ctx& c) { return h20Memset(c.d0 + 1, 1, kBytes); }, h20ErrorInvalidValue},
    {"Memset_CountSizeMax", [](Ctx& c) { return h20Memset(c.d0, 1, SIZE_MAX); }, h20ErrorInvalidValue},
    {"Memset_Freed", [](Ctx& c) { return h20Memset(c.freedDev, 1, 64); }, h20ErrorInvalidValue},
    {"Memset_Pageable", [](Ctx& c) { return h20Memset(c.pageable.data(), 1, 64); }, h20ErrorInvalidValue},
    {"MemsetAsync_PastEnd", [](Ctx& c) { return h20MemsetAsync(c.pool, 1, kBytes + 1, c.s); }, h20ErrorInvalidValue},
    {"MemsetAsync_Freed", [](Ctx& c) { return h20MemsetAsync(c.freedPool, 1, 64, c.s); }, h20ErrorInvalidValue},
    {"MemsetAsync_DestroyedStream", [](Ctx& c) { return h20MemsetAsync(c.d0, 1, 64, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"MemsetAsync_EventAsStream", [](Ctx& c) { return h20MemsetAsync(c.d0, 1, 64, c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
    // ---- streams ----
    {"StreamCreate_NullOut", [](Ctx&) { return h20StreamCreate(nullptr); }, h20ErrorInvalidValue},
    {"StreamCreateWithFlags_NullOut", [](Ctx&) { return h20StreamCreateWithFlags(nullptr, 0); }, h20ErrorInvalidValue},
    {"StreamCreateWithFlags_UnknownFlags", [](Ctx&) { h20Stream_t s; return h20StreamCreateWithFlags(&s, 0x4); }, h20ErrorInvalidValue},
    {"StreamCreateWithPriority_NullOut", [](Ctx&) { return h20StreamCreateWithPriority(nullptr, 0, 0); }, h20ErrorInvalidValue},
    {"StreamCreateWithPriority_UnknownFlags", [](Ctx&) { h20Stream_t s; return h20StreamCreateWithPriority(&s, 0x80, 0); }, h20ErrorInvalidValue},
    {"StreamGetPriority_NullOut", [](Ctx& c) { return h20StreamGetPriority(c.s, nullptr); }, h20ErrorInvalidValue},
    {"StreamGetPriority_Destroyed", [](Ctx& c) { int p; return h20StreamGetPriority(c.deadStream, &p); }, h20ErrorInvalidResourceHandle},
    {"StreamGetPriority_EventAsStream", [](Ctx& c) { int p; return h20StreamGetPriority(c.EventAsStream(), &p); }, h20ErrorInvalidResourceHandle},
    {"StreamGetFlags_NullOut", [](Ctx& c) { return h20StreamGetFlags(c.s, nullptr); }, h20ErrorInvalidValue},
    {"StreamGetFlags_Destroyed", [](Ctx& c) { unsigned f; return h20StreamGetFlags(c.deadStream, &f); }, h20ErrorInvalidResourceHandle},
    {"StreamGetFlags_Garbage", [](Ctx&) { unsigned f; return h20StreamGetFlags(Ctx::GarbageStream(), &f); }, h20ErrorInvalidResourceHandle},
    {"StreamGetDevice_NullOut", [](Ctx& c) { return h20StreamGetDevice(c.s, nullptr); }, h20ErrorInvalidValue},
    {"StreamGetDevice_Destroyed", [](Ctx& c) { int d; return h20StreamGetDevice(c.deadStream, &d); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_Null", [](Ctx&) { return h20StreamDestroy(nullptr); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_Legacy", [](Ctx&) { return h20StreamDestroy(h20StreamLegacy); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_PerThread", [](Ctx&) { return h20StreamDestroy(h20StreamPerThread); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_Destroyed", [](Ctx& c) { return h20StreamDestroy(c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_EventAsStream", [](Ctx& c) { return h20StreamDestroy(c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
    {"StreamDestroy_Garbage", [](Ctx&) { return h20StreamDestroy(Ctx::GarbageStream()); }, h20ErrorInvalidResourceHandle},
    {"StreamSynchronize_Destroyed", [](Ctx& c) { return h20StreamSynchronize(c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"StreamSynchronize_EventAsStream", [](Ctx& c) { return h20StreamSynchronize(c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
    {"StreamQuery_Destroyed", [](Ctx& c) { return h20StreamQuery(c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"StreamQuery_Garbage", [](Ctx&) { return h20StreamQuery(Ctx::GarbageStream()); }, h20ErrorInvalidResourceHandle},
    {"StreamWaitEvent_Flags", [](Ctx& c) { return h20StreamWaitEvent(c.s, c.e, 1); }, h20ErrorInvalidValue},
    {"StreamWaitEvent_DestroyedStream", [](Ctx& c) { return h20StreamWaitEvent(c.deadStream, c.e, 0); }, h20ErrorInvalidResourceHandle},
    {"StreamWaitEvent_DestroyedEvent", [](Ctx& c) { return h20StreamWaitEvent(c.s, c.deadEvent, 0); }, h20ErrorInvalidResourceHandle},
    {"StreamWaitEvent_StreamAsEvent", [](Ctx& c) { return h20StreamWaitEvent(c.s, c.StreamAsEvent(), 0); }, h20ErrorInvalidResourceHandle},
    {"StreamWaitEvent_NullEvent", [](Ctx& c) { return h20StreamWaitEvent(c.s, nullptr, 0); }, h20ErrorInvalidResourceHandle},
    {"LaunchHostFunc_NullFn", [](Ctx& c) { return h20LaunchHostFunc(c.s, nullptr, c.pinned); }, h20ErrorInvalidValue},
    {"LaunchHostFunc_DestroyedStream", [](Ctx& c) { return h20LaunchHostFunc(c.deadStream, ScribbleHostFn, c.pinned); }, h20ErrorInvalidResourceHandle},
    {"LaunchHostFunc_EventAsStream", [](Ctx& c) { return h20LaunchHostFunc(c.EventAsStream(), ScribbleHostFn, c.pinned); }, h20ErrorInvalidResourceHandle},
    // ---- events ----
    {"EventCreate_NullOut", [](Ctx&) { return h20EventCreate(nullptr); }, h20ErrorInvalidValue},
    {"EventCreateWithFlags_NullOut", [](Ctx&) { return h20EventCreateWithFlags(nullptr, 0); }, h20ErrorInvalidValue},
    {"EventCreateWithFlags_UnknownFlags", [](Ctx&) { h20Event_t e; return h20EventCreateWithFlags(&e, 0x10); }, h20ErrorInvalidValue},
    {"EventCreateWithFlags_InterprocessWithTiming", [](Ctx&) { h20Event_t e; return h20EventCreateWithFlags(&e, h20EventInterprocess); }, h20ErrorInvalidValue},
    {"EventCreateWithFlags_Interprocess", [](Ctx&) { h20Event_t e; return h20EventCreateWithFlags(&e, h20EventInterprocess | h20EventDisableTiming); }, h20ErrorNotSupported, 1, true},
    // ---- interprocess handles ----
    {"IpcGetMemHandle_NullOut", [](Ctx& c) { return h20IpcGetMemHandle(nullptr, c.d0); }, h20ErrorInvalidValue},
    {"IpcGetMemHandle_Interior", [](Ctx& c) { h20IpcMemHandle_t h; return h20IpcGetMemHandle(&h, c.d0 + 256); }, h20ErrorInvalidValue},
    {"IpcGetMemHandle_Pool", [](Ctx& c) { h20IpcMemHandle_t h; return h20IpcGetMemHandle(&h, c.pool); }, h20ErrorInvalidValue},
    {"IpcGetMemHandle_Pinned", [](Ctx& c) { h20IpcMemHandle_t h; return h20IpcGetMemHandle(&h, c.pinned); }, h20ErrorInvalidValue},
    {"IpcGetMemHandle_Freed", [](Ctx& c) { h20IpcMemHandle_t h; return h20IpcGetMemHandle(&h, c.freedDev); }, h20ErrorInvalidValue},
    {"IpcGetMemHandle_Device", [](Ctx& c) { h20IpcMemHandle_t h; return h20IpcGetMemHandle(&h, c.d0); }, h20ErrorNotSupported, 1, true},
    {"IpcOpenMemHandle_NullOut", [](Ctx&) { h20IpcMemHandle_t h{}; return h20IpcOpenMemHandle(nullptr, h, h20IpcMemLazyEnablePeerAccess); }, h20ErrorInvalidValue},
    {"IpcOpenMemHandle_Flags0", [](Ctx&) { void* p; h20IpcMemHandle_t h{}; return h20IpcOpenMemHandle(&p, h, 0); }, h20ErrorInvalidValue},
    {"IpcOpenMemHandle_UnknownFlags", [](Ctx&) { void* p; h20IpcMemHandle_t h{}; return h20IpcOpenMemHandle(&p, h, 0x3); }, h20ErrorInvalidValue},
    {"IpcOpenMemHandle_Zeroed", [](Ctx&) { void* p; h20IpcMemHandle_t h{}; return h20IpcOpenMemHandle(&p, h, h20IpcMemLazyEnablePeerAccess); }, h20ErrorNotSupported, 1, true},
    {"IpcCloseMemHandle_Device", [](Ctx& c) { return h20IpcCloseMemHandle(c.d0); }, h20ErrorInvalidValue},
    {"IpcCloseMemHandle_Null", [](Ctx&) { return h20IpcCloseMemHandle(nullptr); }, h20ErrorInvalidValue},
    {"IpcCloseMemHandle_Pageable", [](Ctx& c) { return h20IpcCloseMemHandle(c.pageable.data()); }, h20ErrorInvalidValue},
    {"IpcGetEventHandle_NullOut", [](Ctx& c) { return h20IpcGetEventHandle(nullptr, c.e); }, h20ErrorInvalidValue},
    {"IpcGetEventHandle_NotInterprocess", [](Ctx& c) { h20IpcEventHandle_t h; return h20IpcGetEventHandle(&h, c.eNoTiming); }, h20ErrorInvalidResourceHandle},
    {"IpcGetEventHandle_Destroyed", [](Ctx& c) { h20IpcEventHandle_t h; return h20IpcGetEventHandle(&h, c.deadEvent); }, h20ErrorInvalidResourceHandle},
    {"IpcGetEventHandle_StreamHandle", [](Ctx& c) { h20IpcEventHandle_t h; return h20IpcGetEventHandle(&h, c.StreamAsEvent()); }, h20ErrorInvalidResourceHandle},
    {"IpcOpenEventHandle_NullOut", [](Ctx&) { h20IpcEventHandle_t h{}; return h20IpcOpenEventHandle(nullptr, h); }, h20ErrorInvalidValue},
    {"IpcOpenEventHandle_Zeroed", [](Ctx&) { h20Event_t e; h20IpcEventHandle_t h{}; return h20IpcOpenEventHandle(&e, h); }, h20ErrorNotSupported, 1, true},
    {"EventRecord_Destroyed", [](Ctx& c) { return h20EventRecord(c.deadEvent, c.s); }, h20ErrorInvalidResourceHandle},
    {"EventRecord_Null", [](Ctx& c) { return h20EventRecord(nullptr, c.s); }, h20ErrorInvalidResourceHandle},
    {"EventRecord_StreamAsEvent", [](Ctx& c) { return h20EventRecord(c.StreamAsEvent(), c.s); }, h20ErrorInvalidResourceHandle},
    {"EventRecord_DestroyedStream", [](Ctx& c) { return h20EventRecord(c.e, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"EventRecord_StreamOfOtherDevice", [](Ctx& c) { return h20EventRecord(c.e, c.s1); }, h20ErrorInvalidResourceHandle, 2},
    {"EventRecord_NullStreamOfOtherDevice", [](Ctx& c) {
       if (h20SetDevice(1) != h20Success) return h20ErrorUnknown;
       return h20EventRecord(c.e, nullptr); }, h20ErrorInvalidResourceHandle, 2},
    {"EventQuery_Destroyed", [](Ctx& c) { return h20EventQuery(c.deadEvent); }, h20ErrorInvalidResourceHandle},
    {"EventQuery_Null", [](Ctx&) { return h20EventQuery(nullptr); }, h20ErrorInvalidResourceHandle},
    {"EventQuery_StreamAsEvent", [](Ctx& c) { return h20EventQuery(c.StreamAsEvent()); }, h20ErrorInvalidResourceHandle},
    {"EventSynchronize_Destroyed", [](Ctx& c) { return h20EventSynchronize(c.deadEvent); }, h20ErrorInvalidResourceHandle},
    {"EventSynchronize_Garbage", [](Ctx&) { return h20EventSynchronize(Ctx::GarbageEvent()); }, h20ErrorInvalidResourceHandle},
    {"EventElapsedTime_NullOut", [](Ctx& c) { return h20EventElapsedTime(nullptr, c.e, c.e); }, h20ErrorInvalidValue},
    {"EventElapsedTime_NotRecorded", [](Ctx& c) { float ms; return h20EventElapsedTime(&ms, c.e, c.eNever); }, h20ErrorInvalidResourceHandle},
    {"EventElapsedTime_DisableTiming", [](Ctx& c) { float ms; return h20EventElapsedTime(&ms, c.eNoTiming, c.e); }, h20ErrorInvalidResourceHandle},
    {"EventElapsedTime_DestroyedStart", [](Ctx& c) { float ms; return h20EventElapsedTime(&ms, c.deadEvent, c.e); }, h20ErrorInvalidResourceHandle},
    {"EventElapsedTime_StreamAsEnd", [](Ctx& c) { float ms; return h20EventElapsedTime(&ms, c.e, c.StreamAsEvent()); }, h20ErrorInvalidResourceHandle},
    {"EventDestroy_Destroyed", [](Ctx& c) { return h20EventDestroy(c.deadEvent); }, h20ErrorInvalidResourceHandle},
    {"EventDestroy_Null", [](Ctx&) { return h20EventDestroy(nullptr); }, h20ErrorInvalidResourceHandle},
    {"EventDestroy_StreamAsEvent", [](Ctx& c) { return h20EventDestroy(c.StreamAsEvent()); }, h20ErrorInvalidResourceHandle},
    // ---- kernels ----
    {"LaunchKernel_NullFn", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch(kOne, kOne, &a, sizeof a, 0, c.s, nullptr); }, h20ErrorInvalidValue},
    {"LaunchKernel_GridX0", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch({0, 1, 1}, kOne, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_GridY0", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch({1, 0, 1}, kOne, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_GridZ0", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch({1, 1, 0}, kOne, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_GridXTooLarge", [](Ctx& c) { auto a = c.Args(c.d0);
       return c.Launch({static_cast<unsigned>(c.prop.maxGridSize[0]) + 1u, 1, 1}, kOne, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_BlockX0", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch(kOne, {0, 1, 1}, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_BlockZTooLarge", [](Ctx& c) { auto a = c.Args(c.d0);
       return c.Launch(kOne, {1, 1, static_cast<unsigned>(c.prop.maxThreadsDim[2]) + 1u}, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_TooManyThreads", [](Ctx& c) { auto a = c.Args(c.d0);
       return c.Launch(kOne, {static_cast<unsigned>(c.prop.maxThreadsDim[0]), static_cast<unsigned>(c.prop.maxThreadsDim[1]), 1}, &a, sizeof a, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_SharedTooLarge", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch(kOne, kOne, &a, sizeof a, c.prop.sharedMemPerBlockOptin + 1, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_ArgsTooLarge", [](Ctx& c) {
       std::vector<unsigned char> big(H20_MAX_KERNEL_ARGS_BYTES + 16, 0);
       auto a = c.Args(c.d0);
       std::memcpy(big.data(), &a, sizeof a);
       return c.Launch(kOne, kOne, big.data(), H20_MAX_KERNEL_ARGS_BYTES + 1, 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_NullArgs", [](Ctx& c) { return c.Launch(kOne, kOne, nullptr, sizeof(ScribbleArgs), 0, c.s); }, h20ErrorInvalidValue},
    {"LaunchKernel_PeerNotEnabled", [](Ctx& c) { auto a = c.Args(c.d1); return c.Launch(kOne, kOne, &a, sizeof a, 0, c.s); }, h20ErrorPeerAccessNotEnabled, 2},
    {"LaunchKernel_DestroyedStream", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch(kOne, kOne, &a, sizeof a, 0, c.deadStream); }, h20ErrorInvalidResourceHandle},
    {"LaunchKernel_EventAsStream", [](Ctx& c) { auto a = c.Args(c.d0); return c.Launch(kOne, kOne, &a, sizeof a, 0, c.EventAsStream()); }, h20ErrorInvalidResourceHandle},
  };
  return rows;
}
// clang-format on

void Fill(unsigned char* p, unsigned char v, std::size_t n) {
  std::memset(p, v, n);
}

class Misuse : public ::testing::TestWithParam<Row> {
 protected:
  void SetUp() override {
    c_.devices = h20test::DeviceCount();
    if (c_.devices < GetParam().devices)
      GTEST_SKIP() << "needs " << GetParam().devices << " devices";
    ASSERT_EQ(h20Success, h20SetDevice(0));
    ASSERT_EQ(h20Success, h20GetDeviceProperties(&c_.prop, 0));
    void* p = nullptr;
    H20_ASSERT_OK(h20StreamCreate(&c_.s));
    H20_ASSERT_OK(h20Malloc(&p, kBytes));
    c_.d0 = static_cast<unsigned char*>(p);
    H20_ASSERT_OK(h20MallocAsync(&p, kBytes, c_.s));
    c_.pool = static_cast<unsigned char*>(p);
    H20_ASSERT_OK(h20MallocAsync(&p, kBytes, c_.s));
    c_.freedPool = static_cast<unsigned char*>(p);
    H20_ASSERT_OK(h20FreeAsync(c_.freedPool, c_.s));
    H20_ASSERT_OK(h20Malloc(&p, kBytes));
    c_.freedDev = static_cast<unsigned char*>(p);
    H20_ASSERT_OK(h20Free(c_.freedDev));
    H20_ASSERT_OK(h20MallocHost(&p, 2 * kBytes));
    c_.pinned = static_cast<unsigned char*>(p);
    H20_ASSERT_OK(h20HostRegister(c_.registered.data(), c_.registered.size(), 0));
    registered_ = true;
    H20_ASSERT_OK(h20StreamCreate(&c_.deadStream));
    H20_ASSERT_OK(h20StreamDestroy(c_.deadStream));
    H20_ASSERT_OK(h20EventCreate(&c_.e));
    H20_ASSERT_OK(h20EventCreateWithFlags(&c_.eNoTiming, h20EventDisableTiming));
    H20_ASSERT_OK(h20EventCreate(&c_.eNever));
    H20_ASSERT_OK(h20EventCreate(&c_.deadEvent));
    H20_ASSERT_OK(h20EventDestroy(c_.deadEvent));
    H20_ASSERT_OK(h20MemsetAsync(c_.d0, 0x11, kBytes, c_.s));
    H20_ASSERT_OK(h20MemsetAsync(c_.pool, 0x33, kBytes, c_.s));
    H20_ASSERT_OK(h20EventRecord(c_.e, c_.s));
    H20_ASSERT_OK(h20EventRecord(c_.eNoTiming, c_.s));
    if (c_.devices >= 2) {
      H20_ASSERT_OK(h20SetDevice(1));
      H20_ASSERT_OK(h20StreamCreate(&c_.s1));
      H20_ASSERT_OK(h20Malloc(&p, kBytes));
      c_.d1 = static_cast<unsigned char*>(p);
      H20_ASSERT_OK(h20Memset(c_.d1, 0x22, kBytes));
      H20_ASSERT_OK(h20DeviceSynchronize());
      H20_ASSERT_OK(h20SetDevice(0));
    }
    H20_ASSERT_OK(h20StreamSynchronize(c_.s));
    Fill(c_.pinned, 0x44, 2 * kBytes);
    Fill(c_.pageable.data(), 0x55, c_.pageable.size());
    Fill(c_.registered.data(), 0x66, c_.registered.size());
    h20GetLastError();
    ready_ = true;
  }

  void TearDown() override {
    for (int d = 0; d < std::min(c_.devices, 2); ++d) {
      h20SetDevice(d);
      h20DeviceReset();
    }
    h20SetDevice(0);
    if (registered_) h20HostUnregister(c_.registered.data());
    if (c_.pinned) h20FreeHost(c_.pinned);
    h20GetLastError();
  }

  // Every buffer a row could reach still holds its pattern.
  void ExpectNothingWritten() {
    for (int d = 0; d < std::min(c_.devices, 2); ++d) {
      ASSERT_EQ(h20Success, h20SetDevice(d));
      EXPECT_EQ(h20Success, h20DeviceSynchronize()) << h20GetLastErrorMessage();
    }
    ASSERT_EQ(h20Success, h20SetDevice(0));
    struct Buf {
      const char* name;
      const unsigned char* p;
      std::size_t n;
      unsigned char v;
      bool device;
    };
    std::vector<Buf> bufs = {{"device memory d0", c_.d0, kBytes, 0x11, true},
                             {"pool memory", c_.pool, kBytes, 0x33, true},
                             {"pinned memory", c_.pinned, 2 * kBytes, 0x44, false},
                             {"pageable memory", c_.pageable.data(), kBytes, 0x55, false},
                             {"registered memory", c_.registered.data(), 2 * kBytes, 0x66, false}};
    if (c_.d1) bufs.push_back({"device memory d1", c_.d1, kBytes, 0x22, true});
    std::vector<unsigned char> host(2 * kBytes);
    for (const Buf& b : bufs) {
      const unsigned char* bytes = b.p;
      if (b.device) {
        ASSERT_EQ(h20Success, h20Memcpy(host.data(), b.p, b.n, h20MemcpyDeviceToHost))
            << h20GetLastErrorMessage();
        bytes = host.data();
      }
      std::size_t changed = 0, first = b.n;
      for (std::size_t i = 0; i < b.n; ++i)
        if (bytes[i] != b.v) {
          ++changed;
          first = std::min(first, i);
        }
      EXPECT_EQ(0u, changed) << b.name << ": " << changed << " bytes changed, first at " << first;
    }
  }

  // An ordinary copy round trip on a stream works after the misuse.
  void ExpectUsable() {
    ASSERT_EQ(h20Success, h20SetDevice(0));
    void* d = nullptr;
    unsigned char in[256], out[256];
    for (int i = 0; i < 256; ++i)
      in[i] = static_cast<unsigned char>(i * 7 + 1);
    h20Stream_t s = nullptr;
    H20_ASSERT_OK(h20StreamCreate(&s));
    H20_ASSERT_OK(h20Malloc(&d, sizeof in));
    H20_ASSERT_OK(h20MemcpyAsync(d, in, sizeof in, h20MemcpyHostToDevice, s));
    H20_ASSERT_OK(h20StreamSynchronize(s));
    H20_ASSERT_OK(h20Memcpy(out, d, sizeof out, h20MemcpyDeviceToHost));
    EXPECT_EQ(0, std::memcmp(in, out, sizeof in));
    H20_EXPECT_OK(h20Free(d));
    H20_EXPECT_OK(h20StreamDestroy(s));
    H20_EXPECT_OK(h20DeviceSynchronize());
    EXPECT_EQ(h20Success, h20GetLastError());
  }

  Ctx c_;
  bool ready_ = false;
  bool registered_ = false;
};

TEST_P(Misuse, ReturnsTheDocumentedCodeWritesNothingAndLeavesTheRuntimeUsable) {
  ASSERT_TRUE(ready_);
  const Row& row = GetParam();
  if (row.embeddedOnly) H20_SKIP_UNLESS_EMBEDDED("the device daemon supports the call");
  const h20Error_t rc = row.call(c_);
  const std::string message = h20GetLastErrorMessage();
  EXPECT_EQ(row.expected, rc) << row.name << ": " << message;
  // "A synchronous error ... is also stored as the calling thread's last error together with a
  // message naming the argument and its value".
  EXPECT_EQ(row.expected, h20PeekAtLastError());
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(row.expected, h20GetLastError());
  EXPECT_EQ(h20Success, h20GetLastError()) << "h20GetLastError resets the last error";
  ExpectNothingWritten();
  ExpectUsable();
}

INSTANTIATE_TEST_SUITE_P(Rows, Misuse, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<Row>& info) {
                           return std::string(info.param.name);
                         });

// ---- calls from inside a host function or a kernel: h20ErrorNotPermitted ----------------------

struct Inside {
  const char* name;
  h20Error_t (*call)(void* scratch);
};

// One ordinary call of every function that is not an error query (each would succeed outside).
const Inside kInside[] = {
    {"h20RuntimeGetVersion",
     [](void*) {
       int v;
       return h20RuntimeGetVersion(&v);
     }},
    {"h20DriverGetVersion",
     [](void*) {
       int v;
       return h20DriverGetVersion(&v);
     }},
    {"h20GetDeviceCount",
     [](void*) {
       int v;
       return h20GetDeviceCount(&v);
     }},
    {"h20SetDevice", [](void*) { return h20SetDevice(0); }},
    {"h20GetDevice",
     [](void*) {
       int v;
       return h20GetDevice(&v);
     }},
    {"h20GetDeviceProperties",
     [](void*) {
       h20DeviceProp p;
       return h20GetDeviceProperties(&p, 0);
     }},
    {"h20DeviceSynchronize", [](void*) { return h20DeviceSynchronize(); }},
    {"h20DeviceReset", [](void*) { return h20DeviceReset(); }},
    {"h20MemGetInfo",
     [](void*) {
       size_t f, t;
       return h20MemGetInfo(&f, &t);
     }},
    {"h20DeviceGetMemoryUsed",
     [](void*) {
       size_t u;
       return h20DeviceGetMemoryUsed(&u, 0);
     }},
    {"h20DeviceGetStreamPriorityRange",
     [](void*) {
       int a, b;
       return h20DeviceGetStreamPriorityRange(&a, &b);
     }},
    {"h20DeviceCanAccessPeer",
     [](void*) {
       int v;
       return h20DeviceCanAccessPeer(&v, 0, 0);
     }},
    {"h20DeviceEnablePeerAccess", [](void*) { return h20DeviceEnablePeerAccess(1, 0); }},
    {"h20DeviceDisablePeerAccess", [](void*) { return h20DeviceDisablePeerAccess(1); }},
    {"h20DeviceGetCpuAffinity",
     [](void*) {
       int n;
       return h20DeviceGetCpuAffinity(0, nullptr, 0, &n, nullptr);
     }},
    {"h20Malloc",
     [](void*) {
       void* p;
       return h20Malloc(&p, 64);
     }},
    {"h20Free", [](void*) { return h20Free(nullptr); }},
    {"h20MallocHost",
     [](void*) {
       void* p;
       return h20MallocHost(&p, 64);
     }},
    {"h20HostAlloc",
     [](void*) {
       void* p;
       return h20HostAlloc(&p, 64, 0);
     }},
    {"h20FreeHost", [](void*) { return h20FreeHost(nullptr); }},
    {"h20HostRegister", [](void* scratch) { return h20HostRegister(scratch, 64, 0); }},
    {"h20HostUnregister", [](void* scratch) { return h20HostUnregister(scratch); }},
    {"h20HostGetDevicePointer",
     [](void* scratch) {
       void* p;
       return h20HostGetDevicePointer(&p, scratch, 0);
     }},
    {"h20MemGetAddressRange",
     [](void* scratch) {
       void* b;
       size_t n;
       return h20MemGetAddressRange(&b, &n, scratch);
     }},
    {"h20PointerGetAttributes",
     [](void* scratch) {
       h20PointerAttributes a;
       return h20PointerGetAttributes(&a, scratch);
     }},
    {"h20Memcpy",
     [](void* scratch) {
       return h20Memcpy(static_cast<char*>(scratch) + 64, scratch, 64, h20MemcpyHostToHost);
     }},
    {"h20MemcpyAsync",
     [](void* scratch) {
       return h20MemcpyAsync(static_cast<char*>(scratch) + 64, scratch, 64, h20MemcpyHostToHost,
                             nullptr);
     }},
    {"h20MemcpyPeer", [](void*) { return h20MemcpyPeer(nullptr, 0, nullptr, 0, 0); }},
    {"h20MemcpyPeerAsync",
     [](void*) { return h20MemcpyPeerAsync(nullptr, 0, nullptr, 0, 0, nullptr); }},
    {"h20Memset", [](void*) { return h20Memset(nullptr, 0, 0); }},
    {"h20MemsetAsync", [](void*) { return h20MemsetAsync(nullptr, 0, 0, nullptr); }},
    {"h20MallocAsync",
     [](void*) {
       void* p;
       return h20MallocAsync(&p, 64, nullptr);
     }},
    {"h20FreeAsync", [](void*) { return h20FreeAsync(nullptr, nullptr); }},
    {"h20StreamCreate",
     [](void*) {
       h20Stream_t s;
       return h20StreamCreate(&s);
     }},
    {"h20StreamCreateWithFlags",
     [](void*) {
       h20Stream_t s;
       return h20StreamCreateWithFlags(&s, 0);
     }},
    {"h20StreamCreateWithPriority",
     [](void*) {
       h20Stream_t s;
       return h20StreamCreateWithPriority(&s, 0, 0);
     }},
    {"h20StreamGetPriority",
     [](void*) {
       int p;
       return h20StreamGetPriority(nullptr, &p);
     }},
    {"h20StreamGetFlags",
     [](void*) {
       unsigned f;
       return h20StreamGetFlags(nullptr, &f);
     }},
    {"h20StreamGetDevice",
     [](void*) {
       int d;
       return h20StreamGetDevice(nullptr, &d);
     }},
    {"h20StreamDestroy", [](void*) { return h20StreamDestroy(h20StreamLegacy); }},
    {"h20StreamSynchronize", [](void*) { return h20StreamSynchronize(nullptr); }},
    {"h20StreamQuery", [](void*) { return h20StreamQuery(nullptr); }},
    {"h20StreamWaitEvent", [](void*) { return h20StreamWaitEvent(nullptr, nullptr, 0); }},
    {"h20LaunchHostFunc",
     [](void*) {
       return h20LaunchHostFunc(
           nullptr, [](void*) {}, nullptr);
     }},
    {"h20EventCreate",
     [](void*) {
       h20Event_t e;
       return h20EventCreate(&e);
     }},
    {"h20EventCreateWithFlags",
     [](void*) {
       h20Event_t e;
       return h20EventCreateWithFlags(&e, 0);
     }},
    {"h20EventRecord", [](void*) { return h20EventRecord(nullptr, nullptr); }},
    {"h20EventQuery", [](void*) { return h20EventQuery(nullptr); }},
    {"h20EventSynchronize", [](void*) { return h20EventSynchronize(nullptr); }},
    {"h20EventElapsedTime",
     [](void*) {
       float ms;
       return h20EventElapsedTime(&ms, nullptr, nullptr);
     }},
    {"h20EventDestroy", [](void*) { return h20EventDestroy(nullptr); }},
    {"h20LaunchKernel",
     [](void*) {
       return h20LaunchKernel([](const h20KernelContext*, const void*) {}, kOne, kOne, nullptr, 0,
                              0, nullptr);
     }},
};
constexpr std::size_t kInsideCount = sizeof kInside / sizeof kInside[0];

struct InsideRun {
  unsigned char scratch[256];
  h20Error_t results[kInsideCount];
  std::atomic<int> done{0};
};

void RunInside(InsideRun* r) {
  for (std::size_t i = 0; i < kInsideCount; ++i)
    r->results[i] = kInside[i].call(r->scratch);
  r->done.store(1);
}

using MisuseInside = h20test::CApiTest;

TEST_F(MisuseInside, EveryCallFromAHostFunctionReturnsNotPermitted) {
  ResetAfter(0);
  auto* r = new InsideRun();  // leaked if the host function never ran (a broken runtime)
  H20_ASSERT_OK(h20LaunchHostFunc(
      nullptr, [](void* p) { RunInside(static_cast<InsideRun*>(p)); }, r));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  ASSERT_EQ(1, r->done.load());
  for (std::size_t i = 0; i < kInsideCount; ++i)
    EXPECT_EQ(h20ErrorNotPermitted, r->results[i]) << kInside[i].name << " from a host function";
  EXPECT_EQ(h20Success, h20GetLastError())
      << "errors inside the host function are not the calling thread's";
  delete r;
}

void InsideKernel(const h20KernelContext* ctx, const void* args) {
  InsideRun* r;
  std::memcpy(&r, args, sizeof r);
  if (ctx->blockIdx.x == 0) RunInside(r);
}

TEST_F(MisuseInside, EveryCallFromAKernelReturnsNotPermitted) {
  ResetAfter(0);
  auto* r = new InsideRun();
  H20_ASSERT_OK(h20LaunchKernel(InsideKernel, kOne, kOne, &r, sizeof r, 0, nullptr));
  H20_ASSERT_OK(h20StreamSynchronize(nullptr));
  ASSERT_EQ(1, r->done.load());
  for (std::size_t i = 0; i < kInsideCount; ++i)
    EXPECT_EQ(h20ErrorNotPermitted, r->results[i]) << kInside[i].name << " from a kernel";
  EXPECT_EQ(h20Success, h20GetLastError())
      << "errors inside the kernel are not the calling thread's";
  delete r;
}

// ---- h20ErrorPeerAccessUnsupported: devices without a chip-to-chip link ------------------------

H20_CHILD_SCENARIO(MisusePeerUnsupported) {
  // The `pairs` topology links 0-1, 2-3, ...: 0 and 2 have no path but the host.
  h20SetDevice(0);
  h20test::Emit("enable", h20DeviceEnablePeerAccess(2, 0));
  h20test::Emit("last", h20GetLastError());
  h20test::Emit("again", h20DeviceEnablePeerAccess(2, 0));
  h20GetLastError();
  h20test::Emit("disable", h20DeviceDisablePeerAccess(2));
  h20GetLastError();
  unsigned char in[64], out[64];
  for (int i = 0; i < 64; ++i)
    in[i] = static_cast<unsigned char>(i);
  void* d = nullptr;
  const bool ok = h20Malloc(&d, sizeof in) == h20Success &&
                  h20Memcpy(d, in, sizeof in, h20MemcpyHostToDevice) == h20Success &&
                  h20Memcpy(out, d, sizeof out, h20MemcpyDeviceToHost) == h20Success &&
                  std::memcmp(in, out, sizeof in) == 0;
  h20test::Emit("usable", ok ? 1 : 0);
  return 0;
}

TEST(MisusePeer, EnableWithoutALinkIsPeerAccessUnsupported) {
  H20_SKIP_UNLESS_EMBEDDED("the case needs the pairs topology, chosen with H20_EMU_TOPOLOGY");
  const h20test::ChildResult r =
      h20test::RunChild("MisusePeerUnsupported", {{"H20_EMU_TOPOLOGY", "pairs"}});
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_EQ(h20ErrorPeerAccessUnsupported, r.IntValue("enable")) << r.output;
  EXPECT_EQ(h20ErrorPeerAccessUnsupported, r.IntValue("last"));
  EXPECT_EQ(h20ErrorPeerAccessUnsupported, r.IntValue("again"));
  EXPECT_EQ(h20ErrorPeerAccessNotEnabled, r.IntValue("disable"));
  EXPECT_EQ(1, r.IntValue("usable"));
}

// ---- h20ErrorNotReady is a status, never stored ------------------------------------------------

TEST_F(MisuseInside, ElapsedTimeOfAPendingEventIsNotReadyAndNotStored) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  h20Event_t a = nullptr, b = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20EventCreate(&a));
  H20_ASSERT_OK(h20EventCreate(&b));
  H20_ASSERT_OK(h20EventRecord(a, s));
  h20test::BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(h20EventRecord(b, s));
  float ms = -1;
  EXPECT_EQ(h20ErrorNotReady, h20EventElapsedTime(&ms, a, b));
  EXPECT_EQ(h20ErrorNotReady, h20EventQuery(b));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(s));
  EXPECT_EQ(h20Success, h20GetLastError()) << "h20ErrorNotReady is never stored";
  gate.Open();
  H20_EXPECT_OK(h20StreamSynchronize(s));
  H20_EXPECT_OK(h20EventElapsedTime(&ms, a, b));
  EXPECT_GE(ms, 0.0f);
}

}  // namespace
