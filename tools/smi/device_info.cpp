// device_info.cpp - device snapshots and the --query-gpu field table of h20-smi.
//
// Field names follow nvidia-smi where it has the same quantity (index, name, pci.bus_id,
// memory.total, clocks.max.sm, compute_cap, driver_version, count), so scripts written for one
// work with the other after a rename of the tool; H20-only quantities (numa_node, workers,
// bandwidths) get names in the same style.
#include "device_info.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace h20::smi {

namespace {

// The runtime's detailed message already names the call and the offending value
// ("h20GetDeviceCount: no H20 device is visible ..."); the fixed description is the fallback.
std::string describe(std::string_view call, h20Error_t code) {
  const char* detail = h20GetLastErrorMessage();
  if (detail && *detail) return fmt::format("{} ({})", detail, h20GetErrorName(code));
  return fmt::format("{}: {} ({})", call, h20GetErrorString(code), h20GetErrorName(code));
}

constexpr double kMiB = 1024.0 * 1024.0;

std::string mib(std::size_t bytes) {
  return fmt::format("{}", static_cast<std::uint64_t>(bytes / (1024 * 1024)));
}

std::string yes_no(int v) {
  return v ? "Yes" : "No";
}

const std::array kFields = {
    Field{"index", "", "Index of the device as the runtime numbers it (after H20_VISIBLE_DEVICES).",
          [](const DeviceInfo& d, const Versions&) { return fmt::format("{}", d.index); }},
    Field{"name", "", "Product name of the device.",
          [](const DeviceInfo& d, const Versions&) { return std::string(d.prop.name); }},
    Field{"pci.bus_id", "", "PCI bus id as domain:bus:device.function, in hex.",
          [](const DeviceInfo& d, const Versions&) { return std::string(d.prop.pciBusId); }},
    Field{"pci.domain", "", "PCI domain number, in hex.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("0x{:04X}", d.prop.pciDomainID);
          }},
    Field{"pci.bus", "", "PCI bus number, in hex.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("0x{:02X}", d.prop.pciBusID);
          }},
    Field{"pci.device", "", "PCI device number, in hex.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("0x{:02X}", d.prop.pciDeviceID);
          }},
    Field{"memory.total", "MiB", "Total device memory.",
          [](const DeviceInfo& d, const Versions&) { return mib(d.memTotal); }},
    Field{"memory.used", "MiB", "Device memory held by the live allocations of every process.",
          [](const DeviceInfo& d, const Versions&) { return mib(d.memUsed); }},
    Field{"memory.free", "MiB", "Device memory available for allocation.",
          [](const DeviceInfo& d, const Versions&) { return mib(d.memFree); }},
    Field{"numa_node", "", "Host NUMA node the device is attached to (-1: unknown).",
          [](const DeviceInfo& d, const Versions&) { return fmt::format("{}", d.prop.numaNode); }},
    Field{"cpu_affinity", "", "Host CPUs near the device (its NUMA node's), as ranges.",
          [](const DeviceInfo& d, const Versions&) {
            // A CSV field must not contain the separator, so ranges are joined with ';'.
            std::string list = cpu_list(d.cpus);
            std::replace(list.begin(), list.end(), ',', ';');
            return list.empty() ? std::string("N/A") : list;
          }},
    Field{"multiprocessor_count", "", "Number of multiprocessors of the modelled chip.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.multiProcessorCount);
          }},
    Field{"workers", "", "Emulator: host worker threads running this device's engines.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.hostWorkerThreads);
          }},
    Field{"compute_cap", "", "Compute capability of the modelled chip (major.minor).",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}.{}", d.prop.major, d.prop.minor);
          }},
    Field{"clocks.max.sm", "MHz", "Maximum clock of the multiprocessors.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.clockRate / 1000);
          }},
    Field{"clocks.max.memory", "MHz", "Maximum memory clock.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.memoryClockRate / 1000);
          }},
    Field{"memory.bus_width", "bits", "Width of the memory bus.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.memoryBusWidth);
          }},
    Field{"memory.bandwidth", "GB/s", "Device memory bandwidth.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{:.0f}", d.prop.memoryBandwidth / 1e9);
          }},
    Field{"host_link.bandwidth", "GB/s", "Host link bandwidth per direction.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{:.1f}", d.prop.hostLinkBandwidth / 1e9);
          }},
    Field{"peak_bf16", "TFLOP/s", "Dense BF16 peak of the modelled chip.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{:.1f}", d.prop.peakBf16Flops / 1e12);
          }},
    Field{"l2_cache", "MiB", "L2 cache size.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{:.1f}", d.prop.l2CacheSize / kMiB);
          }},
    Field{"copy_engines", "", "Number of asynchronous copy engines.",
          [](const DeviceInfo& d, const Versions&) {
            return fmt::format("{}", d.prop.asyncEngineCount);
          }},
    Field{
        "compute_mode", "",
        "Which processes may use the device (Default, Exclusive_Process, Prohibited).",
        [](const DeviceInfo& d, const Versions&) { return compute_mode_name(d.prop.computeMode); }},
    Field{"emulated", "", "Yes when the device is the software emulator.",
          [](const DeviceInfo& d, const Versions&) { return yes_no(d.prop.emulated); }},
    Field{"driver_version", "", "Version of the driver beneath the runtime.",
          [](const DeviceInfo&, const Versions& v) { return version_string(v.driver); }},
    Field{"runtime_version", "", "Version of the runtime library.",
          [](const DeviceInfo&, const Versions& v) { return version_string(v.runtime); }},
    Field{"count", "", "Number of visible devices.",
          [](const DeviceInfo&, const Versions&) { return fmt::format("{}", device_count()); }},
};

// nvidia-smi spellings accepted for the same fields.
struct Alias {
  std::string_view alias, name;
};
constexpr std::array kAliases = {
    Alias{"gpu_bus_id", "pci.bus_id"},   Alias{"gpu_name", "name"},
    Alias{"clocks.sm", "clocks.max.sm"}, Alias{"clocks.mem", "clocks.max.memory"},
    Alias{"numa.node", "numa_node"},     Alias{"sm_count", "multiprocessor_count"},
};

}  // namespace

RuntimeError::RuntimeError(std::string_view call, h20Error_t code)
    : std::runtime_error(describe(call, code)), code_(code) {}

void check(h20Error_t code, std::string_view call) {
  if (code != h20Success) throw RuntimeError(call, code);
}

Versions query_versions() {
  Versions v;
  check(h20RuntimeGetVersion(&v.runtime), "h20RuntimeGetVersion");
  check(h20DriverGetVersion(&v.driver), "h20DriverGetVersion");
  return v;
}

std::string version_string(int encoded) {
  return fmt::format("{}.{}.{}", encoded / 1000, (encoded % 1000) / 10, encoded % 10);
}

int device_count() {
  int count = 0;
  check(h20GetDeviceCount(&count), "h20GetDeviceCount");
  return count;
}

DeviceInfo query_device(int index) {
  DeviceInfo info;
  info.index = index;
  check(h20GetDeviceProperties(&info.prop, index),
        fmt::format("h20GetDeviceProperties({})", index));
  // Memory use is a question about the current device.
  check(h20SetDevice(index), fmt::format("h20SetDevice({})", index));
  check(h20MemGetInfo(&info.memFree, &info.memTotal), "h20MemGetInfo");
  int processes = 0;
  check(h20DeviceGetProcesses(index, nullptr, 0, &processes),
        fmt::format("h20DeviceGetProcesses({})", index));
  info.processes.resize(static_cast<std::size_t>(processes));
  check(h20DeviceGetProcesses(index, info.processes.data(), processes, &processes),
        fmt::format("h20DeviceGetProcesses({})", index));
  info.processes.resize(std::min(info.processes.size(), static_cast<std::size_t>(processes)));
  for (const h20ProcessInfo& p : info.processes)
    info.memUsed += p.usedMemory;
  int count = 0;
  check(h20DeviceGetCpuAffinity(index, nullptr, 0, &count, nullptr),
        fmt::format("h20DeviceGetCpuAffinity({})", index));
  info.cpus.resize(static_cast<std::size_t>(count));
  check(h20DeviceGetCpuAffinity(index, info.cpus.data(), count, &count, nullptr),
        fmt::format("h20DeviceGetCpuAffinity({})", index));
  info.cpus.resize(static_cast<std::size_t>(count));
  std::sort(info.cpus.begin(), info.cpus.end());
  return info;
}

std::string compute_mode_short(int mode) {
  switch (mode) {
    case h20ComputeModeDefault:
      return "Default";
    case h20ComputeModeExclusiveProcess:
      return "E. Process";
    case h20ComputeModeProhibited:
      return "Prohibited";
  }
  return fmt::format("Unknown ({})", mode);
}

std::string compute_mode_name(int mode) {
  switch (mode) {
    case h20ComputeModeDefault:
      return "DEFAULT";
    case h20ComputeModeExclusiveProcess:
      return "EXCLUSIVE_PROCESS";
    case h20ComputeModeProhibited:
      return "PROHIBITED";
  }
  return fmt::format("UNKNOWN({})", mode);
}

std::string cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
      ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

std::span<const Field> fields() {
  return kFields;
}

const Field* find_field(std::string_view name) {
  for (const Alias& a : kAliases)
    if (a.alias == name) name = a.name;
  auto it =
      std::find_if(kFields.begin(), kFields.end(), [&](const Field& f) { return f.name == name; });
  return it == kFields.end() ? nullptr : &*it;
}

}  // namespace h20::smi
