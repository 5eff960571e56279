// dlpack.hpp - the DLPack data structures (https://dmlc.github.io/dlpack/latest/c_api.html),
// version 1.0, as the Python array interchange protocol exchanges them in capsules.
//
// Owns only the layout of the structs and the constants this module uses; the ABI is fixed by the
// DLPack specification. Written out here because Debian bookworm's libdlpack-dev is DLPack 0.6,
// which lacks the versioned structures of 1.0. Both capsules are described: the legacy one
// ("dltensor": DLManagedTensor) and the versioned one ("dltensor_versioned":
// DLManagedTensorVersioned, DLPack >= 1.0).
#pragma once

#include <cstdint>

namespace h20py::dl {

constexpr std::uint32_t kMajorVersion = 1;
constexpr std::uint32_t kMinorVersion = 0;

// DLDeviceType values used here.
constexpr std::int32_t kCPU = 1;
constexpr std::int32_t kCUDA = 2;
constexpr std::int32_t kExtDev = 12;  // "reserved extension device type": the H20 chips

// DLDataTypeCode values.
constexpr std::uint8_t kInt = 0;
constexpr std::uint8_t kUInt = 1;
constexpr std::uint8_t kFloat = 2;
constexpr std::uint8_t kBfloat = 4;
constexpr std::uint8_t kBool = 6;

// DLManagedTensorVersioned::flags
constexpr std::uint64_t kFlagReadOnly = 1ull << 0;
constexpr std::uint64_t kFlagIsCopied = 1ull << 1;

struct Version {
  std::uint32_t major;
  std::uint32_t minor;
};

struct Device {
  std::int32_t device_type;
  std::int32_t device_id;
};

struct DataType {
  std::uint8_t code;
  std::uint8_t bits;
  std::uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  std::int32_t ndim;
  DataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; NULL means C-contiguous
  std::uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

struct ManagedTensorVersioned {
  Version version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  std::uint64_t flags;
  Tensor dl_tensor;
};

}  // namespace h20py::dl
