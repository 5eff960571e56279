// array.cpp - h20.Array and the array functions of the module: empty, zeros, asarray,
// from_dlpack; copies to and from the host; DLPack in both directions.
//
// Arrays are always dense and C-contiguous (a slice is a contiguous range of its parent), so a
// pointer, a shape and a type describe them; strides are reported for the protocols. Host data
// is read through DLPack (kDLCPU) or the buffer protocol, made contiguous and converted to the
// requested type on the host, then copied with h20MemcpyAsync on the current stream, which is
// synchronised before the call returns. Device memory is freed (h20Free, which waits for the
// device's pending work) when the last array and the last DLPack capsule using it are gone.
#include "array.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "runtime.hpp"

namespace h20py {

namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kCapsuleVersionedName = "dltensor_versioned";
constexpr const char* kUsedCapsuleName = "used_dltensor";
constexpr const char* kUsedCapsuleVersionedName = "used_dltensor_versioned";

[[noreturn]] void bufferError(const std::string& message) {
  PyErr_SetString(PyExc_BufferError, message.c_str());
  throw py::error_already_set();
}

std::string shapeString(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

// Elements of a shape, refusing negative extents and totals that do not fit in memory.
std::int64_t checkedSize(const std::vector<std::int64_t>& shape, int itemsize, const char* what) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0)
      valueError(std::string(what) + ": negative dimension in shape " + shapeString(shape));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / itemsize / d)
      valueError(std::string(what) + ": shape " + shapeString(shape) + " is too large");
    n *= d;
  }
  return n;
}

// A shape argument: an int or a sequence of ints. `inferable`: one entry may be -1 (reshape).
std::vector<std::int64_t> parseShape(py::handle obj, const char* what, bool inferable = false) {
  std::vector<std::int64_t> shape;
  if (PyIndex_Check(obj.ptr())) {
    shape.push_back(intArg(obj, what));
  } else if (py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj)) {
    for (py::handle d : py::reinterpret_borrow<py::sequence>(obj))
      shape.push_back(intArg(d, what));
  } else {
    typeError(std::string(what) + ": shape must be an int or a sequence of ints, got " +
              py::repr(obj).cast<std::string>());
  }
  if (!inferable) checkedSize(shape, 8, what);
  return shape;
}

std::vector<std::int64_t> contiguousStrides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

// ---- host element conversion ---------------------------------------------------------------

float bf16ToFloat(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint16_t floatToBf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<std::uint16_t>(u >> 16);
}

float halfToFloat(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      u = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint16_t floatToHalf(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (absu >= 0x477ff000u) return sign | 0x7c00u;  // overflow (rounds to inf) or inf
  if (absu < 0x38800000u) {                        // subnormal or zero in half
    const float a = std::fabs(f) * 16777216.0f;    // 2^24: units of the smallest subnormal
    return sign | static_cast<std::uint16_t>(std::nearbyint(a));
  }
  std::uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);  // round to nearest even
  return sign | static_cast<std::uint16_t>((r - 0x38000000u) >> 13);
}

double loadAsDouble(const void* p, DType t, std::size_t i) {
  switch (t) {
    case DType::kFloat16:
      return halfToFloat(static_cast<const std::uint16_t*>(p)[i]);
    case DType::kBFloat16:
      return bf16ToFloat(static_cast<const std::uint16_t*>(p)[i]);
    case DType::kFloat32:
      return static_cast<const float*>(p)[i];
    case DType::kFloat64:
      return static_cast<const double*>(p)[i];
    case DType::kInt8:
      return static_cast<const std::int8_t*>(p)[i];
    case DType::kInt16:
      return static_cast<const std::int16_t*>(p)[i];
    case DType::kInt32:
      return static_cast<const std::int32_t*>(p)[i];
    case DType::kInt64:
      return static_cast<double>(static_cast<const std::int64_t*>(p)[i]);
    case DType::kUInt8:
      return static_cast<const std::uint8_t*>(p)[i];
    case DType::kUInt16:
      return static_cast<const std::uint16_t*>(p)[i];
    case DType::kBool:
      return static_cast<const std::uint8_t*>(p)[i] != 0;
  }
  return 0;
}

template <typename T>
T toInt(double v) {
  // Truncation toward zero, as NumPy's astype; out-of-range values saturate instead of being UB.
  if (std::isnan(v)) return 0;
  if (v <= static_cast<double>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

void storeFromDouble(void* p, DType t, std::size_t i, double v) {
  switch (t) {
    case DType::kFloat16:
      static_cast<std::uint16_t*>(p)[i] = floatToHalf(static_cast<float>(v));
      break;
    case DType::kBFloat16:
      static_cast<std::uint16_t*>(p)[i] = floatToBf16(static_cast<float>(v));
      break;
    case DType::kFloat32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case DType::kFloat64:
      static_cast<double*>(p)[i] = v;
      break;
    case DType::kInt8:
      static_cast<std::int8_t*>(p)[i] = toInt<std::int8_t>(v);
      break;
    case DType::kInt16:
      static_cast<std::int16_t*>(p)[i] = toInt<std::int16_t>(v);
      break;
    case DType::kInt32:
      static_cast<std::int32_t*>(p)[i] = toInt<std::int32_t>(v);
      break;
    case DType::kInt64:
      static_cast<std::int64_t*>(p)[i] = toInt<std::int64_t>(v);
      break;
    case DType::kUInt8:
      static_cast<std::uint8_t*>(p)[i] = toInt<std::uint8_t>(v);
      break;
    case DType::kUInt16:
      static_cast<std::uint16_t*>(p)[i] = toInt<std::uint16_t>(v);
      break;
    case DType::kBool:
      static_cast<std::uint8_t*>(p)[i] = v != 0;
      break;
  }
}

// Converts n elements; int64 to int64 and same-type copies never go through double.
void convertHost(const void* src, DType s, void* dst, DType d, std::size_t n) {
  if (s == d) {
    std::memcpy(dst, src, n * info(s).itemsize);
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    storeFromDouble(dst, d, i, loadAsDouble(src, s, i));
}

// Host memory that frees itself.
struct HostBuffer {
  void* p = nullptr;
  explicit HostBuffer(std::size_t bytes) {
    p = std::aligned_alloc(64, std::max<std::size_t>((bytes + 63) / 64 * 64, 64));
    if (p == nullptr) throw std::bad_alloc();
  }
  ~HostBuffer() { std::free(p); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
};

// ---- copies --------------------------------------------------------------------------------

// The stream a copy of `device`'s memory runs on: the current stream if it belongs to that
// device, else NULL, the legacy stream of the device the caller makes current.
h20Stream_t copyStreamFor(int device) {
  const StreamRef s = currentStream();
  return s.handle != nullptr && s.device == device ? s.handle : nullptr;
}

void memcpySync(void* dst, const void* src, std::size_t bytes, h20MemcpyKind kind, int device) {
  if (bytes == 0) return;
  h20Stream_t s = copyStreamFor(device);
  DeviceGuard guard(device);
  callNoGil("h20MemcpyAsync", [&] {
    h20Error_t e = h20MemcpyAsync(dst, src, bytes, kind, s);
    return e != h20Success ? e : h20StreamSynchronize(s);
  });
}

// ---- views of other objects' data ----------------------------------------------------------

// Data found in a Python object: on the host (to be copied) or in device memory.
struct Source {
  const void* data = nullptr;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> byteStrides;  // empty: C-contiguous
  DType dtype = DType::kFloat32;
  bool onDevice = false;
  int device = -1;
  bool readOnly = false;  // a DLPack producer flagged the data read-only
  // Keeps the data alive while it is read: a buffer view, a capsule's tensor, an array.
  std::shared_ptr<void> keep;
  std::shared_ptr<Allocation> alloc;  // for device data of an h20.Array
};

bool isContiguous(const Source& s) {
  if (s.byteStrides.empty()) return true;
  std::int64_t expect = info(s.dtype).itemsize;
  for (std::size_t i = s.shape.size(); i-- > 0;) {
    if (s.shape[i] != 1 && s.byteStrides[i] != expect) return false;
    expect *= s.shape[i];
  }
  return true;
}

// Copies a strided host tensor into dense C order.
void gather(const Source& s, void* dst) {
  const int item = info(s.dtype).itemsize;
  const std::size_t nd = s.shape.size();
  const std::int64_t n = checkedSize(s.shape, item, "asarray");
  if (n == 0) return;
  std::vector<std::int64_t> idx(nd, 0);
  char* out = static_cast<char*>(dst);
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < nd; ++d)
      off += idx[d] * s.byteStrides[d];
    std::memcpy(out + k * item, static_cast<const char*>(s.data) + off, item);
    for (std::size_t d = nd; d-- > 0;) {
      if (++idx[d] < s.shape[d]) break;
      idx[d] = 0;
    }
  }
}

// A DLPack tensor taken from a capsule; the capsule is marked used and the tensor released (its
// deleter called) when the last holder of the returned pointer lets go.
struct ImportedTensor {
  dl::Tensor* tensor = nullptr;
  dl::ManagedTensor* legacy = nullptr;
  dl::ManagedTensorVersioned* versioned = nullptr;
  bool readOnly = false;
};

ImportedTensor takeCapsule(py::handle capsule) {
  ImportedTensor t;
  PyObject* c = capsule.ptr();
  if (PyCapsule_IsValid(c, kCapsuleVersionedName)) {
    auto* m =
        static_cast<dl::ManagedTensorVersioned*>(PyCapsule_GetPointer(c, kCapsuleVersionedName));
    if (m->version.major > dl::kMajorVersion)
      bufferError("from_dlpack: DLPack version " + std::to_string(m->version.major) + "." +
                  std::to_string(m->version.minor) + " is newer than this module supports (1.x)");
    PyCapsule_SetName(c, kUsedCapsuleVersionedName);
    t.versioned = m;
    t.tensor = &m->dl_tensor;
    t.readOnly = (m->flags & dl::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(c, kCapsuleName)) {
    auto* m = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(c, kCapsuleName));
    PyCapsule_SetName(c, kUsedCapsuleName);
    t.legacy = m;
    t.tensor = &m->dl_tensor;
  } else {
    typeError("from_dlpack: expected a DLPack capsule ('dltensor' or 'dltensor_versioned'), got " +
              py::repr(capsule).cast<std::string>());
  }
  return t;
}

void releaseImported(dl::ManagedTensor* legacy, dl::ManagedTensorVersioned* versioned) {
  if (legacy != nullptr && legacy->deleter != nullptr) legacy->deleter(legacy);
  if (versioned != nullptr && versioned->deleter != nullptr) versioned->deleter(versioned);
}

// Asks an object for its DLPack capsule, offering version 1 where the producer understands it.
py::object callDlpack(py::handle obj) {
  py::object fn = obj.attr("__dlpack__");
  try {
    return fn(py::arg("max_version") = py::make_tuple(dl::kMajorVersion, dl::kMinorVersion));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
  }
  return fn();  // a producer from before DLPack 1.0 (NumPy < 2, PyTorch < 2.2)
}

Source sourceFromDLPack(const ImportedTensor& imp, const char* what) {
  const dl::Tensor& t = *imp.tensor;
  Source s;
  auto legacy = imp.legacy;
  auto versioned = imp.versioned;
  // The deleter runs once nothing reads the tensor any more (a non-null pointer, so that the
  // holder tests true).
  s.keep = std::shared_ptr<void>(static_cast<void*>(imp.tensor), [legacy, versioned](void*) {
    releaseImported(legacy, versioned);
  });
  if (t.dtype.lanes != 1 || !fromDLPack(t.dtype.code, t.dtype.bits, &s.dtype))
    typeError(std::string(what) + ": unsupported DLPack element type (code " +
              std::to_string(t.dtype.code) + ", " + std::to_string(t.dtype.bits) + " bits, " +
              std::to_string(t.dtype.lanes) + " lanes)");
  if (t.ndim < 0) valueError(std::string(what) + ": DLPack tensor with negative ndim");
  s.shape.assign(t.shape, t.shape + t.ndim);
  const std::int64_t n = checkedSize(s.shape, info(s.dtype).itemsize, what);
  if (t.strides != nullptr) {
    for (int i = 0; i < t.ndim; ++i) {
      std::int64_t bytes;
      if (__builtin_mul_overflow(t.strides[i], info(s.dtype).itemsize, &bytes))
        valueError(std::string(what) + ": DLPack stride " + std::to_string(t.strides[i]) +
                   " overflows");
      s.byteStrides.push_back(bytes);
    }
  }
  s.data = static_cast<const char*>(t.data) + t.byte_offset;
  s.readOnly = imp.readOnly;
  if (t.device.device_type == dl::kCPU) {
    s.onDevice = false;
  } else if (t.device.device_type == dl::kExtDev) {
    // Device data is used in place or copied as one range: it must be dense, on a visible
    // device, and lie inside one live allocation of that device (ask the runtime whose it is).
    const int id = t.device.device_id;
    if (id < 0 || id >= deviceCount())
      bufferError(std::string(what) + ": kDLExtDev tensor of device " + std::to_string(id) +
                  ", which is not a visible H20 device");
    if (!isContiguous(s))
      bufferError(std::string(what) + ": kDLExtDev tensor is not contiguous (device data is " +
                  "used as one range)");
    const std::size_t bytes = static_cast<std::size_t>(n) * info(s.dtype).itemsize;
    if (bytes != 0) {
      h20PointerAttributes attr{};
      void* base = nullptr;
      std::size_t size = 0;
      const bool inAllocation =
          h20PointerGetAttributes(&attr, s.data) == h20Success &&
          attr.type == h20MemoryTypeDevice && attr.device == id &&
          h20MemGetAddressRange(&base, &size, s.data) == h20Success &&
          bytes <= size - static_cast<std::size_t>(static_cast<const char*>(s.data) -
                                                   static_cast<const char*>(base));
      if (!inAllocation) {
        h20GetLastError();
        bufferError(std::string(what) + ": kDLExtDev tensor of " + std::to_string(bytes) +
                    " bytes at " + std::to_string(reinterpret_cast<std::uintptr_t>(s.data)) +
                    " is not inside an allocation of H20 device " + std::to_string(id));
      }
    }
    s.onDevice = true;
    s.device = id;
  } else {
    bufferError(std::string(what) + ": DLPack device type " + std::to_string(t.device.device_type) +
                " is neither the host (kDLCPU) nor an H20 device (kDLExtDev)");
  }
  return s;
}

Source sourceFromBuffer(py::handle obj, const char* what) {
  auto view = std::make_shared<Py_buffer>();
  if (PyObject_GetBuffer(obj.ptr(), view.get(), PyBUF_RECORDS_RO) != 0)
    throw py::error_already_set();
  std::shared_ptr<Py_buffer> keep(view.get(), [view](Py_buffer* b) { PyBuffer_Release(b); });
  Source s;
  s.keep = keep;
  const std::string format = view->format != nullptr ? view->format : "B";
  if (!fromBufferFormat(format, static_cast<std::size_t>(view->itemsize), &s.dtype))
    typeError(std::string(what) + ": unsupported buffer format '" + format + "'");
  s.data = view->buf;
  s.shape.assign(view->shape, view->shape + view->ndim);
  if (view->strides != nullptr) s.byteStrides.assign(view->strides, view->strides + view->ndim);
  return s;
}

Source sourceOfArray(const Array& a) {
  Source s;
  s.data = a.data();
  s.shape = a.shape;
  s.dtype = a.dtype;
  s.onDevice = true;
  s.device = a.device();
  s.alloc = a.alloc;
  return s;
}

Source sourceOf(py::handle obj, const char* what) {
  if (isArray(obj)) return sourceOfArray(obj.cast<const Array&>());
  if (PyCapsule_CheckExact(obj.ptr())) return sourceFromDLPack(takeCapsule(obj), what);
  if (py::hasattr(obj, "__dlpack__")) {
    try {
      py::object cap = callDlpack(obj);
      return sourceFromDLPack(takeCapsule(cap), what);
    } catch (py::error_already_set& e) {
      // NumPy refuses to export read-only arrays through DLPack; the buffer protocol reads them.
      if (!e.matches(PyExc_BufferError) || !PyObject_CheckBuffer(obj.ptr())) throw;
    }
  }
  if (PyObject_CheckBuffer(obj.ptr())) return sourceFromBuffer(obj, what);
  // Scalars and (nested) lists: through NumPy.
  py::object np = py::module_::import("numpy");
  py::object arr = np.attr("ascontiguousarray")(obj);
  if (py::str(arr.attr("dtype").attr("kind")).cast<std::string>() == "O")
    typeError(std::string(what) + ": cannot convert " + py::repr(obj).cast<std::string>() +
              " to an array");
  Source s = sourceFromBuffer(arr, what);
  // The NumPy array must outlive the buffer view (which references it anyway).
  return s;
}

// An array over device data found in place: an h20.Array's allocation, or another producer's
// tensor held until the array's last user is gone.
Array wrapDevice(const Source& s) {
  Array a;
  a.shape = s.shape;
  a.dtype = s.dtype;
  if (s.alloc) {
    a.alloc = s.alloc;
    a.offset = static_cast<const char*>(s.data) - static_cast<char*>(s.alloc->ptr);
    return a;
  }
  auto alloc = std::make_shared<Allocation>();
  alloc->ptr = const_cast<void*>(s.data);
  alloc->bytes = a.nbytes();
  alloc->device = s.device;
  alloc->external = s.keep;
  a.alloc = std::move(alloc);
  return a;
}

// Copies a source (host or device) into a new array on `device`, converting to `dtype`.
Array copyIn(const Source& s, int device, DType dtype, const char* what) {
  const std::int64_t n =
      checkedSize(s.shape, std::max(info(s.dtype).itemsize, info(dtype).itemsize), what);
  Array out = emptyArray(s.shape, dtype, device);
  if (n == 0) return out;
  // Device sources are dense (sourceFromDLPack refuses others).
  if (s.onDevice && s.dtype == dtype) {
    if (s.device == device) {
      const h20Stream_t cs = copyStreamFor(device);
      DeviceGuard guard(device);
      check(h20MemcpyAsync(out.data(), s.data, out.nbytes(), h20MemcpyDeviceToDevice, cs),
            "h20MemcpyAsync");
    } else {
      const h20Stream_t st = copyStreamFor(device);
      DeviceGuard guard(device);
      void* dst = out.data();
      const void* src = s.data;
      const std::size_t bytes = out.nbytes();
      const int srcDevice = s.device;
      callNoGil("h20MemcpyPeerAsync", [&] {
        h20Error_t e = h20MemcpyPeerAsync(dst, device, src, srcDevice, bytes, st);
        return e != h20Success ? e : h20StreamSynchronize(st);
      });
    }
    return out;
  }
  const void* host = s.data;
  std::unique_ptr<HostBuffer> staged, dense;
  if (s.onDevice) {
    // A type conversion of device data goes through the host.
    staged = std::make_unique<HostBuffer>(n * info(s.dtype).itemsize);
    memcpySync(staged->p, s.data, n * info(s.dtype).itemsize, h20MemcpyDeviceToHost, s.device);
    host = staged->p;
  } else if (!isContiguous(s)) {
    dense = std::make_unique<HostBuffer>(n * info(s.dtype).itemsize);
    gather(s, dense->p);
    host = dense->p;
  }
  if (s.dtype != dtype) {
    auto converted = std::make_unique<HostBuffer>(out.nbytes());
    convertHost(host, s.dtype, converted->p, dtype, static_cast<std::size_t>(n));
    memcpySync(out.data(), converted->p, out.nbytes(), h20MemcpyHostToDevice, device);
  } else {
    memcpySync(out.data(), host, out.nbytes(), h20MemcpyHostToDevice, device);
  }
  return out;
}

// ---- DLPack export -------------------------------------------------------------------------

// What an exported capsule owns: the allocation (or a host copy), shape and strides.
struct ExportContext {
  std::shared_ptr<Allocation> alloc;
  std::unique_ptr<HostBuffer> host;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
};

template <typename Managed>
void deleteManaged(Managed* m) noexcept {
  // Runs wherever the consumer lets go, with or without the GIL: touches no Python object.
  delete static_cast<ExportContext*>(m->manager_ctx);
  delete m;
}

void capsuleDestructor(PyObject* capsule) noexcept {
  // A capsule never consumed still owns its tensor.
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  if (PyCapsule_IsValid(capsule, kCapsuleName)) {
    auto* m = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
    if (m != nullptr && m->deleter != nullptr) m->deleter(m);
  } else if (PyCapsule_IsValid(capsule, kCapsuleVersionedName)) {
    auto* m = static_cast<dl::ManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule, kCapsuleVersionedName));
    if (m != nullptr && m->deleter != nullptr) m->deleter(m);
  }
  PyErr_Restore(type, value, traceback);
}

void fillTensor(dl::Tensor* t, const Array& a, ExportContext* ctx, void* data, dl::Device dev) {
  t->data = data;
  t->device = dev;
  t->ndim = static_cast<std::int32_t>(a.shape.size());
  t->dtype =
      dl::DataType{info(a.dtype).dlCode, static_cast<std::uint8_t>(info(a.dtype).itemsize * 8), 1};
  t->shape = ctx->shape.data();
  t->strides = ctx->strides.data();
  t->byte_offset = 0;
}

py::object exportDlpack(const Array& a, py::handle stream, py::handle maxVersion,
                        py::handle dlDevice, py::handle copyArg) {
  bool versioned = false;
  if (!maxVersion.is_none()) {
    if (!py::isinstance<py::tuple>(maxVersion) || py::len(maxVersion) != 2)
      typeError("__dlpack__: max_version must be a (major, minor) tuple");
    versioned = intArg(maxVersion[py::int_(0)], "__dlpack__: max_version") >= 1;
  }
  std::optional<bool> copy;
  if (!copyArg.is_none()) copy = copyArg.cast<bool>();
  bool toHost = false;
  if (!dlDevice.is_none()) {
    if (!py::isinstance<py::tuple>(dlDevice) || py::len(dlDevice) != 2)
      typeError("__dlpack__: dl_device must be a (device_type, device_id) tuple");
    const std::int64_t type = intArg(dlDevice[py::int_(0)], "__dlpack__: dl_device"),
                       id = intArg(dlDevice[py::int_(1)], "__dlpack__: dl_device");
    if (type == dl::kCPU) {
      toHost = true;
    } else if (type != dl::kExtDev || id != a.device()) {
      bufferError("__dlpack__: cannot export an array of H20 device " + std::to_string(a.device()) +
                  " to DLPack device (" + std::to_string(type) + ", " + std::to_string(id) +
                  "); supported: (kDLExtDev=12, " + std::to_string(a.device()) +
                  ") and the host (kDLCPU=1, 0)");
    }
  }
  if (toHost && copy.has_value() && !*copy)
    bufferError("__dlpack__: a host tensor of device memory needs a copy, but copy=False");
  const bool copied = toHost || (copy.has_value() && *copy);

  auto ctx = std::make_unique<ExportContext>();
  ctx->shape = a.shape;
  ctx->strides = contiguousStrides(a.shape);
  void* data = nullptr;
  dl::Device dev{dl::kExtDev, a.device()};
  if (toHost) {
    ctx->host = std::make_unique<HostBuffer>(a.nbytes());
    memcpySync(ctx->host->p, a.data(), a.nbytes(), h20MemcpyDeviceToHost, a.device());
    data = ctx->host->p;
    dev = dl::Device{dl::kCPU, 0};
  } else {
    Array src = a;
    if (copied) src = copyIn(sourceOfArray(a), a.device(), a.dtype, "__dlpack__");
    ctx->alloc = src.alloc;
    data = src.data();
    // The consumer reads on its stream: make that stream (an int handle) wait for the work of
    // the current one, or (None) finish the current stream's work first; -1 asks for nothing.
    if (stream.is_none()) {
      const h20Stream_t st = copyStreamFor(a.device());
      DeviceGuard guard(a.device());
      callNoGil("h20StreamSynchronize", [st] { return h20StreamSynchronize(st); });
    } else if (!(PyIndex_Check(stream.ptr()) && intArg(stream, "__dlpack__: stream") == -1)) {
      const StreamRef consumer = streamArg(stream, "__dlpack__: stream");
      const h20Stream_t producer = copyStreamFor(a.device());
      DeviceGuard guard(a.device());
      h20Event_t ev = nullptr;
      check(h20EventCreateWithFlags(&ev, h20EventDisableTiming), "h20EventCreateWithFlags");
      h20Error_t e = h20EventRecord(ev, producer);
      if (e == h20Success) e = h20StreamWaitEvent(consumer.handle, ev, 0);
      const std::string msg = e != h20Success ? lastMessage(Lib::kRuntime) : "";
      h20EventDestroy(ev);
      if (e != h20Success) raiseError(e, "__dlpack__", msg);
    }
  }

  ExportContext* raw = ctx.release();
  PyObject* capsule = nullptr;
  if (versioned) {
    auto* m = new dl::ManagedTensorVersioned{};
    m->version = dl::Version{dl::kMajorVersion, dl::kMinorVersion};
    m->manager_ctx = raw;
    m->deleter = &deleteManaged<dl::ManagedTensorVersioned>;
    m->flags = copied ? dl::kFlagIsCopied : 0;
    fillTensor(&m->dl_tensor, a, raw, data, dev);
    capsule = PyCapsule_New(m, kCapsuleVersionedName, &capsuleDestructor);
    if (capsule == nullptr) {
      deleteManaged(m);
      throw py::error_already_set();
    }
  } else {
    auto* m = new dl::ManagedTensor{};
    m->manager_ctx = raw;
    m->deleter = &deleteManaged<dl::ManagedTensor>;
    fillTensor(&m->dl_tensor, a, raw, data, dev);
    capsule = PyCapsule_New(m, kCapsuleName, &capsuleDestructor);
    if (capsule == nullptr) {
      deleteManaged(m);
      throw py::error_already_set();
    }
  }
  return py::reinterpret_steal<py::object>(capsule);
}

// ---- indexing ------------------------------------------------------------------------------

// a[idx] for ints and step-1 slices whose result is a contiguous range of the array: axes that
// select one element each, then one axis that selects a range, then whole axes.
Array index(const Array& a, py::handle idx) {
  std::vector<py::object> items;
  if (py::isinstance<py::tuple>(idx)) {
    for (py::handle h : py::reinterpret_borrow<py::tuple>(idx))
      items.push_back(py::reinterpret_borrow<py::object>(h));
  } else {
    items.push_back(py::reinterpret_borrow<py::object>(idx));
  }
  if (items.size() > a.shape.size())
    throw py::index_error("too many indices: " + std::to_string(items.size()) +
                          " for an array of " + std::to_string(a.shape.size()) + " dimensions");
  const auto strides = contiguousStrides(a.shape);
  const int item = info(a.dtype).itemsize;
  Array r = a;
  r.shape.clear();
  std::int64_t offset = 0;
  // Once an axis selected more than one element, every later axis must be taken whole, or the
  // elements are not one contiguous range (a[:, 0] of a (3, 4) array is a column). An empty
  // result is a range whatever the index.
  bool ranged = false, contiguous = true;
  for (std::size_t d = 0; d < a.shape.size(); ++d) {
    const std::int64_t n = a.shape[d];
    if (d >= items.size()) {
      r.shape.push_back(n);
      continue;
    }
    py::handle it = items[d];
    std::int64_t start = 0, len = 0;
    if (PyIndex_Check(it.ptr()) && !py::isinstance<py::bool_>(it)) {
      const Py_ssize_t i = PyNumber_AsSsize_t(it.ptr(), PyExc_IndexError);
      if (i == -1 && PyErr_Occurred()) throw py::error_already_set();
      start = i < 0 ? i + n : i;
      if (start < 0 || start >= n)
        throw py::index_error("index " + py::repr(it).cast<std::string>() +
                              " is out of bounds for axis " + std::to_string(d) + " with size " +
                              std::to_string(n));
      len = 1;
    } else if (PySlice_Check(it.ptr())) {
      Py_ssize_t sliceStart, stop, step;
      if (PySlice_Unpack(it.ptr(), &sliceStart, &stop, &step) != 0) throw py::error_already_set();
      len = PySlice_AdjustIndices(static_cast<Py_ssize_t>(n), &sliceStart, &stop, step);
      if (step != 1 && len > 1)
        throw py::index_error("only step-1 slices are supported (contiguous ranges)");
      start = sliceStart;
      r.shape.push_back(len);
    } else {
      throw py::index_error("unsupported index " + py::repr(it).cast<std::string>() +
                            " (ints and step-1 slices only)");
    }
    if (ranged && len != n) contiguous = false;
    if (len > 1) ranged = true;
    if (len > 0) offset += start * strides[d];
  }
  if (!contiguous && r.size() != 0)
    throw py::index_error(
        "only contiguous ranges can be taken: after an axis that selects a range, later axes "
        "must be whole (index " +
        py::repr(idx).cast<std::string>() + " of shape " + shapeString(a.shape) + ")");
  r.offset = a.offset + static_cast<std::size_t>(offset) * item;
  return r;
}

Array reshape(const Array& a, std::vector<std::int64_t> shape) {
  int inferred = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) valueError("reshape: only one dimension can be -1");
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      valueError("reshape: negative dimension in " + shapeString(shape));
    } else if (__builtin_mul_overflow(known, shape[i], &known)) {
      valueError("reshape: shape " + shapeString(shape) + " is too large");
    }
  }
  if (inferred >= 0) {
    if (known == 0 || a.size() % known != 0)
      valueError("reshape: cannot reshape an array of " + std::to_string(a.size()) +
                 " elements into " + shapeString(shape));
    shape[inferred] = a.size() / known;
  }
  if (checkedSize(shape, info(a.dtype).itemsize, "reshape") != a.size())
    valueError("reshape: cannot reshape an array of " + std::to_string(a.size()) +
               " elements into " + shapeString(shape));
  Array r = a;
  r.shape = std::move(shape);
  return r;
}

std::vector<std::int64_t> shapeArgs(py::args args, const char* what) {
  if (args.size() == 1) return parseShape(args[0], what, true);
  return parseShape(args, what, true);
}

}  // namespace

// ---- public helpers ------------------------------------------------------------------------

Allocation::~Allocation() {
  // Another producer's memory: `external` releases it when this object's members go.
  if (external || ptr == nullptr) return;
  countDeviceObject(device, -1);
  // h20Free waits for the device's pending work: without the GIL, so other threads run. Errors
  // (a runtime already shut down at exit) cannot be reported from a destructor.
  releaseGilAndRun([](void* p) { h20Free(p); }, ptr);
}

std::int64_t Array::size() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape)
    n *= d;
  return n;
}

Array emptyArray(const std::vector<std::int64_t>& shape, DType dtype, int device) {
  const std::int64_t n = checkedSize(shape, info(dtype).itemsize, "empty");
  auto alloc = std::make_shared<Allocation>();
  alloc->device = device;
  alloc->bytes = static_cast<std::size_t>(n) * info(dtype).itemsize;
  if (alloc->bytes > 0) {
    DeviceGuard guard(device);
    void* p = nullptr;
    const std::size_t bytes = alloc->bytes;
    callNoGil("h20Malloc", [&] { return h20Malloc(&p, bytes); });
    alloc->ptr = p;
    countDeviceObject(device, 1);
  }
  Array a;
  a.alloc = std::move(alloc);
  a.shape = shape;
  a.dtype = dtype;
  return a;
}

bool isArray(py::handle obj) {
  return py::isinstance<Array>(obj);
}

py::tuple shapeTuple(const std::vector<std::int64_t>& shape) {
  py::tuple t(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i)
    t[i] = py::int_(shape[i]);
  return t;
}

Desc describe(py::handle obj, const char* what) {
  Desc d;
  if (isArray(obj)) {
    const Array& a = obj.cast<const Array&>();
    d.shape = a.shape;
    d.dtype = a.dtype;
    d.onDevice = true;
    d.device = a.device();
    return d;
  }
  py::object src = py::reinterpret_borrow<py::object>(obj);
  if (!py::hasattr(src, "shape") || !py::hasattr(src, "dtype"))
    src = py::module_::import("numpy").attr("asarray")(obj);
  for (py::handle s : src.attr("shape"))
    d.shape.push_back(intArg(s, what));
  d.dtype = parseDType(src.attr("dtype"), what);
  return d;
}

Array toArray(py::handle obj, int device, std::optional<DType> dtype, const char* what) {
  if (isArray(obj)) {
    const Array& a = obj.cast<const Array&>();
    if (a.device() == device && (!dtype || *dtype == a.dtype)) return a;
  }
  Source s = sourceOf(obj, what);
  return copyIn(s, device, dtype.value_or(s.dtype), what);
}

py::object toNumpy(const Array& a) {
  const DTypeInfo& ti = info(a.dtype);
  if (ti.numpyChar[0] == '\0')
    typeError(std::string("numpy: NumPy has no ") + ti.name +
              " type; use a.view(h20.uint16).numpy() " +
              "for the raw bits, h20.asarray(a, dtype=h20.float32).numpy() for the values, or " +
              "h20.to_torch(a)");
  py::array out(py::dtype(std::string(ti.numpyChar)), a.shape);
  memcpySync(out.mutable_data(), a.data(), a.nbytes(), h20MemcpyDeviceToHost, a.device());
  return out;
}

void initArray(py::module_& m) {
  py::enum_<DType> dtype(m, "dtype", "Element types of h20 arrays.");
  for (int i = 0; i < kNumDTypes; ++i) {
    dtype.value(info(static_cast<DType>(i)).name, static_cast<DType>(i));
  }
  dtype.def_property_readonly("itemsize", [](DType t) { return info(t).itemsize; });
  // py::enum_ already defines name, __repr__ and __str__ (and def() would only add overloads
  // after them): replace them, so that a dtype prints as h20.float32 and its name is NumPy's.
  py::object property = py::module_::import("builtins").attr("property");
  py::setattr(dtype, "name",
              property(py::cpp_function([](DType t) { return std::string(info(t).name); })));
  py::setattr(dtype, "__repr__",
              py::cpp_function([](DType t) { return std::string("h20.") + info(t).name; },
                               py::is_method(dtype)));
  py::setattr(
      dtype, "__str__",
      py::cpp_function([](DType t) { return std::string(info(t).name); }, py::is_method(dtype)));
  for (int i = 0; i < kNumDTypes; ++i) {
    const auto t = static_cast<DType>(i);
    m.attr(info(t).name) = py::cast(t);
  }

  py::class_<Array>(m, "Array",
                    "A dense, C-contiguous array in one H20 device's memory. Make one with "
                    "h20.empty, h20.zeros, h20.asarray or h20.from_dlpack.")
      .def_property_readonly("shape", [](const Array& a) { return shapeTuple(a.shape); })
      .def_property_readonly("dtype", [](const Array& a) { return a.dtype; })
      .def_property_readonly(
          "strides",
          [](const Array& a) {
            auto s = contiguousStrides(a.shape);
            for (auto& x : s)
              x *= info(a.dtype).itemsize;
            return shapeTuple(s);
          },
          "Bytes between consecutive elements of each axis, as NumPy reports them.")
      .def_property_readonly("device", [](const Array& a) { return Device{a.device()}; })
      .def_property_readonly("ndim", [](const Array& a) { return a.shape.size(); })
      .def_property_readonly("size", &Array::size)
      .def_property_readonly("nbytes", &Array::nbytes)
      .def_property_readonly("itemsize", [](const Array& a) { return info(a.dtype).itemsize; })
      .def_property_readonly(
          "data_ptr", [](const Array& a) { return reinterpret_cast<std::uintptr_t>(a.data()); },
          "The device address of the first element, as an int.")
      .def("__len__",
           [](const Array& a) {
             if (a.shape.empty()) typeError("len() of a 0-d array");
             return a.shape[0];
           })
      .def("__getitem__", &index)
      .def(
          "reshape",
          [](const Array& a, py::args shape) { return reshape(a, shapeArgs(shape, "reshape")); },
          "The same memory with another shape (one entry may be -1).")
      .def(
          "view",
          [](const Array& a, py::handle dt) {
            const DType t = parseDType(dt, "view");
            if (info(t).itemsize != info(a.dtype).itemsize)
              valueError(std::string("view: ") + info(t).name + " has another item size than " +
                         info(a.dtype).name);
            Array r = a;
            r.dtype = t;
            return r;
          },
          py::arg("dtype"), "The same bytes read as another type of the same size.")
      .def("copy_to_host", &toNumpy,
           "A NumPy copy of the array (synchronous). bfloat16 arrays: see numpy().")
      .def("numpy", &toNumpy,
           "A NumPy copy of the array (synchronous). NumPy has no bfloat16: for a bfloat16 array "
           "this raises TypeError; a.view(h20.uint16).numpy() gives the raw bits.")
      .def(
          "__array__",
          [](const Array& a, py::handle dt, py::handle copy) {
            // Device data always reaches NumPy as a copy: NumPy 2's copy=False cannot be met.
            if (!copy.is_none() && !PyObject_IsTrue(copy.ptr()))
              valueError("__array__: an h20 array is in device memory; copy=False is impossible");
            py::object r = toNumpy(a);
            return dt.is_none() ? r : r.attr("astype")(dt);
          },
          py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def(
          "copy",
          [](const Array& a) { return copyIn(sourceOfArray(a), a.device(), a.dtype, "copy"); },
          "A new array with a copy of the data, on the same device (ordered on the current "
          "stream).")
      .def(
          "to",
          [](py::object self, py::handle device) -> py::object {
            const Array& a = self.cast<const Array&>();
            const int d = deviceArg(device, "to");
            if (d == a.device()) return self;
            return py::cast(toArray(self, d, std::nullopt, "to"));
          },
          py::arg("device"), "The array on another device (a copy), or itself.")
      .def(
          "copy_from",
          [](Array& a, py::handle src) {
            Source s = sourceOf(src, "copy_from");
            if (s.shape != a.shape)
              valueError("copy_from: source shape " + shapeString(s.shape) +
                         " does not match the array's " + shapeString(a.shape));
            Array tmp = copyIn(s, a.device(), a.dtype, "copy_from");
            const h20Stream_t cs = copyStreamFor(a.device());
            DeviceGuard guard(a.device());
            check(h20MemcpyAsync(a.data(), tmp.data(), a.nbytes(), h20MemcpyDeviceToDevice, cs),
                  "h20MemcpyAsync");
          },
          py::arg("source"),
          "Copies `source` (same shape; any array-like) into this array, converting its type.")
      .def(
          "__dlpack__",
          [](const Array& a, py::handle stream, py::handle maxVersion, py::handle dlDevice,
             py::handle copy) { return exportDlpack(a, stream, maxVersion, dlDevice, copy); },
          py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
          py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
          "DLPack capsule of the array (Python array API protocol). The tensor is on "
          "(kDLExtDev, device); dl_device=(kDLCPU, 0) asks for a host copy, copy=True for a copy "
          "in any case. stream: None finishes the current stream's work first; an h20 stream "
          "handle makes that stream wait for it; -1 neither.")
      .def("__dlpack_device__",
           [](const Array& a) { return py::make_tuple(dl::kExtDev, a.device()); })
      .def("__repr__", [](const Array& a) {
        return "h20.Array(shape=" + shapeString(a.shape) + ", dtype=" + info(a.dtype).name +
               ", device=" + std::to_string(a.device()) + ")";
      });

  m.attr("kDLCPU") = dl::kCPU;
  m.attr("kDLExtDev") = dl::kExtDev;

  m.def(
      "empty",
      [](py::handle shape, py::handle dt, py::handle device) {
        return emptyArray(parseShape(shape, "empty"), parseDType(dt, "empty"),
                          deviceArg(device, "empty"));
      },
      py::arg("shape"), py::arg("dtype") = DType::kFloat32, py::arg("device") = py::none(),
      "A new array with undefined contents on `device` (default: the current device).");
  m.def(
      "zeros",
      [](py::handle shape, py::handle dt, py::handle device) {
        Array a = emptyArray(parseShape(shape, "zeros"), parseDType(dt, "zeros"),
                             deviceArg(device, "zeros"));
        if (a.nbytes() > 0) {
          const h20Stream_t cs = copyStreamFor(a.device());
          DeviceGuard guard(a.device());
          check(h20MemsetAsync(a.data(), 0, a.nbytes(), cs), "h20MemsetAsync");
        }
        return a;
      },
      py::arg("shape"), py::arg("dtype") = DType::kFloat32, py::arg("device") = py::none(),
      "A new array of zeros (set on the current stream).");
  m.def(
      "asarray",
      [](py::handle obj, py::handle dt, py::handle device, py::handle copyArg) -> py::object {
        std::optional<DType> t;
        if (!dt.is_none()) t = parseDType(dt, "asarray");
        int dev;
        if (device.is_none() && isArray(obj))
          dev = obj.cast<const Array&>().device();
        else
          dev = deviceArg(device, "asarray");
        const bool forceCopy = !copyArg.is_none() && copyArg.cast<bool>();
        if (isArray(obj) && !forceCopy) {
          const Array& a = obj.cast<const Array&>();
          if (a.device() == dev && (!t || *t == a.dtype))
            return py::reinterpret_borrow<py::object>(obj);
        }
        if (!copyArg.is_none() && !copyArg.cast<bool>())
          valueError("asarray: copy=False, but the data must be copied to device " +
                     std::to_string(dev));
        Source s = sourceOf(obj, "asarray");
        return py::cast(copyIn(s, dev, t.value_or(s.dtype), "asarray"));
      },
      py::arg("obj"), py::arg("dtype") = py::none(), py::arg("device") = py::none(),
      py::arg("copy") = py::none(),
      "An h20 array of obj's data: obj itself when it is an h20.Array on `device` with that "
      "dtype (and copy is not True), else a copy from anything exporting DLPack or the buffer "
      "protocol (NumPy arrays, PyTorch CPU tensors, ...) or a nested list, converted to `dtype` "
      "on the host. Synchronous.");
  m.def(
      "from_dlpack",
      [](py::handle x, py::handle device, py::handle copyArg) -> py::object {
        std::optional<bool> copy;
        if (!copyArg.is_none()) copy = copyArg.cast<bool>();
        std::optional<int> dev;
        if (!device.is_none()) dev = deviceArg(device, "from_dlpack");
        if (isArray(x)) {
          const Array& a = x.cast<const Array&>();
          if ((!dev || *dev == a.device()) && !(copy && *copy))
            return py::reinterpret_borrow<py::object>(x);
        }
        Source s = sourceOf(x, "from_dlpack");
        const int target = dev ? *dev : (s.onDevice ? s.device : currentDevice());
        // h20 arrays are writable: data its producer marked read-only is copied.
        if (s.onDevice && s.device == target && !(copy && *copy) && !s.readOnly)
          return py::cast(wrapDevice(s));
        if (copy && !*copy)
          bufferError("from_dlpack: the data is " +
                      std::string(s.onDevice && s.device == target
                                      ? "read-only"
                                      : "not in device " + std::to_string(target) + "'s memory") +
                      ", and copy=False");
        return py::cast(copyIn(s, target, s.dtype, "from_dlpack"));
      },
      py::arg("x"), py::kw_only(), py::arg("device") = py::none(), py::arg("copy") = py::none(),
      "An h20 array from an object exporting DLPack (or a DLPack capsule). Data already in an "
      "H20 device's memory is used in place, and kept alive as long as the array uses it; host "
      "data is copied to `device` (default: the current device) unless copy=False.");
}

}  // namespace h20py
