// topology_env_test.cpp - H20_EMU_TOPOLOGY presets and files seen through the public API, each in a
// child process (the runtime reads its configuration once).
#include "child_process.hpp"
#include "h20_test.hpp"

#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <vector>

using h20test::Emit;
using h20test::RunChild;

H20_CHILD_SCENARIO(TopologyQueries) {
  int n = 0;
  const h20Error_t rc = h20GetDeviceCount(&n);
  Emit("rc", h20GetErrorName(rc));
  Emit("message", h20GetLastErrorMessage());
  if (rc != h20Success) return 0;
  int can = -1;
  h20DeviceCanAccessPeer(&can, 0, 1);
  Emit("can01", can);
  h20DeviceCanAccessPeer(&can, 1, 2);
  Emit("can12", can);
  int hops = 0;
  h20DeviceGetP2PAttribute(&hops, h20DevP2PAttrHopCount, 0, 3);
  Emit("hops03", hops);
  int kind = -1;
  h20DeviceGetP2PAttribute(&kind, h20DevP2PAttrLinkKind, 0, 1);
  Emit("kind01", kind);
  h20DeviceGetP2PAttribute(&kind, h20DevP2PAttrLinkKind, 0, 3);
  Emit("kind03", kind);
  h20SetDevice(1);
  Emit("enable12", h20GetErrorName(h20DeviceEnablePeerAccess(2, 0)));
  // A copy between chips without a link is staged through the host and still correct.
  void *a = nullptr, *b = nullptr;
  std::vector<unsigned char> in(777, 0x5e), out(777, 0);
  h20SetDevice(1);
  h20Malloc(&a, in.size());
  h20Memcpy(a, in.data(), in.size(), h20MemcpyHostToDevice);
  h20SetDevice(2);
  h20Malloc(&b, in.size());
  h20MemcpyPeer(b, 2, a, 1, in.size());
  h20Memcpy(out.data(), b, out.size(), h20MemcpyDeviceToHost);
  Emit("copyOk", out == in ? 1 : 0);
  return 0;
}

TEST(TopologyEnv, PairsPresetLinksOnlyWithinPairs) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  auto r = RunChild("TopologyQueries", {{"H20_EMU_TOPOLOGY", "pairs"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("rc"), "h20Success");
  EXPECT_EQ(r.IntValue("can01"), 1);
  EXPECT_EQ(r.IntValue("can12"), 0);
  EXPECT_EQ(r.IntValue("hops03"), -1);
  EXPECT_EQ(r.IntValue("kind01"), h20P2PLinkDirect);
  EXPECT_EQ(r.IntValue("kind03"), h20P2PLinkHost);
  EXPECT_EQ(r.Value("enable12"), "h20ErrorPeerAccessUnsupported");
  EXPECT_EQ(r.IntValue("copyOk"), 1);
}

TEST(TopologyEnv, RingPresetReportsMultiHopPaths) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  auto r = RunChild("TopologyQueries", {{"H20_EMU_TOPOLOGY", "ring"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.IntValue("can12"), 1);
  EXPECT_EQ(r.IntValue("hops03"), 3);
  EXPECT_EQ(r.IntValue("kind01"), h20P2PLinkDirect);
  EXPECT_EQ(r.IntValue("kind03"), h20P2PLinkDirect);
  EXPECT_EQ(r.Value("enable12"), "h20Success");
}

TEST(TopologyEnv, FileTopologyIsApplied) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  auto r = RunChild(
      "TopologyQueries",
      {{"H20_EMU_TOPOLOGY", H20_TEST_TOPOLOGY_DIR "/two_islands.json"}, {"H20_EMU_DEVICES", "4"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("rc"), "h20Success");
  EXPECT_EQ(r.IntValue("can01"), 1);
  EXPECT_EQ(r.IntValue("can12"), 0);
  EXPECT_EQ(r.IntValue("kind01"), h20P2PLinkDirect);
  EXPECT_EQ(r.IntValue("kind03"), h20P2PLinkHost);
  EXPECT_EQ(r.Value("enable12"), "h20ErrorPeerAccessUnsupported");
  EXPECT_EQ(r.IntValue("copyOk"), 1);
}

TEST(TopologyEnv, BrokenFileFailsInitialisationNamingFileAndEntry) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  const std::string path = H20_TEST_TOPOLOGY_DIR "/link_to_missing_chip.json";
  auto r = RunChild("TopologyQueries", {{"H20_EMU_TOPOLOGY", path}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("rc"), "h20ErrorInitializationError");
  const std::string message = r.Value("message");
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("links[0]"), std::string::npos) << message;
  EXPECT_NE(message.find("chip 7"), std::string::npos) << message;
}

TEST(TopologyEnv, UnknownPresetFailsInitialisation) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  auto r = RunChild("TopologyQueries", {{"H20_EMU_TOPOLOGY", "torus"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_EQ(r.Value("rc"), "h20ErrorInitializationError");
  EXPECT_NE(r.Value("message").find("torus"), std::string::npos);
}

H20_CHILD_SCENARIO(LinkBandwidth) {
  int n = 0;
  const h20Error_t rc = h20GetDeviceCount(&n);
  Emit("rc", h20GetErrorName(rc));
  Emit("message", h20GetLastErrorMessage());
  if (rc != h20Success) return 0;
  int mbps = 0;
  Emit("attr",
       h20GetErrorName(h20DeviceGetP2PAttribute(&mbps, h20DevP2PAttrLinkBandwidthMBps, 0, 1)));
  Emit("mbps01", mbps);
  return 0;
}

TEST(TopologyEnv, FastestFileLinkReportsIntMaxMBps) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  auto r =
      RunChild("LinkBandwidth", {{"H20_EMU_TOPOLOGY", H20_TEST_TOPOLOGY_DIR "/fastest_link.json"}});
  ASSERT_EQ(r.exitCode, 0) << r.output;
  ASSERT_EQ(r.Value("rc"), "h20Success") << r.Value("message");
  EXPECT_EQ(r.Value("attr"), "h20Success");
  EXPECT_EQ(r.IntValue("mbps01"), 2147483647);
}

// Values that used to wrap (chips) or be reported as a negative bandwidth fail initialisation,
// naming the file, the key and the value.
TEST(TopologyEnv, OutOfRangeNumbersFailInitialisationNamingKeyAndValue) {
  H20_SKIP_UNLESS_EMBEDDED(
      "H20_EMU_TOPOLOGY configures the in-process box (h20d --topology the daemon's)");
  struct Bad {
    const char* file;
    const char* needle;
  };
  for (const Bad& b : {Bad{"unreportable_bandwidth.json", "links[0]: \"bandwidth_gbps\" is 1e+300"},
                       Bad{"wrapping_chip_count.json", "\"chips\" is 4294967297"},
                       Bad{"zero_host_bandwidth.json", "host[0]: \"bandwidth_gbps\" is 0"}}) {
    SCOPED_TRACE(b.file);
    const std::string path = std::string(H20_TEST_TOPOLOGY_DIR "/") + b.file;
    auto r = RunChild("LinkBandwidth", {{"H20_EMU_TOPOLOGY", path}});
    ASSERT_EQ(r.exitCode, 0) << r.output;
    EXPECT_EQ(r.Value("rc"), "h20ErrorInitializationError");
    const std::string message = r.Value("message");
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(b.needle), std::string::npos) << message;
  }
}
