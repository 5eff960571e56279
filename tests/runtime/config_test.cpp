// config_test.cpp - parsing of the runtime's environment variables into its typed configuration.
#include "core/config.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

using namespace h20::rt;

namespace {
RuntimeConfig parse(std::map<std::string, std::string> vars) {
  return parseConfig([vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}
h20Error_t parseError(std::map<std::string, std::string> vars, std::string* message) {
  try {
    parse(std::move(vars));
  } catch (const Error& e) {
    *message = e.what();
    return e.code();
  }
  return h20Success;
}
}  // namespace

TEST(Config, DefaultsModelAnEightChipBox) {
  RuntimeConfig c = parse({});
  EXPECT_EQ(c.driver.emu.chips, 8);
  EXPECT_EQ(c.driver.emu.backingBudgetBytes, 0u);
  EXPECT_FALSE(c.visibleDevices.has_value());
  EXPECT_EQ(c.logLevel, LogLevel::error);
}

TEST(Config, ParsesEveryVariable) {
  RuntimeConfig c = parse({{"H20_EMU_DEVICES", "4"},
                           {"H20_EMU_MEMORY_BUDGET", "512MiB"},
                           {"H20_EMU_WORKERS", "3"},
                           {"H20_LOG_LEVEL", "Debug"},
                           {"H20_VISIBLE_DEVICES", "2,1"}});
  EXPECT_EQ(c.driver.emu.chips, 4);
  EXPECT_EQ(c.driver.emu.backingBudgetBytes, 512u << 20);
  EXPECT_EQ(c.driver.emu.workerThreads, 3);
  EXPECT_EQ(c.logLevel, LogLevel::debug);
  EXPECT_EQ(*c.visibleDevices, "2,1");
}

TEST(Config, MalformedValuesFailInitialisationNamingVariableAndValue) {
  for (auto [name, value] : std::map<std::string, std::string>{{"H20_EMU_DEVICES", "eight"},
                                                               {"H20_EMU_WORKERS", "0"},
                                                               {"H20_EMU_MEMORY_BUDGET", "lots"},
                                                               {"H20_LOG_LEVEL", "loud"}}) {
    std::string message;
    EXPECT_EQ(parseError({{name, value}}, &message), h20ErrorInitializationError) << name;
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(value), std::string::npos) << message;
  }
  std::string message;
  EXPECT_EQ(parseError({{"H20_EMU_DEVICES", "65"}}, &message), h20ErrorInitializationError);
  EXPECT_EQ(parseError({{"H20_EMU_DEVICES", "0"}}, &message), h20ErrorInitializationError);
}

TEST(Config, DriverChoosesTheBackendAndItsSocket) {
  EXPECT_EQ("emu", parse({}).driver.backend);
  EXPECT_TRUE(parse({}).driver.daemon.socketPath.empty()) << "empty: h20d's default socket";
  RuntimeConfig c = parse({{"H20_DRIVER", " daemon "},
                           {"H20_DAEMON_SOCKET", "/run/h20.sock"},
                           {"H20_EMU_WORKERS", "3"}});
  EXPECT_EQ("daemon", c.driver.backend);
  EXPECT_EQ("/run/h20.sock", c.driver.daemon.socketPath);
  EXPECT_EQ(3, c.driver.daemon.workerThreads) << "the client's engine is sized as the emulator's";
  std::string message;
  EXPECT_EQ(parseError({{"H20_DRIVER", "cuda"}}, &message), h20ErrorInitializationError);
  EXPECT_NE(message.find("cuda"), std::string::npos) << message;
  EXPECT_NE(message.find("emu, daemon"), std::string::npos) << message;
  EXPECT_EQ(parseError({{"H20_DAEMON_SOCKET", "  "}}, &message), h20ErrorInitializationError);
  EXPECT_NE(message.find("H20_DAEMON_SOCKET"), std::string::npos) << message;
}

TEST(Config, ByteSizesAcceptBinaryAndDecimalUnits) {
  EXPECT_EQ(parseByteSize("1048576"), std::size_t{1} << 20);
  EXPECT_EQ(parseByteSize("64MiB"), std::size_t{64} << 20);
  EXPECT_EQ(parseByteSize("2G"), std::size_t{2} << 30);
  EXPECT_EQ(parseByteSize(" 3 gib "), std::size_t{3} << 30);
  EXPECT_EQ(parseByteSize("5MB"), std::size_t{5000000});
  EXPECT_FALSE(parseByteSize("").has_value());
  EXPECT_FALSE(parseByteSize("MiB").has_value());
  EXPECT_FALSE(parseByteSize("12parsecs").has_value());
  EXPECT_FALSE(parseByteSize("99999999999999999999").has_value());
  EXPECT_FALSE(parseByteSize("99999999999TiB").has_value());
}

TEST(Config, VisibleDevicesFollowCudaVisibleDevicesRules) {
  EXPECT_EQ(parseVisibleDevices("0,1,2", 8), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(parseVisibleDevices("5, 3", 8), (std::vector<int>{5, 3}));
  // The list stops at the first invalid entry: out of range, malformed or repeated.
  EXPECT_EQ(parseVisibleDevices("1,9,2", 8), (std::vector<int>{1}));
  EXPECT_EQ(parseVisibleDevices("1,x,2", 8), (std::vector<int>{1}));
  EXPECT_EQ(parseVisibleDevices("1,1,2", 8), (std::vector<int>{1}));
  EXPECT_EQ(parseVisibleDevices("-1,0", 8), (std::vector<int>{}));
  EXPECT_TRUE(parseVisibleDevices("", 8).empty());
}
