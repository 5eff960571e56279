// launch_api.cpp - kernel launch, kernel fault reports and host functions.
#include "capi/api_guard.hpp"

#include <cstring>

using h20::capi::guarded;
using h20::rt::fail;
using h20::rt::Runtime;

namespace {

// h20LaunchKernel's checks and submission, for a resolved stream.
h20Error_t launch(Runtime& rt, h20::rt::Stream& s, h20KernelFn fn, h20Dim3 grid, h20Dim3 block,
                  const void* args, size_t argsBytes, size_t sharedMemBytes) {
  auto& d = s.device();
  const auto& p = d.props();
  if (!fn) fail(h20ErrorInvalidValue, "fn is NULL");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > static_cast<unsigned>(p.maxGridSize[0]) ||
      grid.y > static_cast<unsigned>(p.maxGridSize[1]) ||
      grid.z > static_cast<unsigned>(p.maxGridSize[2]))
    fail(h20ErrorInvalidValue, "grid ({}, {}, {}) is outside [1, 1, 1]..[{}, {}, {}]", grid.x,
         grid.y, grid.z, p.maxGridSize[0], p.maxGridSize[1], p.maxGridSize[2]);
  const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 ||
      block.x > static_cast<unsigned>(p.maxThreadsDim[0]) ||
      block.y > static_cast<unsigned>(p.maxThreadsDim[1]) ||
      block.z > static_cast<unsigned>(p.maxThreadsDim[2]) ||
      threads > static_cast<unsigned long long>(p.maxThreadsPerBlock))
    fail(h20ErrorInvalidValue,
         "block ({}, {}, {}) is invalid: each dimension >= 1, within ({}, {}, {}), and at most "
         "{} threads in all",
         block.x, block.y, block.z, p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2],
         p.maxThreadsPerBlock);
  if (sharedMemBytes > p.sharedMemPerBlockOptin)
    fail(h20ErrorInvalidValue, "sharedMemBytes {} exceeds the per-block limit of {} bytes",
         sharedMemBytes, p.sharedMemPerBlockOptin);
  if (argsBytes > H20_MAX_KERNEL_ARGS_BYTES)
    fail(h20ErrorInvalidValue, "argsBytes {} exceeds H20_MAX_KERNEL_ARGS_BYTES ({})", argsBytes,
         H20_MAX_KERNEL_ARGS_BYTES);
  if (argsBytes > 0 && !args)
    fail(h20ErrorInvalidValue, "args is NULL but argsBytes is {}", argsBytes);

  // A pointer to another device's memory needs peer access (the emulator cannot trap the
  // access itself, so the launch checks the addresses it is given).
  for (std::size_t off = 0; off + sizeof(std::uintptr_t) <= argsBytes;
       off += sizeof(std::uintptr_t)) {
    std::uintptr_t word;
    std::memcpy(&word, static_cast<const unsigned char*>(args) + off, sizeof word);
    // Only words that point into a live allocation count: stale padding bytes that merely fall
    // into a device's address range are not pointers the kernel can use.
    const int owner = rt.deviceOwningAddress(reinterpret_cast<const void*>(word));
    if (owner < 0 || owner == d.ordinal() || d.peerEnabled(owner)) continue;
    auto a = rt.memory().find(reinterpret_cast<const void*>(word));
    if (a && a->isDevice())
      fail(h20ErrorPeerAccessNotEnabled,
           "args bytes {}..{} hold {:#x}, memory of device {}, but device {} has no peer access "
           "to it (h20DeviceEnablePeerAccess)",
           off, off + sizeof word - 1, word, owner, d.ordinal());
  }

  h20::driver::KernelCommand k;
  k.fn = fn;
  k.grid = grid;
  k.block = block;
  if (argsBytes) {
    const auto* bytes = static_cast<const unsigned char*>(args);
    k.args.assign(bytes, bytes + argsBytes);
  }
  k.sharedMemBytes = sharedMemBytes;
  k.device = d.ordinal();
  k.launchId = d.nextLaunchId();
  k.streamTag = s.tag();
  d.submit(s, std::move(k));
  return h20Success;
}

}  // namespace

extern "C" {

H20_API h20Error_t h20LaunchKernel(h20KernelFn fn, h20Dim3 grid, h20Dim3 block, const void* args,
                                   size_t argsBytes, size_t sharedMemBytes, h20Stream_t stream) {
  return guarded("h20LaunchKernel", [&](Runtime& rt) {
    // The stream is used without a counted reference: the launch is short and blocks nothing.
    return rt.withStream(stream, [&](h20::rt::Stream& s) {
      return launch(rt, s, fn, grid, block, args, argsBytes, sharedMemBytes);
    });
  });
}

H20_API void h20KernelReportFault(const h20KernelContext* ctx, h20Error_t code,
                                  const char* message) {
  if (!ctx || !ctx->internal) return;
  // Any code but h20ErrorIllegalAddress becomes h20ErrorLaunchFailure; never loaded as an enum.
  static_cast<h20::driver::KernelFaultSink*>(ctx->internal)
      ->report(h20::capi::rawEnum(code), message);
}

H20_API h20Error_t h20LaunchHostFunc(h20Stream_t stream, h20HostFn_t fn, void* userData) {
  return guarded("h20LaunchHostFunc", [&](Runtime& rt) {
    auto s = rt.stream(stream);
    if (!fn) fail(h20ErrorInvalidValue, "fn is NULL");
    s->device().submit(*s, h20::driver::HostCommand{[fn, userData] { fn(userData); }});
    return h20Success;
  });
}

}  // extern "C"
