// topo.cpp - the topology snapshot and the matrices of `h20-smi topo`.
//
// The layout follows `nvidia-smi topo -m`: one row and one column per device (H20_<index>), the
// CPU and NUMA affinity of each row's device at the right, the legend below. The cell codes
// (tools/common/path_code.hpp) say what joins two chips (h20DevP2PAttrLinkKind) and over how many
// links (h20DevP2PAttrHopCount); the modelled bandwidth matrix printed with them tells presets with
// the same codes apart (mesh: 64 GB/s for every pair; a JSON file: whatever it declares).
#include "topo.hpp"

#include "path_code.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

namespace h20::smi {

namespace {

std::string device_label(int index) {
  return fmt::format("H20_{}", index);
}

// Bandwidth in GB/s with up to two decimals as needed: "450", "112.5", "56.25", "64.29".
std::string gbps(int mbps) {
  std::string s = fmt::format("{:.2f}", mbps / 1000.0);
  while (s.back() == '0')
    s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string numa_text(int node) {
  return node < 0 ? std::string("N/A") : fmt::format("{}", node);
}

std::string affinity_text(const DeviceInfo& d) {
  return d.cpus.empty() ? std::string("N/A") : cpu_list(d.cpus);
}

// A left-aligned text grid: header row, then rows whose first cell is the row label.
void print_grid(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(header.size(), 0);
  for (std::size_t c = 0; c < header.size(); ++c) {
    w[c] = header[c].size();
    for (const auto& r : rows)
      w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t c = 0; c < cells.size(); ++c)
      s += c + 1 == cells.size() ? cells[c] : fmt::format("{:<{}}  ", cells[c], w[c]);
    while (!s.empty() && s.back() == ' ')
      s.pop_back();
    fmt::print("{}\n", s);
  };
  line(header);
  for (const auto& r : rows)
    line(r);
}

std::vector<std::string> device_header(const Topology& t) {
  std::vector<std::string> h{""};
  for (const DeviceInfo& d : t.devices)
    h.push_back(device_label(d.index));
  return h;
}

void print_matrix(const Topology& t) {
  std::vector<std::string> header = device_header(t);
  header.push_back("CPU Affinity");
  header.push_back("NUMA Affinity");
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < t.devices.size(); ++i) {
    std::vector<std::string> r{device_label(t.devices[i].index)};
    for (const PeerPath& p : t.paths[i])
      r.push_back(path_code(p));
    r.push_back(affinity_text(t.devices[i]));
    r.push_back(numa_text(t.devices[i].prop.numaNode));
    rows.push_back(std::move(r));
  }
  print_grid(header, rows);

  // The modelled speed of each path, so that presets with the same codes can be told apart.
  bool anyHost = false;
  for (const auto& row : t.paths)
    for (const PeerPath& p : row)
      anyHost = anyHost || path_code(p) == "HOST";
  fmt::print("\nModelled bandwidth per direction, GB/s (h20DevP2PAttrLinkBandwidthMBps{}):\n",
             anyHost ? "; for HOST pairs, the path through the host" : "");
  rows.clear();
  for (std::size_t i = 0; i < t.devices.size(); ++i) {
    std::vector<std::string> r{device_label(t.devices[i].index)};
    for (const PeerPath& p : t.paths[i])
      r.push_back(p.self ? std::string("X") : gbps(p.bandwidthMBps));
    rows.push_back(std::move(r));
  }
  print_grid(device_header(t), rows);

  fmt::print("\nLegend:\n\n");
  for (const auto& [code, meaning] : h20::tools::kPathCodeLegend)
    fmt::print("  {:<4} = {}\n", code, h20::tools::legend_text(meaning, "\n         "));
}

// --p2p: one capability per cell, with nvidia-smi's codes.
void print_p2p(const Topology& t, const std::string& which) {
  const char* title = which == "r"   ? "read"
                      : which == "w" ? "write"
                      : which == "a" ? "atomics"
                                     : "chip-to-chip link";
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < t.devices.size(); ++i) {
    std::vector<std::string> r{device_label(t.devices[i].index)};
    for (const PeerPath& p : t.paths[i]) {
      bool ok = which == "a" ? p.nativeAtomics : p.accessSupported;
      r.push_back(p.self ? "X" : ok ? "OK" : "NS");
    }
    rows.push_back(std::move(r));
  }
  fmt::print("P2P capability: {} (row device accessing column device)\n\n", title);
  print_grid(device_header(t), rows);
  fmt::print("\nLegend:\n\n  X    = Self\n  OK   = Status Ok\n  NS   = Not supported\n");
}

const char* link_kind_name(int kind) {
  return kind == h20P2PLinkDirect ? "direct" : kind == h20P2PLinkSwitch ? "switch" : "host";
}

void print_json(const Topology& t) {
  using nlohmann::ordered_json;
  ordered_json doc;
  doc["device_count"] = t.devices.size();
  doc["devices"] = ordered_json::array();
  for (const DeviceInfo& d : t.devices)
    doc["devices"].push_back({{"index", d.index},
                              {"label", device_label(d.index)},
                              {"pci_bus_id", d.prop.pciBusId},
                              {"numa_node", d.prop.numaNode},
                              {"cpu_affinity", d.cpus},
                              {"cpu_affinity_list", cpu_list(d.cpus)}});
  doc["matrix"] = ordered_json::array();
  for (const auto& row : t.paths) {
    ordered_json r = ordered_json::array();
    for (const PeerPath& p : row)
      r.push_back(path_code(p));
    doc["matrix"].push_back(std::move(r));
  }
  // Every ordered pair of distinct devices: peer access is one-directional, and a topology file
  // may describe one-directional links.
  doc["links"] = ordered_json::array();
  for (std::size_t i = 0; i < t.devices.size(); ++i)
    for (std::size_t j = 0; j < t.devices.size(); ++j) {
      const PeerPath& p = t.paths[i][j];
      if (p.self) continue;
      doc["links"].push_back({{"src", t.devices[i].index},
                              {"dst", t.devices[j].index},
                              {"code", path_code(p)},
                              {"link_kind", link_kind_name(p.linkKind)},
                              {"hops", p.hops},
                              {"bandwidth_mbps", p.bandwidthMBps},
                              {"peer_access_supported", p.accessSupported},
                              {"native_atomics_supported", p.nativeAtomics},
                              {"performance_rank", p.performanceRank}});
    }
  doc["legend"] = ordered_json::object();
  for (const auto& [code, meaning] : h20::tools::kPathCodeLegend)
    doc["legend"][code] = h20::tools::legend_text(meaning, " ");
  fmt::print("{}\n", doc.dump(2));
}

int attribute(h20DeviceP2PAttr attr, const char* name, int src, int dst) {
  int v = 0;
  check(h20DeviceGetP2PAttribute(&v, attr, src, dst),
        fmt::format("h20DeviceGetP2PAttribute({}, {}, {})", name, src, dst));
  return v;
}

}  // namespace

Topology query_topology(const std::vector<int>& ids) {
  Topology t;
  for (int id : ids)
    t.devices.push_back(query_device(id));
  for (int a : ids) {
    std::vector<PeerPath> row;
    for (int b : ids) {
      PeerPath p;
      if (a == b) {
        p.self = true;
        p.hops = 0;
        p.performanceRank = 0;
      } else {
        int can = 0;
        check(h20DeviceCanAccessPeer(&can, a, b),
              fmt::format("h20DeviceCanAccessPeer({}, {})", a, b));
        p.accessSupported = can != 0;
        p.nativeAtomics =
            attribute(h20DevP2PAttrNativeAtomicSupported, "NativeAtomicSupported", a, b) != 0;
        p.performanceRank = attribute(h20DevP2PAttrPerformanceRank, "PerformanceRank", a, b);
        p.hops = attribute(h20DevP2PAttrHopCount, "HopCount", a, b);
        p.linkKind = attribute(h20DevP2PAttrLinkKind, "LinkKind", a, b);
        p.bandwidthMBps = attribute(h20DevP2PAttrLinkBandwidthMBps, "LinkBandwidthMBps", a, b);
      }
      row.push_back(p);
    }
    t.paths.push_back(std::move(row));
  }
  return t;
}

std::string path_code(const PeerPath& p) {
  return h20::tools::path_code(p.self, p.linkKind, p.hops);
}

void print_topology(const Topology& t, const TopoOutput& what) {
  if (what.json) {
    print_json(t);
    return;
  }
  if (what.matrix) print_matrix(t);
  if (!what.p2p.empty()) {
    if (what.matrix) fmt::print("\n");
    print_p2p(t, what.p2p);
  }
}

}  // namespace h20::smi
