// main.cpp - h20-smi: list the H20 devices and query their properties, in the manner of nvidia-smi.
//
// Owns the command line (CLI11) and the four output forms: the default device table, the CSV of
// --query-gpu, the detailed listing of -q and the JSON document of --json. What a device is and
// which fields exist lives in device_info.*; the `topo` subcommand's matrices live in topo.*.
// Everything goes through the public C API, so the tool works unchanged on any backend the runtime
// supports.
//
// Exit status: 0 on success, 2 for bad arguments (message on stderr, nothing run), 1 when the
// runtime fails (its message on stderr), e.g. when no device is visible.
#include <h20/h20_runtime.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "device_info.hpp"
#include "topo.hpp"

namespace h20::smi {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// A problem with the arguments that only shows once they are interpreted (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::vector<std::string> ids;
  std::string queryGpu;
  std::string format;
  bool detailed = false;
  bool json = false;
  bool list = false;
  bool version = false;
  bool helpQuery = false;
  // `topo` subcommand
  bool topo = false;
  bool topoMatrix = false;
  bool topoJson = false;
  std::string topoP2p;
  // processes and compute modes
  std::string queryApps;
  std::string computeMode;
  bool setComputeMode = false;  // -c given (an empty value is an error, not "absent")
};

struct CsvFormat {
  bool header = true;
  bool units = true;
};

std::string tool_version() {
  return fmt::format("{}.{}.{}", H20_VERSION_MAJOR, H20_VERSION_MINOR, H20_VERSION_PATCH);
}

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", std::localtime(&now));
  return buf;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

CsvFormat parse_format(const std::string& spec) {
  std::vector<std::string> parts = split(lower(spec), ',');
  if (parts.empty() || parts[0] != "csv")
    throw UsageError(fmt::format("--format={}: the format must be csv[,noheader][,nounits]", spec));
  CsvFormat f;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "noheader")
      f.header = false;
    else if (parts[i] == "nounits")
      f.units = false;
    else
      throw UsageError(fmt::format(
          "--format={}: unknown option \"{}\" (expected noheader or nounits)", spec, parts[i]));
  }
  return f;
}

std::vector<const Field*> parse_query(const std::string& spec) {
  std::vector<const Field*> out;
  for (const std::string& name : split(lower(spec), ',')) {
    if (name.empty()) throw UsageError(fmt::format("--query-gpu={}: empty field name", spec));
    const Field* f = find_field(name);
    if (!f)
      throw UsageError(fmt::format(
          "--query-gpu: field \"{}\" is not a valid field to query; see --help-query-gpu", name));
    out.push_back(f);
  }
  return out;
}

// Device ids as nvidia-smi's -i takes them: an index, or a PCI bus id (case-insensitive, the
// leading domain optional).
std::vector<int> resolve_ids(const std::vector<std::string>& ids, int count) {
  std::vector<int> out;
  if (ids.empty()) {
    for (int i = 0; i < count; ++i)
      out.push_back(i);
    return out;
  }
  for (const std::string& raw : ids) {
    std::string id = lower(raw);
    int index = -1;
    if (!id.empty() &&
        std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isdigit(c); })) {
      index = id.size() > 6 ? count : std::stoi(id);
      if (index >= count)
        throw UsageError(fmt::format("-i {}: no such device; {} device(s) visible (0..{})", raw,
                                     count, count - 1));
    } else {
      for (int i = 0; i < count && index < 0; ++i) {
        h20DeviceProp p;
        check(h20GetDeviceProperties(&p, i), fmt::format("h20GetDeviceProperties({})", i));
        std::string bus = lower(p.pciBusId);
        if (bus == id || (bus.size() > id.size() && bus.ends_with(":" + id))) index = i;
      }
      if (index < 0)
        throw UsageError(fmt::format("-i {}: no visible device has this index or PCI bus id", raw));
    }
    if (std::find(out.begin(), out.end(), index) == out.end()) out.push_back(index);
  }
  return out;
}

// ---- output forms ---------------------------------------------------------------------------

// A boxed table with right- or left-aligned columns, sized to its contents.
void print_table(const std::vector<std::string>& header, const std::vector<bool>& rightAlign,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    w[c] = header[c].size();
    for (const auto& r : rows)
      w[c] = std::max(w[c], r[c].size());
  }
  auto rule = [&](char fill) {
    std::string s = "+";
    for (std::size_t c = 0; c < w.size(); ++c)
      s += std::string(w[c] + 2, fill) + "+";
    fmt::print("{}\n", s);
  };
  auto line = [&](const std::vector<std::string>& cells, bool isHeader) {
    std::string s = "|";
    for (std::size_t c = 0; c < w.size(); ++c)
      s += (rightAlign[c] && !isHeader) ? fmt::format(" {:>{}} |", cells[c], w[c])
                                        : fmt::format(" {:<{}} |", cells[c], w[c]);
    fmt::print("{}\n", s);
  };
  rule('-');
  line(header, true);
  rule('=');
  for (const auto& r : rows)
    line(r, false);
  rule('-');
}

void print_default(const std::vector<DeviceInfo>& devs, const Versions& v, int count) {
  fmt::print("{}\n", timestamp());
  fmt::print("H20-SMI {}    Runtime Version: {}    Driver Version: {}    Devices: {}\n",
             tool_version(), version_string(v.runtime), version_string(v.driver), count);
  std::vector<std::vector<std::string>> rows;
  for (const DeviceInfo& d : devs) {
    rows.push_back({fmt::format("{}", d.index), d.prop.name, d.prop.pciBusId,
                    fmt::format("{}MiB / {}MiB", d.memUsed >> 20, d.memTotal >> 20),
                    compute_mode_short(d.prop.computeMode), fmt::format("{}", d.prop.numaNode),
                    d.cpus.empty() ? std::string("N/A") : cpu_list(d.cpus),
                    fmt::format("{}", d.prop.multiProcessorCount),
                    fmt::format("{}", d.prop.hostWorkerThreads)});
  }
  print_table({"Idx", "Name", "Bus-Id", "Memory-Usage", "Compute M.", "NUMA", "CPU Affinity", "SMs",
               "Workers"},
              {true, false, false, true, false, true, false, true, true}, rows);
  // The processes using the devices, as nvidia-smi's second table.
  std::vector<std::vector<std::string>> procs;
  for (const DeviceInfo& d : devs)
    for (const h20ProcessInfo& p : d.processes)
      procs.push_back({fmt::format("{}", d.index), fmt::format("{}", p.pid), p.name,
                       fmt::format("{}MiB", (p.usedMemory + (1u << 20) - 1) >> 20)});
  fmt::print("\nProcesses:\n");
  if (procs.empty())
    fmt::print("  No running processes found\n");
  else
    print_table({"Idx", "PID", "Process name", "Memory-Usage"}, {true, true, false, true}, procs);
}

// --query-compute-apps: one row per process and device, nvidia-smi's field names.
void print_apps(const std::vector<DeviceInfo>& devs, const std::string& spec, CsvFormat f) {
  struct AppField {
    const char* name;
    const char* unit;
    std::string (*value)(const DeviceInfo&, const h20ProcessInfo&);
  };
  static const AppField kAppFields[] = {
      {"pid", "",
       [](const DeviceInfo&, const h20ProcessInfo& p) { return fmt::format("{}", p.pid); }},
      {"process_name", "",
       [](const DeviceInfo&, const h20ProcessInfo& p) { return std::string(p.name); }},
      {"used_memory", "MiB",
       [](const DeviceInfo&, const h20ProcessInfo& p) {
         return fmt::format("{}", (p.usedMemory + (1u << 20) - 1) >> 20);
       }},
      {"gpu_bus_id", "",
       [](const DeviceInfo& d, const h20ProcessInfo&) { return std::string(d.prop.pciBusId); }},
      {"gpu_index", "",
       [](const DeviceInfo& d, const h20ProcessInfo&) { return fmt::format("{}", d.index); }},
  };
  std::vector<const AppField*> query;
  for (const std::string& name : split(lower(spec), ',')) {
    auto it = std::find_if(std::begin(kAppFields), std::end(kAppFields),
                           [&](const AppField& a) { return name == a.name; });
    if (it == std::end(kAppFields))
      throw UsageError(fmt::format(
          "--query-compute-apps: field \"{}\" is not one of pid, process_name, used_memory, "
          "gpu_bus_id, gpu_index",
          name));
    query.push_back(&*it);
  }
  if (f.header) {
    std::string s;
    for (std::size_t i = 0; i < query.size(); ++i) {
      if (i) s += ", ";
      s += query[i]->name;
      if (f.units && *query[i]->unit) s += fmt::format(" [{}]", query[i]->unit);
    }
    fmt::print("{}\n", s);
  }
  for (const DeviceInfo& d : devs)
    for (const h20ProcessInfo& p : d.processes) {
      std::string s;
      for (std::size_t i = 0; i < query.size(); ++i) {
        if (i) s += ", ";
        s += query[i]->value(d, p);
        if (f.units && *query[i]->unit) s += fmt::format(" {}", query[i]->unit);
      }
      fmt::print("{}\n", s);
    }
}

// -c: the compute mode by name or by nvidia-smi's number (1, exclusive thread, is not supported).
int parse_compute_mode(const std::string& spec) {
  const std::string m = lower(spec);
  if (m == "default" || m == "0") return h20ComputeModeDefault;
  if (m == "prohibited" || m == "2") return h20ComputeModeProhibited;
  if (m == "exclusive_process" || m == "3") return h20ComputeModeExclusiveProcess;
  throw UsageError(fmt::format(
      "-c {}: the compute mode must be DEFAULT (0), PROHIBITED (2) or EXCLUSIVE_PROCESS (3)",
      spec));
}

void print_csv(const std::vector<DeviceInfo>& devs, const Versions& v,
               const std::vector<const Field*>& query, CsvFormat f) {
  if (f.header) {
    std::string s;
    for (std::size_t i = 0; i < query.size(); ++i) {
      if (i) s += ", ";
      s += query[i]->name;
      if (f.units && !query[i]->unit.empty()) s += fmt::format(" [{}]", query[i]->unit);
    }
    fmt::print("{}\n", s);
  }
  for (const DeviceInfo& d : devs) {
    std::string s;
    for (std::size_t i = 0; i < query.size(); ++i) {
      if (i) s += ", ";
      s += query[i]->value(d, v);
      if (f.units && !query[i]->unit.empty()) s += fmt::format(" {}", query[i]->unit);
    }
    fmt::print("{}\n", s);
  }
}

void print_detailed(const std::vector<DeviceInfo>& devs, const Versions& v, int count) {
  fmt::print("==============H20-SMI LOG==============\n\n");
  fmt::print("{:<38}: {}\n", "Timestamp", timestamp());
  fmt::print("{:<38}: {}\n", "Runtime Version", version_string(v.runtime));
  fmt::print("{:<38}: {}\n", "Driver Version", version_string(v.driver));
  fmt::print("{:<38}: {}\n", "Attached Devices", count);
  for (const DeviceInfo& d : devs) {
    fmt::print("\nDevice {}\n", d.prop.pciBusId);
    for (const Field& f : fields()) {
      if (f.name == "driver_version" || f.name == "runtime_version" || f.name == "count") continue;
      std::string unit = f.unit.empty() ? "" : fmt::format(" {}", f.unit);
      fmt::print("    {:<34}: {}{}\n", f.name, f.value(d, v), unit);
    }
  }
}

// Machine-readable: exact values in base units (bytes, bytes/s, FLOP/s, kHz).
void print_json(const std::vector<DeviceInfo>& devs, const Versions& v, int count) {
  nlohmann::ordered_json doc;
  doc["timestamp"] = timestamp();
  doc["smi_version"] = tool_version();
  doc["runtime_version"] = version_string(v.runtime);
  doc["runtime_version_code"] = v.runtime;
  doc["driver_version"] = version_string(v.driver);
  doc["driver_version_code"] = v.driver;
  doc["device_count"] = count;
  doc["devices"] = nlohmann::ordered_json::array();
  for (const DeviceInfo& d : devs) {
    const h20DeviceProp& p = d.prop;
    nlohmann::ordered_json processes = nlohmann::ordered_json::array();
    for (const h20ProcessInfo& proc : d.processes)
      processes.push_back(
          {{"pid", proc.pid}, {"name", proc.name}, {"used_memory_bytes", proc.usedMemory}});
    doc["devices"].push_back({
        {"index", d.index},
        {"name", p.name},
        {"pci",
         {{"bus_id", p.pciBusId},
          {"domain", p.pciDomainID},
          {"bus", p.pciBusID},
          {"device", p.pciDeviceID}}},
        {"memory",
         {{"total_bytes", d.memTotal}, {"used_bytes", d.memUsed}, {"free_bytes", d.memFree}}},
        {"numa_node", p.numaNode},
        {"cpu_affinity", d.cpus},
        {"multiprocessor_count", p.multiProcessorCount},
        {"workers", p.hostWorkerThreads},
        {"compute_capability", fmt::format("{}.{}", p.major, p.minor)},
        {"clock_khz", p.clockRate},
        {"memory_clock_khz", p.memoryClockRate},
        {"memory_bus_width_bits", p.memoryBusWidth},
        {"memory_bandwidth_bytes_per_s", p.memoryBandwidth},
        {"host_link_bandwidth_bytes_per_s", p.hostLinkBandwidth},
        {"peak_bf16_flops", p.peakBf16Flops},
        {"l2_cache_bytes", p.l2CacheSize},
        {"shared_mem_per_block_bytes", p.sharedMemPerBlock},
        {"copy_engines", p.asyncEngineCount},
        {"concurrent_kernels", p.concurrentKernels != 0},
        {"emulated", p.emulated != 0},
        {"compute_mode", compute_mode_name(p.computeMode)},
        {"processes", processes},
    });
  }
  fmt::print("{}\n", doc.dump(2));
}

void print_versions() {
  // The tool's own version needs no device; the runtime and driver versions come from the library.
  fmt::print("h20-smi version: {}\n", tool_version());
  Versions v = query_versions();
  fmt::print("Runtime version: {} ({})\n", version_string(v.runtime), v.runtime);
  fmt::print("Driver version: {} ({})\n", version_string(v.driver), v.driver);
}

void print_query_help() {
  fmt::print("Fields for --query-gpu=FIELD[,FIELD...] (units in brackets):\n\n");
  for (const Field& f : fields()) {
    std::string name =
        f.unit.empty() ? std::string(f.name) : fmt::format("{} [{}]", f.name, f.unit);
    fmt::print("  {:<30} {}\n", name, f.help);
  }
}

int run(const Options& o) {
  // Interpret every argument before touching the runtime: usage errors win over runtime errors.
  std::vector<const Field*> query;
  CsvFormat csv;
  if (!o.queryGpu.empty() || !o.queryApps.empty()) {
    if (!o.queryGpu.empty()) query = parse_query(o.queryGpu);
    if (o.format.empty())
      throw UsageError(fmt::format("{} needs --format=csv[,noheader][,nounits]",
                                   o.queryGpu.empty() ? "--query-compute-apps" : "--query-gpu"));
    csv = parse_format(o.format);
  } else if (!o.format.empty()) {
    throw UsageError("--format applies only to --query-gpu and --query-compute-apps");
  }
  std::optional<int> mode;
  if (o.setComputeMode) mode = parse_compute_mode(o.computeMode);
  if (o.topo) {
    if (!o.queryGpu.empty() || o.detailed || o.list || o.helpQuery || o.version)
      throw UsageError(
          "topo takes only -m, --p2p, --json and -i; --query-gpu, --format, -q, -L, "
          "--help-query-gpu and --version do not apply");
    if (!o.topoMatrix && !o.topoJson && o.topoP2p.empty() && !o.json)
      throw UsageError("topo needs -m (connection matrix), --p2p r|w|a|n or --json");
  }
  if (o.helpQuery) {
    print_query_help();
    return 0;
  }
  if (o.version) {
    print_versions();
    return 0;
  }

  Versions v = query_versions();
  int count = device_count();
  if (o.topo) {
    TopoOutput what;
    what.matrix = o.topoMatrix;
    what.json = o.topoJson || o.json;
    what.p2p = o.topoP2p;
    print_topology(query_topology(resolve_ids(o.ids, count)), what);
    return 0;
  }
  if (mode) {
    for (int i : resolve_ids(o.ids, count)) {
      check(h20DeviceSetComputeMode(i, *mode), fmt::format("h20DeviceSetComputeMode({})", i));
      h20DeviceProp p;
      check(h20GetDeviceProperties(&p, i), fmt::format("h20GetDeviceProperties({})", i));
      fmt::print("Set compute mode to {} for device {} ({}).\n", compute_mode_name(*mode), i,
                 p.pciBusId);
    }
    return 0;
  }
  std::vector<DeviceInfo> devs;
  for (int i : resolve_ids(o.ids, count))
    devs.push_back(query_device(i));
  if (!o.queryApps.empty()) {
    print_apps(devs, o.queryApps, csv);
    return 0;
  }

  if (o.list) {
    for (const DeviceInfo& d : devs)
      fmt::print("Device {}: {} (Bus: {})\n", d.index, d.prop.name, d.prop.pciBusId);
  } else if (!query.empty()) {
    print_csv(devs, v, query, csv);
  } else if (o.json) {
    print_json(devs, v, count);
  } else if (o.detailed) {
    print_detailed(devs, v, count);
  } else {
    print_default(devs, v, count);
  }
  return 0;
}

}  // namespace
}  // namespace h20::smi

int main(int argc, char** argv) {
  using namespace h20::smi;
  Options o;
  CLI::App app{"h20-smi: list the H20 devices and query their properties.", "h20-smi"};
  app.footer(
      "Examples:\n"
      "  h20-smi\n"
      "  h20-smi --query-gpu=index,name,pci.bus_id,memory.used,memory.total --format=csv\n"
      "  h20-smi -i 0,3 --json\n"
      "  h20-smi topo -m\n"
      "  h20-smi --query-compute-apps=pid,process_name,used_memory --format=csv\n"
      "  h20-smi -i 0 -c EXCLUSIVE_PROCESS\n"
      "Exit status: 0 ok, 1 runtime failure (e.g. no device), 2 bad arguments.");
  app.add_option("-i,--id", o.ids,
                 "Devices to show: indices or PCI bus ids, comma-separated (default: all)")
      ->delimiter(',');
  auto* q = app.add_option("--query-gpu", o.queryGpu,
                           "Comma-separated fields to print, one row per device (see "
                           "--help-query-gpu); needs --format");
  auto* apps = app.add_option(
      "--query-compute-apps", o.queryApps,
      "Comma-separated fields of the processes using the devices (pid, process_name, "
      "used_memory, gpu_bus_id, gpu_index), one row per process and device; needs --format");
  app.add_option("--format", o.format,
                 "Output format of --query-gpu and --query-compute-apps: "
                 "csv[,noheader][,nounits]");
  auto* mode = app.add_option("-c,--compute-mode", o.computeMode,
                              "Set the compute mode of the devices (-i, default all): DEFAULT, "
                              "EXCLUSIVE_PROCESS or PROHIBITED (device daemon only)");
  auto* json = app.add_flag("--json", o.json, "Print the devices as a JSON document");
  auto* detailed = app.add_flag("-q,--query", o.detailed, "Print every property of each device");
  auto* list = app.add_flag("-L,--list-gpus", o.list, "Print one line per device");
  app.add_flag("--help-query-gpu", o.helpQuery, "List the fields --query-gpu accepts");
  app.add_flag("--version", o.version, "Print the versions of h20-smi, the runtime and the driver");
  q->excludes(json)->excludes(detailed)->excludes(list)->excludes(apps)->excludes(mode);
  apps->excludes(json)->excludes(detailed)->excludes(list)->excludes(mode);
  mode->excludes(json)->excludes(detailed)->excludes(list);
  json->excludes(detailed)->excludes(list);
  detailed->excludes(list);

  // Options given after `topo` that topo does not know (-i, --json) fall through to the main app.
  app.fallthrough();
  CLI::App* topo = app.add_subcommand(
      "topo", "Print the chip-to-chip topology between the devices, as nvidia-smi topo does");
  topo->add_flag("-m,--matrix", o.topoMatrix,
                 "Connection matrix with CPU/NUMA affinity, modelled link bandwidth and legend");
  topo->add_option(
          "--p2p", o.topoP2p,
          "Peer capability matrix: r (read), w (write), a (atomics), n (chip-to-chip link)")
      ->check(CLI::IsMember({"r", "w", "a", "n"}));
  topo->add_flag("--json", o.topoJson,
                 "The topology as JSON: matrix codes, hops, bandwidth (MB/s) and peer "
                 "capabilities of every pair, affinity of every device");
  topo->footer(
      "-i ID[,ID...] (an option of h20-smi itself, accepted here too) limits the matrices to\n"
      "these devices.\n"
      "Examples:\n"
      "  h20-smi topo -m\n"
      "  h20-smi topo -m --json\n"
      "  h20-smi topo --p2p r\n"
      "  H20_EMU_TOPOLOGY=ring h20-smi topo -m -i 0,1,2,3");

  try {
    app.parse(argc, argv);
    o.topo = topo->parsed();
    o.setComputeMode = mode->count() > 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "h20-smi: %s\nRun with --help for more information.\n", e.what());
    return kExitUsage;
  }

  try {
    return run(o);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "h20-smi: %s\nRun with --help for more information.\n", e.what());
    return kExitUsage;
  } catch (const RuntimeError& e) {
    std::fprintf(stderr, "h20-smi: %s\n", e.what());
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h20-smi: %s\n", e.what());
    return kExitRuntime;
  }
}
