// topology.cpp - topology presets and the JSON topology file loader (see topology.hpp).
//
// Link figures of the presets: an H20 chip has 900 GB/s of chip-to-chip bandwidth in all (both
// directions), i.e. 450 GB/s per direction. Through a switch every pair gets the full 450 GB/s;
// a full mesh splits it over 7 peers; a ring over 2 neighbours (farther chips are reached
// through intermediate chips); pairs spend it on one peer, and other pairs are reached through
// the host (PCIe Gen5 x16, 64 GB/s per direction).
#include "emu/topology.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <set>

namespace h20::emu {

using driver::ChipAttachment;
using driver::LinkKind;
using driver::PeerLink;
using driver::Topology;

namespace {

constexpr double kGB = 1.0e9;
constexpr double kChipLinkBandwidth = 450 * kGB;
constexpr double kHostBandwidth = 64 * kGB;
constexpr double kLinkLatencyUs = 1.0;
constexpr double kHostLatencyUs = 5.0;

PeerLink hostPath() {
  return PeerLink{LinkKind::host, kHostBandwidth / 2, 2 * kHostLatencyUs, -1};
}

Topology blank(const std::string& name, int chips) {
  Topology t;
  t.name = name;
  t.chips = chips;
  t.links.assign(static_cast<std::size_t>(chips * chips), hostPath());
  for (int c = 0; c < chips; ++c)
    t.links[static_cast<std::size_t>(c * chips + c)] = PeerLink{LinkKind::self, 0, 0, 0};
  t.attachment.resize(static_cast<std::size_t>(chips));
  return t;
}

void setLink(Topology& t, int a, int b, PeerLink link) {
  t.links[static_cast<std::size_t>(a * t.chips + b)] = link;
}

// `name` is one of topologyPresets().
Topology preset(const std::string& name, int chips) {
  Topology t = blank(name, chips);
  for (int a = 0; a < chips; ++a) {
    for (int b = 0; b < chips; ++b) {
      if (a == b) continue;
      if (name == "switch") {
        setLink(t, a, b, {LinkKind::switched, kChipLinkBandwidth, 1.5 * kLinkLatencyUs, 1});
      } else if (name == "mesh") {
        setLink(t, a, b,
                {LinkKind::direct, kChipLinkBandwidth / std::max(1, chips - 1), kLinkLatencyUs, 1});
      } else if (name == "ring") {
        const int d = std::min((a - b + chips) % chips, (b - a + chips) % chips);
        const double neighbour = kChipLinkBandwidth / (chips > 2 ? 2 : 1);
        setLink(t, a, b, {LinkKind::direct, neighbour / d, d * kLinkLatencyUs, d});
      } else if (name == "pairs") {
        if (a / 2 == b / 2)
          setLink(t, a, b, {LinkKind::direct, kChipLinkBandwidth, kLinkLatencyUs, 1});
      }
    }
  }
  return t;
}

// Errors about a value name the entry, the key and the value as the file wrote it (4294967297,
// 1.5, "two"); a number too large for a double (1e400) is already refused by the parser.
[[noreturn]] void bad(const std::string& where, const std::string& key, const nlohmann::json& v,
                      const std::string& rule) {
  throw std::runtime_error(fmt::format("{}: \"{}\" is {} but {}", where, key, v.dump(), rule));
}

// The one reader of integer keys. The value must be a JSON integer (not 1.5, 2.0, 1e3 or "2") in
// lo..hi, and the range is checked on the value as written, before it is narrowed to int:
// 4294967297 is an error, never chip 1. `outOfRange` words the range error (it gets the value as
// written).
template <class OutOfRange>
int integer(const nlohmann::json& v, const std::string& key, const std::string& where, int lo,
            int hi, OutOfRange outOfRange) {
  if (!v.is_number_integer()) bad(where, key, v, "must be an integer");
  // nlohmann keeps non-negative integers as uint64 and negative ones as int64.
  const bool fits64 =
      !v.is_number_unsigned() || v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX);
  const bool inRange = fits64 && v.get<std::int64_t>() >= lo && v.get<std::int64_t>() <= hi;
  if (!inRange)
    throw std::runtime_error(fmt::format("{}: \"{}\" {}", where, key, outOfRange(v.dump())));
  return static_cast<int>(v.get<std::int64_t>());
}

int integer(const nlohmann::json& v, const std::string& key, const std::string& where, int lo,
            int hi) {
  return integer(v, key, where, lo, hi, [&](const std::string& value) {
    return fmt::format("is {} but must be an integer from {} to {}", value, lo, hi);
  });
}

int chipIndex(const nlohmann::json& j, const char* key, int chips, const std::string& where) {
  return integer(j.at(key), key, where, 0, chips - 1, [&](const std::string& value) {
    return fmt::format("names chip {}, but the topology has chips 0..{}", value, chips - 1);
  });
}

// The one rule for bandwidths, of chip-to-chip and host links alike. h20DevP2PAttrLinkBandwidthMBps
// reports a link's bandwidth as an int of whole MB/s, so a bandwidth must come out there as 1 to
// INT_MAX MB/s: 0.001 to 2147483.647 GB/s. Zero, negative, infinite or larger figures are errors,
// never a wrapped or saturated report. Returns bytes/s.
double bandwidth(const nlohmann::json& j, const char* key, const std::string& where) {
  constexpr const char* rule =
      "must be a number from 0.001 to 2147483.647 (GB/s per direction; "
      "h20DevP2PAttrLinkBandwidthMBps reports 1 to 2147483647 MB/s)";
  const nlohmann::json& v = j.at(key);
  if (!v.is_number()) bad(where, key, v, rule);
  const double bytes = v.get<double>() * kGB;
  // As the attribute computes it; the conversion to int truncates, so anything below 2^31 fits.
  const double mbps = bytes / 1.0e6;
  if (!(mbps >= 1.0 && mbps < 2147483648.0)) bad(where, key, v, rule);
  return bytes;
}

// Latencies: a finite number >= 0, in microseconds.
double latency(const nlohmann::json& j, const char* key, const std::string& where) {
  const nlohmann::json& v = j.at(key);
  if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>()))
    bad(where, key, v, "must be a number >= 0 (microseconds)");
  return v.get<double>();
}

bool boolean(const nlohmann::json& j, const char* key, const std::string& where) {
  const nlohmann::json& v = j.at(key);
  if (!v.is_boolean()) bad(where, key, v, "must be true or false");
  return v.get<bool>();
}

void checkKeys(const nlohmann::json& j, const std::set<std::string>& allowed,
               const std::set<std::string>& required, const std::string& where) {
  if (!j.is_object()) throw std::runtime_error(fmt::format("{}: must be a JSON object", where));
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!allowed.count(it.key()))
      throw std::runtime_error(fmt::format("{}: unknown key \"{}\"", where, it.key()));
  for (const auto& k : required)
    if (!j.contains(k)) throw std::runtime_error(fmt::format("{}: missing key \"{}\"", where, k));
}

Topology fromJson(const nlohmann::json& doc, int deviceCount) {
  checkKeys(doc, {"name", "chips", "links", "host"}, {"chips"}, "top level");
  const int chips =
      integer(doc.at("chips"), "chips", "top level", 1, deviceCount, [&](const std::string& value) {
        return fmt::format(
            "is {} but must be 1..{}: the box has {} emulated chips (H20_EMU_DEVICES)", value,
            deviceCount, deviceCount);
      });
  std::string name = "custom";
  if (doc.contains("name")) {
    if (!doc.at("name").is_string()) bad("top level", "name", doc.at("name"), "must be a string");
    name = doc.at("name").get<std::string>();
  }
  Topology t = blank(name, deviceCount);
  if (doc.contains("links")) {
    if (!doc.at("links").is_array()) throw std::runtime_error("\"links\" must be an array");
    std::size_t i = 0;
    for (const auto& l : doc.at("links")) {
      const std::string where = fmt::format("links[{}]", i++);
      checkKeys(l, {"a", "b", "kind", "bandwidth_gbps", "latency_us", "hops", "bidirectional"},
                {"a", "b", "kind", "bandwidth_gbps"}, where);
      const int a = chipIndex(l, "a", chips, where), b = chipIndex(l, "b", chips, where);
      if (a == b) throw std::runtime_error(fmt::format("{}: links chip {} to itself", where, a));
      const std::string kind = l.at("kind").is_string() ? l.at("kind").get<std::string>() : "";
      PeerLink link;
      if (kind == "direct")
        link.kind = LinkKind::direct;
      else if (kind == "switch")
        link.kind = LinkKind::switched;
      else
        bad(where, "kind", l.at("kind"), "must be \"direct\" or \"switch\"");
      link.bandwidth = bandwidth(l, "bandwidth_gbps", where);
      link.latencyUs = l.contains("latency_us") ? latency(l, "latency_us", where) : kLinkLatencyUs;
      link.hops = l.contains("hops") ? integer(l.at("hops"), "hops", where, 1, INT_MAX) : 1;
      const bool both = l.contains("bidirectional") ? boolean(l, "bidirectional", where) : true;
      if (t.link(a, b).kind != LinkKind::host)
        throw std::runtime_error(
            fmt::format("{}: chips {} and {} are already linked", where, a, b));
      setLink(t, a, b, link);
      if (both) setLink(t, b, a, link);
    }
  }
  if (doc.contains("host")) {
    if (!doc.at("host").is_array()) throw std::runtime_error("\"host\" must be an array");
    std::size_t i = 0;
    for (const auto& h : doc.at("host")) {
      const std::string where = fmt::format("host[{}]", i++);
      checkKeys(h, {"chip", "numa_node", "cpus", "bandwidth_gbps", "latency_us"}, {"chip"}, where);
      ChipAttachment& at =
          t.attachment[static_cast<std::size_t>(chipIndex(h, "chip", chips, where))];
      if (h.contains("numa_node"))
        at.numaNode = integer(h.at("numa_node"), "numa_node", where, 0, INT_MAX);
      if (h.contains("cpus")) {
        if (!h.at("cpus").is_array()) bad(where, "cpus", h.at("cpus"), "must be an array");
        std::size_t k = 0;
        for (const auto& c : h.at("cpus"))
          at.cpus.push_back(integer(c, fmt::format("cpus[{}]", k++), where, 0, INT_MAX));
      }
      if (h.contains("bandwidth_gbps")) at.hostBandwidth = bandwidth(h, "bandwidth_gbps", where);
      if (h.contains("latency_us")) at.hostLatencyUs = latency(h, "latency_us", where);
    }
  }
  return t;
}

}  // namespace

const std::vector<std::string>& topologyPresets() {
  static const std::vector<std::string> names{"switch", "mesh", "ring", "pairs"};
  return names;
}

bool loadTopology(const std::string& spec, int chips, int hostNodes,
                  const std::vector<std::vector<int>>& cpusOfNode, Topology* out,
                  std::string* error) {
  Topology t;
  const bool isPreset = std::find(topologyPresets().begin(), topologyPresets().end(), spec) !=
                        topologyPresets().end();
  if (isPreset) {
    t = preset(spec, chips);
  } else if (spec.find('/') != std::string::npos || spec.find(".json") != std::string::npos) {
    std::ifstream in(spec);
    if (!in) {
      *error = fmt::format("H20_EMU_TOPOLOGY: cannot open topology file '{}'", spec);
      return false;
    }
    try {
      t = fromJson(nlohmann::json::parse(in), chips);
      t.name = spec;
    } catch (const std::exception& e) {
      *error = fmt::format("H20_EMU_TOPOLOGY: topology file '{}': {}", spec, e.what());
      return false;
    }
  } else {
    *error = fmt::format(
        "H20_EMU_TOPOLOGY='{}' is neither a preset (switch, mesh, ring, pairs) "
        "nor a path to a .json file",
        spec);
    return false;
  }
  // Chips are spread over the host's NUMA nodes in order unless the file placed them; a node the
  // host does not have is reported as the node actually used.
  for (int c = 0; c < chips; ++c) {
    ChipAttachment& at = t.attachment[static_cast<std::size_t>(c)];
    if (hostNodes <= 0) {
      at.numaNode = -1;
    } else if (at.numaNode < 0) {
      at.numaNode = hostNodes > 1 ? c * hostNodes / chips : 0;
    } else if (at.numaNode >= hostNodes) {
      at.numaNode = at.numaNode % hostNodes;
    }
    if (at.cpus.empty() && at.numaNode >= 0 &&
        static_cast<std::size_t>(at.numaNode) < cpusOfNode.size())
      at.cpus = cpusOfNode[static_cast<std::size_t>(at.numaNode)];
  }
  *out = std::move(t);
  return true;
}

}  // namespace h20::emu
