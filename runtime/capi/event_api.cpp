// event_api.cpp - event creation, recording, queries, waits and elapsed time.
#include "capi/api_guard.hpp"

#include <memory>

using h20::capi::check;
using h20::capi::guarded;
using h20::capi::requireOut;
using h20::rt::Event;
using h20::rt::fail;
using h20::rt::Runtime;
using h20::rt::Stream;

namespace {

h20Error_t createEvent(const char* api, h20Event_t* event, unsigned flags) {
  return guarded(api, [&](Runtime& rt) {
    requireOut(event, "event");
    const unsigned known = h20EventBlockingSync | h20EventDisableTiming | h20EventInterprocess;
    if (flags & ~known) fail(h20ErrorInvalidValue, "flags {:#x} has unknown bits", flags);
    std::shared_ptr<h20::driver::SharedEvent> shared;
    if (flags & h20EventInterprocess) {
      // As CUDA: interprocess events keep no time.
      if (!(flags & h20EventDisableTiming))
        fail(h20ErrorInvalidValue, "h20EventInterprocess requires h20EventDisableTiming");
      check(rt.driver().createSharedEvent(rt.current().chip(), &shared));
    }
    *event = rt.addEvent(std::make_shared<Event>(rt.current(), flags, std::move(shared)));
    return h20Success;
  });
}

}  // namespace

extern "C" {

H20_API h20Error_t h20EventCreate(h20Event_t* event) {
  return createEvent("h20EventCreate", event, h20EventDefault);
}

H20_API h20Error_t h20EventCreateWithFlags(h20Event_t* event, unsigned int flags) {
  return createEvent("h20EventCreateWithFlags", event, flags);
}

H20_API h20Error_t h20EventRecord(h20Event_t event, h20Stream_t stream) {
  return guarded("h20EventRecord", [&](Runtime& rt) {
    // Short and non-blocking: the event and the stream are used without counted references.
    return rt.withEvent(event, [&](Event& e) {
      return rt.withStream(stream, [&](Stream& s) {
        if (&s.device() != &e.device())
          fail(h20ErrorInvalidResourceHandle,
               "event {} belongs to device {} but stream {} to device {}",
               static_cast<const void*>(event), e.device().ordinal(),
               static_cast<const void*>(stream), s.device().ordinal());
        e.record(s);
        return h20Success;
      });
    });
  });
}

H20_API h20Error_t h20EventQuery(h20Event_t event) {
  return guarded("h20EventQuery", [&](Runtime& rt) {
    return rt.withEvent(event, [&](Event& e) {
      e.device().checkFault();
      if (!e.completed()) return h20ErrorNotReady;
      e.checkRecordSucceeded(e.latestRecord());
      return h20Success;
    });
  });
}

H20_API h20Error_t h20EventSynchronize(h20Event_t event) {
  return guarded("h20EventSynchronize", [&](Runtime& rt) {
    auto e = rt.event(event);
    e->wait();
    e->device().checkFault();
    return h20Success;
  });
}

H20_API h20Error_t h20EventElapsedTime(float* ms, h20Event_t start, h20Event_t end) {
  return guarded("h20EventElapsedTime", [&](Runtime& rt) {
    requireOut(ms, "ms");
    auto a = rt.event(start, "start");
    auto b = rt.event(end, "end");
    for (const auto& [name, e] : {std::pair{"start", a.get()}, std::pair{"end", b.get()}}) {
      if (!e->timing())
        fail(h20ErrorInvalidResourceHandle, "{} event was created with h20EventDisableTiming",
             name);
      if (!e->capture().recorded())
        fail(h20ErrorInvalidResourceHandle, "{} event has not been recorded", name);
    }
    const auto ta = a->timestampNs(), tb = b->timestampNs();
    if (!ta || !tb) return h20ErrorNotReady;
    *ms = static_cast<float>((static_cast<double>(*tb) - static_cast<double>(*ta)) / 1.0e6);
    return h20Success;
  });
}

H20_API h20Error_t h20EventDestroy(h20Event_t event) {
  return guarded("h20EventDestroy", [&](Runtime& rt) {
    rt.destroyEvent(event);
    return h20Success;
  });
}

}  // extern "C"
