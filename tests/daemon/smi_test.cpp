// smi_test.cpp - h20-smi against the device daemon: another process's memory in the device table
// and the process table, --query-compute-apps, -c, and the memory coming back when the process is
// killed (what a user does after starting two programs on h20d).
#include "daemon_harness.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <regex>

using h20test::Child;
using h20test::Daemon;

namespace {

h20test::ChildResult Smi(const Daemon& d, const std::string& args) {
  std::vector<std::string> argv{
      "/bin/sh", "-c",
      "H20_DRIVER=daemon H20_DAEMON_SOCKET='" + d.socket() + "' " + H20_SMI_PATH + " " + args};
  return h20test::RunCommand(argv);
}

}  // namespace

TEST(DaemonSmi, ShowsEveryProcessAndItsMemoryThenTheMemoryBackAfterAKill) {
  Daemon d;
  ASSERT_TRUE(d.ok()) << d.log();
  auto env = d.clientEnv();
  env["MIB"] = "64";
  Child holder("Holder", env);
  ASSERT_EQ("0", holder.Await("malloc").value_or("")) << holder.Output();
  Child second("Holder", env);
  ASSERT_EQ("0", second.Await("malloc").value_or("")) << second.Output();
  const std::string pid1 = std::to_string(holder.pid()), pid2 = std::to_string(second.pid());

  auto r = Smi(d, "-i 0");
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\|\s+0 \| .*\| 128MiB / 98304MiB \|)")))
      << r.output;
  for (const std::string& pid : {pid1, pid2})
    EXPECT_TRUE(
        std::regex_search(r.output, std::regex("\\|\\s+0 \\|\\s+" + pid + " \\| .* 64MiB \\|")))
        << pid << "\n"
        << r.output;

  r = Smi(d, "--query-compute-apps=pid,used_memory,gpu_bus_id --format=csv,noheader");
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_NE(std::string::npos, r.output.find(pid1 + ", 64 MiB, 0000:18:00.0\n")) << r.output;
  EXPECT_NE(std::string::npos, r.output.find(pid2 + ", 64 MiB, 0000:18:00.0\n")) << r.output;

  r = Smi(d, "-i 1 -c EXCLUSIVE_PROCESS");
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_NE(std::string::npos, r.output.find("Set compute mode to EXCLUSIVE_PROCESS for device 1"))
      << r.output;
  r = Smi(d, "--query-gpu=index,compute_mode --format=csv,noheader -i 0,1");
  EXPECT_EQ("0, DEFAULT\n1, EXCLUSIVE_PROCESS\n", r.output);

  holder.Kill(SIGKILL);
  EXPECT_EQ(128 + SIGKILL, holder.Wait());
  // The daemon releases it when it sees the connection close; poll briefly for that.
  for (int i = 0; i < 200; ++i) {
    r = Smi(d, "--query-compute-apps=pid --format=csv,noheader");
    if (r.output.find(pid1) == std::string::npos) break;
  }
  EXPECT_EQ(pid2 + "\n", r.output);
  r = Smi(d, "-i 0");
  EXPECT_NE(std::string::npos, r.output.find("| 64MiB / 98304MiB |")) << r.output;
  second.Send("exit");
  EXPECT_EQ(0, second.Wait());
}
