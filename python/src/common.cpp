// common.cpp - element types, error mapping, device guard and the per-thread stream stack of the
// h20 Python module (see common.hpp).
#include "common.hpp"

#include <h20/ccl.h>
#include <h20/kda.h>

#include <atomic>
#include <cstring>

#include "dlpack.hpp"

#if PY_VERSION_HEX >= 0x030D0000
#define H20PY_IS_FINALIZING() Py_IsFinalizing()
#else
#define H20PY_IS_FINALIZING() _Py_IsFinalizing()
#endif

namespace h20py {

namespace {

// Indexed by DType.
const DTypeInfo kDTypes[kNumDTypes] = {
    {"float16", 2, dl::kFloat, "e"}, {"bfloat16", 2, dl::kBfloat, ""},
    {"float32", 4, dl::kFloat, "f"}, {"float64", 8, dl::kFloat, "d"},
    {"int8", 1, dl::kInt, "b"},      {"int16", 2, dl::kInt, "h"},
    {"int32", 4, dl::kInt, "i"},     {"int64", 8, dl::kInt, "q"},
    {"uint8", 1, dl::kUInt, "B"},    {"uint16", 2, dl::kUInt, "H"},
    {"bool", 1, dl::kBool, "?"},
};

// The per-thread stack of `with h20.Stream(...)` blocks.
struct StreamEntry {
  StreamRef stream;
  PyObject* owner;  // a strong reference, released when the block exits
  int previousDevice;
};
thread_local std::vector<StreamEntry> tlsStreams;

}  // namespace

const DTypeInfo& info(DType t) {
  return kDTypes[static_cast<int>(t)];
}

DType parseDType(py::handle obj, const char* what) {
  if (py::isinstance<DType>(obj)) return obj.cast<DType>();
  std::string name;
  if (py::isinstance<py::str>(obj)) {
    name = obj.cast<std::string>();
  } else if (PyType_Check(obj.ptr())) {
    // NumPy scalar types (numpy.float32) and Python's float, int and bool.
    name = py::str(obj.attr("__name__")).cast<std::string>();
    if (name == "float") name = "float64";
    if (name == "int") name = "int64";
    if (name == "bool_") name = "bool";
  } else if (!obj.is_none()) {
    // numpy.dtype('float32') prints "float32", torch.float32 prints "torch.float32".
    name = py::str(obj).cast<std::string>();
  }
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  for (int i = 0; i < kNumDTypes; ++i) {
    if (name == kDTypes[i].name) return static_cast<DType>(i);
  }
  std::string names;
  for (int i = 0; i < kNumDTypes; ++i)
    names += std::string(i ? ", " : "") + kDTypes[i].name;
  typeError(std::string(what) + ": unsupported dtype " + py::repr(obj).cast<std::string>() +
            " (supported: " + names + ")");
}

bool fromDLPack(std::uint8_t code, std::uint8_t bits, DType* out) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (kDTypes[i].dlCode == code && kDTypes[i].itemsize * 8 == bits) {
      *out = static_cast<DType>(i);
      return true;
    }
  }
  // Producers older than DLPack 0.8 describe bool as an unsigned 8-bit integer; it is read as
  // uint8 then.
  return false;
}

bool fromBufferFormat(const std::string& format, std::size_t itemsize, DType* out) {
  std::string f = format;
  if (!f.empty() && (f[0] == '<' || f[0] == '@' || f[0] == '=' || f[0] == '!' || f[0] == '>')) {
    if (f[0] == '>' || f[0] == '!') return false;  // big-endian data
    f = f.substr(1);
  }
  if (f.size() != 1) return false;
  const char c = f[0];
  switch (c) {
    case 'e':
      *out = DType::kFloat16;
      return itemsize == 2;
    case 'f':
      *out = DType::kFloat32;
      return itemsize == 4;
    case 'd':
      *out = DType::kFloat64;
      return itemsize == 8;
    case 'b':
      *out = DType::kInt8;
      return itemsize == 1;
    case 'B':
      *out = DType::kUInt8;
      return itemsize == 1;
    case '?':
      *out = DType::kBool;
      return itemsize == 1;
    case 'h':
      *out = DType::kInt16;
      return itemsize == 2;
    case 'H':
      *out = DType::kUInt16;
      return itemsize == 2;
    case 'i':
    case 'l':
    case 'q':
      if (itemsize == 4)
        *out = DType::kInt32;
      else if (itemsize == 8)
        *out = DType::kInt64;
      else
        return false;
      return true;
    default:
      return false;
  }
}

std::string lastMessage(Lib lib) {
  switch (lib) {
    case Lib::kKda:
      return h20kdaGetLastErrorMessage();
    case Lib::kCcl:
      return h20cclGetLastErrorMessage();
    default:
      return h20GetLastErrorMessage();
  }
}

void raiseError(h20Error_t code, const char* call, const std::string& message) {
  // h20._errors builds the exception (the class of the code); it is imported once and kept for
  // the life of the process (never released: no Python object outlives the interpreter here).
  static py::object* make = new py::object(py::module_::import("h20._errors").attr("_from_code"));
  const char* name = h20GetErrorName(code);
  const char* description = h20GetErrorString(code);
  py::object exc = (*make)(static_cast<int>(code), name, description, call, message);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

void valueError(const std::string& message) {
  throw py::value_error(message);
}

void typeError(const std::string& message) {
  throw py::type_error(message);
}

std::int64_t intArg(py::handle obj, const char* what) {
  if (!PyIndex_Check(obj.ptr()) || PyBool_Check(obj.ptr()))
    typeError(std::string(what) + ": expected an int, got " + py::repr(obj).cast<std::string>());
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0)
    valueError(std::string(what) + ": " + py::repr(obj).cast<std::string>() +
               " does not fit in 64 bits");
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

double floatArg(py::handle obj, const char* what) {
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    typeError(std::string(what) + ": expected a number, got " + py::repr(obj).cast<std::string>());
  }
  return v;
}

namespace {
constexpr int kMaxDevices = 64;  // H20_EMU_DEVICES is at most 64
std::atomic<int> liveObjects[kMaxDevices];
}  // namespace

void countDeviceObject(int device, int delta) {
  if (device >= 0 && device < kMaxDevices) liveObjects[device].fetch_add(delta);
}

int liveDeviceObjects(int device) {
  return device >= 0 && device < kMaxDevices ? liveObjects[device].load() : 0;
}

int currentDevice() {
  int d = 0;
  check(h20GetDevice(&d), "h20GetDevice");
  return d;
}

int deviceCount() {
  int n = 0;
  const h20Error_t err = h20GetDeviceCount(&n);
  if (err == h20ErrorNoDevice) return 0;
  check(err, "h20GetDeviceCount");
  return n;
}

void checkDeviceOrdinal(long long device, const char* what) {
  const int n = deviceCount();
  if (device < 0 || device >= n) {
    std::string range = n > 0 ? "0.." + std::to_string(n - 1) : "none";
    raiseError(h20ErrorInvalidDevice, what,
               std::string(what) + ": device " + std::to_string(device) +
                   " is out of range (visible devices: " + range + ")");
  }
}

DeviceGuard::DeviceGuard(int device) {
  previous_ = currentDevice();
  if (previous_ != device) {
    check(h20SetDevice(device), "h20SetDevice");
    switched_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_) h20SetDevice(previous_);
}

StreamRef currentStream() {
  return tlsStreams.empty() ? StreamRef{} : tlsStreams.back().stream;
}

void pushStream(StreamRef s, PyObject* owner, int previousDevice) {
  Py_XINCREF(owner);
  tlsStreams.push_back({s, owner, previousDevice});
}

int popStream() {
  if (tlsStreams.empty()) return -1;
  const StreamEntry e = tlsStreams.back();
  tlsStreams.pop_back();
  Py_XDECREF(e.owner);
  return e.previousDevice;
}

py::object currentStreamObject() {
  if (tlsStreams.empty()) return py::none();
  return py::reinterpret_borrow<py::object>(tlsStreams.back().owner);
}

int streamDevice(const StreamRef& s) {
  if (s.device >= 0) return s.device;
  return currentDevice();
}

void releaseGilAndRun(void (*fn)(void*), void* arg) {
  // After (or during) finalisation there is no GIL to give up; a DLPack consumer may also drop
  // its last reference on a thread that never held it.
  if (Py_IsInitialized() && !H20PY_IS_FINALIZING() && PyGILState_Check()) {
    py::gil_scoped_release nogil;
    fn(arg);
  } else {
    fn(arg);
  }
}

}  // namespace h20py
