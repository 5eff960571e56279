// ccl.cpp - h20.ccl: collectives over the chips of this process (include/h20/ccl.h).
//
// h20.ccl.Clique is h20cclCommInitAll over a list of devices: one communicator (rank) per chip.
// Its methods take one h20 array per rank and issue the collective for every rank from the
// calling thread, in one group (h20cclGroupStart/End). Each rank's communicator (clique[r]) also
// has the collectives for a single rank, for programs that drive each chip from its own thread;
// those wait (GIL released) until every rank has called. Work runs on the given streams, or on
// each rank's legacy default stream, and is stream-ordered: later copies and kernels on those
// streams (and on blocking streams of the same device) see the results.
#include <h20/ccl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "array.hpp"
#include "runtime.hpp"

namespace h20py {

namespace {

class Clique;

// One rank of a clique; the clique owns the communicator.
struct Comm {
  std::shared_ptr<Clique> clique;
  int rank = 0;
};

class Clique {
 public:
  explicit Clique(const std::vector<int>& devices) : devices_(devices), comms_(devices.size()) {
    h20cclComm_t* comms = comms_.data();
    const int n = static_cast<int>(devices.size());
    const int* devs = devices_.data();
    callNoGil(
        "h20cclCommInitAll", [=] { return h20cclCommInitAll(comms, n, devs); }, Lib::kCcl);
    // Counted only once the communicators exist: the destructor uncounts them.
    for (int d : devices_)
      countDeviceObject(d, 1);
  }
  ~Clique() {
    // Destroying waits for the communicators' enqueued collectives.
    releaseGilAndRun(
        [](void* p) {
          for (h20cclComm_t c : *static_cast<std::vector<h20cclComm_t>*>(p))
            h20cclCommDestroy(c);
        },
        &comms_);
    for (int d : devices_)
      countDeviceObject(d, -1);
  }
  Clique(const Clique&) = delete;
  Clique& operator=(const Clique&) = delete;

  int size() const { return static_cast<int>(devices_.size()); }
  int device(int rank) const { return devices_[rank]; }
  h20cclComm_t comm(int rank) const { return comms_[rank]; }
  const std::vector<int>& devices() const { return devices_; }

 private:
  std::vector<int> devices_;
  std::vector<h20cclComm_t> comms_;
};

enum class Kind { kAllReduce, kAllGather, kReduceScatter, kBroadcast };

h20cclRedOp parseOp(const std::string& op) {
  if (op == "sum") return h20cclSum;
  if (op == "max") return h20cclMax;
  if (op == "min") return h20cclMin;
  valueError("op: expected \"sum\", \"max\" or \"min\", got \"" + op + "\"");
}

// Element type and count as the library sees them. Reductions need float32, bfloat16 or
// float16; moving collectives carry any type as 32- or 16-bit words.
struct Wire {
  h20DataType type;
  std::size_t count;  // elements of `type`
};

Wire wireOf(const Array& a, bool reduction, const std::string& what) {
  switch (a.dtype) {
    case DType::kFloat32:
      return {H20_R_32F, static_cast<std::size_t>(a.size())};
    case DType::kBFloat16:
      return {H20_R_16BF, static_cast<std::size_t>(a.size())};
    case DType::kFloat16:
      return {H20_R_16F, static_cast<std::size_t>(a.size())};
    default:
      break;
  }
  if (reduction)
    valueError(what + ": reductions take float32, bfloat16 or float16, got " + info(a.dtype).name);
  const std::size_t bytes = a.nbytes();
  if (bytes % 4 == 0) return {H20_R_32F, bytes / 4};
  if (bytes % 2 == 0) return {H20_R_16F, bytes / 2};
  valueError(what + ": " + std::to_string(bytes) + " bytes of " + info(a.dtype).name +
             " cannot be moved as 16-bit words (make the size even)");
}

// One rank's part of a collective, checked.
struct Part {
  const Array* send = nullptr;
  Array recv;
  h20Stream_t stream = nullptr;
  Wire wire{};
};

std::vector<std::int64_t> gatheredShape(const std::vector<std::int64_t>& s, int n) {
  std::vector<std::int64_t> r = s.empty() ? std::vector<std::int64_t>{1} : s;
  r[0] *= n;
  return r;
}

Part preparePart(const Clique& c, int rank, Kind kind, const Array& send, py::handle outObj,
                 py::handle streamObj, const std::string& where) {
  Part p;
  p.send = &send;
  const int n = c.size();
  const int device = c.device(rank);
  if (send.device() != device)
    valueError(where + ": on device " + std::to_string(send.device()) + ", but rank " +
               std::to_string(rank) + " is device " + std::to_string(device));
  std::vector<std::int64_t> outShape = send.shape;
  switch (kind) {
    case Kind::kAllGather:
      outShape = gatheredShape(send.shape, n);
      break;
    case Kind::kReduceScatter:
      if (send.shape.empty() || send.shape[0] % n != 0)
        valueError(where + ": the first dimension (" +
                   (send.shape.empty() ? std::string("none") : std::to_string(send.shape[0])) +
                   ") must be a multiple of the " + std::to_string(n) + " ranks");
      outShape[0] /= n;
      break;
    default:
      break;
  }
  if (outObj.is_none()) {
    p.recv = kind == Kind::kBroadcast ? send : emptyArray(outShape, send.dtype, device);
  } else {
    if (!isArray(outObj)) typeError(where + " out: must be an h20.Array");
    p.recv = outObj.cast<const Array&>();
    if (p.recv.device() != device)
      valueError(where + " out: on device " + std::to_string(p.recv.device()) + ", rank " +
                 std::to_string(rank) + " is device " + std::to_string(device));
    if (p.recv.dtype != send.dtype)
      valueError(where + " out: dtype " + info(p.recv.dtype).name + " differs from " +
                 info(send.dtype).name);
    std::int64_t expected = 1;
    for (std::int64_t d : outShape)
      expected *= d;
    if (p.recv.size() != expected)
      valueError(where + " out: has " + std::to_string(p.recv.size()) + " elements, expected " +
                 std::to_string(expected));
  }
  p.wire = wireOf(send, kind == Kind::kAllReduce || kind == Kind::kReduceScatter, where);
  if (kind == Kind::kReduceScatter) p.wire.count /= n;  // recvcount
  const StreamRef s = streamObj.is_none() ? StreamRef{} : streamArg(streamObj, "stream");
  if (s.handle != nullptr && s.device != device)
    valueError(where + " stream: belongs to device " + std::to_string(s.device) + ", rank " +
               std::to_string(rank) + " is device " + std::to_string(device));
  p.stream = s.handle;
  return p;
}

h20Error_t issue(Kind kind, const Part& p, h20cclRedOp op, int root, h20cclComm_t comm) {
  switch (kind) {
    case Kind::kAllReduce:
      return h20cclAllReduce(p.send->data(), p.recv.data(), p.wire.count, p.wire.type, op, comm,
                             p.stream);
    case Kind::kAllGather:
      return h20cclAllGather(p.send->data(), p.recv.data(), p.wire.count, p.wire.type, comm,
                             p.stream);
    case Kind::kReduceScatter:
      return h20cclReduceScatter(p.send->data(), p.recv.data(), p.wire.count, p.wire.type, op, comm,
                                 p.stream);
    case Kind::kBroadcast:
      return h20cclBroadcast(p.send->data(), p.recv.data(), p.wire.count, p.wire.type, root, comm,
                             p.stream);
  }
  return h20ErrorInvalidValue;
}

const char* callName(Kind kind) {
  switch (kind) {
    case Kind::kAllReduce:
      return "h20cclAllReduce";
    case Kind::kAllGather:
      return "h20cclAllGather";
    case Kind::kReduceScatter:
      return "h20cclReduceScatter";
    case Kind::kBroadcast:
      return "h20cclBroadcast";
  }
  return "";
}

std::vector<py::object> seqArg(py::handle obj, int n, const char* what, bool allowNone) {
  std::vector<py::object> r;
  if (obj.is_none() && allowNone) return std::vector<py::object>(n, py::none());
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    typeError(std::string(what) + ": expected a sequence with one entry per rank");
  for (py::handle h : py::reinterpret_borrow<py::sequence>(obj))
    r.push_back(py::reinterpret_borrow<py::object>(h));
  if (static_cast<int>(r.size()) != n)
    valueError(std::string(what) + ": " + std::to_string(r.size()) + " entries for " +
               std::to_string(n) + " ranks");
  return r;
}

// The collective for every rank of the clique, from this thread, as one group.
py::list runAll(const std::shared_ptr<Clique>& c, Kind kind, py::handle arrays, py::handle outs,
                py::handle streams, const std::string& opName, int root) {
  const int n = c->size();
  const h20cclRedOp op = parseOp(opName);
  if (kind == Kind::kBroadcast && (root < 0 || root >= n))
    valueError("root: " + std::to_string(root) + " is not a rank (0.." + std::to_string(n - 1) +
               ")");
  const auto in = seqArg(arrays, n, "arrays", false);
  const auto out = seqArg(outs, n, "out", true);
  const auto st = seqArg(streams, n, "streams", true);
  std::vector<Array> sends(n);
  for (int r = 0; r < n; ++r) {
    if (!isArray(in[r])) typeError("arrays[" + std::to_string(r) + "]: must be an h20.Array");
    sends[r] = in[r].cast<const Array&>();
  }
  std::vector<Part> parts;
  parts.reserve(n);
  for (int r = 0; r < n; ++r) {
    if (sends[r].shape != sends[0].shape || sends[r].dtype != sends[0].dtype)
      valueError("arrays[" + std::to_string(r) + "]: shape and dtype must match arrays[0]'s");
    parts.push_back(
        preparePart(*c, r, kind, sends[r], out[r], st[r], "arrays[" + std::to_string(r) + "]"));
  }
  h20Error_t err = h20Success;
  std::string message;
  {
    py::gil_scoped_release nogil;
    err = h20cclGroupStart();
    if (err == h20Success) {
      for (int r = 0; r < n; ++r) {
        const h20Error_t e = issue(kind, parts[r], op, root, c->comm(r));
        if (e != h20Success && err == h20Success) {
          err = e;
          message = lastMessage(Lib::kCcl);
        }
      }
      const h20Error_t e = h20cclGroupEnd();
      if (e != h20Success && err == h20Success) {
        err = e;
        message = lastMessage(Lib::kCcl);
      }
    } else {
      message = lastMessage(Lib::kCcl);
    }
  }
  if (err != h20Success) raiseError(err, callName(kind), message);
  py::list result;
  for (int r = 0; r < n; ++r) {
    if (!out[r].is_none())
      result.append(out[r]);
    else if (kind == Kind::kBroadcast)
      result.append(in[r]);
    else
      result.append(py::cast(parts[r].recv));
  }
  return result;
}

// One rank's call (a thread per rank); waits for the other ranks' calls.
py::object runOne(const Comm& comm, Kind kind, py::handle send, py::handle outObj,
                  py::handle streamObj, const std::string& opName, int root) {
  const h20cclRedOp op = parseOp(opName);
  const int n = comm.clique->size();
  if (kind == Kind::kBroadcast && (root < 0 || root >= n))
    valueError("root: " + std::to_string(root) + " is not a rank (0.." + std::to_string(n - 1) +
               ")");
  if (!isArray(send)) typeError("array: must be an h20.Array");
  const Array& a = send.cast<const Array&>();
  const Part p = preparePart(*comm.clique, comm.rank, kind, a, outObj, streamObj, "array");
  h20cclComm_t c = comm.clique->comm(comm.rank);
  callNoGil(
      callName(kind), [&] { return issue(kind, p, op, root, c); }, Lib::kCcl);
  if (!outObj.is_none()) return py::reinterpret_borrow<py::object>(outObj);
  if (kind == Kind::kBroadcast) return py::reinterpret_borrow<py::object>(send);
  return py::cast(p.recv);
}

}  // namespace

void initCcl(py::module_& m) {
  py::module_ ccl = m.def_submodule("ccl", "Collectives over the chips of this process (ccl.h).");
  ccl.def("version", [] {
    int v = 0;
    check(h20cclGetVersion(&v), "h20cclGetVersion", Lib::kCcl);
    return v;
  });

  py::class_<Comm>(ccl, "Comm",
                   "One rank of a clique. Its collectives issue this rank's part only and return "
                   "once every rank has called (use one thread per rank; from a single thread, "
                   "use the Clique's methods).")
      .def_property_readonly("rank", [](const Comm& c) { return c.rank; })
      .def_property_readonly("size", [](const Comm& c) { return c.clique->size(); })
      .def_property_readonly("device",
                             [](const Comm& c) { return Device{c.clique->device(c.rank)}; })
      .def(
          "all_reduce",
          [](const Comm& c, py::handle a, py::handle out, const std::string& op, py::handle s) {
            return runOne(c, Kind::kAllReduce, a, out, s, op, 0);
          },
          py::arg("array"), py::arg("out") = py::none(), py::arg("op") = "sum",
          py::arg("stream") = py::none())
      .def(
          "all_gather",
          [](const Comm& c, py::handle a, py::handle out, py::handle s) {
            return runOne(c, Kind::kAllGather, a, out, s, "sum", 0);
          },
          py::arg("array"), py::arg("out") = py::none(), py::arg("stream") = py::none())
      .def(
          "reduce_scatter",
          [](const Comm& c, py::handle a, py::handle out, const std::string& op, py::handle s) {
            return runOne(c, Kind::kReduceScatter, a, out, s, op, 0);
          },
          py::arg("array"), py::arg("out") = py::none(), py::arg("op") = "sum",
          py::arg("stream") = py::none())
      .def(
          "broadcast",
          [](const Comm& c, py::handle a, int root, py::handle s) {
            return runOne(c, Kind::kBroadcast, a, py::none(), s, "sum", root);
          },
          py::arg("array"), py::arg("root") = 0, py::arg("stream") = py::none())
      .def("__repr__", [](const Comm& c) {
        return "h20.ccl.Comm(rank=" + std::to_string(c.rank) +
               ", size=" + std::to_string(c.clique->size()) +
               ", device=" + std::to_string(c.clique->device(c.rank)) + ")";
      });

  py::class_<Clique, std::shared_ptr<Clique>>(
      ccl, "Clique",
      "Communicators over chips of this process, rank r on devices[r] (h20cclCommInitAll). "
      "Collectives take one h20 array per rank, in rank order, and are enqueued for every rank "
      "before they return (stream-ordered; results are ready when the streams get there).")
      .def(py::init([](py::handle devices) {
             std::vector<int> devs;
             if (devices.is_none()) {
               for (int d = 0, n = deviceCount(); d < n; ++d)
                 devs.push_back(d);
             } else {
               for (py::handle d : py::reinterpret_borrow<py::sequence>(devices))
                 devs.push_back(deviceArg(d, "devices"));
             }
             if (devs.empty()) valueError("devices: empty");
             if (devs.size() > H20_CCL_MAX_RANKS)
               valueError("devices: more than " + std::to_string(H20_CCL_MAX_RANKS) + " ranks");
             for (std::size_t i = 0; i < devs.size(); ++i)
               for (std::size_t j = 0; j < i; ++j)
                 if (devs[i] == devs[j])
                   valueError("devices: device " + std::to_string(devs[i]) + " appears twice");
             return std::make_shared<Clique>(devs);
           }),
           py::arg("devices") = py::none())
      .def("__len__", &Clique::size)
      .def(
          "__getitem__",
          [](const std::shared_ptr<Clique>& c, int r) {
            if (r < 0) r += c->size();
            if (r < 0 || r >= c->size()) throw py::index_error("rank out of range");
            return Comm{c, r};
          },
          py::arg("rank"))
      .def_property_readonly("devices",
                             [](const Clique& c) {
                               py::list l;
                               for (int d : c.devices())
                                 l.append(py::cast(Device{d}));
                               return l;
                             })
      .def(
          "all_reduce",
          [](const std::shared_ptr<Clique>& c, py::handle arrays, py::handle out,
             const std::string& op, py::handle streams) {
            return runAll(c, Kind::kAllReduce, arrays, out, streams, op, 0);
          },
          py::arg("arrays"), py::arg("out") = py::none(), py::arg("op") = "sum",
          py::arg("streams") = py::none(),
          "out[r] = op over ranks of arrays[r] (in place when out is arrays). Returns out (new "
          "arrays when None).")
      .def(
          "all_gather",
          [](const std::shared_ptr<Clique>& c, py::handle arrays, py::handle out,
             py::handle streams) {
            return runAll(c, Kind::kAllGather, arrays, out, streams, "sum", 0);
          },
          py::arg("arrays"), py::arg("out") = py::none(), py::arg("streams") = py::none(),
          "out[r] = the ranks' arrays concatenated along the first axis.")
      .def(
          "reduce_scatter",
          [](const std::shared_ptr<Clique>& c, py::handle arrays, py::handle out,
             const std::string& op, py::handle streams) {
            return runAll(c, Kind::kReduceScatter, arrays, out, streams, op, 0);
          },
          py::arg("arrays"), py::arg("out") = py::none(), py::arg("op") = "sum",
          py::arg("streams") = py::none(),
          "out[r] = op over ranks of the r-th of n equal parts (first axis) of arrays.")
      .def(
          "broadcast",
          [](const std::shared_ptr<Clique>& c, py::handle arrays, int root, py::handle streams) {
            return runAll(c, Kind::kBroadcast, arrays, py::none(), streams, "sum", root);
          },
          py::arg("arrays"), py::arg("root") = 0, py::arg("streams") = py::none(),
          "Copies arrays[root] into every rank's array, in place; returns arrays.")
      .def("__repr__", [](const Clique& c) {
        std::string s = "h20.ccl.Clique(devices=[";
        for (std::size_t i = 0; i < c.devices().size(); ++i)
          s += (i ? ", " : "") + std::to_string(c.devices()[i]);
        return s + "])";
      });
}

}  // namespace h20py
