// rank_test.cpp - communicators made with h20cclCommInitRank: ranks as threads of this process,
// and ranks as processes (children of the test, through the device daemon: the daemon run of
// this suite), every operation against host references; failures (a rank killed or aborted,
// ranks that disagree) and bad input.
#include "ccl_harness.hpp"
#include "child_process.hpp"
#include "h20_test.hpp"
#include "rank_cases.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

std::string Hex(const h20cclUniqueId& id) {
  std::string s;
  for (char c : id.internal)
    s += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return s;
}

h20cclUniqueId FromHex(const std::string& s) {
  h20cclUniqueId id{};
  for (std::size_t i = 0; i < sizeof id.internal && 2 * i + 1 < s.size(); ++i)
    id.internal[i] = static_cast<char>(std::stoi(s.substr(2 * i, 2), nullptr, 16));
  return id;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// Emits the communicator's asynchronous error, its message and the seconds since `t0`.
void EmitAsyncError(h20cclComm_t comm, std::chrono::steady_clock::time_point t0) {
  h20Error_t async = h20Success;
  h20cclCommGetAsyncError(comm, &async);
  h20test::Emit("async", h20GetErrorName(async));
  h20test::Emit("async_message", h20cclGetLastErrorMessage());
  h20test::Emit("seconds", static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                                      std::chrono::steady_clock::now() - t0)
                                                      .count()));
}

// A rank in a child process: H20_CCL_TEST_{ID,RANK,NRANKS,MODE} say what to do.
H20_CHILD_SCENARIO(CclRank) {
  const int rank = EnvInt("H20_CCL_TEST_RANK", 0), n = EnvInt("H20_CCL_TEST_NRANKS", 1);
  const std::string mode = std::getenv("H20_CCL_TEST_MODE") ? std::getenv("H20_CCL_TEST_MODE") : "";
  int devices = 0;
  h20GetDeviceCount(&devices);
  h20SetDevice(rank % devices);
  h20cclComm_t comm = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  h20Error_t rc = h20cclCommInitRank(&comm, n, FromHex(std::getenv("H20_CCL_TEST_ID")), rank);
  h20test::Emit("init", h20GetErrorName(rc));
  if (rc != h20Success) {
    h20test::Emit("init_message", h20cclGetLastErrorMessage());
    return 1;
  }
  std::string message;
  if (mode == "cases" || mode == "quick") {
    // The algorithm of every collective for 1 element and for 1 Mi elements: D direct, R ring.
    std::string algos;
    for (size_t count : {size_t{1}, size_t{1} << 20}) {
      if (!algos.empty()) algos += "/";
      for (int f = h20cclFuncAllReduce; f <= h20cclFuncReduce; ++f) {
        h20cclAlgo a = h20cclAlgoRing;
        h20cclCommGetAlgorithm(comm, static_cast<h20cclFunc>(f), count, H20_R_32F, &a);
        algos += a == h20cclAlgoDirect ? "D" : "R";
      }
    }
    h20test::Emit("algorithms", algos);
    const long wrong = ccltest::RunRankCases(comm, rank, n, mode == "quick", true, &message);
    h20test::Emit("wrong", wrong);
    h20test::Emit("message", message);
  } else if (mode == "kill" || mode == "abort") {
    // The last rank goes away before its second allReduce; the others must fail, not hang.
    h20Stream_t s = nullptr;
    h20StreamCreate(&s);
    void* buf = nullptr;
    h20Malloc(&buf, 1 << 20);
    h20cclAllReduce(buf, buf, (1 << 20) / 4, H20_R_32F, h20cclSum, comm, s);
    h20StreamSynchronize(s);
    if (rank == n - 1) {
      if (mode == "kill") _exit(3);
      h20test::Emit("abort", h20GetErrorName(h20cclCommAbort(comm)));
      return 0;
    }
    rc = h20cclAllReduce(buf, buf, (1 << 20) / 4, H20_R_32F, h20cclSum, comm, s);
    h20test::Emit("enqueue", h20GetErrorName(rc));
    h20StreamSynchronize(s);
    EmitAsyncError(comm, t0);
    rc = h20cclAllReduce(buf, buf, 4, H20_R_32F, h20cclSum, comm, s);
    h20test::Emit("after", h20GetErrorName(rc));
    h20test::Emit("abort", h20GetErrorName(h20cclCommAbort(comm)));
    return 0;
  } else if (mode == "badcall") {
    // Rank 0's allReduce fails its checks; the communicator fails with it, on every rank.
    h20Stream_t s = nullptr;
    h20StreamCreate(&s);
    void* buf = nullptr;
    h20Malloc(&buf, 4096);
    if (rank == 0) {
      h20test::Emit("bad", h20GetErrorName(
                               h20cclAllReduce(nullptr, buf, 1024, H20_R_32F, h20cclSum, comm, s)));
      h20test::Emit(
          "after", h20GetErrorName(h20cclAllReduce(buf, buf, 1024, H20_R_32F, h20cclSum, comm, s)));
    } else {
      h20cclAllReduce(buf, buf, 1024, H20_R_32F, h20cclSum, comm, s);
      h20StreamSynchronize(s);
    }
    EmitAsyncError(comm, t0);
    h20test::Emit("abort", h20GetErrorName(h20cclCommAbort(comm)));
    return 0;
  } else if (mode == "mismatch") {
    // Rank 0 sends 1024 floats to rank 1, which expects 512.
    h20Stream_t s = nullptr;
    h20StreamCreate(&s);
    void* buf = nullptr;
    h20Malloc(&buf, 4096);
    if (rank == 0) rc = h20cclSend(buf, 1024, H20_R_32F, 1, comm, s);
    if (rank == 1) rc = h20cclRecv(buf, 512, H20_R_32F, 0, comm, s);
    h20StreamSynchronize(s);
    h20Error_t async = h20Success;
    h20cclCommGetAsyncError(comm, &async);
    h20test::Emit("async", h20GetErrorName(async));
    h20test::Emit("async_message", h20cclGetLastErrorMessage());
    h20cclCommAbort(comm);
    return 0;
  } else if (mode == "split") {
    h20cclComm_t half = nullptr;
    rc = h20cclCommSplit(comm, rank % 2, -rank, &half, nullptr);
    h20test::Emit("split", h20GetErrorName(rc));
    if (rc == h20Success) {
      int hr = -1, hn = -1;
      h20cclCommUserRank(half, &hr);
      h20cclCommCount(half, &hn);
      h20test::Emit("half_rank", hr);
      h20test::Emit("half_size", hn);
      const long wrong = ccltest::RunRankCases(half, hr, hn, true, true, &message);
      h20test::Emit("wrong", wrong);
      h20test::Emit("message", message);
      h20cclCommDestroy(half);
    }
  }
  h20test::Emit("finalize", h20GetErrorName(h20cclCommFinalize(comm)));
  h20test::Emit("destroy", h20GetErrorName(h20cclCommDestroy(comm)));
  return 0;
}

struct Ranks {
  std::vector<h20test::ChildResult> results;
  std::vector<pid_t> pids;
};

// Whether any of `pids` still appears in a device's process table (the daemon keeps a process's
// memory, imports included, until its session ends). Polls for up to 5 s.
bool AnyStillListed(const std::vector<pid_t>& pids) {
  int devices = 0;
  h20GetDeviceCount(&devices);
  for (int tries = 0; tries < 50; ++tries) {
    bool listed = false;
    for (int d = 0; d < devices && !listed; ++d) {
      h20ProcessInfo infos[64];
      int count = 0;
      if (h20DeviceGetProcesses(d, infos, 64, &count) != h20Success) continue;
      for (int i = 0; i < std::min(count, 64); ++i)
        for (pid_t p : pids)
          listed = listed || infos[i].pid == p;
    }
    if (!listed) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

// Runs `n` ranks as child processes of this test with `mode`; waits for all (at most `limit`).
Ranks RunRankProcesses(int n, const std::string& mode, h20test::EnvChanges extra = {}) {
  h20cclUniqueId id{};
  EXPECT_EQ(h20cclGetUniqueId(&id), h20Success) << h20cclGetLastErrorMessage();
  std::vector<pid_t> pids;
  std::vector<std::string> files;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string kv(*e);
      const std::string key = kv.substr(0, kv.find('='));
      if (key.rfind("H20_CCL_TEST_", 0) == 0 || key == "H20_TEST_CHILD_SCENARIO" ||
          extra.count(key))
        continue;
      env.push_back(kv);
    }
    env.push_back("H20_TEST_CHILD_SCENARIO=CclRank");
    env.push_back("H20_CCL_TEST_ID=" + Hex(id));
    env.push_back(fmt::format("H20_CCL_TEST_RANK={}", r));
    env.push_back(fmt::format("H20_CCL_TEST_NRANKS={}", n));
    env.push_back("H20_CCL_TEST_MODE=" + mode);
    for (const auto& [k, v] : extra)
      if (v) env.push_back(k + "=" + *v);
    std::vector<char*> envp;
    for (auto& s : env)
      envp.push_back(s.data());
    envp.push_back(nullptr);
    char tmpl[] = "/tmp/h20-ccl-rank-XXXXXX";
    const int fd = mkstemp(tmpl);
    files.emplace_back(tmpl);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    char exe[] = "/proc/self/exe";
    char* argv[] = {exe, nullptr};
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fd);
    pids.push_back(pid);
  }
  Ranks out;
  out.pids = pids;
  for (int r = 0; r < n; ++r) {
    int status = 0;
    waitpid(pids[static_cast<std::size_t>(r)], &status, 0);
    h20test::ChildResult res;
    res.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::ifstream f(files[static_cast<std::size_t>(r)]);
    std::stringstream ss;
    ss << f.rdbuf();
    res.output = ss.str();
    std::istringstream lines(res.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("H20CHILD ", 0) != 0) continue;
      const auto eq = line.find('=');
      res.values[line.substr(9, eq - 9)] = line.substr(eq + 1);
    }
    unlink(files[static_cast<std::size_t>(r)].c_str());
    out.results.push_back(std::move(res));
  }
  return out;
}

class RankProcesses : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!h20test::DaemonBackend())
      GTEST_SKIP() << "ranks in several processes meet through the device daemon (its run)";
  }
};

TEST_P(RankProcesses, EveryOperationMatchesTheHostReference) {
  const int n = GetParam();
  const Ranks r = RunRankProcesses(n, n >= 8 ? "quick" : "cases");
  for (int i = 0; i < n; ++i) {
    const auto& c = r.results[static_cast<std::size_t>(i)];
    SCOPED_TRACE(fmt::format("rank {}:\n{}", i, c.output));
    EXPECT_EQ(c.exitCode, 0);
    EXPECT_EQ(c.Value("init"), "h20Success") << c.Value("init_message");
    EXPECT_EQ(c.Value("wrong"), "0") << c.Value("message");
    EXPECT_EQ(c.Value("algorithms"), "DDDDD/RRRRR");  // direct for small buffers only
    EXPECT_EQ(c.Value("finalize"), "h20Success");
    EXPECT_EQ(c.Value("destroy"), "h20Success");
  }
}
INSTANTIATE_TEST_SUITE_P(Ranks, RankProcesses, ::testing::Values(2, 3, 4, 8),
                         [](const auto& info) { return fmt::format("n{}", info.param); });

// The direct forms (every rank exchanges with each peer at once), forced at every size: auto
// takes them only for small buffers.
class RankProcessesDirect : public RankProcesses {};
TEST_P(RankProcessesDirect, EveryOperationMatchesTheHostReference) {
  const int n = GetParam();
  const Ranks r = RunRankProcesses(n, "cases", {{"H20_CCL_ALGO", "direct"}});
  for (int i = 0; i < n; ++i) {
    const auto& c = r.results[static_cast<std::size_t>(i)];
    SCOPED_TRACE(fmt::format("rank {}:\n{}", i, c.output));
    EXPECT_EQ(c.exitCode, 0);
    EXPECT_EQ(c.Value("init"), "h20Success") << c.Value("init_message");
    EXPECT_EQ(c.Value("wrong"), "0") << c.Value("message");
    EXPECT_EQ(c.Value("algorithms"), "DDDDD/DDDDD");
  }
}
INSTANTIATE_TEST_SUITE_P(Ranks, RankProcessesDirect, ::testing::Values(2, 3, 5),
                         [](const auto& info) { return fmt::format("n{}", info.param); });

class RankFailures : public RankProcesses {};

TEST_F(RankFailures, AKilledRankMakesTheOthersFailWithARemoteError) {
  const Ranks r = RunRankProcesses(3, "kill", {{"H20_CCL_TIMEOUT_MS", "20000"}});
  EXPECT_EQ(r.results[2].exitCode, 3);
  for (int i = 0; i < 2; ++i) {
    const auto& c = r.results[static_cast<std::size_t>(i)];
    SCOPED_TRACE(c.output);
    EXPECT_EQ(c.Value("async"), "h20ErrorRemote");
    EXPECT_NE(c.Value("async_message").find("rank 2"), std::string::npos);
    // Noticed from the process table long before the timeout.
    EXPECT_LT(c.IntValue("seconds"), 15);
    EXPECT_EQ(c.Value("after"), "h20ErrorRemote");
    EXPECT_EQ(c.Value("abort"), "h20Success");
  }
  // Nothing of the ranks (their memory, their imports of each other's) stays in the daemon.
  EXPECT_FALSE(AnyStillListed(r.pids));
}

TEST_F(RankFailures, ARejectedCallFailsTheCommunicatorOnEveryRank) {
  const Ranks r = RunRankProcesses(2, "badcall", {{"H20_CCL_TIMEOUT_MS", "20000"}});
  const auto& bad = r.results[0];
  SCOPED_TRACE(bad.output + r.results[1].output);
  EXPECT_EQ(bad.Value("bad"), "h20ErrorInvalidValue");
  // Its next call does not pair with the peer's first: the communicator has failed.
  EXPECT_EQ(bad.Value("after"), "h20ErrorInvalidValue");
  EXPECT_EQ(r.results[1].Value("async"), "h20ErrorRemote");
  EXPECT_NE(r.results[1].Value("async_message").find("rank 0 failed"), std::string::npos);
  EXPECT_LT(r.results[1].IntValue("seconds"), 15);
  EXPECT_FALSE(AnyStillListed(r.pids));
}

TEST_F(RankFailures, AnAbortedRankMakesTheOthersFailWithARemoteError) {
  const Ranks r = RunRankProcesses(3, "abort", {{"H20_CCL_TIMEOUT_MS", "20000"}});
  EXPECT_EQ(r.results[2].Value("abort"), "h20Success");
  for (int i = 0; i < 2; ++i) {
    const auto& c = r.results[static_cast<std::size_t>(i)];
    SCOPED_TRACE(c.output);
    EXPECT_EQ(c.Value("async"), "h20ErrorRemote");
    EXPECT_NE(c.Value("async_message").find("h20cclCommAbort"), std::string::npos);
    EXPECT_LT(c.IntValue("seconds"), 15);
  }
}

TEST_F(RankFailures, MismatchedCountsAreReportedWithBothValues) {
  const Ranks r = RunRankProcesses(2, "mismatch", {{"H20_CCL_TIMEOUT_MS", "20000"}});
  const auto& recv = r.results[1];
  SCOPED_TRACE(recv.output);
  EXPECT_EQ(recv.Value("async"), "h20ErrorInvalidValue");
  EXPECT_NE(recv.Value("async_message").find("2048 bytes"), std::string::npos);
  EXPECT_NE(recv.Value("async_message").find("4096 bytes"), std::string::npos);
  // The sender's piece may have left before the receiver looked at it: its call succeeds or
  // fails with the receiver's error, never hangs.
  const std::string sender = r.results[0].Value("async");
  EXPECT_TRUE(sender == "h20Success" || sender == "h20ErrorRemote") << sender;
}

TEST_F(RankFailures, SplitMakesTwoCommunicatorsThatWork) {
  const Ranks r = RunRankProcesses(4, "split");
  for (int i = 0; i < 4; ++i) {
    const auto& c = r.results[static_cast<std::size_t>(i)];
    SCOPED_TRACE(c.output);
    EXPECT_EQ(c.Value("split"), "h20Success");
    EXPECT_EQ(c.IntValue("half_size"), 2);
    // key = -rank: the higher parent rank comes first.
    EXPECT_EQ(c.IntValue("half_rank"), i >= 2 ? 0 : 1);
    EXPECT_EQ(c.Value("wrong"), "0") << c.Value("message");
  }
}

// Ranks as threads of this process (both backends).
class RankThreads : public ::testing::TestWithParam<int> {};

TEST_P(RankThreads, EveryCollectiveMatchesTheHostReference) {
  const int n = GetParam();
  int devices = 0;
  ASSERT_EQ(h20GetDeviceCount(&devices), h20Success);
  if (n > devices) GTEST_SKIP() << "needs " << n << " devices";
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  std::vector<long> wrong(static_cast<std::size_t>(n), -2);
  std::vector<std::string> messages(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      h20SetDevice(r);
      h20cclComm_t comm = nullptr;
      if (h20cclCommInitRank(&comm, n, id, r) != h20Success) {
        messages[static_cast<std::size_t>(r)] = h20cclGetLastErrorMessage();
        wrong[static_cast<std::size_t>(r)] = -1;
        return;
      }
      wrong[static_cast<std::size_t>(r)] =
          ccltest::RunRankCases(comm, r, n, true, true, &messages[static_cast<std::size_t>(r)]);
      h20cclCommDestroy(comm);
    });
  }
  for (auto& t : threads)
    t.join();
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(wrong[static_cast<std::size_t>(r)], 0)
        << "rank " << r << ": " << messages[static_cast<std::size_t>(r)];
}
INSTANTIATE_TEST_SUITE_P(Ranks, RankThreads, ::testing::Values(2, 3, 4, 8),
                         [](const auto& info) { return fmt::format("n{}", info.param); });

TEST(RankInit, BadArgumentsAreRefused) {
  h20cclUniqueId id{};
  h20cclComm_t comm = reinterpret_cast<h20cclComm_t>(0x1);
  EXPECT_EQ(h20cclCommInitRank(&comm, 2, id, 0), h20ErrorInvalidValue);
  EXPECT_EQ(comm, nullptr);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("not a unique id"), std::string::npos);
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  EXPECT_EQ(h20cclCommInitRank(nullptr, 2, id, 0), h20ErrorInvalidValue);
  EXPECT_EQ(h20cclCommInitRank(&comm, 0, id, 0), h20ErrorInvalidValue);
  EXPECT_EQ(h20cclCommInitRank(&comm, H20_CCL_MAX_RANKS + 1, id, 0), h20ErrorInvalidValue);
  EXPECT_EQ(h20cclCommInitRank(&comm, 2, id, 2), h20ErrorInvalidValue);
  EXPECT_EQ(h20cclCommInitRank(&comm, 2, id, -1), h20ErrorInvalidValue);
  h20cclUniqueId damaged = id;
  damaged.internal[H20_CCL_UNIQUE_ID_BYTES - 1] = 1;
  EXPECT_EQ(h20cclCommInitRank(&comm, 2, damaged, 0), h20ErrorInvalidValue);
  h20cclConfig bad{};
  EXPECT_EQ(h20cclCommInitRankConfig(&comm, 1, id, 0, &bad), h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("H20_CCL_CONFIG_INITIALIZER"),
            std::string::npos);
  EXPECT_EQ(h20cclGetUniqueId(nullptr), h20ErrorInvalidValue);
  h20Error_t e;
  EXPECT_EQ(h20cclCommGetAsyncError(nullptr, &e), h20ErrorInvalidValue);
}

TEST(RankInit, TwoRanksClaimingTheSameRankBothFail) {
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  h20Error_t rc[2] = {h20Success, h20Success};
  std::string msg[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      h20SetDevice(t);
      h20cclConfig cfg = H20_CCL_CONFIG_INITIALIZER;
      cfg.timeoutMs = 5000;
      h20cclComm_t comm = nullptr;
      rc[t] = h20cclCommInitRankConfig(&comm, 2, id, 0, &cfg);
      msg[t] = h20cclGetLastErrorMessage();
      if (comm) h20cclCommDestroy(comm);
    });
  }
  for (auto& t : threads)
    t.join();
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(rc[t], h20ErrorInvalidValue) << msg[t];
    EXPECT_NE(msg[t].find("rank 0 was claimed twice"), std::string::npos) << msg[t];
  }
}

TEST(RankInit, AMissingRankTimesOutWithARemoteError) {
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  h20cclConfig cfg = H20_CCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = 300;
  h20cclComm_t comm = nullptr;
  EXPECT_EQ(h20cclCommInitRankConfig(&comm, 2, id, 0, &cfg), h20ErrorRemote);
  EXPECT_EQ(comm, nullptr);
  // The id is used up: its rendezvous has gone.
  EXPECT_EQ(h20cclCommInitRankConfig(&comm, 2, id, 1, &cfg), h20ErrorRemote)
      << h20cclGetLastErrorMessage();
}

// Destroying or aborting a handle whose non-blocking init waits for missing ranks gives the init
// up at once (not at the timeout), and the ranks that came learn that this one left.
TEST(RankInit, AbortOrDestroyDuringNonBlockingInitGivesUpAndTellsTheOthers) {
  for (const bool abort : {true, false}) {
    SCOPED_TRACE(abort ? "abort" : "destroy");
    h20cclUniqueId id{};
    ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
    h20cclConfig cfg = H20_CCL_CONFIG_INITIALIZER;
    cfg.timeoutMs = 120000;
    const auto t0 = std::chrono::steady_clock::now();
    // Rank 1 waits (blocking) in a thread; rank 2 never comes.
    h20Error_t rc1 = h20Success;
    std::string msg1;
    std::thread waiter([&] {
      h20cclComm_t c = nullptr;
      rc1 = h20cclCommInitRankConfig(&c, 3, id, 1, &cfg);
      msg1 = h20cclGetLastErrorMessage();
    });
    h20cclConfig nb = cfg;
    nb.blocking = 0;
    h20cclComm_t comm = nullptr;
    ASSERT_EQ(h20cclCommInitRankConfig(&comm, 3, id, 0, &nb), h20ErrorNotReady);
    // Long enough for rank 0's init to reach the meeting (a few daemon calls; slow under TSan): a
    // rank that is given up before it arrived has nobody to tell, and rank 1 would wait it out.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    EXPECT_EQ(abort ? h20cclCommAbort(comm) : h20cclCommDestroy(comm), h20Success);
    waiter.join();
    // Well before the timeout of 120 s (a hang would reach it).
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
    EXPECT_EQ(rc1, h20ErrorRemote) << msg1;
    EXPECT_NE(msg1.find("rank 0"), std::string::npos) << msg1;
    EXPECT_NE(msg1.find("stopped waiting"), std::string::npos) << msg1;
  }
}

TEST(RankInit, NonBlockingInitBecomesReady) {
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  h20cclConfig cfg = H20_CCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  h20cclComm_t comm = nullptr;
  ASSERT_EQ(h20cclCommInitRankConfig(&comm, 1, id, 0, &cfg), h20ErrorNotReady);
  ASSERT_NE(comm, nullptr);
  h20Error_t state = h20ErrorNotReady;
  for (int i = 0; i < 5000 && state == h20ErrorNotReady; ++i) {
    ASSERT_EQ(h20cclCommGetAsyncError(comm, &state), h20Success);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(state, h20Success);
  int count = 0;
  EXPECT_EQ(h20cclCommCount(comm, &count), h20Success);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(h20cclCommFinalize(comm), h20Success);
  void* buf = nullptr;
  ASSERT_EQ(h20Malloc(&buf, 64), h20Success);
  EXPECT_EQ(h20cclAllReduce(buf, buf, 4, H20_R_32F, h20cclSum, comm, nullptr),
            h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("finalized"), std::string::npos);
  EXPECT_EQ(h20cclCommDestroy(comm), h20Success);
  EXPECT_EQ(h20cclAllReduce(buf, buf, 4, H20_R_32F, h20cclSum, comm, nullptr),
            h20ErrorInvalidValue);
  h20Free(buf);
}

TEST(RankInit, BuffersOfAnotherDeviceAreRefused) {
  int devices = 0;
  ASSERT_EQ(h20GetDeviceCount(&devices), h20Success);
  if (devices < 2) GTEST_SKIP() << "needs 2 devices";
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  ASSERT_EQ(h20SetDevice(0), h20Success);
  h20cclComm_t comm = nullptr;
  ASSERT_EQ(h20cclCommInitRank(&comm, 1, id, 0), h20Success) << h20cclGetLastErrorMessage();
  ASSERT_EQ(h20SetDevice(1), h20Success);
  void* other = nullptr;
  ASSERT_EQ(h20Malloc(&other, 64), h20Success);
  ASSERT_EQ(h20SetDevice(0), h20Success);
  EXPECT_EQ(h20cclReduce(other, other, 4, H20_R_32F, h20cclSum, 0, comm, nullptr),
            h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("memory of device 1"), std::string::npos);
  EXPECT_EQ(h20cclAllToAll(other, other, 4, H20_R_32F, comm, nullptr), h20ErrorInvalidValue);
  h20Free(other);
  EXPECT_EQ(h20cclCommDestroy(comm), h20Success);
}

}  // namespace

namespace {

// Sends and receives between the ranks of h20cclCommInitAll, issued by one thread in a group.
TEST(CliquePointToPoint, OneThreadExchangesARingInAGroup) {
  int devices = 0;
  ASSERT_EQ(h20GetDeviceCount(&devices), h20Success);
  const int n = std::min(devices, 4);
  if (n < 2) GTEST_SKIP() << "needs 2 devices";
  std::vector<h20cclComm_t> comms(static_cast<std::size_t>(n));
  ASSERT_EQ(h20cclCommInitAll(comms.data(), n, nullptr), h20Success);
  const std::size_t count = 1000;
  std::vector<float*> bufs(static_cast<std::size_t>(2 * n));
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(h20SetDevice(r), h20Success);
    std::vector<float> host(count, static_cast<float>(r + 1));
    for (int k = 0; k < 2; ++k)
      ASSERT_EQ(h20Malloc(reinterpret_cast<void**>(&bufs[static_cast<std::size_t>(2 * r + k)]),
                          count * sizeof(float)),
                h20Success);
    ASSERT_EQ(h20Memcpy(bufs[static_cast<std::size_t>(2 * r)], host.data(), count * sizeof(float),
                        h20MemcpyHostToDevice),
              h20Success);
  }
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  // Receives first, then sends, from one thread: the group matches them whatever the order.
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(h20cclRecv(bufs[static_cast<std::size_t>(2 * r + 1)], count, H20_R_32F,
                         (r + n - 1) % n, comms[static_cast<std::size_t>(r)], nullptr),
              h20Success);
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(h20cclSend(bufs[static_cast<std::size_t>(2 * r)], count, H20_R_32F, (r + 1) % n,
                         comms[static_cast<std::size_t>(r)], nullptr),
              h20Success);
  ASSERT_EQ(h20cclGroupEnd(), h20Success) << h20cclGetLastErrorMessage();
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(h20SetDevice(r), h20Success);
    ASSERT_EQ(h20DeviceSynchronize(), h20Success);
    std::vector<float> host(count);
    ASSERT_EQ(h20Memcpy(host.data(), bufs[static_cast<std::size_t>(2 * r + 1)],
                        count * sizeof(float), h20MemcpyDeviceToHost),
              h20Success);
    const float want = static_cast<float>((r + n - 1) % n + 1);
    EXPECT_EQ(std::count(host.begin(), host.end(), want), static_cast<long>(count)) << "rank " << r;
  }
  // Counts that disagree: both calls fail, naming both values; nothing is enqueued.
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  h20cclSend(bufs[0], count, H20_R_32F, 1, comms[0], nullptr);
  h20cclRecv(bufs[3], count - 1, H20_R_32F, 0, comms[1], nullptr);
  EXPECT_EQ(h20cclGroupEnd(), h20ErrorInvalidValue);
  const std::string msg = h20cclGetLastErrorMessage();
  EXPECT_NE(msg.find("rank 0 sends 1000 elements"), std::string::npos) << msg;
  EXPECT_NE(msg.find("receives 999 elements"), std::string::npos) << msg;
  // A peer out of range is refused by the call itself.
  EXPECT_EQ(h20cclSend(bufs[0], count, H20_R_32F, n, comms[0], nullptr), h20ErrorInvalidValue);
  for (auto* b : bufs)
    h20Free(b);
  for (auto c : comms)
    EXPECT_EQ(h20cclCommDestroy(c), h20Success);
}

}  // namespace

namespace {

// Bad environment and config values: the variable or field, and the value, are named.
TEST(RankInit, BadEnvironmentAndConfigValuesAreRefusedNamingThem) {
  struct Case {
    const char* name;
    const char* value;
  };
  for (const Case& c : {Case{"H20_CCL_TRANSPORT", "tcp"}, Case{"H20_CCL_TIMEOUT_MS", "soon"},
                        Case{"H20_CCL_TIMEOUT_MS", "0"}}) {
    SCOPED_TRACE(std::string(c.name) + "=" + c.value);
    ASSERT_EQ(setenv(c.name, c.value, 1), 0);
    h20cclUniqueId id{};
    EXPECT_EQ(h20cclGetUniqueId(&id), h20ErrorInitializationError);
    const std::string msg = h20cclGetLastErrorMessage();
    EXPECT_NE(msg.find(c.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.value), std::string::npos) << msg;
    unsetenv(c.name);
  }
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  h20cclComm_t comm = nullptr;
  h20cclConfig cfg = H20_CCL_CONFIG_INITIALIZER;
  cfg.blocking = 2;
  EXPECT_EQ(h20cclCommInitRankConfig(&comm, 1, id, 0, &cfg), h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("blocking is 2"), std::string::npos);
  cfg = H20_CCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = -5;
  EXPECT_EQ(h20cclCommInitRankConfig(&comm, 1, id, 0, &cfg), h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("timeoutMs is -5"), std::string::npos);
  EXPECT_EQ(comm, nullptr);
}

TEST(RankInit, SplitRefusesBadArgumentsAndNoColorGivesNull) {
  h20cclUniqueId id{};
  ASSERT_EQ(h20cclGetUniqueId(&id), h20Success);
  h20cclComm_t comm = nullptr;
  ASSERT_EQ(h20cclCommInitRank(&comm, 1, id, 0), h20Success) << h20cclGetLastErrorMessage();
  h20cclComm_t half = reinterpret_cast<h20cclComm_t>(0x1);
  EXPECT_EQ(h20cclCommSplit(comm, -7, 0, &half, nullptr), h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("color -7"), std::string::npos);
  EXPECT_EQ(half, nullptr);
  EXPECT_EQ(h20cclCommSplit(comm, 0, 0, nullptr, nullptr), h20ErrorInvalidValue);
  ASSERT_EQ(h20cclGroupStart(), h20Success);
  EXPECT_EQ(h20cclCommSplit(comm, 0, 0, &half, nullptr), h20ErrorInvalidValue);
  EXPECT_NE(std::string(h20cclGetLastErrorMessage()).find("not inside a group"), std::string::npos);
  h20cclGroupEnd();
  EXPECT_EQ(h20cclCommSplit(comm, H20_CCL_SPLIT_NOCOLOR, 0, &half, nullptr), h20Success)
      << h20cclGetLastErrorMessage();
  EXPECT_EQ(half, nullptr);
  EXPECT_EQ(h20cclCommSplit(comm, 3, 0, &half, nullptr), h20Success) << h20cclGetLastErrorMessage();
  ASSERT_NE(half, nullptr);
  int n = 0;
  EXPECT_EQ(h20cclCommCount(half, &n), h20Success);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(h20cclCommDestroy(half), h20Success);
  EXPECT_EQ(h20cclCommDestroy(comm), h20Success);
}

}  // namespace
