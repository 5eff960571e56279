// kda.cpp - h20.kda: prefill and decode of Kimi Delta Attention (include/h20/kda.h) from Python,
// with FlashKDA's argument names and shapes.
//
// Every argument is checked here first (shapes, types, devices, gate, scale), so that a mistake
// raises ValueError naming the argument before anything is copied or enqueued. h20 arrays are
// used in place; other arrays (NumPy, PyTorch CPU tensors, lists) are copied to the device, and
// the results copied back into the same kind of object once the stream has finished (see
// h20/_interop.py). The call itself enqueues the kernels and returns (GIL released meanwhile).
#include <h20/kda.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "array.hpp"
#include "runtime.hpp"

namespace h20py {

namespace {

// One tensor argument: its name, the object, what it looks like.
struct Arg {
  const char* name;
  py::handle obj;
  Desc desc;
  bool present = false;
};

Arg arg(const char* name, py::handle obj) {
  Arg a{name, obj, {}, !obj.is_none()};
  if (a.present) a.desc = describe(obj, name);
  return a;
}

std::string shapeStr(const std::vector<std::int64_t>& s) {
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i)
    r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

[[noreturn]] void badShape(const Arg& a, const std::string& expected) {
  valueError(std::string(a.name) + ": expected shape " + expected + ", got " +
             shapeStr(a.desc.shape));
}

void expectShape(const Arg& a, const std::vector<std::int64_t>& shape, const std::string& layout) {
  if (a.desc.shape != shape) badShape(a, layout + " = " + shapeStr(shape));
}

void expectDType(const Arg& a, DType t, const std::string& why) {
  if (a.desc.dtype != t)
    valueError(std::string(a.name) + ": expected dtype " + info(t).name + " (" + why + "), got " +
               info(a.desc.dtype).name);
}

void expectKdaDType(const Arg& a) {
  if (a.desc.dtype != DType::kFloat32 && a.desc.dtype != DType::kBFloat16)
    valueError(std::string(a.name) + ": expected dtype bfloat16 or float32, got " +
               info(a.desc.dtype).name);
}

void expectHeadDim(const Arg& a, const char* dim, std::int64_t d) {
  if (d < 16 || d > 256 || d % 16 != 0)
    valueError(std::string(a.name) + ": head dimension " + dim + " = " + std::to_string(d) +
               " must be a multiple of 16 in [16, 256]");
}

int toInt(std::int64_t v, const char* what) {
  if (v > 0x7fffffff) valueError(std::string(what) + " = " + std::to_string(v) + " is too large");
  return static_cast<int>(v);
}

h20DataType kdaType(DType t) {
  return t == DType::kBFloat16 ? H20_R_16BF : H20_R_32F;
}

h20kdaGateMode parseGate(const std::string& gate, float lowerBound) {
  if (gate == "lower_bound") {
    if (!(lowerBound >= -5.0f && lowerBound < 0.0f))
      valueError("lower_bound: " + std::to_string(lowerBound) +
                 " is outside [-5, 0) (required by gate=\"lower_bound\")");
    return H20_KDA_GATE_LOWER_BOUND;
  }
  if (gate == "softplus") return H20_KDA_GATE_SOFTPLUS;
  valueError("gate: expected \"lower_bound\" or \"softplus\", got \"" + gate + "\"");
}

float parseScale(py::handle scale, std::int64_t K) {
  const double s =
      scale.is_none() ? 1.0 / std::sqrt(static_cast<double>(K)) : floatArg(scale, "scale");
  if (!std::isfinite(s) || std::fabs(s) > 3.4e38)
    valueError("scale: " + std::to_string(s) + " is not a finite float32");
  return static_cast<float>(s);
}

// The device every h20 array argument is on (they must agree, and agree with the stream's).
int chooseDevice(const std::vector<const Arg*>& args, const StreamRef& stream,
                 py::handle streamObj) {
  int device = -1;
  const char* first = nullptr;
  for (const Arg* a : args) {
    if (!a->present || !a->desc.onDevice) continue;
    if (device < 0) {
      device = a->desc.device;
      first = a->name;
    } else if (a->desc.device != device) {
      valueError(std::string(a->name) + ": on device " + std::to_string(a->desc.device) + ", but " +
                 first + " is on device " + std::to_string(device));
    }
  }
  const bool explicitStream = stream.handle != nullptr || !streamObj.is_none();
  if (explicitStream && stream.device >= 0) {
    if (device >= 0 && stream.device != device)
      valueError("stream: belongs to device " + std::to_string(stream.device) + ", but " + first +
                 " is on device " + std::to_string(device));
    return stream.device;
  }
  if (device >= 0) return device;
  return currentDevice();
}

// The array of an input on `device` (a copy for anything but an h20.Array there).
Array input(const Arg& a, int device) {
  return toArray(a.obj, device, a.desc.dtype, a.name);
}

// Checks host cuSeqlens values before anything is copied; device ones are checked by the kernel.
void checkHostCuSeqlens(py::handle cu, std::int64_t T) {
  py::array_t<std::int64_t> host =
      py::module_::import("numpy").attr("ascontiguousarray")(cu, "int64");
  const std::int64_t* c = host.data();
  const auto n = host.size();
  if (c[0] != 0) valueError("cu_seqlens: must start at 0, starts at " + std::to_string(c[0]));
  for (py::ssize_t i = 1; i < n; ++i) {
    if (c[i] < c[i - 1])
      valueError("cu_seqlens: decreases at entry " + std::to_string(i) + " (" +
                 std::to_string(c[i - 1]) + " then " + std::to_string(c[i]) + ")");
  }
  if (c[n - 1] != T)
    valueError("cu_seqlens: ends at " + std::to_string(c[n - 1]) + ", but q has " +
               std::to_string(T) + " tokens");
}

// Runs the enqueue with the GIL released, on the stream's device.
template <typename F>
void enqueue(const char* call, int device, const StreamRef& stream, F&& f) {
  // NULL means the current device's legacy stream: make the tensors' device current for it.
  std::optional<DeviceGuard> guard;
  if (stream.handle == nullptr || stream.handle == h20StreamPerThread) guard.emplace(device);
  callNoGil(call, std::forward<F>(f), Lib::kKda);
}

void synchronize(int device, const StreamRef& stream) {
  DeviceGuard guard(device);
  h20Stream_t s = stream.handle;
  callNoGil("h20StreamSynchronize", [s] { return h20StreamSynchronize(s); });
}

py::object interop(const char* name) {
  return py::module_::import("h20._interop").attr(name);
}

Array& outputArray(const Arg& a, int device) {
  if (!isArray(a.obj))
    typeError(std::string(a.name) + ": must be an h20.Array (got " +
              py::repr(py::type::handle_of(a.obj)).cast<std::string>() + ")");
  if (a.desc.device != device)
    valueError(std::string(a.name) + ": on device " + std::to_string(a.desc.device) +
               ", the inputs on device " + std::to_string(device));
  return a.obj.cast<Array&>();
}

py::tuple prefill(py::handle q, py::handle k, py::handle v, py::handle g, py::handle beta,
                  py::handle A_log, py::handle dt_bias, py::handle scale, const std::string& gate,
                  float lowerBound, py::handle initial_state, py::handle cu_seqlens,
                  py::handle streamObj, py::handle outObj, py::handle finalStateObj,
                  bool outputFinalState, py::handle stateDtypeObj, const std::string& algorithm) {
  const Arg aq = arg("q", q), ak = arg("k", k), av = arg("v", v), ag = arg("g", g),
            ab = arg("beta", beta), aA = arg("A_log", A_log), adt = arg("dt_bias", dt_bias),
            ah0 = arg("initial_state", initial_state), acu = arg("cu_seqlens", cu_seqlens),
            aout = arg("out", outObj), aht = arg("final_state", finalStateObj);
  // ---- shapes and types
  if (aq.desc.shape.size() != 4) badShape(aq, "[B, T, H, K]");
  const std::int64_t B = aq.desc.shape[0], T = aq.desc.shape[1], H = aq.desc.shape[2],
                     K = aq.desc.shape[3];
  expectKdaDType(aq);
  expectHeadDim(aq, "K", K);
  if (H < 1) valueError("q: H = 0 heads");
  expectShape(ak, aq.desc.shape, "[B, T, H, K]");
  expectDType(ak, aq.desc.dtype, "as q");
  if (av.desc.shape.size() != 4 || av.desc.shape[0] != B || av.desc.shape[1] != T)
    badShape(av, "[B, T, HV, V] with B = " + std::to_string(B) + ", T = " + std::to_string(T));
  const std::int64_t HV = av.desc.shape[2], V = av.desc.shape[3];
  expectDType(av, aq.desc.dtype, "as q");
  expectHeadDim(av, "V", V);
  if (HV < H || HV % H != 0)
    valueError("v: HV = " + std::to_string(HV) +
               " value heads is not a multiple of H = " + std::to_string(H));
  expectShape(ag, {B, T, HV, K}, "[B, T, HV, K]");
  expectDType(ag, aq.desc.dtype, "as q");
  expectShape(ab, {B, T, HV}, "[B, T, HV]");
  expectDType(ab, aq.desc.dtype, "as q");
  expectShape(aA, {HV}, "[HV]");
  expectDType(aA, DType::kFloat32, "A_log is float32");
  if (adt.present) {
    expectShape(adt, {HV, K}, "[HV, K]");
    expectDType(adt, DType::kFloat32, "dt_bias is float32");
  }
  std::int64_t N = B;
  if (acu.present) {
    if (acu.desc.shape.size() != 1 || acu.desc.shape[0] < 2) badShape(acu, "[N + 1] with N >= 1");
    expectDType(acu, DType::kInt64, "cu_seqlens is int64");
    if (B != 1)
      valueError("cu_seqlens: given with batch B = " + std::to_string(B) + " (must be 1)");
    N = acu.desc.shape[0] - 1;
  }
  std::optional<DType> stateType;
  if (!stateDtypeObj.is_none()) stateType = parseDType(stateDtypeObj, "state_dtype");
  if (ah0.present) {
    expectShape(ah0, {N, HV, V, K}, "[N, HV, V, K]");
    expectKdaDType(ah0);
    if (stateType && *stateType != ah0.desc.dtype)
      valueError(std::string("state_dtype: ") + info(*stateType).name +
                 " differs from initial_state's " + info(ah0.desc.dtype).name);
    stateType = ah0.desc.dtype;
  }
  if (aht.present) {
    expectShape(aht, {N, HV, V, K}, "[N, HV, V, K]");
    expectKdaDType(aht);
    if (stateType && *stateType != aht.desc.dtype)
      valueError(std::string("final_state: dtype ") + info(aht.desc.dtype).name +
                 " differs from the state dtype " + info(*stateType).name);
    stateType = aht.desc.dtype;
  }
  const DType sType = stateType.value_or(DType::kFloat32);
  if (sType != DType::kFloat32 && sType != DType::kBFloat16)
    valueError(std::string("state_dtype: expected bfloat16 or float32, got ") + info(sType).name);
  if (aout.present) {
    expectShape(aout, {B, T, HV, V}, "[B, T, HV, V]");
    expectDType(aout, aq.desc.dtype, "as q");
  }
  const h20kdaGateMode gateMode = parseGate(gate, lowerBound);
  const float sc = parseScale(scale, K);
  h20kdaAlgorithm algo;
  if (algorithm == "default")
    algo = H20_KDA_ALGO_DEFAULT;
  else if (algorithm == "chunked")
    algo = H20_KDA_ALGO_CHUNKED;
  else if (algorithm == "recurrent")
    algo = H20_KDA_ALGO_RECURRENT;
  else
    valueError("algorithm: expected \"default\", \"chunked\" or \"recurrent\", got \"" + algorithm +
               "\"");
  const StreamRef stream = streamArg(streamObj, "stream");
  const int device = chooseDevice({&aq, &ak, &av, &ag, &ab, &aA, &adt, &ah0, &acu, &aout, &aht},
                                  stream, streamObj);
  if (acu.present && !acu.desc.onDevice) checkHostCuSeqlens(cu_seqlens, B * T);

  // ---- device arrays (copies of anything that is not an h20 array there)
  const Array dq = input(aq, device), dk = input(ak, device), dv = input(av, device),
              dg = input(ag, device), db = input(ab, device), dA = input(aA, device);
  std::optional<Array> ddt, dh0, dcu;
  if (adt.present) ddt = input(adt, device);
  if (ah0.present) dh0 = input(ah0, device);
  if (acu.present) dcu = input(acu, device);
  Array out =
      aout.present ? outputArray(aout, device) : emptyArray({B, T, HV, V}, aq.desc.dtype, device);
  std::optional<Array> ht;
  if (aht.present)
    ht = outputArray(aht, device);
  else if (outputFinalState)
    ht = emptyArray({N, HV, V, K}, sType, device);

  h20kdaPrefillArgs a{};
  a.structSize = sizeof(a);
  a.batch = toInt(B, "B");
  a.seqLen = toInt(T, "T");
  a.numHeads = toInt(H, "H");
  a.numValueHeads = toInt(HV, "HV");
  a.headDimK = static_cast<int>(K);
  a.headDimV = static_cast<int>(V);
  a.dtype = kdaType(aq.desc.dtype);
  a.q = dq.data();
  a.k = dk.data();
  a.v = dv.data();
  a.g = dg.data();
  a.beta = db.data();
  a.out = out.data();
  a.scale = sc;
  a.gateMode = gateMode;
  a.A_log = static_cast<const float*>(dA.data());
  a.dtBias = ddt ? static_cast<const float*>(ddt->data()) : nullptr;
  a.lowerBound = lowerBound;
  a.initialState = dh0 ? dh0->data() : nullptr;
  a.finalState = ht ? ht->data() : nullptr;
  a.stateDtype = kdaType(sType);
  a.cuSeqlens = dcu ? static_cast<const std::int64_t*>(dcu->data()) : nullptr;
  a.numSeqs = dcu ? toInt(N, "N") : 0;
  a.algorithm = algo;
  h20Stream_t s = stream.handle;
  enqueue("h20kdaPrefill", device, stream, [&a, s] { return h20kdaPrefill(&a, s); });

  py::object outResult = py::cast(out), stateResult = ht ? py::cast(*ht) : py::none();
  if (aout.present) outResult = py::reinterpret_borrow<py::object>(outObj);
  if (aht.present) stateResult = py::reinterpret_borrow<py::object>(finalStateObj);
  if (!aq.desc.onDevice) {
    // q was not an h20 array: hand back results of its kind once they are computed. (Other
    // inputs copied to the device are freed on return; h20Free waits for the kernels first.)
    synchronize(device, stream);
    py::object like = interop("to_like");
    if (!aout.present) outResult = like(outResult, q);
    if (ht && !aht.present) stateResult = like(stateResult, q);
  }
  return py::make_tuple(outResult, stateResult);
}

py::object decode(py::handle q, py::handle k, py::handle v, py::handle g, py::handle beta,
                  py::handle A_log, py::handle state, py::handle dt_bias, py::handle scale,
                  const std::string& gate, float lowerBound, py::handle state_slots,
                  py::handle streamObj, py::handle outObj) {
  const Arg aq = arg("q", q), ak = arg("k", k), av = arg("v", v), ag = arg("g", g),
            ab = arg("beta", beta), aA = arg("A_log", A_log), as = arg("state", state),
            adt = arg("dt_bias", dt_bias), aslots = arg("state_slots", state_slots),
            aout = arg("out", outObj);
  if (!as.present) typeError("state: required");
  if (aq.desc.shape.size() != 4 || aq.desc.shape[1] != 1) badShape(aq, "[N, 1, H, K]");
  const std::int64_t N = aq.desc.shape[0], H = aq.desc.shape[2], K = aq.desc.shape[3];
  if (N < 1) valueError("q: N = 0 sequences");
  if (H < 1) valueError("q: H = 0 heads");
  expectKdaDType(aq);
  expectHeadDim(aq, "K", K);
  expectShape(ak, aq.desc.shape, "[N, 1, H, K]");
  expectDType(ak, aq.desc.dtype, "as q");
  if (av.desc.shape.size() != 4 || av.desc.shape[0] != N || av.desc.shape[1] != 1)
    badShape(av, "[N, 1, HV, V] with N = " + std::to_string(N));
  const std::int64_t HV = av.desc.shape[2], V = av.desc.shape[3];
  expectDType(av, aq.desc.dtype, "as q");
  expectHeadDim(av, "V", V);
  if (HV < H || HV % H != 0)
    valueError("v: HV = " + std::to_string(HV) +
               " value heads is not a multiple of H = " + std::to_string(H));
  expectShape(ag, {N, 1, HV, K}, "[N, 1, HV, K]");
  expectDType(ag, aq.desc.dtype, "as q");
  expectShape(ab, {N, 1, HV}, "[N, 1, HV]");
  expectDType(ab, aq.desc.dtype, "as q");
  expectShape(aA, {HV}, "[HV]");
  expectDType(aA, DType::kFloat32, "A_log is float32");
  if (adt.present) {
    expectShape(adt, {HV, K}, "[HV, K]");
    expectDType(adt, DType::kFloat32, "dt_bias is float32");
  }
  if (as.desc.shape.size() != 4 || as.desc.shape[1] != HV || as.desc.shape[2] != V ||
      as.desc.shape[3] != K)
    badShape(as, "[slots, HV, V, K] = [slots, " + std::to_string(HV) + ", " + std::to_string(V) +
                     ", " + std::to_string(K) + "]");
  expectKdaDType(as);
  const std::int64_t slots = as.desc.shape[0];
  if (aslots.present) {
    expectShape(aslots, {N}, "[N]");
    expectDType(aslots, DType::kInt32, "state_slots is int32");
    if (slots < 1) valueError("state: no slots");
  } else if (slots < N) {
    valueError("state: " + std::to_string(slots) + " slots for N = " + std::to_string(N) +
               " sequences (without state_slots, sequence n uses slot n)");
  }
  if (aout.present) {
    expectShape(aout, {N, 1, HV, V}, "[N, 1, HV, V]");
    expectDType(aout, aq.desc.dtype, "as q");
  }
  const h20kdaGateMode gateMode = parseGate(gate, lowerBound);
  const float sc = parseScale(scale, K);
  const StreamRef stream = streamArg(streamObj, "stream");
  const int device =
      chooseDevice({&aq, &ak, &av, &ag, &ab, &aA, &as, &adt, &aslots, &aout}, stream, streamObj);

  const bool foreignState = !as.desc.onDevice;
  const Array dq = input(aq, device), dk = input(ak, device), dv = input(av, device),
              dg = input(ag, device), db = input(ab, device), dA = input(aA, device),
              dstate = input(as, device);
  std::optional<Array> ddt, dslots;
  if (adt.present) ddt = input(adt, device);
  if (aslots.present) dslots = input(aslots, device);
  Array out =
      aout.present ? outputArray(aout, device) : emptyArray({N, 1, HV, V}, aq.desc.dtype, device);

  h20kdaDecodeArgs a{};
  a.structSize = sizeof(a);
  a.numSeqs = toInt(N, "N");
  a.numHeads = toInt(H, "H");
  a.numValueHeads = toInt(HV, "HV");
  a.headDimK = static_cast<int>(K);
  a.headDimV = static_cast<int>(V);
  a.dtype = kdaType(aq.desc.dtype);
  a.q = dq.data();
  a.k = dk.data();
  a.v = dv.data();
  a.g = dg.data();
  a.beta = db.data();
  a.out = out.data();
  a.scale = sc;
  a.gateMode = gateMode;
  a.A_log = static_cast<const float*>(dA.data());
  a.dtBias = ddt ? static_cast<const float*>(ddt->data()) : nullptr;
  a.lowerBound = lowerBound;
  a.state = dstate.data();
  a.stateDtype = kdaType(as.desc.dtype);
  a.stateSlots = dslots ? static_cast<const std::int32_t*>(dslots->data()) : nullptr;
  a.numStateSlots = toInt(slots, "slots");
  h20Stream_t s = stream.handle;
  enqueue("h20kdaDecode", device, stream, [&a, s] { return h20kdaDecode(&a, s); });

  py::object outResult = aout.present ? py::reinterpret_borrow<py::object>(outObj) : py::cast(out);
  if (!aq.desc.onDevice || foreignState) {
    synchronize(device, stream);
    // A state that was copied in is copied back into the caller's object (updated in place).
    if (foreignState) interop("copy_back")(py::cast(dstate), state);
    if (!aout.present && !aq.desc.onDevice) outResult = interop("to_like")(outResult, q);
  }
  return outResult;
}

}  // namespace

void initKda(py::module_& m) {
  py::module_ kda = m.def_submodule("kda", "Kimi Delta Attention (libh20kernels, kda.h).");
  kda.def("prefill", &prefill, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("g"),
          py::arg("beta"), py::arg("A_log"), py::arg("dt_bias") = py::none(),
          py::arg("scale") = py::none(), py::arg("gate") = "lower_bound",
          py::arg("lower_bound") = -5.0f, py::arg("initial_state") = py::none(),
          py::arg("cu_seqlens") = py::none(), py::arg("stream") = py::none(), py::kw_only(),
          py::arg("out") = py::none(), py::arg("final_state") = py::none(),
          py::arg("output_final_state") = true, py::arg("state_dtype") = py::none(),
          py::arg("algorithm") = "default",
          "KDA forward pass (h20kdaPrefill); returns (out, final_state). See docs/python.md.");
  kda.def("decode", &decode, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("g"),
          py::arg("beta"), py::arg("A_log"), py::arg("state"), py::arg("dt_bias") = py::none(),
          py::arg("scale") = py::none(), py::arg("gate") = "lower_bound",
          py::arg("lower_bound") = -5.0f, py::arg("state_slots") = py::none(),
          py::arg("stream") = py::none(), py::kw_only(), py::arg("out") = py::none(),
          "One KDA decode step (h20kdaDecode); updates `state` in place and returns out.");
  kda.def(
      "isa", [] { return std::string(h20kdaGetIsaName()); },
      "The SIMD level of the kernels: \"avx512\", \"avx2\" or \"scalar\".");
}

}  // namespace h20py
