// smi_test.cpp - h20-smi as a user and a script see it: exit statuses, the table, CSV and JSON.
//
// Runs the built h20-smi as a child process (tool_runner). The default configuration is the
// 8-chip emulated server; H20_EMU_DEVICES changes the count and H20_EMU_TOPOLOGY the topology
// that `h20-smi topo` prints (the presets are documented in docs/topology.md).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <regex>
#include <sstream>

#include "tool_runner.hpp"

namespace h20::tools_test {
namespace {

RunResult smi(const std::string& args, const std::string& env = "") {
  return run_tool(H20_SMI_PATH, args, env);
}

TEST(Smi, DefaultTableListsEightDevicesAndExitsZero) {
  RunResult r = smi("");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("Bus-Id"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Memory-Usage"), std::string::npos) << r.out;
  std::regex row(R"(^\|\s+(\d+) \| .*MiB / \d+MiB)");
  int rows = 0;
  for (const std::string& l : lines(r.out))
    rows += std::regex_search(l, row);
  EXPECT_EQ(rows, 8) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(Smi, HelpExitsZero) {
  RunResult r = smi("--help");
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("--query-gpu"), std::string::npos) << r.out;
}

TEST(Smi, VersionPrintsRuntimeAndDriverVersions) {
  RunResult r = smi("--version");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(Runtime version: \d+\.\d+\.\d+)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(Driver version: \d+\.\d+\.\d+)"))) << r.out;
}

TEST(Smi, HelpQueryGpuListsFields) {
  RunResult r = smi("--help-query-gpu");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* f : {"index", "name", "pci.bus_id", "memory.total", "memory.used", "memory.free",
                        "numa_node", "multiprocessor_count"})
    EXPECT_NE(r.out.find(f), std::string::npos) << f;
}

// Bad arguments: exit 2, a message on stderr, nothing on stdout.
constexpr NamedArgs kBadArgs[] = {
    {"UnknownOption", "--no-such-option"},
    {"QueryGpuWithoutFormat", "--query-gpu=index"},
    {"QueryGpuUnknownField", "--query-gpu=index,bogus --format=csv"},
    {"FormatNotCsv", "--query-gpu=index --format=xml"},
    {"FormatUnknownModifier", "--query-gpu=index --format=csv,fancy"},
    {"FormatWithoutQueryGpu", "--format=csv"},
    {"IdOutOfRange", "-i 8"},
    {"IdUnknownBusId", "-i 0000:ff:00.0"},
    {"IdWithoutValue", "-i"},
    {"JsonWithQuery", "--json -q"},
    {"QueryGpuWithJson", "--query-gpu=index --format=csv --json"},
    {"UnexpectedPositional", "unexpected-positional"},
    {"TopoWithoutMode", "topo"},
    {"TopoP2pUnknownCapability", "topo --p2p x"},
    {"TopoMatrixWithQuery", "topo -m -q"},
    {"TopoMatrixWithQueryGpu", "topo -m --query-gpu=index --format=csv"},
    {"TopoMatrixExtraArgument", "topo -m extra"},
    {"TopoMatrixIdOutOfRange", "topo -m -i 8"},
    {"TopoUnknownOption", "topo --bogus"},
};
struct BadArgs : testing::TestWithParam<NamedArgs> {};
TEST_P(BadArgs, ExitsTwoWithMessageOnStderr) {
  const char* args = GetParam().args;
  RunResult r = smi(args);
  EXPECT_EQ(r.exitCode, 2) << args;
  EXPECT_FALSE(r.err.empty()) << args;
  EXPECT_TRUE(r.out.empty()) << r.out;
}
INSTANTIATE_TEST_SUITE_P(Smi, BadArgs, testing::ValuesIn(kBadArgs), argsName);

TEST(Smi, JsonParsesAndListsEightDevices) {
  RunResult r = smi("--json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);  // throws (test fails) if not JSON
  EXPECT_EQ(doc.at("device_count").get<int>(), 8);
  ASSERT_EQ(doc.at("devices").size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const auto& d = doc["devices"][static_cast<std::size_t>(i)];
    EXPECT_EQ(d.at("index").get<int>(), i);
    EXPECT_FALSE(d.at("name").get<std::string>().empty());
    EXPECT_GT(d.at("memory").at("total_bytes").get<std::uint64_t>(), 0u);
    EXPECT_LE(d.at("memory").at("used_bytes").get<std::uint64_t>(),
              d.at("memory").at("total_bytes").get<std::uint64_t>());
    EXPECT_TRUE(d.at("pci").at("bus_id").is_string());
    EXPECT_TRUE(d.at("numa_node").is_number_integer());
    EXPECT_TRUE(d.at("cpu_affinity").is_array());
  }
  EXPECT_TRUE(doc.at("runtime_version").is_string());
  EXPECT_TRUE(doc.at("driver_version").is_string());
}

TEST(Smi, JsonHonoursEmuDevices) {
  RunResult r = smi("--json", "H20_EMU_DEVICES=2");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("device_count").get<int>(), 2);
  EXPECT_EQ(doc.at("devices").size(), 2u);
}

TEST(Smi, CsvQueryHasRequestedColumnsWithUnits) {
  RunResult r =
      smi("--query-gpu=index,name,pci.bus_id,memory.total,memory.used,memory.free,numa_node,"
          "multiprocessor_count --format=csv");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::vector<std::string> ls = lines(r.out);
  ASSERT_EQ(ls.size(), 9u) << r.out;  // header + 8 devices
  EXPECT_EQ(ls[0],
            "index, name, pci.bus_id, memory.total [MiB], memory.used [MiB], memory.free [MiB], "
            "numa_node, multiprocessor_count");
  for (std::size_t i = 1; i < ls.size(); ++i) {
    std::vector<std::string> cols = split_csv(ls[i]);
    ASSERT_EQ(cols.size(), 8u) << ls[i];
    EXPECT_EQ(cols[0], std::to_string(i - 1));
    EXPECT_TRUE(std::regex_match(
        cols[2], std::regex(R"([0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])")))
        << cols[2];
    for (int c : {3, 4, 5})
      EXPECT_TRUE(std::regex_match(cols[c], std::regex(R"(\d+ MiB)"))) << cols[c];
  }
}

// Memory used comes from h20DeviceGetMemoryUsed: a fresh process has allocated (next to) nothing,
// and used + free never exceeds total (free is also capped by the emulator's backing budget, so
// the sum may be less).
TEST(Smi, MemoryUsedIsSmallOnAFreshChipAndConsistentWithFree) {
  RunResult r = smi("--json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  for (const auto& d : doc.at("devices")) {
    const auto& m = d.at("memory");
    const auto used = m.at("used_bytes").get<std::uint64_t>();
    const auto free = m.at("free_bytes").get<std::uint64_t>();
    const auto total = m.at("total_bytes").get<std::uint64_t>();
    EXPECT_LE(used, std::uint64_t{64} << 20) << d;
    EXPECT_LE(used + free, total) << d;
  }
  RunResult csv = smi("--query-gpu=memory.used,memory.free,memory.total --format=csv,noheader");
  ASSERT_EQ(csv.exitCode, 0) << csv.err;
  for (const std::string& l : lines(csv.out)) {
    std::vector<std::string> cols = split_csv(l);
    ASSERT_EQ(cols.size(), 3u) << l;
    EXPECT_LE(std::stoull(cols[0]), std::stoull(cols[2])) << l;
    EXPECT_LE(std::stoull(cols[0]) + std::stoull(cols[1]), std::stoull(cols[2])) << l;
  }
}

TEST(Smi, CsvNoheaderNounitsGivesBareValues) {
  RunResult r = smi("--query-gpu=index,memory.total --format=csv,noheader,nounits");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::vector<std::string> ls = lines(r.out);
  ASSERT_EQ(ls.size(), 8u) << r.out;
  for (std::size_t i = 0; i < ls.size(); ++i)
    EXPECT_TRUE(std::regex_match(ls[i], std::regex(std::to_string(i) + R"(, \d+)"))) << ls[i];
}

TEST(Smi, CsvWithTwoEmulatedDevicesGivesTwoRows) {
  RunResult r = smi("--query-gpu=index,name --format=csv,noheader", "H20_EMU_DEVICES=2");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 2u) << r.out;
}

TEST(Smi, IdSelectsDevicesByIndexAndBusId) {
  RunResult r = smi("-i 1,3 --query-gpu=index,pci.bus_id --format=csv,noheader");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::vector<std::string> ls = lines(r.out);
  ASSERT_EQ(ls.size(), 2u) << r.out;
  std::vector<std::string> second = split_csv(ls[1]);
  EXPECT_EQ(split_csv(ls[0])[0], "1");
  EXPECT_EQ(second[0], "3");

  RunResult byBus = smi("--id " + second[1] + " --query-gpu=index --format=csv,noheader");
  ASSERT_EQ(byBus.exitCode, 0) << byBus.err;
  EXPECT_EQ(lines(byBus.out), std::vector<std::string>{"3"});
}

TEST(Smi, DetailedQueryAndListPrintEveryDevice) {
  RunResult q = smi("-q");
  ASSERT_EQ(q.exitCode, 0) << q.err;
  EXPECT_NE(q.out.find("memory.total"), std::string::npos);
  RunResult l = smi("-L");
  ASSERT_EQ(l.exitCode, 0) << l.err;
  EXPECT_EQ(lines(l.out).size(), 8u) << l.out;
}

// A runtime failure is exit 1 with the runtime's message, never a crash or exit 2.
TEST(Smi, NoVisibleDeviceExitsOneWithRuntimeMessage) {
  RunResult r = smi("", "H20_VISIBLE_DEVICES=");
  EXPECT_EQ(r.exitCode, 1) << r.out;
  EXPECT_NE(r.err.find("h20-smi: h20GetDeviceCount"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(h20ErrorNoDevice)"), std::string::npos) << r.err;
}

TEST(Smi, InvalidConfigurationExitsOneWithRuntimeMessage) {
  RunResult r = smi("--json", "H20_EMU_DEVICES=bogus");
  EXPECT_EQ(r.exitCode, 1) << r.out;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("H20_EMU_DEVICES"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(h20ErrorInitializationError)"), std::string::npos) << r.err;
}

// ---- h20-smi topo ------------------------------------------------------------------------

// The connection matrix of `topo -m`: the cells of each H20_<i> row, then its CPU and NUMA
// affinity.
struct TopoMatrix {
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> cpuAffinity, numaAffinity;
};

TopoMatrix parse_matrix(const std::string& out) {
  TopoMatrix m;
  std::vector<std::string> ls = lines(out);
  auto header = std::find_if(ls.begin(), ls.end(), [](const std::string& l) {
    return l.find("CPU Affinity") != std::string::npos;
  });
  if (header == ls.end()) return m;
  std::istringstream h(*header);
  std::vector<std::string> labels;
  for (std::string w; h >> w && w.starts_with("H20_");)
    labels.push_back(w);
  for (auto it = header + 1; it != ls.end() && it->starts_with("H20_"); ++it) {
    std::istringstream row(*it);
    std::string label;
    row >> label;
    std::vector<std::string> cells(labels.size());
    for (auto& c : cells)
      row >> c;
    std::string cpu, numa;
    row >> cpu >> numa;
    m.cells.push_back(cells);
    m.cpuAffinity.push_back(cpu);
    m.numaAffinity.push_back(numa);
  }
  return m;
}

TopoMatrix topo_matrix(const std::string& topology, const std::string& extra = "") {
  RunResult r = smi("topo -m " + extra, "H20_EMU_TOPOLOGY=" + topology);
  EXPECT_EQ(r.exitCode, 0) << topology << ": " << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("Legend:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HOST ="), std::string::npos) << r.out;
  return parse_matrix(r.out);
}

void expect_affinity_columns(const TopoMatrix& m) {
  const std::regex cpus(R"((\d+(-\d+)?)(,\d+(-\d+)?)*|N/A)");
  const std::regex numa(R"(\d+|N/A)");
  for (std::size_t i = 0; i < m.cells.size(); ++i) {
    EXPECT_TRUE(std::regex_match(m.cpuAffinity[i], cpus)) << m.cpuAffinity[i];
    EXPECT_TRUE(std::regex_match(m.numaAffinity[i], numa)) << m.numaAffinity[i];
  }
}

// The expected code of every cell under a preset, from docs/topology.md.
using CodeOf = std::string (*)(int a, int b);

void expect_codes(const std::string& topology, CodeOf code) {
  TopoMatrix m = topo_matrix(topology);
  ASSERT_EQ(m.cells.size(), 8u) << topology;
  for (int a = 0; a < 8; ++a) {
    ASSERT_EQ(m.cells[static_cast<std::size_t>(a)].size(), 8u) << topology;
    for (int b = 0; b < 8; ++b)
      EXPECT_EQ(m.cells[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)],
                a == b ? std::string("X") : code(a, b))
          << topology << " H20_" << a << " -> H20_" << b;
  }
  expect_affinity_columns(m);
}

TEST(SmiTopo, SwitchMatrixHasEveryPairOneSwitchHopApart) {
  expect_codes("switch", [](int, int) { return std::string("SW1"); });
}

TEST(SmiTopo, DefaultTopologyIsTheSwitch) {
  RunResult r = smi("topo -m");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  TopoMatrix m = parse_matrix(r.out);
  ASSERT_EQ(m.cells.size(), 8u) << r.out;
  EXPECT_EQ(m.cells[0][7], "SW1");
}

TEST(SmiTopo, MeshMatrixHasEveryPairOneLinkApart) {
  expect_codes("mesh", [](int, int) { return std::string("L1"); });
}

TEST(SmiTopo, RingMatrixCountsHopsAlongTheRing) {
  expect_codes("ring", [](int a, int b) {
    const int d = std::abs(a - b);
    return "L" + std::to_string(std::min(d, 8 - d));
  });
}

TEST(SmiTopo, PairsMatrixLinksOnlyWithinAPair) {
  expect_codes("pairs", [](int a, int b) { return std::string(a / 2 == b / 2 ? "L1" : "HOST"); });
}

TEST(SmiTopo, IdRestrictsTheMatrix) {
  TopoMatrix m = topo_matrix("pairs", "-i 0,1,2");
  ASSERT_EQ(m.cells.size(), 3u);
  EXPECT_EQ(m.cells[0], (std::vector<std::string>{"X", "L1", "HOST"}));
  EXPECT_EQ(m.cells[2], (std::vector<std::string>{"HOST", "HOST", "X"}));
}

TEST(SmiTopo, MatrixFollowsEmuDevices) {
  RunResult r = smi("topo -m", "H20_EMU_DEVICES=2");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  TopoMatrix m = parse_matrix(r.out);
  ASSERT_EQ(m.cells.size(), 2u) << r.out;
  EXPECT_EQ(m.cells[0], (std::vector<std::string>{"X", "SW1"}));
}

// A topology file may mix the kinds: direct links between 0 and 1, a switch between 2 and 3,
// nothing else (tests/multichip/topologies/two_islands.json).
TEST(SmiTopo, FileTopologyShowsEachLinkKind) {
  RunResult r = smi(
      "topo -m", "H20_EMU_DEVICES=4 H20_EMU_TOPOLOGY=" H20_TEST_TOPOLOGY_DIR "/two_islands.json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  TopoMatrix m = parse_matrix(r.out);
  ASSERT_EQ(m.cells.size(), 4u) << r.out;
  EXPECT_EQ(m.cells[0], (std::vector<std::string>{"X", "L1", "HOST", "HOST"}));
  EXPECT_EQ(m.cells[1], (std::vector<std::string>{"L1", "X", "HOST", "HOST"}));
  EXPECT_EQ(m.cells[2], (std::vector<std::string>{"HOST", "HOST", "X", "SW1"}));
  EXPECT_EQ(m.cells[3], (std::vector<std::string>{"HOST", "HOST", "SW1", "X"}));
  for (const char* code : {"L# ", "SW# ", "HOST "})
    EXPECT_NE(r.out.find(std::string("  ") + code), std::string::npos) << code << "\n" << r.out;
}

TEST(SmiTopo, JsonHasHopsBandwidthAndCodesOfEveryPair) {
  RunResult r = smi("topo -m --json", "H20_EMU_TOPOLOGY=ring");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc.at("device_count").get<int>(), 8);
  ASSERT_EQ(doc.at("devices").size(), 8u);
  for (const auto& d : doc.at("devices")) {
    EXPECT_TRUE(d.at("numa_node").is_number_integer());
    EXPECT_TRUE(d.at("cpu_affinity").is_array());
    EXPECT_TRUE(d.at("cpu_affinity_list").is_string());
  }
  ASSERT_EQ(doc.at("matrix").size(), 8u);
  ASSERT_EQ(doc.at("links").size(), 56u);  // every ordered pair of distinct devices
  for (const auto& l : doc.at("links")) {
    const int a = l.at("src").get<int>(), b = l.at("dst").get<int>();
    const int ring = std::min(std::abs(a - b), 8 - std::abs(a - b));
    EXPECT_EQ(l.at("hops").get<int>(), ring) << l;
    EXPECT_EQ(l.at("code").get<std::string>(), "L" + std::to_string(ring)) << l;
    EXPECT_EQ(l.at("link_kind").get<std::string>(), "direct") << l;
    EXPECT_EQ(doc["matrix"][static_cast<std::size_t>(a)][static_cast<std::size_t>(b)], l["code"]);
    EXPECT_GT(l.at("bandwidth_mbps").get<int>(), 0) << l;
    EXPECT_TRUE(l.at("peer_access_supported").get<bool>()) << l;
  }
  EXPECT_TRUE(doc.at("legend").contains("HOST"));
}

TEST(SmiTopo, JsonMarksHostPathsWithoutHops) {
  RunResult r = smi("topo --json", "H20_EMU_TOPOLOGY=pairs");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  for (const auto& l : doc.at("links")) {
    const bool linked = l.at("src").get<int>() / 2 == l.at("dst").get<int>() / 2;
    EXPECT_EQ(l.at("code").get<std::string>(), linked ? "L1" : "HOST") << l;
    EXPECT_EQ(l.at("hops").get<int>(), linked ? 1 : -1) << l;
    EXPECT_EQ(l.at("link_kind").get<std::string>(), linked ? "direct" : "host") << l;
    EXPECT_EQ(l.at("peer_access_supported").get<bool>(), linked) << l;
  }
}

TEST(SmiTopo, P2pReadMatrixSaysOkOnlyForLinkedPairs) {
  RunResult r = smi("topo --p2p r", "H20_EMU_TOPOLOGY=pairs");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  std::vector<std::string> rows;
  for (const std::string& l : lines(r.out))
    if (l.starts_with("H20_")) rows.push_back(l);
  ASSERT_EQ(rows.size(), 8u) << r.out;
  std::istringstream row0(rows[0]);
  std::vector<std::string> cells;
  for (std::string w; row0 >> w;)
    cells.push_back(w);
  EXPECT_EQ(cells,
            (std::vector<std::string>{"H20_0", "X", "OK", "NS", "NS", "NS", "NS", "NS", "NS"}));
}

TEST(SmiTopo, BrokenTopologyExitsOneWithRuntimeMessage) {
  RunResult r = smi("topo -m", "H20_EMU_TOPOLOGY=no-such-preset");
  EXPECT_EQ(r.exitCode, 1) << r.out;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("H20_EMU_TOPOLOGY"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(h20ErrorInitializationError)"), std::string::npos) << r.err;
}

TEST(SmiTopo, HelpListsItsOptions) {
  RunResult r = smi("topo --help");
  EXPECT_EQ(r.exitCode, 0);
  for (const char* opt : {"--matrix", "--p2p", "--json"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << "\n" << r.out;
}

TEST(Smi, DefaultTableShowsComputeModeAndAnEmptyProcessTable) {
  RunResult r = smi("-i 0");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("Compute M."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| Default "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Processes:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("No running processes found"), std::string::npos) << r.out;
}

TEST(Smi, ComputeModeIsAQueryFieldAndInTheJson) {
  RunResult r = smi("--query-gpu=index,compute_mode --format=csv,noheader -i 1");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ("1, DEFAULT\n", r.out);
  r = smi("--json -i 0");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ("DEFAULT", doc["devices"][0]["compute_mode"]);
  EXPECT_TRUE(doc["devices"][0]["processes"].is_array());
}

TEST(Smi, QueryComputeAppsPrintsOnlyTheHeaderWhenNoProcessHoldsMemory) {
  RunResult r = smi("--query-compute-apps=pid,process_name,used_memory --format=csv");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ("pid, process_name, used_memory [MiB]\n", r.out);
}

TEST(Smi, SettingTheComputeModeNeedsTheDaemonAndAKnownMode) {
  RunResult r = smi("-i 0 -c EXCLUSIVE_PROCESS");
  EXPECT_EQ(r.exitCode, 1) << r.out;
  EXPECT_NE(r.err.find("h20ErrorNotSupported"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("H20_DRIVER=daemon"), std::string::npos) << r.err;
  for (const char* bad : {"-c 1", "-c exclusive_thread", "-c 4", "-c ''"}) {
    r = smi(bad);
    EXPECT_EQ(r.exitCode, 2) << bad << ": " << r.out << r.err;
  }
  r = smi("--query-compute-apps=pid");
  EXPECT_EQ(r.exitCode, 2) << r.out;
  EXPECT_NE(r.err.find("--format"), std::string::npos) << r.err;
  r = smi("--query-compute-apps=pid,gpu_uuid --format=csv");
  EXPECT_EQ(r.exitCode, 2) << r.out;
  EXPECT_NE(r.err.find("gpu_uuid"), std::string::npos) << r.err;
  r = smi("--query-compute-apps=pid --query-gpu=index --format=csv");
  EXPECT_EQ(r.exitCode, 2) << r.out;
}

}  // namespace
}  // namespace h20::tools_test
