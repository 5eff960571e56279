// runtime.cpp - h20.Device, h20.Stream, h20.Event and the module-level device functions
// (device_count, current_device, set_device, synchronize, versions, current_stream).
//
// Every call that can wait (synchronisations, destroying a stream) runs with the GIL released.
#include "runtime.hpp"

#include <cmath>

#include <pybind11/stl.h>

namespace h20py {

namespace {

h20DeviceProp properties(int device) {
  h20DeviceProp p{};
  check(h20GetDeviceProperties(&p, device), "h20GetDeviceProperties");
  return p;
}

py::dict propertiesDict(int device) {
  const h20DeviceProp p = properties(device);
  py::dict d;
  d["name"] = std::string(p.name);
  d["total_memory"] = p.totalGlobalMem;
  d["shared_mem_per_block"] = p.sharedMemPerBlock;
  d["shared_mem_per_block_optin"] = p.sharedMemPerBlockOptin;
  d["warp_size"] = p.warpSize;
  d["max_threads_per_block"] = p.maxThreadsPerBlock;
  d["max_threads_dim"] = py::make_tuple(p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2]);
  d["max_grid_size"] = py::make_tuple(p.maxGridSize[0], p.maxGridSize[1], p.maxGridSize[2]);
  d["clock_rate_khz"] = p.clockRate;
  d["memory_clock_rate_khz"] = p.memoryClockRate;
  d["memory_bus_width"] = p.memoryBusWidth;
  d["compute_capability"] = py::make_tuple(p.major, p.minor);
  d["multi_processor_count"] = p.multiProcessorCount;
  d["l2_cache_size"] = p.l2CacheSize;
  d["async_engine_count"] = p.asyncEngineCount;
  d["concurrent_kernels"] = p.concurrentKernels != 0;
  d["unified_addressing"] = p.unifiedAddressing != 0;
  d["can_map_host_memory"] = p.canMapHostMemory != 0;
  d["integrated"] = p.integrated != 0;
  d["pci_bus_id"] = std::string(p.pciBusId);
  d["numa_node"] = p.numaNode;
  d["memory_bandwidth"] = p.memoryBandwidth;
  d["peak_bf16_flops"] = p.peakBf16Flops;
  d["host_link_bandwidth"] = p.hostLinkBandwidth;
  d["stream_priority_range"] = py::make_tuple(p.streamPriorityLowest, p.streamPriorityHighest);
  d["emulated"] = p.emulated != 0;
  d["host_worker_threads"] = p.hostWorkerThreads;
  d["compute_mode"] = p.computeMode;
  return d;
}

void synchronizeDevice(int device) {
  DeviceGuard guard(device);
  callNoGil("h20DeviceSynchronize", [] { return h20DeviceSynchronize(); });
}

}  // namespace

int deviceArg(py::handle obj, const char* what) {
  if (obj.is_none()) return currentDevice();
  std::int64_t d;
  if (py::isinstance<Device>(obj)) {
    d = obj.cast<const Device&>().index;
  } else if (PyIndex_Check(obj.ptr()) && !py::isinstance<py::bool_>(obj)) {
    d = intArg(obj, what);
  } else {
    typeError(std::string(what) + ": expected None, an int or an h20.Device, got " +
              py::repr(obj).cast<std::string>());
  }
  checkDeviceOrdinal(d, what);
  return static_cast<int>(d);
}

StreamRef streamArg(py::handle obj, const char* what) {
  if (obj.is_none()) return currentStream();
  if (py::isinstance<Stream>(obj)) return obj.cast<const Stream&>().ref();
  if (PyIndex_Check(obj.ptr()) && !py::isinstance<py::bool_>(obj)) {
    // A raw handle (as DLPack passes one); the runtime checks it.
    const std::int64_t v = intArg(obj, what);
    if (v < 0) valueError(std::string(what) + ": " + std::to_string(v) + " is not a stream handle");
    StreamRef s{reinterpret_cast<h20Stream_t>(static_cast<std::uintptr_t>(v)), -1};
    if (s.handle != nullptr && s.handle != h20StreamLegacy && s.handle != h20StreamPerThread) {
      check(h20StreamGetDevice(s.handle, &s.device), "h20StreamGetDevice");
    }
    return s;
  }
  typeError(std::string(what) + ": expected None or an h20.Stream, got " +
            py::repr(obj).cast<std::string>());
}

Stream::Stream(int device, bool nonBlocking, int priority) : device_(device) {
  DeviceGuard guard(device);
  check(h20StreamCreateWithPriority(&handle_, nonBlocking ? h20StreamNonBlocking : h20StreamDefault,
                                    priority),
        "h20StreamCreateWithPriority");
  countDeviceObject(device_, 1);
}

Stream::~Stream() {
  releaseGilAndRun([](void* s) { h20StreamDestroy(static_cast<h20Stream_t>(s)); }, handle_);
  countDeviceObject(device_, -1);
}

Event::Event(int device, unsigned flags) : device_(device), flags_(flags) {
  DeviceGuard guard(device);
  check(h20EventCreateWithFlags(&handle_, flags), "h20EventCreateWithFlags");
  countDeviceObject(device_, 1);
}

Event::~Event() {
  h20EventDestroy(handle_);
  countDeviceObject(device_, -1);
}

void initRuntime(py::module_& m) {
  m.def("device_count", &deviceCount,
        "Number of visible devices (0 when none is visible). Raises h20.InitializationError when "
        "the configuration (environment) is invalid.");
  m.def(
      "current_device", [] { return Device{currentDevice()}; },
      "The calling thread's current device.");
  m.def(
      "set_device",
      [](py::handle d) { check(h20SetDevice(deviceArg(d, "set_device")), "h20SetDevice"); },
      py::arg("device"),
      "Makes `device` (an int or h20.Device) the calling thread's current device.");
  m.def(
      "synchronize", [](py::handle d) { synchronizeDevice(deviceArg(d, "synchronize")); },
      py::arg("device") = py::none(),
      "Waits for all work of the device (default: the current one); raises its sticky fault.");
  m.def("runtime_version", [] {
    int v = 0;
    check(h20RuntimeGetVersion(&v), "h20RuntimeGetVersion");
    return v;
  });
  m.def("driver_version", [] {
    int v = 0;
    check(h20DriverGetVersion(&v), "h20DriverGetVersion");
    return v;
  });
  m.def(
      "get_last_error", [] { return static_cast<int>(h20GetLastError()); },
      "Returns and resets the calling thread's last runtime error code (an int).");

  py::class_<Device>(m, "Device", "A visible H20 chip.")
      .def(py::init([](py::handle index) { return Device{deviceArg(index, "Device")}; }),
           py::arg("index"))
      .def_readonly("index", &Device::index)
      .def_property_readonly("name",
                             [](const Device& d) { return std::string(properties(d.index).name); })
      .def_property_readonly("total_memory",
                             [](const Device& d) { return properties(d.index).totalGlobalMem; })
      .def_property_readonly(
          "multi_processor_count",
          [](const Device& d) { return properties(d.index).multiProcessorCount; })
      .def_property_readonly("compute_capability",
                             [](const Device& d) {
                               const h20DeviceProp p = properties(d.index);
                               return py::make_tuple(p.major, p.minor);
                             })
      .def_property_readonly(
          "pci_bus_id", [](const Device& d) { return std::string(properties(d.index).pciBusId); })
      .def_property_readonly(
          "properties", [](const Device& d) { return propertiesDict(d.index); },
          "Every property of h20GetDeviceProperties, as a dict.")
      .def(
          "set_current", [](const Device& d) { check(h20SetDevice(d.index), "h20SetDevice"); },
          "Makes this device the calling thread's current device.")
      .def(
          "synchronize", [](const Device& d) { synchronizeDevice(d.index); },
          "Waits for all work of this device; raises its sticky fault.")
      .def(
          "memory_info",
          [](const Device& d) {
            DeviceGuard guard(d.index);
            std::size_t freeBytes = 0, total = 0;
            check(h20MemGetInfo(&freeBytes, &total), "h20MemGetInfo");
            return py::make_tuple(freeBytes, total);
          },
          "(free, total) bytes of device memory.")
      .def(
          "memory_used",
          [](const Device& d) {
            std::size_t used = 0;
            check(h20DeviceGetMemoryUsed(&used, d.index), "h20DeviceGetMemoryUsed");
            return used;
          },
          "Bytes of the device's memory held by this process's live allocations.")
      .def(
          "reset",
          [](const Device& d) {
            const int live = liveDeviceObjects(d.index);
            if (live != 0)
              throw py::value_error("reset: " + std::to_string(live) +
                                    " h20 arrays, streams, events or communicators still use "
                                    "device " +
                                    std::to_string(d.index) +
                                    "; delete them first (h20DeviceReset destroys their memory)");
            DeviceGuard guard(d.index);
            callNoGil("h20DeviceReset", [] { return h20DeviceReset(); });
          },
          "h20DeviceReset: waits for the device's work, destroys its allocations, streams and "
          "events and clears a sticky fault. Refused while objects of this module use the "
          "device.")
      .def(
          "can_access_peer",
          [](const Device& d, py::handle peer) {
            int can = 0;
            check(h20DeviceCanAccessPeer(&can, d.index, deviceArg(peer, "peer")),
                  "h20DeviceCanAccessPeer");
            return can != 0;
          },
          py::arg("peer"))
      .def("__eq__",
           [](const Device& a, py::handle b) {
             return py::isinstance<Device>(b) && b.cast<const Device&>().index == a.index;
           })
      .def("__hash__", [](const Device& d) { return py::hash(py::int_(d.index)); })
      .def("__index__", [](const Device& d) { return d.index; })
      .def("__repr__",
           [](const Device& d) { return "h20.Device(" + std::to_string(d.index) + ")"; });

  py::class_<Stream>(m, "Stream",
                     "An in-order queue of work on one device. Used as a context manager, it is "
                     "the current stream (and its device the current device) of the calling "
                     "thread inside the block: copies, KDA and collectives called there without "
                     "a stream argument run on it.")
      .def(py::init([](py::handle device, bool nonBlocking, int priority) {
             return std::make_unique<Stream>(deviceArg(device, "Stream"), nonBlocking, priority);
           }),
           py::arg("device") = py::none(), py::arg("non_blocking") = false, py::arg("priority") = 0)
      .def_property_readonly("device", [](const Stream& s) { return Device{s.device()}; })
      .def_property_readonly(
          "handle", [](const Stream& s) { return reinterpret_cast<std::uintptr_t>(s.handle()); },
          "The h20Stream_t value, as an int.")
      .def_property_readonly("priority",
                             [](const Stream& s) {
                               int p = 0;
                               check(h20StreamGetPriority(s.handle(), &p), "h20StreamGetPriority");
                               return p;
                             })
      .def_property_readonly("non_blocking",
                             [](const Stream& s) {
                               unsigned f = 0;
                               check(h20StreamGetFlags(s.handle(), &f), "h20StreamGetFlags");
                               return (f & h20StreamNonBlocking) != 0;
                             })
      .def(
          "synchronize",
          [](const Stream& s) {
            h20Stream_t h = s.handle();
            callNoGil("h20StreamSynchronize", [h] { return h20StreamSynchronize(h); });
          },
          "Waits for all work enqueued so far on the stream; raises a fault it met.")
      .def(
          "query",
          [](const Stream& s) {
            const h20Error_t e = h20StreamQuery(s.handle());
            if (e == h20ErrorNotReady) return false;
            check(e, "h20StreamQuery");
            return true;
          },
          "True if all work enqueued so far has completed.")
      .def(
          "wait_event",
          [](const Stream& s, const Event& e) {
            check(h20StreamWaitEvent(s.handle(), e.handle(), 0), "h20StreamWaitEvent");
          },
          py::arg("event"), "Makes later work on this stream wait for the event's last record.")
      .def(
          "record_event",
          [](const Stream& s, py::object event) {
            if (event.is_none()) event = py::cast(std::make_unique<Event>(s.device(), 0u));
            check(h20EventRecord(event.cast<const Event&>().handle(), s.handle()),
                  "h20EventRecord");
            return event;
          },
          py::arg("event") = py::none(), "Records an event (a new one by default) on the stream.")
      .def("__enter__",
           [](py::object self) {
             // The stream's device becomes current in the block, as torch.cuda.stream does.
             const Stream& s = self.cast<const Stream&>();
             const int previous = currentDevice();
             check(h20SetDevice(s.device()), "h20SetDevice");
             pushStream(s.ref(), self.ptr(), previous);
             return self;
           })
      .def("__exit__",
           [](Stream&, py::args) {
             const int previous = popStream();
             if (previous >= 0) check(h20SetDevice(previous), "h20SetDevice");
             return false;
           })
      .def("__eq__",
           [](const Stream& a, py::handle b) {
             return py::isinstance<Stream>(b) && b.cast<const Stream&>().handle() == a.handle();
           })
      .def("__hash__",
           [](const Stream& s) {
             return py::hash(py::int_(reinterpret_cast<std::uintptr_t>(s.handle())));
           })
      .def("__repr__", [](const Stream& s) {
        return "h20.Stream(device=" + std::to_string(s.device()) +
               ", handle=" + std::to_string(reinterpret_cast<std::uintptr_t>(s.handle())) + ")";
      });

  py::class_<Event>(m, "Event", "A marker in a stream's work, for waiting and timing.")
      .def(py::init([](bool timing, bool blocking, py::handle device) {
             unsigned flags = 0;
             if (!timing) flags |= h20EventDisableTiming;
             if (blocking) flags |= h20EventBlockingSync;
             return std::make_unique<Event>(deviceArg(device, "Event"), flags);
           }),
           py::arg("timing") = true, py::arg("blocking") = false, py::arg("device") = py::none())
      .def_property_readonly("device", [](const Event& e) { return Device{e.device()}; })
      .def(
          "record",
          [](const Event& e, py::handle stream) {
            StreamRef s = streamArg(stream, "stream");
            // The legacy stream of the event's own device, whatever device is current.
            const int device = s.handle == nullptr && s.device < 0 ? e.device() : s.device;
            DeviceGuard guard(device);
            check(h20EventRecord(e.handle(), s.handle), "h20EventRecord");
          },
          py::arg("stream") = py::none(),
          "Captures the work enqueued so far on `stream` (default: the current stream).")
      .def(
          "query",
          [](const Event& e) {
            const h20Error_t r = h20EventQuery(e.handle());
            if (r == h20ErrorNotReady) return false;
            check(r, "h20EventQuery");
            return true;
          },
          "True if the captured work has completed (or the event was never recorded).")
      .def(
          "synchronize",
          [](const Event& e) {
            h20Event_t h = e.handle();
            callNoGil("h20EventSynchronize", [h] { return h20EventSynchronize(h); });
          },
          "Waits until the captured work has completed.")
      .def(
          "elapsed_time",
          [](const Event& start, const Event& end) {
            float ms = 0;
            check(h20EventElapsedTime(&ms, start.handle(), end.handle()), "h20EventElapsedTime");
            return static_cast<double>(ms);
          },
          py::arg("end"), "Milliseconds from this event to `end` (both completed).")
      .def("__repr__",
           [](const Event& e) { return "h20.Event(device=" + std::to_string(e.device()) + ")"; });

  m.def("current_stream", &currentStreamObject,
        "The calling thread's current stream (the innermost `with h20.Stream` block's), or None "
        "for the legacy default stream of the current device.");
}

}  // namespace h20py
