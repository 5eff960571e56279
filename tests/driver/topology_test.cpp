// topology_test.cpp - topology presets and the JSON topology file loader, with every kind of
// broken file.
#include "emu/topology.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace h20::driver;
using h20::emu::loadTopology;

namespace {

Topology load(const std::string& spec, int chips = 8, int nodes = 2) {
  Topology t;
  std::string error;
  EXPECT_TRUE(loadTopology(spec, chips, nodes, {{0}, {1}}, &t, &error)) << error;
  return t;
}

std::string writeFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

std::string loadError(const std::string& json, int chips = 8) {
  const std::string path = writeFile("h20_topo_test.json", json);
  Topology t;
  std::string error;
  EXPECT_FALSE(loadTopology(path, chips, 1, {{0}}, &t, &error)) << json;
  EXPECT_NE(error.find(path), std::string::npos) << error;
  return error;
}

}  // namespace

TEST(Topology, SwitchPresetLinksEveryPairInOneHop) {
  Topology t = load("switch");
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) {
      if (a == b) {
        EXPECT_EQ(t.link(a, b).kind, LinkKind::self);
        continue;
      }
      EXPECT_TRUE(t.link(a, b).accessSupported());
      EXPECT_EQ(t.link(a, b).hops, 1);
      EXPECT_DOUBLE_EQ(t.link(a, b).bandwidth, 450e9);
    }
}

TEST(Topology, RingPresetHopsFollowRingDistance) {
  Topology t = load("ring");
  EXPECT_EQ(t.link(0, 1).hops, 1);
  EXPECT_EQ(t.link(0, 7).hops, 1);
  EXPECT_EQ(t.link(0, 4).hops, 4);
  EXPECT_EQ(t.link(2, 5).hops, 3);
  EXPECT_GT(t.link(0, 1).bandwidth, t.link(0, 4).bandwidth);
}

TEST(Topology, PairsPresetHasNoChipLinkBetweenPairs) {
  Topology t = load("pairs");
  EXPECT_TRUE(t.link(0, 1).accessSupported());
  EXPECT_TRUE(t.link(6, 7).accessSupported());
  EXPECT_FALSE(t.link(1, 2).accessSupported());
  EXPECT_EQ(t.link(1, 2).kind, LinkKind::host);
  EXPECT_EQ(t.link(1, 2).hops, -1);
}

TEST(Topology, MeshSplitsBandwidthOverPeers) {
  Topology t = load("mesh");
  EXPECT_DOUBLE_EQ(t.link(0, 5).bandwidth, 450e9 / 7);
  EXPECT_EQ(t.link(3, 6).kind, LinkKind::direct);
}

TEST(Topology, ChipsSpreadOverHostNumaNodes) {
  Topology t = load("switch", 8, 2);
  EXPECT_EQ(t.attachment[0].numaNode, 0);
  EXPECT_EQ(t.attachment[3].numaNode, 0);
  EXPECT_EQ(t.attachment[4].numaNode, 1);
  EXPECT_EQ(t.attachment[4].cpus, std::vector<int>{1});
  Topology noNuma = load("switch", 8, 0);
  EXPECT_EQ(noNuma.attachment[5].numaNode, -1);
}

TEST(Topology, ValidFileIsApplied) {
  const std::string path = writeFile("h20_topo_ok.json", R"({
    "name": "two-plus-host", "chips": 4,
    "links": [ {"a": 0, "b": 1, "kind": "direct", "bandwidth_gbps": 100, "latency_us": 2},
               {"a": 2, "b": 3, "kind": "switch", "bandwidth_gbps": 50, "bidirectional": false} ],
    "host": [ {"chip": 3, "numa_node": 0, "cpus": [0, 1], "bandwidth_gbps": 32} ] })");
  Topology t = load(path, 4, 1);
  EXPECT_EQ(t.name, path);
  EXPECT_TRUE(t.link(1, 0).accessSupported());
  EXPECT_DOUBLE_EQ(t.link(0, 1).bandwidth, 100e9);
  EXPECT_DOUBLE_EQ(t.link(0, 1).latencyUs, 2.0);
  EXPECT_TRUE(t.link(2, 3).accessSupported());
  EXPECT_FALSE(t.link(3, 2).accessSupported());  // one-directional entry
  EXPECT_FALSE(t.link(0, 2).accessSupported());
  EXPECT_EQ(t.attachment[3].cpus, (std::vector<int>{0, 1}));
  EXPECT_DOUBLE_EQ(t.attachment[3].hostBandwidth, 32e9);
}

TEST(Topology, BrokenFilesAreRejectedNamingEntryAndProblem) {
  EXPECT_NE(loadError(R"({"chips": 2, "colour": "red"})").find("unknown key \"colour\""),
            std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 2, "links": [{"a": 0, "b": 5, "kind": "direct",
            "bandwidth_gbps": 1}]})")
                .find("links[0]"),
            std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 2, "links": [{"a": 0, "b": 1, "kind": "direct",
            "bandwidth_gbps": -3}]})")
                .find("bandwidth_gbps"),
            std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 9})").find("9"), std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 2, "links": [{"a": 0, "b": 1, "kind": "wormhole",
            "bandwidth_gbps": 1}]})")
                .find("kind"),
            std::string::npos);
  EXPECT_NE(loadError(R"({"links": []})").find("missing key \"chips\""), std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 2, "links": [{"a": 0, "b": 1, "kind": "direct",
            "bandwidth_gbps": 1}, {"a": 1, "b": 0, "kind": "direct", "bandwidth_gbps": 1}]})")
                .find("already linked"),
            std::string::npos);
  EXPECT_NE(loadError(R"({"chips": 2, "host": [{"chip": 0, "numa_node": -1}]})").find("host[0]"),
            std::string::npos);
  EXPECT_FALSE(loadError("{ not json").empty());
}

TEST(Topology, UnknownPresetAndMissingFileAreRejected) {
  Topology t;
  std::string error;
  EXPECT_FALSE(loadTopology("hypercube", 8, 1, {{0}}, &t, &error));
  EXPECT_NE(error.find("hypercube"), std::string::npos);
  EXPECT_FALSE(loadTopology("/nonexistent/box.json", 8, 1, {{0}}, &t, &error));
  EXPECT_NE(error.find("/nonexistent/box.json"), std::string::npos);
}
