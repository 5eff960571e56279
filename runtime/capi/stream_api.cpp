// stream_api.cpp - stream creation, properties, destruction, synchronisation and waits.
#include "capi/api_guard.hpp"

using h20::capi::guarded;
using h20::capi::requireOut;
using h20::rt::fail;
using h20::rt::Runtime;
using h20::rt::StreamKind;

namespace {

h20Error_t createStream(const char* api, h20Stream_t* stream, unsigned flags, int priority) {
  return guarded(api, [&](Runtime& rt) {
    requireOut(stream, "stream");
    if (flags & ~h20StreamNonBlocking)
      fail(h20ErrorInvalidValue,
           "flags {:#x} has unknown bits (h20StreamDefault or "
           "h20StreamNonBlocking)",
           flags);
    auto& d = rt.current();
    const auto& p = d.props();
    // Out-of-range priorities are clamped, as in CUDA.
    priority = std::clamp(priority, p.streamPriorityHighest, p.streamPriorityLowest);
    *stream = rt.addStream(d.createStream(StreamKind::user, flags, priority));
    return h20Success;
  });
}

}  // namespace

extern "C" {

H20_API h20Error_t h20StreamCreate(h20Stream_t* stream) {
  return createStream("h20StreamCreate", stream, h20StreamDefault, 0);
}

H20_API h20Error_t h20StreamCreateWithFlags(h20Stream_t* stream, unsigned int flags) {
  return createStream("h20StreamCreateWithFlags", stream, flags, 0);
}

H20_API h20Error_t h20StreamCreateWithPriority(h20Stream_t* stream, unsigned int flags,
                                               int priority) {
  return createStream("h20StreamCreateWithPriority", stream, flags, priority);
}

H20_API h20Error_t h20StreamGetPriority(h20Stream_t stream, int* priority) {
  return guarded("h20StreamGetPriority", [&](Runtime& rt) {
    requireOut(priority, "priority");
    *priority = rt.stream(stream)->priority();
    return h20Success;
  });
}

H20_API h20Error_t h20StreamGetFlags(h20Stream_t stream, unsigned int* flags) {
  return guarded("h20StreamGetFlags", [&](Runtime& rt) {
    requireOut(flags, "flags");
    *flags = rt.stream(stream)->flags();
    return h20Success;
  });
}

H20_API h20Error_t h20StreamGetDevice(h20Stream_t stream, int* device) {
  return guarded("h20StreamGetDevice", [&](Runtime& rt) {
    requireOut(device, "device");
    *device = rt.stream(stream)->device().ordinal();
    return h20Success;
  });
}

H20_API h20Error_t h20StreamDestroy(h20Stream_t stream) {
  return guarded("h20StreamDestroy", [&](Runtime& rt) {
    rt.destroyStream(stream);
    return h20Success;
  });
}

H20_API h20Error_t h20StreamSynchronize(h20Stream_t stream) {
  return guarded("h20StreamSynchronize", [&](Runtime& rt) {
    auto s = rt.stream(stream);
    if (s->kind() == StreamKind::legacy)
      s->device().waitLegacy();
    else
      s->wait(true);
    s->device().checkFault();
    return h20Success;
  });
}

H20_API h20Error_t h20StreamQuery(h20Stream_t stream) {
  return guarded("h20StreamQuery", [&](Runtime& rt) {
    auto s = rt.stream(stream);
    s->device().checkFault();
    const bool idle = s->kind() == StreamKind::legacy ? s->device().legacyIdle() : s->idle();
    return idle ? h20Success : h20ErrorNotReady;
  });
}

H20_API h20Error_t h20StreamWaitEvent(h20Stream_t stream, h20Event_t event, unsigned int flags) {
  return guarded("h20StreamWaitEvent", [&](Runtime& rt) {
    auto s = rt.stream(stream);
    auto e = rt.event(event);
    if (flags != 0) fail(h20ErrorInvalidValue, "flags {:#x} must be 0", flags);
    if (const auto& shared = e->shared()) {
      // The latest record, by any process: completed ones order nothing.
      const std::uint64_t record = e->latestRecord();
      if (shared->state().completed.load(std::memory_order_acquire) < record)
        s->device().submit(*s, h20::driver::WaitSharedCommand{shared, record});
      else
        e->checkRecordSucceeded(record);
      return h20Success;
    }
    const auto c = e->capture();
    // A wait for a capture that has completed (or was never recorded) orders nothing.
    if (c.recorded() && rt.driver().completed(c.queue) < c.seq)
      s->device().submit(*s, h20::driver::WaitCommand{c.queue, c.seq});
    return h20Success;
  });
}

}  // extern "C"
