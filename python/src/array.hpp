// array.hpp - h20.Array: a dense, C-contiguous tensor in one device's memory, and the
// conversions between it and host data (NumPy, PyTorch CPU tensors, anything exporting DLPack
// or the buffer protocol). Bound in array.cpp.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "common.hpp"
#include "dlpack.hpp"

namespace h20py {

// One device allocation, shared by every array viewing it and every DLPack capsule exported from
// them: the memory lives until the last of those is gone.
struct Allocation {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  int device = 0;
  // Set for memory imported without a copy from another DLPack producer: dropping it calls the
  // producer's deleter (and the memory is not freed here).
  std::shared_ptr<void> external;

  Allocation() = default;
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  ~Allocation();
};

struct Array {
  std::shared_ptr<Allocation> alloc;
  std::size_t offset = 0;  // bytes from alloc->ptr
  std::vector<std::int64_t> shape;
  DType dtype = DType::kFloat32;

  void* data() const { return static_cast<char*>(alloc->ptr) + offset; }
  int device() const { return alloc->device; }
  std::int64_t size() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(size()) * info(dtype).itemsize; }
};

// A new uninitialised array on `device` (h20Malloc).
Array emptyArray(const std::vector<std::int64_t>& shape, DType dtype, int device);

bool isArray(py::handle obj);

// The shape and element type of an array argument, read without copying anything: from an
// h20.Array, from `.shape` and `.dtype` (NumPy, PyTorch), else from numpy.asarray(obj).
struct Desc {
  std::vector<std::int64_t> shape;
  DType dtype = DType::kFloat32;
  bool onDevice = false;  // an h20.Array
  int device = -1;        // its device
};
Desc describe(py::handle obj, const char* what);

// The array for `obj` on `device`: obj itself if it is an h20.Array there with that type, else a
// copy (from the host, or from another device). dtype: convert to it on the way (on the host).
Array toArray(py::handle obj, int device, std::optional<DType> dtype, const char* what);

// Copies the array into a new NumPy array (synchronously, on the calling thread's current
// stream when it belongs to the array's device, else the device's legacy stream).
py::object toNumpy(const Array& a);

// Python-visible shape tuple.
py::tuple shapeTuple(const std::vector<std::int64_t>& shape);

}  // namespace h20py
