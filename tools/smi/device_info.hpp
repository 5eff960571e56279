// device_info.hpp - what h20-smi knows about a device, gathered through the public C API.
//
// Owns the snapshot of one device (properties plus memory use), the query-field table that the
// CSV output (--query-gpu) and the detailed listing (-q) are driven by, and the error type that
// carries a failed runtime call to main(), which turns it into exit status 1. It does no output
// formatting of whole tables and knows nothing about the command line.
#pragma once

#include <h20/h20_runtime.h>

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace h20::smi {

// A runtime call failed: `what()` is the runtime's message (which names the call and the
// offending value) followed by the error name in parentheses.
class RuntimeError : public std::runtime_error {
 public:
  RuntimeError(std::string_view call, h20Error_t code);
  h20Error_t code() const { return code_; }

 private:
  h20Error_t code_;
};

// Throws RuntimeError when `code` is not h20Success.
void check(h20Error_t code, std::string_view call);

struct Versions {
  int runtime = 0;
  int driver = 0;
};
Versions query_versions();
// "0.1.0" from an encoded version (1000 * major + 10 * minor + patch).
std::string version_string(int encoded);

struct DeviceInfo {
  int index = 0;
  h20DeviceProp prop{};
  std::size_t memFree = 0;   // h20MemGetInfo: what can still be allocated
  std::size_t memTotal = 0;  // h20MemGetInfo
  // Bytes held by live allocations of every process using the device (h20DeviceGetProcesses: this
  // process in-process, every client of the device daemon). Not total - free: on the emulator free
  // is also capped by the host backing budget, so total - free would count memory that nothing
  // uses. used + free can therefore be less than total.
  std::size_t memUsed = 0;
  std::vector<h20ProcessInfo> processes;
  std::vector<int> cpus;  // host CPUs near the device (its NUMA node's), ascending
};

// "Default", "E. Process" or "Prohibited" (as nvidia-smi's table shows compute modes), and the
// names -c takes and prints ("DEFAULT", "EXCLUSIVE_PROCESS", "PROHIBITED").
std::string compute_mode_short(int mode);
std::string compute_mode_name(int mode);

// "0-3,8-11" from ascending CPU ids; "" for none.
std::string cpu_list(const std::vector<int>& cpus);

// Number of visible devices; throws RuntimeError (e.g. h20ErrorNoDevice) when there are none.
int device_count();
// Properties and memory use of device `index` (makes it the thread's current device).
DeviceInfo query_device(int index);

// One column of --query-gpu. `unit` is shown in brackets in the CSV header and after the value
// unless the format says nounits; the value itself never contains the unit.
struct Field {
  std::string_view name;
  std::string_view unit;  // "" for unitless fields
  std::string_view help;
  std::function<std::string(const DeviceInfo&, const Versions&)> value;
};
std::span<const Field> fields();
// The field called `name` (aliases included), or nullptr.
const Field* find_field(std::string_view name);

}  // namespace h20::smi
