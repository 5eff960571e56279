// errors.cpp - error names and strings, the thread's last error, versions.
#include "capi/api_guard.hpp"
#include "capi/thread_state.hpp"

namespace {

struct ErrorInfo {
  h20Error_t code;
  const char* name;
  const char* text;
};

constexpr ErrorInfo kErrors[] = {
    {h20Success, "h20Success", "no error"},
    {h20ErrorInvalidValue, "h20ErrorInvalidValue", "invalid argument"},
    {h20ErrorMemoryAllocation, "h20ErrorMemoryAllocation", "out of memory"},
    {h20ErrorInitializationError, "h20ErrorInitializationError", "initialization error"},
    {h20ErrorRuntimeUnloading, "h20ErrorRuntimeUnloading", "the runtime is shutting down"},
    {h20ErrorDeviceUnavailable, "h20ErrorDeviceUnavailable", "device unavailable"},
    {h20ErrorNoDevice, "h20ErrorNoDevice", "no H20 device is available"},
    {h20ErrorInvalidDevice, "h20ErrorInvalidDevice", "invalid device ordinal"},
    {h20ErrorPeerAccessUnsupported, "h20ErrorPeerAccessUnsupported",
     "peer access is not supported between these two devices"},
    {h20ErrorInvalidResourceHandle, "h20ErrorInvalidResourceHandle", "invalid resource handle"},
    {h20ErrorNotReady, "h20ErrorNotReady", "device not ready"},
    {h20ErrorIllegalAddress, "h20ErrorIllegalAddress", "an illegal memory access was encountered"},
    {h20ErrorPeerAccessAlreadyEnabled, "h20ErrorPeerAccessAlreadyEnabled",
     "peer access is already enabled"},
    {h20ErrorPeerAccessNotEnabled, "h20ErrorPeerAccessNotEnabled",
     "peer access has not been enabled"},
    {h20ErrorHostMemoryAlreadyRegistered, "h20ErrorHostMemoryAlreadyRegistered",
     "part or all of the requested memory range is already mapped"},
    {h20ErrorHostMemoryNotRegistered, "h20ErrorHostMemoryNotRegistered",
     "pointer does not correspond to a registered memory region"},
    {h20ErrorLaunchFailure, "h20ErrorLaunchFailure", "unspecified launch failure"},
    {h20ErrorNotPermitted, "h20ErrorNotPermitted", "operation not permitted"},
    {h20ErrorNotSupported, "h20ErrorNotSupported", "operation not supported"},
    {h20ErrorRemote, "h20ErrorRemote",
     "another rank of the communicator failed, exited, aborted or timed out"},
    {h20ErrorUnknown, "h20ErrorUnknown", "unknown error"},
};

// `code` is the caller's h20Error_t read as an int: any value may arrive.
const ErrorInfo* lookup(int code) {
  for (const auto& e : kErrors)
    if (e.code == code) return &e;
  return nullptr;
}

}  // namespace

extern "C" {

H20_API const char* h20GetErrorName(h20Error_t error) {
  const ErrorInfo* e = lookup(h20::capi::rawEnum(error));
  return e ? e->name : "unrecognized error code";
}

H20_API const char* h20GetErrorString(h20Error_t error) {
  const ErrorInfo* e = lookup(h20::capi::rawEnum(error));
  return e ? e->text : "unrecognized error code";
}

H20_API h20Error_t h20GetLastError(void) {
  auto& state = h20::capi::threadErrors();
  const h20Error_t last = state.last;
  state.last = h20Success;
  return last;
}

H20_API h20Error_t h20PeekAtLastError(void) {
  return h20::capi::threadErrors().last;
}

H20_API const char* h20GetLastErrorMessage(void) {
  return h20::capi::threadErrors().message.c_str();
}

H20_API h20Error_t h20RuntimeGetVersion(int* runtimeVersion) {
  // Needs no runtime (it works when initialisation failed), but follows the rule for host
  // functions and kernels like every call that is not an error query.
  if (h20::capi::onEngineThread())
    return h20::capi::recordError("h20RuntimeGetVersion", h20ErrorNotPermitted,
                                  "the h20 API may not be called from a host function or a kernel");
  if (!runtimeVersion)
    return h20::capi::recordError("h20RuntimeGetVersion", h20ErrorInvalidValue,
                                  "runtimeVersion is NULL");
  *runtimeVersion = H20_RUNTIME_VERSION;
  return h20Success;
}

H20_API h20Error_t h20DriverGetVersion(int* driverVersion) {
  return h20::capi::guarded("h20DriverGetVersion", [&](h20::rt::Runtime& rt) {
    h20::capi::requireOut(driverVersion, "driverVersion");
    *driverVersion = rt.driver().version();
    return h20Success;
  });
}

}  // extern "C"
