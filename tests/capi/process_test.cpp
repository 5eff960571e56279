// process_test.cpp - what a process sees of the runtime as a whole, in fresh child processes:
// handles of different kinds never share a value (the first stream and the first event of a
// process included), and fork() after initialisation leaves a child that never hangs: exit()
// works and every runtime call returns h20ErrorInitializationError, while the parent carries on.
#include "child_process.hpp"
#include "h20_test.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using h20test::ChildResult;
using h20test::Emit;
using h20test::RunChild;

std::string Describe(const ChildResult& r) {
  return "exit " + std::to_string(r.exitCode) + ", output:\n" + r.output;
}

const char* Name(h20Error_t rc) {
  return h20GetErrorName(rc);
}

// The first stream and the first event of a fresh process, each passed as the other kind.
H20_CHILD_SCENARIO(HandleKinds) {
  h20Stream_t s = nullptr;
  h20Event_t e = nullptr;
  if (h20StreamCreate(&s) != h20Success || h20EventCreate(&e) != h20Success) return 2;
  auto* sAsEvent = reinterpret_cast<h20Event_t>(s);
  auto* eAsStream = reinterpret_cast<h20Stream_t>(e);
  Emit("distinct", s != eAsStream ? "yes" : "no");
  Emit("streamQuery", Name(h20StreamQuery(eAsStream)));
  Emit("streamSynchronize", Name(h20StreamSynchronize(eAsStream)));
  Emit("launchHostFunc", Name(h20LaunchHostFunc(eAsStream, h20test::SetFlagHostFn, nullptr)));
  Emit("streamDestroy", Name(h20StreamDestroy(eAsStream)));
  Emit("eventQuery", Name(h20EventQuery(sAsEvent)));
  Emit("eventRecord", Name(h20EventRecord(sAsEvent, s)));
  Emit("streamWaitEvent", Name(h20StreamWaitEvent(s, sAsEvent, 0)));
  Emit("eventDestroy", Name(h20EventDestroy(sAsEvent)));
  // Both are still what they are.
  Emit("recordOk", Name(h20EventRecord(e, s)));
  Emit("syncOk", Name(h20StreamSynchronize(s)));
  Emit("eventDestroyOk", Name(h20EventDestroy(e)));
  Emit("streamDestroyOk", Name(h20StreamDestroy(s)));
  return 0;
}

// Waits (bounded) for `pid`; returns its exit code, 128 + signal, or -1 after killing it when it
// did not end within the bound (it hung).
int WaitBounded(pid_t pid, std::chrono::milliseconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -2;
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

constexpr auto kChildBound = std::chrono::seconds(20);

// Forks after initialisation (with a stream and work done, so the engine's workers exist), while
// another thread of the parent keeps submitting work. The grandchild reports each call's result
// through its exit code bits; the scenario emits what it saw.
H20_CHILD_SCENARIO(ForkAfterInit) {
  void* d = nullptr;
  if (h20Malloc(&d, 4096) != h20Success) return 2;
  h20Stream_t s = nullptr;
  if (h20StreamCreate(&s) != h20Success) return 2;
  if (h20MemsetAsync(d, 1, 4096, s) != h20Success || h20StreamSynchronize(s) != h20Success)
    return 2;
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load())
      h20MemsetAsync(d, 2, 4096, s);
  });

  // 1: a child that only exits.
  pid_t pid = fork();
  if (pid == 0) std::exit(0);
  Emit("exitOnly", WaitBounded(pid, kChildBound));

  // 2: a child that calls the runtime: every call must fail with h20ErrorInitializationError.
  pid = fork();
  if (pid == 0) {
    int bad = 0;
    std::vector<unsigned char> host(4096);
    if (h20Memcpy(host.data(), d, 4096, h20MemcpyDeviceToHost) != h20ErrorInitializationError)
      bad |= 1;
    if (h20DeviceSynchronize() != h20ErrorInitializationError) bad |= 2;
    h20Stream_t cs = nullptr;
    if (h20StreamCreate(&cs) != h20ErrorInitializationError) bad |= 4;
    int n = -1;
    if (h20GetDeviceCount(&n) != h20ErrorInitializationError) bad |= 8;
    if (h20GetLastError() != h20ErrorInitializationError) bad |= 16;
    if (std::strstr(h20GetLastErrorMessage(), "fork") == nullptr) bad |= 32;
    std::exit(bad);
  }
  Emit("callsInChild", WaitBounded(pid, kChildBound));

  // 3: the parent is unaffected.
  stop = true;
  busy.join();
  std::vector<unsigned char> host(4096);
  Emit("parentSync", Name(h20StreamSynchronize(s)));
  Emit("parentCopy", Name(h20Memcpy(host.data(), d, 4096, h20MemcpyDeviceToHost)));
  Emit("parentByte", host[100]);
  h20StreamDestroy(s);
  h20Free(d);
  return 0;
}

// A child forked before the runtime was initialised gets a runtime of its own.
H20_CHILD_SCENARIO(ForkBeforeInit) {
  const pid_t pid = fork();
  if (pid == 0) {
    void* d = nullptr;
    unsigned char b = 0;
    const bool ok = h20Malloc(&d, 256) == h20Success && h20Memset(d, 7, 256) == h20Success &&
                    h20Memcpy(&b, d, 1, h20MemcpyDeviceToHost) == h20Success && b == 7 &&
                    h20Free(d) == h20Success;
    std::exit(ok ? 0 : 1);
  }
  Emit("child", WaitBounded(pid, kChildBound));
  int n = 0;
  Emit("parent", Name(h20GetDeviceCount(&n)));
  return 0;
}

}  // namespace

TEST(Handles, DifferentKindsNeverShareAValue) {
  const ChildResult r = RunChild("HandleKinds");
  ASSERT_EQ(r.exitCode, 0) << Describe(r);
  EXPECT_EQ(r.Value("distinct"), "yes");
  for (const char* key : {"streamQuery", "streamSynchronize", "launchHostFunc", "streamDestroy",
                          "eventQuery", "eventRecord", "streamWaitEvent", "eventDestroy"})
    EXPECT_EQ(r.Value(key), "h20ErrorInvalidResourceHandle") << key;
  EXPECT_EQ(r.Value("recordOk"), "h20Success");
  EXPECT_EQ(r.Value("syncOk"), "h20Success");
  EXPECT_EQ(r.Value("eventDestroyOk"), "h20Success");
  EXPECT_EQ(r.Value("streamDestroyOk"), "h20Success");
}

// LeakSanitizer cannot check a process forked from a multi-threaded one: at exit it waits to
// suspend the parent's threads, which the child does not have, and hangs. The child's runtime is
// abandoned on purpose anyway, so the scenario runs without leak checking.
h20test::EnvChanges NoLeakCheckInForkedChildren() {
  const char* asan = std::getenv("ASAN_OPTIONS");
  return {{"ASAN_OPTIONS",
           std::string(asan ? asan : "") + (asan && *asan ? ":" : "") + "detect_leaks=0"}};
}

TEST(Fork, ChildForkedAfterInitialisationExitsAndItsCallsFail) {
  const ChildResult r = RunChild("ForkAfterInit", NoLeakCheckInForkedChildren());
  ASSERT_EQ(r.exitCode, 0) << Describe(r);
  EXPECT_EQ(r.IntValue("exitOnly"), 0) << "-1: the child hung at exit\n" << Describe(r);
  EXPECT_EQ(r.IntValue("callsInChild"), 0)
      << "-1: the child hung; else a bit mask of calls that did not fail as documented\n"
      << Describe(r);
  EXPECT_EQ(r.Value("parentSync"), "h20Success");
  EXPECT_EQ(r.Value("parentCopy"), "h20Success");
  EXPECT_EQ(r.IntValue("parentByte"), 2);
}

TEST(Fork, ChildForkedBeforeInitialisationHasItsOwnRuntime) {
  const ChildResult r = RunChild("ForkBeforeInit");
  ASSERT_EQ(r.exitCode, 0) << Describe(r);
  EXPECT_EQ(r.IntValue("child"), 0) << Describe(r);
  EXPECT_EQ(r.Value("parent"), "h20Success");
}
