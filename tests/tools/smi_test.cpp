// smi_test.cpp - h20-smi as a user and a script see it: exit statuses, the table, CSV and JSON.
//
// Runs the built h20-smi as a child process (tool_runner). The default configuration is the
// 8-chip emulated server; H20_EMU_DEVICES changes the count.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <regex>

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
struct BadArgs : testing::TestWithParam<const char*> {};
TEST_P(BadArgs, ExitsTwoWithMessageOnStderr) {
  RunResult r = smi(GetParam());
  EXPECT_EQ(r.exitCode, 2) << GetParam();
  EXPECT_FALSE(r.err.empty()) << GetParam();
  EXPECT_TRUE(r.out.empty()) << r.out;
}
INSTANTIATE_TEST_SUITE_P(
    Smi, BadArgs,
    testing::Values("--no-such-option", "--query-gpu=index", "--query-gpu=index,bogus --format=csv",
                    "--query-gpu=index --format=xml", "--query-gpu=index --format=csv,fancy",
                    "--format=csv", "-i 8", "-i 0000:ff:00.0", "-i", "--json -q",
                    "--query-gpu=index --format=csv --json", "unexpected-positional"));

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

}  // namespace
}  // namespace h20::tools_test
