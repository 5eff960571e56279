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

// The file is named after the running test, so that tests run in parallel (ctest -j) do not
// overwrite each other's.
std::string loadError(const std::string& json, int chips = 8) {
  const std::string path =
      writeFile(std::string("h20_topo_") +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json",
                json);
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

// ---- numbers: one checked reader for every integer key, one rule for every bandwidth -------

namespace {

// The error of a file with one link between chips 0 and 1 whose entry has `fields` added.
std::string linkError(const std::string& fields) {
  return loadError(R"({"chips": 2, "links": [{"a": 0, "b": 1, "kind": "direct", )" + fields +
                   "}]}");
}

std::string hostError(const std::string& fields) {
  return loadError(R"({"chips": 2, "host": [{"chip": 0, )" + fields + "}]}");
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(Topology, IntegersThatWouldWrapToIntAreRejectedNamingKeyAndValue) {
  // 4294967297 = 2^32 + 1 narrows to 1, 4294967296 to 0, -4294967295 to 1.
  std::string e = loadError(R"({"chips": 4294967297})");
  EXPECT_TRUE(has(e, "\"chips\" is 4294967297")) << e;
  e = loadError(R"({"chips": -4294967295})");
  EXPECT_TRUE(has(e, "\"chips\" is -4294967295")) << e;
  e = loadError(R"({"chips": 2, "links": [{"a": 4294967296, "b": 1, "kind": "direct",
                   "bandwidth_gbps": 1}]})");
  EXPECT_TRUE(has(e, "links[0]: \"a\" names chip 4294967296")) << e;
  e = loadError(R"({"chips": 2, "links": [{"a": 0, "b": 4294967297, "kind": "direct",
                   "bandwidth_gbps": 1}]})");
  EXPECT_TRUE(has(e, "links[0]: \"b\" names chip 4294967297")) << e;
  e = linkError(R"("bandwidth_gbps": 1, "hops": 4294967297)");
  EXPECT_TRUE(has(e, "links[0]: \"hops\" is 4294967297")) << e;
  e = loadError(R"({"chips": 2, "host": [{"chip": 4294967296}]})");
  EXPECT_TRUE(has(e, "host[0]: \"chip\" names chip 4294967296")) << e;
  e = hostError(R"("numa_node": 4294967296)");
  EXPECT_TRUE(has(e, "host[0]: \"numa_node\" is 4294967296")) << e;
  e = hostError(R"("cpus": [0, 4294967297])");
  EXPECT_TRUE(has(e, "host[0]: \"cpus[1]\" is 4294967297")) << e;
  // Beyond 64 bits the parser has only a double: still not an integer that fits.
  e = loadError(R"({"chips": 18446744073709551617})");
  EXPECT_TRUE(has(e, "\"chips\" is ")) << e;
}

TEST(Topology, NumbersThatAreNotIntegersAreRejectedForIntegerKeys) {
  std::string e = loadError(R"({"chips": 1.5})");
  EXPECT_TRUE(has(e, "\"chips\" is 1.5 but must be an integer")) << e;
  e = loadError(R"({"chips": 2.0})");
  EXPECT_TRUE(has(e, "\"chips\" is 2.0 but must be an integer")) << e;
  e = loadError(R"({"chips": "2"})");
  EXPECT_TRUE(has(e, "\"chips\" is \"2\" but must be an integer")) << e;
  e = loadError(R"({"chips": 2, "links": [{"a": 0.5, "b": 1, "kind": "direct",
                   "bandwidth_gbps": 1}]})");
  EXPECT_TRUE(has(e, "links[0]: \"a\" is 0.5 but must be an integer")) << e;
  e = linkError(R"("bandwidth_gbps": 1, "hops": 1.5)");
  EXPECT_TRUE(has(e, "links[0]: \"hops\" is 1.5 but must be an integer")) << e;
  e = hostError(R"("numa_node": 0.5)");
  EXPECT_TRUE(has(e, "host[0]: \"numa_node\" is 0.5 but must be an integer")) << e;
  e = hostError(R"("cpus": [1.5])");
  EXPECT_TRUE(has(e, "host[0]: \"cpus[0]\" is 1.5 but must be an integer")) << e;
}

TEST(Topology, NegativeIntegersAreRejectedNamingKeyAndValue) {
  std::string e = loadError(R"({"chips": -1})");
  EXPECT_TRUE(has(e, "\"chips\" is -1")) << e;
  e = loadError(R"({"chips": 0})");
  EXPECT_TRUE(has(e, "\"chips\" is 0")) << e;
  e = loadError(R"({"chips": 2, "links": [{"a": -1, "b": 1, "kind": "direct",
                   "bandwidth_gbps": 1}]})");
  EXPECT_TRUE(has(e, "links[0]: \"a\" names chip -1")) << e;
  e = linkError(R"("bandwidth_gbps": 1, "hops": 0)");
  EXPECT_TRUE(has(e, "links[0]: \"hops\" is 0 but must be an integer from 1")) << e;
  e = linkError(R"("bandwidth_gbps": 1, "hops": -2)");
  EXPECT_TRUE(has(e, "links[0]: \"hops\" is -2")) << e;
  e = hostError(R"("numa_node": -1)");
  EXPECT_TRUE(has(e, "host[0]: \"numa_node\" is -1 but must be an integer from 0")) << e;
  e = hostError(R"("cpus": [-3])");
  EXPECT_TRUE(has(e, "host[0]: \"cpus[0]\" is -3")) << e;
}

TEST(Topology, BandwidthsTheAttributeCannotReportAreRejectedNamingKeyAndValue) {
  // h20DevP2PAttrLinkBandwidthMBps is an int of MB/s: 1e300 GB/s reported -2147483648.
  for (const char* gbps : {"1e300", "2147483.648", "0.0005", "0", "-3", "\"fast\""}) {
    SCOPED_TRACE(gbps);
    std::string e = linkError(std::string(R"("bandwidth_gbps": )") + gbps);
    EXPECT_TRUE(has(e, "links[0]: \"bandwidth_gbps\" is ")) << e;
    EXPECT_TRUE(has(e, "must be a number from 0.001 to 2147483.647")) << e;
    e = hostError(std::string(R"("bandwidth_gbps": )") + gbps);
    EXPECT_TRUE(has(e, "host[0]: \"bandwidth_gbps\" is ")) << e;
    EXPECT_TRUE(has(e, "must be a number from 0.001 to 2147483.647")) << e;
  }
  EXPECT_TRUE(has(linkError(R"("bandwidth_gbps": 1e300)"), "is 1e+300")) << "value as written";
  // Too large for a double: the parser refuses it, naming it.
  EXPECT_TRUE(has(linkError(R"("bandwidth_gbps": 1e400)"), "1e400"));
}

TEST(Topology, ZeroHostBandwidthIsRejectedLikeAZeroLinkBandwidth) {
  const std::string link = linkError(R"("bandwidth_gbps": 0)");
  const std::string host = hostError(R"("bandwidth_gbps": 0)");
  EXPECT_TRUE(has(link, "links[0]: \"bandwidth_gbps\" is 0 but must be")) << link;
  EXPECT_TRUE(has(host, "host[0]: \"bandwidth_gbps\" is 0 but must be")) << host;
  EXPECT_EQ(link.substr(link.find(" but ")), host.substr(host.find(" but ")));
}

TEST(Topology, ExtremeBandwidthsTheAttributeCanReportAreAccepted) {
  const std::string path = writeFile("h20_topo_extremes.json", R"({"chips": 3,
    "links": [ {"a": 0, "b": 1, "kind": "switch", "bandwidth_gbps": 2147483.647},
               {"a": 1, "b": 2, "kind": "direct", "bandwidth_gbps": 0.001} ],
    "host": [ {"chip": 0, "bandwidth_gbps": 2147483.647}, {"chip": 1, "bandwidth_gbps": 0.001} ]})");
  Topology t = load(path, 3, 1);
  EXPECT_EQ(static_cast<int>(t.link(0, 1).bandwidth / 1.0e6), 2147483647);
  EXPECT_EQ(static_cast<int>(t.link(2, 1).bandwidth / 1.0e6), 1);
  EXPECT_DOUBLE_EQ(t.attachment[0].hostBandwidth, 2147483.647e9);
  EXPECT_DOUBLE_EQ(t.attachment[1].hostBandwidth, 1e6);
}

TEST(Topology, OtherMistypedValuesAreRejectedNamingKeyAndValue) {
  std::string e = linkError(R"("bandwidth_gbps": 1, "bidirectional": 1)");
  EXPECT_TRUE(has(e, "links[0]: \"bidirectional\" is 1 but must be true or false")) << e;
  e = linkError(R"("bandwidth_gbps": 1, "latency_us": -1)");
  EXPECT_TRUE(has(e, "links[0]: \"latency_us\" is -1 but must be a number >= 0")) << e;
  e = loadError(R"({"chips": 2, "name": 7})");
  EXPECT_TRUE(has(e, "top level: \"name\" is 7 but must be a string")) << e;
  e = loadError(R"({"chips": 2, "links": [{"a": 0, "b": 1, "kind": 3, "bandwidth_gbps": 1}]})");
  EXPECT_TRUE(has(e, "links[0]: \"kind\" is 3 but must be \"direct\" or \"switch\"")) << e;
}
