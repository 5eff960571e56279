// bench_test.cpp - h20-bench smoke tests: every suite (p2p and ccl included) runs and reports;
// argument errors exit 2.
//
// Deliberately no assertion on any figure: timings depend on the machine and its load. The full
// measurement is a tool run, documented in docs/tools.md, never a test.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>
#include <string>

#include "tool_runner.hpp"

namespace h20::tools_test {
namespace {

RunResult bench(const std::string& args, const std::string& env = "") {
  return run_tool(H20_BENCH_PATH, args, env);
}

// A figure is present, a number (NaN and infinity are written as null) and greater than zero.
// Which value it has is the machine's business, never the test's.
void expect_positive_figure(const nlohmann::json& object, const char* key) {
  ASSERT_TRUE(object.contains(key)) << key << " missing in " << object;
  ASSERT_TRUE(object.at(key).is_number()) << key << " in " << object;
  const double v = object.at(key).get<double>();
  EXPECT_TRUE(std::isfinite(v) && v > 0) << key << " = " << v << " in " << object;
}

// The row of a JSON table whose `field` is `value`; null if there is none.
const nlohmann::json* find_row(const nlohmann::json& table, const char* field, const char* value) {
  for (const auto& row : table)
    if (row.contains(field) && row.at(field) == value) return &row;
  return nullptr;
}

TEST(Bench, QuickRunExitsZeroAndPrintsItsTables) {
  RunResult r = bench("--quick");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* heading :
       {"## Summary", "## Launch", "## Copies", "## Stream overlap", "## Idle", "| benchmark |"})
    EXPECT_NE(r.out.find(heading), std::string::npos) << heading << "\n" << r.out;
  // Every latency comes with its spread; the pageable asynchronous copy has its own row.
  for (const char* text :
       {"| p50 (us) | p99 (us) | mean (us) |", "launch + synchronise round trip, p99 |",
        "h20EventRecord + h20EventQuery", "| H2D | pageable | h20MemcpyAsync |"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  // The multi-chip suites run only when named.
  EXPECT_EQ(r.out.find("P2P"), std::string::npos) << r.out;
}

TEST(Bench, QuickJsonParsesWithAllSummaryKeys) {
  RunResult r = bench("--quick --json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  std::vector<std::string> keys;
  for (const auto& row : doc.at("summary")) {
    keys.push_back(row.at("key").get<std::string>());
    // An idle process may well use no CPU at all; every other figure is a time or a ratio.
    if (keys.back() == "idle_cores")
      EXPECT_TRUE(row.at("value").is_number()) << row;
    else
      expect_positive_figure(row, "value");
  }
  for (const char* k :
       {"launch_sync_us", "launch_sync_p99_us", "enqueue_us", "event_record_query_us",
        "h2d_pinned_ratio", "h2d_pageable_ratio", "h2d_pageable_async_ratio", "d2h_pinned_ratio",
        "d2h_pageable_ratio", "d2d_ratio", "overlap_ratio", "idle_cores"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
}

TEST(Bench, LaunchReportsMedianP50P99AndMeanOfEveryLatency) {
  RunResult r = bench("launch --quick --json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const nlohmann::json launch = nlohmann::json::parse(r.out).at("tables").at("Launch");
  for (const char* m :
       {"launch_sync", "enqueue", "event_record_query", "event_record_query_untimed"}) {
    const nlohmann::json* row = find_row(launch, "measurement", m);
    ASSERT_NE(row, nullptr) << m << " missing in " << launch;
    for (const char* key : {"median_us", "p50_us", "p99_us", "mean_us"})
      expect_positive_figure(*row, key);
    EXPECT_GE(row->at("p99_us").get<double>(), row->at("p50_us").get<double>()) << *row;
    EXPECT_GT(row->at("samples").get<int>(), 0) << *row;
  }
}

TEST(Bench, CopyMeasuresPageableAsyncH2dInGbPerSecondAndAgainstMemcpy) {
  RunResult r = bench("copy --quick --json --sizes 64K");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const nlohmann::json copies = nlohmann::json::parse(r.out).at("tables").at("Copies");
  const nlohmann::json* row = find_row(copies, "case", "h2d_pageable_async");
  ASSERT_NE(row, nullptr) << copies;
  EXPECT_EQ(row->at("call"), "h20MemcpyAsync") << *row;
  EXPECT_EQ(row->at("bytes"), 65536) << *row;
  for (const char* key : {"h20_gb_per_s", "memcpy_gb_per_s", "ratio"})
    expect_positive_figure(*row, key);
}

// --load keeps busy-looping processes running alongside; the header says so, and none outlives
// the run (the test would hang on their open stdout otherwise).
TEST(Bench, LoadRunsAlongsideAndIsNamedInTheHeader) {
  RunResult r = bench("launch --quick --load 1");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("1 busy-looping process alongside (--load)"), std::string::npos) << r.out;
  r = bench("launch --quick --load 2 --json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("machine").at("background_load"), 2);
}

TEST(Bench, SingleSuiteWithOptionRuns) {
  RunResult r = bench("copy --quick --sizes 64K");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("64 KiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("## Launch"), std::string::npos) << r.out;
}

constexpr NamedArgs kBadArgs[] = {
    {"UnknownOption", "--no-such-option"},
    {"UnknownSuite", "nosuchsuite"},
    {"CopySizeUnknownSuffix", "copy --sizes 12X"},
    {"RepsZero", "--reps 0"},
    {"OverlapKernelMsNegative", "overlap --kernel-ms -1"},
    {"DeviceOutOfRange", "launch --quick --device 8"},
    {"LoadNegative", "launch --quick --load -1"},
    {"LoadNotANumber", "launch --quick --load many"},
    {"P2pSizeZero", "p2p --size 0"},
    {"P2pSizeUnknownSuffix", "p2p --size 12X"},
    {"P2pExtraArgument", "p2p extra"},
    {"CclJsonAfterSubcommand", "ccl --json"},
    {"CclJsonBeforeSubcommand", "--json ccl"},
};
struct BenchBadArgs : testing::TestWithParam<NamedArgs> {};
TEST_P(BenchBadArgs, ExitsTwoWithMessageOnStderr) {
  const char* args = GetParam().args;
  RunResult r = bench(args);
  EXPECT_EQ(r.exitCode, 2) << args;
  EXPECT_FALSE(r.err.empty()) << args;
}
INSTANTIATE_TEST_SUITE_P(Bench, BenchBadArgs, testing::ValuesIn(kBadArgs), argsName);

TEST(Bench, HelpExitsZero) {
  RunResult r = bench("--help");
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("launch"), std::string::npos) << r.out;
}

// ---- p2p ----------------------------------------------------------------------------------

constexpr const char* kP2pTables[] = {
    "## P2P paths as modelled",
    "## Unidirectional P2P bandwidth, peer access disabled (GB/s)",
    "## Unidirectional P2P bandwidth, peer access enabled (GB/s)",
    "## Bidirectional P2P bandwidth, peer access disabled (GB/s)",
    "## Bidirectional P2P bandwidth, peer access enabled (GB/s)",
    "## P2P latency, peer access disabled (us)",
    "## P2P latency, peer access enabled (us)",
    "## P2P summary by path: modelled vs measured",
};

TEST(BenchP2p, QuickRunPrintsEveryMatrixOverEightDevices) {
  RunResult r = bench("p2p --quick");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* heading : kP2pTables)
    EXPECT_NE(r.out.find(heading), std::string::npos) << heading << "\n" << r.out;
  EXPECT_NE(r.out.find("| D\\D | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("host memcpy"), std::string::npos) << r.out;  // the caveat is printed
  EXPECT_EQ(r.out.find("## Launch"), std::string::npos) << r.out;
}

// Under the pairs preset the model has linked and host-staged pairs; every matrix has a figure
// for every pair it measures.
TEST(BenchP2p, QuickJsonHasEveryPairAndBothPathKinds) {
  RunResult r = bench("p2p --quick --json", "H20_EMU_DEVICES=4 H20_EMU_TOPOLOGY=pairs");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  const auto& tables = doc.at("tables");
  const auto& model = tables.at(
      "P2P paths as modelled (code as h20-smi topo -m prints it, GB/s "
      "per direction)");
  ASSERT_EQ(model.size(), 12u);
  for (const auto& cell : model) {
    const bool linked = cell.at("src").get<int>() / 2 == cell.at("dst").get<int>() / 2;
    EXPECT_EQ(cell.at("code").get<std::string>(), linked ? "L1" : "HOST") << cell;
    EXPECT_GT(cell.at("bandwidth_mbps").get<int>(), 0) << cell;
  }
  for (const char* t : {"Unidirectional P2P bandwidth, peer access disabled (GB/s)",
                        "Unidirectional P2P bandwidth, peer access enabled (GB/s)"}) {
    ASSERT_EQ(tables.at(t).size(), 16u) << t;  // the diagonal too
    for (const auto& cell : tables.at(t))
      EXPECT_GT(cell.at("gb_per_s").get<double>(), 0.0) << t << cell;
  }
  EXPECT_EQ(tables.at("Bidirectional P2P bandwidth, peer access enabled (GB/s)").size(), 12u);
  for (const auto& cell : tables.at("P2P latency, peer access enabled (us)"))
    for (const char* key :
         {"round_trip_us", "round_trip_p99_us", "round_trip_mean_us", "device_us"})
      expect_positive_figure(cell, key);
  std::vector<std::string> paths;
  for (const auto& row : tables.at("P2P summary by path: modelled vs measured")) {
    paths.push_back(row.at("path").get<std::string>());
    for (const char* key : {"disabled_round_trip_us", "enabled_round_trip_us",
                            "disabled_round_trip_p99_us", "enabled_round_trip_p99_us"})
      expect_positive_figure(row, key);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"L1", "HOST"}));
  EXPECT_EQ(doc.at("machine").at("topology").get<std::string>(), "pairs");
}

TEST(BenchP2p, NoBidirectionalSkipsThoseMatrices) {
  RunResult r = bench("p2p --quick --no-bidirectional", "H20_EMU_DEVICES=2");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out.find("Bidirectional"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Unidirectional"), std::string::npos) << r.out;
}

// ---- ccl ----------------------------------------------------------------------------------

#if H20_TOOLS_TEST_HAVE_CCL
TEST(BenchCcl, QuickRunPrintsEveryCollectiveWithNothingWrong) {
  RunResult r = bench("ccl --quick");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* text : {"# h20-bench", "quick", "# allReduce", "# allGather", "# reduceScatter",
                           "# broadcast", "busbw", "#wrong", "Out of bounds values : 0 OK"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  // --quick stops at 512 KiB.
  EXPECT_NE(r.out.find("524288"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("67108864"), std::string::npos) << r.out;
}

TEST(BenchCcl, QuickBeforeTheSubcommandAndOwnOptionsWork) {
  RunResult r = bench("--quick ccl -c broadcast -d bf16 -g 2");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("# broadcast"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("# allReduce"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bf16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 ranks"), std::string::npos) << r.out;
}

// Every bad argument or option value exits 2 before any device work, from h20-bench ccl and from
// the stand-alone h20-ccl-bench alike.
constexpr NamedArgs kBadCclArgs[] = {
    {"UnknownOption", "--no-such-option"},
    {"UnknownCollective", "--collective nosuch"},
    {"UnsupportedDatatype", "--datatype int8"},
    {"UnsupportedOp", "--op prod"},
    {"MinbytesUnknownSuffix", "--minbytes 12X"},
    {"MaxbytesWithoutNumber", "--maxbytes M"},
    {"MinbytesNegative", "--minbytes -8"},
    {"MinbytesAboveMaxbytes", "--minbytes 1M --maxbytes 1K"},
    {"NdevAboveDeviceCount", "--ndev 9"},
    {"NdevNegative", "--ndev -1"},
    {"RootOutOfRange", "--root 8"},
    {"UnknownAlgo", "--algo tree"},
    {"ItersZero", "--iters 0"},
    {"StepfactorBelowOne", "--stepfactor 0.5"},
};
struct CclBadArgs : testing::TestWithParam<NamedArgs> {};
TEST_P(CclBadArgs, ExitTwoWithMessageOnStderr) {
  const char* args = GetParam().args;
  for (const char* program : {H20_BENCH_PATH, H20_CCL_BENCH_PATH}) {
    const bool viaBench = std::string(program) == H20_BENCH_PATH;
    RunResult r = run_tool(program, std::string(viaBench ? "ccl " : "") + args, "");
    EXPECT_EQ(r.exitCode, 2) << program << " " << args << "\n" << r.out << r.err;
    EXPECT_FALSE(r.err.empty()) << program << " " << args;
    EXPECT_EQ(r.out.find("# allReduce"), std::string::npos) << program << " " << args;
  }
}
INSTANTIATE_TEST_SUITE_P(BenchCcl, CclBadArgs, testing::ValuesIn(kBadCclArgs), argsName);

TEST(BenchCcl, NoVisibleDeviceExitsOneNamingTheCause) {
  RunResult r = run_tool(H20_CCL_BENCH_PATH, "", "H20_VISIBLE_DEVICES=");
  EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("h20ErrorNoDevice"), std::string::npos) << r.err;
}

TEST(BenchCcl, StandAloneHelpExitsZero) {
  RunResult r = run_tool(H20_CCL_BENCH_PATH, "--help", "");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("--maxbytes"), std::string::npos) << r.out;
}

TEST(BenchCcl, HelpShowsTheBenchmarksOptions) {
  RunResult r = bench("ccl --help");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  for (const char* opt : {"--minbytes", "--maxbytes", "--collective", "--datatype", "--quick"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << "\n" << r.out;
}
#else
TEST(BenchCcl, WithoutTheCollectivesLibraryExitsOne) {
  RunResult r = bench("ccl --quick");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("libh20ccl"), std::string::npos) << r.err;
}
#endif

TEST(Bench, HelpListsTheMultiChipSubcommands) {
  RunResult r = bench("--help");
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("p2p"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ccl"), std::string::npos) << r.out;
}

}  // namespace

TEST(BenchDaemon, QuickRunComparesEveryFigureWithTheInProcessBackend) {
  // Starts an h20d of its own (the one built beside h20-bench) and its children on both backends.
  RunResult r = bench("daemon --quick --json");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  std::set<std::string> keys;
  for (const auto& row : doc.at("summary"))
    keys.insert(row.at("key").get<std::string>());
  EXPECT_TRUE(keys.count("daemon_launch_sync_ratio") && keys.count("daemon_enqueue_ratio"))
      << r.out;
  std::set<std::string> rows;
  for (const auto& row : doc.at("tables").at("Device daemon")) {
    rows.insert(row.at("measurement").get<std::string>());
    EXPECT_GT(row.at("daemon").get<double>(), 0) << row;
  }
  for (const char* m : {"alloc_free", "launch_sync", "enqueue", "event_record_query",
                        "ipc_open_close", "event_wait", "copy_gbps"})
    EXPECT_TRUE(rows.count(m)) << m << "\n" << r.out;
}

TEST(BenchDaemon, MissingDaemonProgramExitsOneNamingIt) {
  RunResult r = bench("daemon --quick --h20d /nonexistent/h20d");
  EXPECT_EQ(r.exitCode, 1) << r.out;
  EXPECT_NE(r.err.find("/nonexistent/h20d"), std::string::npos) << r.err;
}

TEST(Bench, HelpListsTheDaemonSubcommand) {
  RunResult r = bench("--help");
  ASSERT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("daemon"), std::string::npos) << r.out;
}

}  // namespace h20::tools_test
