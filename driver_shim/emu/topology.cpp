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
#include <cmath>
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

// Reads a non-negative number; fails with the entry's name.
double number(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.at(key).is_number())
    throw std::runtime_error(fmt::format("{}: \"{}\" must be a number", where, key));
  const double v = j.at(key).get<double>();
  if (!(v >= 0) || !std::isfinite(v))
    throw std::runtime_error(fmt::format("{}: \"{}\" is {} but must be >= 0", where, key, v));
  return v;
}

int chipIndex(const nlohmann::json& j, const char* key, int chips, const std::string& where) {
  if (!j.at(key).is_number_integer())
    throw std::runtime_error(fmt::format("{}: \"{}\" must be an integer chip index", where, key));
  const int v = j.at(key).get<int>();
  if (v < 0 || v >= chips)
    throw std::runtime_error(
        fmt::format("{}: \"{}\" names chip {}, but the topology has chips "
                    "0..{}",
                    where, key, v, chips - 1));
  return v;
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
  if (!doc.at("chips").is_number_integer())
    throw std::runtime_error("top level: \"chips\" must be an integer");
  const int chips = doc.at("chips").get<int>();
  if (chips < 1 || chips > deviceCount)
    throw std::runtime_error(
        fmt::format("top level: \"chips\" is {} but the box has {} emulated "
                    "chips (H20_EMU_DEVICES)",
                    chips, deviceCount));
  Topology t = blank(doc.value("name", std::string("custom")), deviceCount);
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
        throw std::runtime_error(
            fmt::format("{}: \"kind\" must be \"direct\" or \"switch\"", where));
      link.bandwidth = number(l, "bandwidth_gbps", where) * kGB;
      if (link.bandwidth <= 0)
        throw std::runtime_error(fmt::format("{}: \"bandwidth_gbps\" must be > 0", where));
      link.latencyUs = l.contains("latency_us") ? number(l, "latency_us", where) : kLinkLatencyUs;
      link.hops = 1;
      if (l.contains("hops")) {
        if (!l.at("hops").is_number_integer() || l.at("hops").get<int>() < 1)
          throw std::runtime_error(fmt::format("{}: \"hops\" must be an integer >= 1", where));
        link.hops = l.at("hops").get<int>();
      }
      const bool both = l.contains("bidirectional") ? l.at("bidirectional").get<bool>() : true;
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
      if (h.contains("numa_node")) {
        if (!h.at("numa_node").is_number_integer() || h.at("numa_node").get<int>() < 0)
          throw std::runtime_error(fmt::format("{}: \"numa_node\" must be an integer >= 0", where));
        at.numaNode = h.at("numa_node").get<int>();
      }
      if (h.contains("cpus")) {
        if (!h.at("cpus").is_array())
          throw std::runtime_error(fmt::format("{}: \"cpus\" must be an array", where));
        for (const auto& c : h.at("cpus")) {
          if (!c.is_number_integer() || c.get<int>() < 0)
            throw std::runtime_error(
                fmt::format("{}: \"cpus\" entries must be integers >= 0", where));
          at.cpus.push_back(c.get<int>());
        }
      }
      if (h.contains("bandwidth_gbps")) at.hostBandwidth = number(h, "bandwidth_gbps", where) * kGB;
      if (h.contains("latency_us")) at.hostLatencyUs = number(h, "latency_us", where);
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
