// ipc_test.cpp - the device daemon with real processes: memory and events shared between two to
// eight processes, accounting across processes, a client killed with SIGKILL, a daemon killed
// under its clients, refused users, forged handles.
//
// Every test starts an h20d of its own (Daemon) and runs its clients as children of this binary
// (Child, scenarios below), so that what one test allocates never shows in another's figures.
#include "daemon_harness.hpp"
#include "h20_test.hpp"

#include <gtest/gtest.h>

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <thread>
#include <vector>

using h20test::Child;
using h20test::Daemon;
using h20test::Emit;
using h20test::ReadLine;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kBytes = 4u << 20;

// The pattern a producer writes: byte i of the buffer made with seed s.
unsigned char PatternByte(std::size_t i, unsigned seed) {
  return static_cast<unsigned char>((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

std::vector<unsigned char> Pattern(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = PatternByte(i, seed);
  return v;
}

// Kernel: waits `spinMs`, then writes the pattern (so a consumer that did not wait would see
// zeros).
struct SlowFillArgs {
  unsigned char* data;
  std::size_t n;
  unsigned seed;
  unsigned spinMs;
};
void SlowFillKernel(const h20KernelContext* ctx, const void* args) {
  SlowFillArgs a;
  std::memcpy(&a, args, sizeof a);
  if (ctx->blockIdx.x != 0) return;
  std::this_thread::sleep_for(std::chrono::milliseconds(a.spinMs));
  for (std::size_t i = 0; i < a.n; ++i)
    a.data[i] = PatternByte(i, a.seed);
}

int Env(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

std::size_t FreeBytes() {
  size_t freeBytes = 0, total = 0;
  if (h20MemGetInfo(&freeBytes, &total) != h20Success) return 0;
  return freeBytes;
}

}  // namespace

// ---- child scenarios
// -----------------------------------------------------------------------------

// Allocates, exports the memory and an interprocess event recorded after a slow kernel that
// writes the pattern; waits for "exit" on stdin (or EOF), then frees and exits.
H20_CHILD_SCENARIO(Producer) {
  const unsigned seed = static_cast<unsigned>(Env("SEED", 1));
  const unsigned spinMs = static_cast<unsigned>(Env("SPIN_MS", 200));
  void* d = nullptr;
  h20Error_t rc = h20Malloc(&d, kBytes);
  Emit("malloc", rc);
  if (rc != h20Success) return 1;
  h20Memset(d, 0, kBytes);
  h20IpcMemHandle_t mh{};
  Emit("getmem", h20IpcGetMemHandle(&mh, d));
  h20Event_t ev = nullptr;
  Emit("event", h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming));
  h20IpcEventHandle_t eh{};
  Emit("getevent", h20IpcGetEventHandle(&eh, ev));
  h20Stream_t s = nullptr;
  h20StreamCreate(&s);
  SlowFillArgs a{static_cast<unsigned char*>(d), kBytes, seed, spinMs};
  Emit("launch",
       h20LaunchKernel(SlowFillKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &a, sizeof a, 0, s));
  Emit("record", h20EventRecord(ev, s));
  Emit("memhandle", h20test::ToHex(&mh, sizeof mh));
  Emit("eventhandle", h20test::ToHex(&eh, sizeof eh));
  Emit("pid", getpid());
  for (std::string line; (line = ReadLine()) != "exit" && !line.empty();) {
  }
  h20StreamSynchronize(s);
  unsigned char head[64];
  h20Memcpy(head, d, sizeof head, h20MemcpyDeviceToHost);
  Emit("head5a", static_cast<long long>(std::count(head, head + 64, 0x5a)));
  Emit("free", h20Free(d));
  h20EventDestroy(ev);
  h20StreamDestroy(s);
  return 0;
}

// Reads a memory and an event handle (hex lines), makes a stream wait for the event, copies the
// memory back and checks the pattern of SEED.
H20_CHILD_SCENARIO(Consumer) {
  const unsigned seed = static_cast<unsigned>(Env("SEED", 1));
  h20IpcMemHandle_t mh{};
  h20IpcEventHandle_t eh{};
  if (!h20test::FromHex(ReadLine(), &mh, sizeof mh) ||
      !h20test::FromHex(ReadLine(), &eh, sizeof eh))
    return 2;
  void* d = nullptr;
  Emit("open", h20IpcOpenMemHandle(&d, mh, h20IpcMemLazyEnablePeerAccess));
  h20Event_t ev = nullptr;
  Emit("openevent", h20IpcOpenEventHandle(&ev, eh));
  h20Stream_t s = nullptr;
  h20StreamCreate(&s);
  Emit("wait", h20StreamWaitEvent(s, ev, 0));
  std::vector<unsigned char> host(kBytes);
  Emit("copy", h20MemcpyAsync(host.data(), d, kBytes, h20MemcpyDeviceToHost, s));
  Emit("sync", h20StreamSynchronize(s));
  Emit("query", h20EventQuery(ev));
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kBytes; ++i)
    wrong += host[i] != PatternByte(i, seed);
  Emit("wrong", static_cast<long long>(wrong));
  // WRITEBACK=1: writes back through the import, for the producer to see.
  if (Env("WRITEBACK", 0) == 1) Emit("writeback", h20Memset(d, 0x5a, 64));
  Emit("destroyevent", h20EventDestroy(ev));
  Emit("close", h20IpcCloseMemHandle(d));
  Emit("closeagain", h20IpcCloseMemHandle(d));
  h20StreamDestroy(s);
  return 0;
}

// Allocates BYTES (default kBytes) on device 0 and exports it, then waits for stdin lines:
// "exit" ends it; anything else reports the free memory seen by this process.
H20_CHILD_SCENARIO(Holder) {
  const std::size_t bytes = static_cast<std::size_t>(Env("MIB", 4)) << 20;
  void* d = nullptr;
  const h20Error_t rc = h20Malloc(&d, bytes);
  Emit("malloc", rc);
  if (rc == h20Success) {
    h20Memset(d, 0x11, bytes);
    h20DeviceSynchronize();  // the memset is asynchronous: done before anyone may read
    h20IpcMemHandle_t mh{};
    Emit("getmem", h20IpcGetMemHandle(&mh, d));
    Emit("memhandle", h20test::ToHex(&mh, sizeof mh));
  } else {
    Emit("message", h20GetLastErrorMessage());
  }
  Emit("free0", static_cast<long long>(FreeBytes()));
  for (std::string line; (line = ReadLine()) != "exit" && !line.empty();)
    Emit(line, static_cast<long long>(FreeBytes()));
  return 0;
}

// Reports the free memory of device 0, then on each stdin line again (key = the line).
H20_CHILD_SCENARIO(Observer) {
  Emit("free0", static_cast<long long>(FreeBytes()));
  for (std::string line; (line = ReadLine()) != "exit" && !line.empty();)
    Emit(line, static_cast<long long>(FreeBytes()));
  return 0;
}

// Opens a memory handle (hex line), then on "read" reads it back and reports the bytes that are
// not 0x11; "close" closes it; "exit" ends.
H20_CHILD_SCENARIO(Importer) {
  h20IpcMemHandle_t mh{};
  if (!h20test::FromHex(ReadLine(), &mh, sizeof mh)) return 2;
  void* d = nullptr;
  Emit("open", h20IpcOpenMemHandle(&d, mh, h20IpcMemLazyEnablePeerAccess));
  void* again = nullptr;
  Emit("openagain", h20IpcOpenMemHandle(&again, mh, h20IpcMemLazyEnablePeerAccess));
  Emit("same", again == d ? 1 : 0);
  Emit("freeimport", h20Free(d));
  std::size_t bytes = 0;
  void* base = nullptr;
  h20MemGetAddressRange(&base, &bytes, d);
  Emit("bytes", static_cast<long long>(bytes));
  int n = 0;
  for (std::string line; (line = ReadLine()) != "exit" && !line.empty(); ++n) {
    if (line == "read") {
      std::vector<unsigned char> host(bytes);
      const h20Error_t rc = h20Memcpy(host.data(), d, bytes, h20MemcpyDeviceToHost);
      std::size_t wrong = 0;
      for (unsigned char b : host)
        wrong += b != 0x11;
      Emit("read" + std::to_string(n), rc == h20Success ? static_cast<long long>(wrong) : -rc);
    } else if (line == "close") {
      Emit("close1", h20IpcCloseMemHandle(d));
      Emit("close2", h20IpcCloseMemHandle(d));
      Emit("close3", h20IpcCloseMemHandle(d));
    }
  }
  return 0;
}

// Allocates and writes a buffer, says "ready", waits for "go" (the test kills the daemon in
// between), then reports what each call returns without the daemon.
H20_CHILD_SCENARIO(OutlivesDaemon) {
  void* d = nullptr;
  if (h20Malloc(&d, kBytes) != h20Success) return 1;
  const auto pattern = Pattern(kBytes, 3);
  h20Memcpy(d, pattern.data(), kBytes, h20MemcpyHostToDevice);
  Emit("ready", 1);
  ReadLine();
  void* more = nullptr;
  Emit("malloc", h20Malloc(&more, 4096));
  Emit("message", h20GetLastErrorMessage());
  h20IpcMemHandle_t mh{};
  Emit("getmem", h20IpcGetMemHandle(&mh, d));
  size_t freeBytes = 0, total = 0;
  Emit("meminfo", h20MemGetInfo(&freeBytes, &total));
  std::vector<unsigned char> host(kBytes);
  Emit("copy", h20Memcpy(host.data(), d, kBytes, h20MemcpyDeviceToHost));
  Emit("same", host == pattern ? 1 : 0);
  Emit("free", h20Free(d));
  return 0;
}

// Tries COUNT forged and stale handles: random bytes, a valid handle with one capability bit
// flipped, one of a freed allocation, an event handle as memory; reports how each kind ended.
H20_CHILD_SCENARIO(ForgedHandles) {
  const int count = Env("COUNT", 10000);
  std::mt19937_64 rng(12345);
  void* d = nullptr;
  if (h20Malloc(&d, 4096) != h20Success) return 1;
  h20IpcMemHandle_t real{};
  if (h20IpcGetMemHandle(&real, d) != h20Success) return 1;
  h20Event_t ev = nullptr;
  h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming);
  h20IpcEventHandle_t evh{};
  h20IpcGetEventHandle(&evh, ev);
  long long invalid = 0, other = 0;
  for (int i = 0; i < count; ++i) {
    h20IpcMemHandle_t h = real;
    switch (i % 4) {
      case 0:
        for (auto& b : h.reserved)
          b = static_cast<char>(rng());
        break;
      case 1:
        h.reserved[40 + rng() % 16] ^= static_cast<char>(1u << (rng() % 8));  // capability bits
        break;
      case 2:
        h.reserved[16 + rng() % 8] ^= static_cast<char>(1 + rng() % 255);  // the object id
        break;
      case 3:
        std::memcpy(&h, &evh, sizeof h);
        break;
    }
    void* p = nullptr;
    const h20Error_t rc = h20IpcOpenMemHandle(&p, h, h20IpcMemLazyEnablePeerAccess);
    (rc == h20ErrorInvalidValue && p == nullptr ? invalid : other)++;
    h20Event_t e = nullptr;
    h20IpcEventHandle_t eh{};
    std::memcpy(&eh, &h, sizeof eh);
    if (i % 4 != 3) (h20IpcOpenEventHandle(&e, eh) == h20ErrorInvalidValue ? invalid : other)++;
  }
  Emit("invalid", invalid);
  Emit("other", other);
  // The exporter's own handle is refused too; after the free, the handle is stale.
  void* p = nullptr;
  Emit("own", h20IpcOpenMemHandle(&p, real, h20IpcMemLazyEnablePeerAccess));
  h20Free(d);
  Emit("stale", h20IpcOpenMemHandle(&p, real, h20IpcMemLazyEnablePeerAccess));
  void* q = nullptr;
  Emit("stillserves", h20Malloc(&q, 4096));
  h20Free(q);
  h20EventDestroy(ev);
  return 0;
}

// Reports how initialisation ends (after dropping to `nobody` when DROP=1).
H20_CHILD_SCENARIO(InitReport) {
  if (Env("DROP", 0) == 1) {
    const passwd* nobody = getpwnam("nobody");
    if (!nobody || setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0) return 3;
  }
  int n = -1;
  Emit("count", h20GetDeviceCount(&n));
  Emit("message", h20GetLastErrorMessage());
  return 0;
}

// Records an interprocess event after a kernel that never finishes by itself, exports it, and
// waits to be killed.
H20_CHILD_SCENARIO(AbandonsRecord) {
  h20Event_t ev = nullptr;
  if (h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming) != h20Success)
    return 1;
  h20IpcEventHandle_t eh{};
  h20IpcGetEventHandle(&eh, ev);
  h20Stream_t s = nullptr;
  h20StreamCreate(&s);
  SlowFillArgs a{nullptr, 0, 0, 600000};  // sleeps ten minutes: only the kill ends it
  h20LaunchKernel(SlowFillKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &a, sizeof a, 0, s);
  Emit("record", h20EventRecord(ev, s));
  Emit("eventhandle", h20test::ToHex(&eh, sizeof eh));
  for (;;)
    ReadLine(), pause();
}

// Opens an event handle (hex line), waits on it from a stream and from the host, and reports.
H20_CHILD_SCENARIO(EventWaiter) {
  h20IpcEventHandle_t eh{};
  if (!h20test::FromHex(ReadLine(), &eh, sizeof eh)) return 2;
  h20Event_t ev = nullptr;
  Emit("open", h20IpcOpenEventHandle(&ev, eh));
  Emit("query", h20EventQuery(ev));
  h20Stream_t s = nullptr;
  h20StreamCreate(&s);
  Emit("streamwait", h20StreamWaitEvent(s, ev, 0));
  Emit("waiting", 1);
  Emit("eventsync", h20EventSynchronize(ev));
  Emit("streamsync", h20StreamSynchronize(s));
  return 0;
}

// Sets device 0's compute mode to MODE (when given) and reports the mode the attribute and the
// properties show, and the processes holding memory there.
H20_CHILD_SCENARIO(ComputeMode) {
  if (std::getenv("MODE")) Emit("set", h20DeviceSetComputeMode(0, Env("MODE", 0)));
  int mode = -1;
  Emit("attr", h20DeviceGetAttribute(&mode, h20DevAttrComputeMode, 0));
  Emit("mode", mode);
  h20DeviceProp prop{};
  h20GetDeviceProperties(&prop, 0);
  Emit("propmode", prop.computeMode);
  int count = 0;
  h20ProcessInfo infos[8];
  Emit("procs", h20DeviceGetProcesses(0, infos, 8, &count));
  Emit("count", count);
  for (int i = 0; i < count && i < 8; ++i) {
    Emit("pid" + std::to_string(i), infos[i].pid);
    Emit("name" + std::to_string(i), infos[i].name);
    Emit("bytes" + std::to_string(i), static_cast<long long>(infos[i].usedMemory));
  }
  return 0;
}

// Uses device DEVICE (H20_VISIBLE_DEVICES picks the chip); on each "check" line reports what a
// synchronisation returns; on "reset" resets the device and allocates again.
H20_CHILD_SCENARIO(FaultWatcher) {
  void* d = nullptr;
  Emit("malloc", h20Malloc(&d, 4096));
  Emit("ready", 1);
  for (std::string line; (line = ReadLine()) != "exit" && !line.empty();) {
    if (line == "check") {
      Emit("sync", h20DeviceSynchronize());
      Emit("message", h20GetLastErrorMessage());
      Emit("memset", h20Memset(d, 1, 4096));
    } else if (line == "reset") {
      Emit("reset", h20DeviceReset());
      Emit("afterreset", h20DeviceSynchronize());
      Emit("mallocagain", h20Malloc(&d, 4096));
    }
  }
  return 0;
}

// Opens a memory handle (hex line) from 8 threads at once, 50 times each (open, read, close),
// and reports the calls that failed or saw another pointer or other bytes.
H20_CHILD_SCENARIO(ThreadedImporter) {
  h20IpcMemHandle_t mh{};
  if (!h20test::FromHex(ReadLine(), &mh, sizeof mh)) return 2;
  std::atomic<long long> bad{0};
  std::atomic<void*> first{nullptr};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        void* p = nullptr;
        if (h20IpcOpenMemHandle(&p, mh, h20IpcMemLazyEnablePeerAccess) != h20Success) {
          ++bad;
          continue;
        }
        void* expected = nullptr;
        if (!first.compare_exchange_strong(expected, p) && expected != p) ++bad;
        unsigned char b = 0;
        if (h20Memcpy(&b, p, 1, h20MemcpyDeviceToHost) != h20Success || b != 0x11) ++bad;
        if (h20IpcCloseMemHandle(p) != h20Success) ++bad;
      }
    });
  for (auto& t : threads)
    t.join();
  Emit("bad", bad.load());
  Emit("closeafter", h20IpcCloseMemHandle(first.load()));
  return 0;
}

// Records an interprocess event on a gated stream (record 1), makes a stream wait for it, then
// records it on an idle stream (record 2, which finishes first); reports whether the waiting
// stream ran before the gate opened, and what queries said.
H20_CHILD_SCENARIO(OutOfOrderRecords) {
  h20Event_t ev = nullptr;
  if (h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming) != h20Success)
    return 1;
  h20Stream_t gated = nullptr, idle = nullptr, waiting = nullptr;
  h20StreamCreate(&gated);
  h20StreamCreate(&idle);
  h20StreamCreate(&waiting);
  h20test::BusyGate gate;
  Emit("launch", gate.Launch(gated));
  Emit("record1", h20EventRecord(ev, gated));
  Emit("wait", h20StreamWaitEvent(waiting, ev, 0));
  std::atomic<int> ran{0};
  h20LaunchHostFunc(waiting, h20test::SetFlagHostFn, &ran);
  Emit("record2", h20EventRecord(ev, idle));
  Emit("idlesync", h20StreamSynchronize(idle));
  Emit("early", h20test::BecomesTrueWithin([&] { return ran.load() != 0; }, 200ms) ? 1 : 0);
  Emit("querywhile", h20EventQuery(ev));
  gate.Open();
  Emit("waitingsync", h20StreamSynchronize(waiting));
  Emit("ran", ran.load());
  Emit("queryafter", h20EventQuery(ev));
  h20EventDestroy(ev);
  return 0;
}

// Records an interprocess event after a kernel that faults, exports it and waits for "exit".
H20_CHILD_SCENARIO(FaultedRecord) {
  h20Event_t ev = nullptr;
  if (h20EventCreateWithFlags(&ev, h20EventInterprocess | h20EventDisableTiming) != h20Success)
    return 1;
  h20Stream_t s = nullptr;
  h20StreamCreate(&s);
  h20test::BusyGate gate;  // holds the stream until the record is queued behind the fault
  gate.Launch(s);
  h20test::FaultArgs f{};
  f.faultBlock = 0;
  f.code = h20ErrorLaunchFailure;
  std::snprintf(f.message, sizeof f.message, "injected");
  h20LaunchKernel(h20test::FaultKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &f, sizeof f, 0, s);
  Emit("record", h20EventRecord(ev, s));
  h20IpcEventHandle_t eh{};
  Emit("get", h20IpcGetEventHandle(&eh, ev));
  Emit("eventhandle", h20test::ToHex(&eh, sizeof eh));
  ReadLine();  // "go": the waiter has queued its wait
  gate.Open();
  Emit("sync", h20StreamSynchronize(s));
  ReadLine();
  return 0;
}

// ---- tests -------------------------------------------------------------------------------------

namespace {

class DaemonIpc : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(std::vector<std::string>{"--memory-budget", "1GiB"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "h20d log:\n%s\n", daemon_->log().c_str());
  }
  h20test::EnvChanges Env(h20test::EnvChanges extra = {}) const {
    auto env = daemon_->clientEnv();
    for (const auto& [k, v] : extra)
      env[k] = v;
    return env;
  }
  std::unique_ptr<Daemon> daemon_;
};

long long Int(const std::optional<std::string>& v) {
  return v ? std::stoll(*v) : -1000000;
}

// Asks an Observer child for the free memory until it reports `expected` or a second has passed;
// the last figure it reported.
long long FreeWithinASecond(Child& observer, long long expected) {
  long long seen = -1;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; std::chrono::steady_clock::now() - start < 1s && seen != expected; ++i) {
    observer.Send("poll" + std::to_string(i));
    seen = Int(observer.Await("poll" + std::to_string(i)));
  }
  return seen;
}

}  // namespace

TEST_F(DaemonIpc, ConsumerProcessSeesTheProducersBufferAfterWaitingOnItsEvent) {
  Child producer("Producer", Env({{"SEED", "5"}, {"SPIN_MS", "300"}}));
  const auto mem = producer.Await("memhandle");
  const auto ev = producer.Await("eventhandle");
  ASSERT_TRUE(mem && ev) << producer.Output();
  EXPECT_EQ(h20Success, Int(producer.Await("getmem")));
  EXPECT_EQ(h20Success, Int(producer.Await("record")));
  Child consumer("Consumer", Env({{"SEED", "5"}, {"WRITEBACK", "1"}}));
  consumer.Send(*mem);
  consumer.Send(*ev);
  EXPECT_EQ(h20Success, Int(consumer.Await("open"))) << consumer.Output();
  EXPECT_EQ(h20Success, Int(consumer.Await("openevent")));
  EXPECT_EQ(h20Success, Int(consumer.Await("wait")));
  EXPECT_EQ(h20Success, Int(consumer.Await("sync")));
  EXPECT_EQ(h20Success, Int(consumer.Await("query")));
  EXPECT_EQ(0, Int(consumer.Await("wrong"))) << "the consumer read before the producer's kernel";
  EXPECT_EQ(h20Success, Int(consumer.Await("close")));
  EXPECT_EQ(h20ErrorInvalidValue, Int(consumer.Await("closeagain")));
  EXPECT_EQ(h20Success, Int(consumer.Await("writeback")));
  EXPECT_EQ(0, consumer.Wait());
  producer.Send("exit");
  EXPECT_EQ(64, Int(producer.Await("head5a"))) << "the consumer's writes reach the producer";
  EXPECT_EQ(h20Success, Int(producer.Await("free")));
  EXPECT_EQ(0, producer.Wait());
}

TEST_F(DaemonIpc, SevenConsumersShareOneProducersBufferAndEvent) {
  Child producer("Producer", Env({{"SEED", "9"}, {"SPIN_MS", "200"}}));
  const auto mem = producer.Await("memhandle");
  const auto ev = producer.Await("eventhandle");
  ASSERT_TRUE(mem && ev) << producer.Output();
  std::vector<std::unique_ptr<Child>> consumers;
  for (int i = 0; i < 7; ++i) {
    consumers.push_back(std::make_unique<Child>("Consumer", Env({{"SEED", "9"}})));
    consumers.back()->Send(*mem);
    consumers.back()->Send(*ev);
  }
  for (auto& c : consumers) {
    EXPECT_EQ(0, Int(c->Await("wrong"))) << c->Output();
    EXPECT_EQ(h20Success, Int(c->Await("close")));
    EXPECT_EQ(0, c->Wait());
  }
  producer.Send("exit");
  EXPECT_EQ(h20Success, Int(producer.Await("free")));
  EXPECT_EQ(0, producer.Wait());
}

TEST_F(DaemonIpc, MemGetInfoCountsEveryProcessAndTheBudgetIsShared) {
  Child observer("Observer", Env());
  const long long free0 = Int(observer.Await("free0"));
  ASSERT_GT(free0, 0) << observer.Output();
  EXPECT_LE(free0, 1ll << 30) << "free memory is capped by the daemon's 1 GiB budget";
  Child holder("Holder", Env({{"MIB", "768"}}));
  ASSERT_EQ(h20Success, Int(holder.Await("malloc"))) << holder.Output();
  observer.Send("after");
  EXPECT_EQ(free0 - (768ll << 20), Int(observer.Await("after")));
  // The budget left is 256 MiB for everyone: a second process cannot take 512 MiB.
  Child second("Holder", Env({{"MIB", "512"}}));
  EXPECT_EQ(h20ErrorMemoryAllocation, Int(second.Await("malloc"))) << second.Output();
  const auto message = second.Await("message");
  ASSERT_TRUE(message);
  EXPECT_NE(std::string::npos, message->find("budget")) << *message;
  holder.Send("exit");
  EXPECT_EQ(0, holder.Wait());
  observer.Send("released");
  EXPECT_EQ(free0, Int(observer.Await("released")));
}

TEST_F(DaemonIpc, KilledClientsMemoryComesBackWithinASecondWhileImportersKeepTheirs) {
  Child observer("Observer", Env());
  const long long free0 = Int(observer.Await("free0"));
  Child holder("Holder", Env({{"MIB", "64"}}));
  const auto mem = holder.Await("memhandle");
  ASSERT_TRUE(mem) << holder.Output();
  Child importer("Importer", Env());
  importer.Send(*mem);
  ASSERT_EQ(h20Success, Int(importer.Await("open"))) << importer.Output();
  EXPECT_EQ(h20Success, Int(importer.Await("openagain")));
  EXPECT_EQ(1, Int(importer.Await("same"))) << "a second open returns the same pointer";
  EXPECT_EQ(h20ErrorInvalidValue, Int(importer.Await("freeimport")))
      << "h20Free refuses imported memory";
  EXPECT_EQ(64ll << 20, Int(importer.Await("bytes")));

  holder.Kill(SIGKILL);
  EXPECT_EQ(128 + SIGKILL, holder.Wait());
  // The importer still reads the killed process's data.
  importer.Send("read");
  EXPECT_EQ(0, Int(importer.Await("read0")));
  // ... and the memory stays allocated while it is imported.
  observer.Send("imported");
  EXPECT_EQ(free0 - (64ll << 20), Int(observer.Await("imported")));
  importer.Send("close");
  EXPECT_EQ(h20Success, Int(importer.Await("close1")));
  EXPECT_EQ(h20Success, Int(importer.Await("close2")));
  EXPECT_EQ(h20ErrorInvalidValue, Int(importer.Await("close3")));
  // Back within a second of the last close.
  EXPECT_EQ(free0, FreeWithinASecond(observer, free0));
  importer.Send("exit");
  EXPECT_EQ(0, importer.Wait());
}

TEST_F(DaemonIpc, KilledClientWithNoImportersHasItsMemoryBackWithinASecond) {
  Child observer("Observer", Env());
  const long long free0 = Int(observer.Await("free0"));
  Child holder("Holder", Env({{"MIB", "128"}}));
  ASSERT_EQ(h20Success, Int(holder.Await("malloc"))) << holder.Output();
  holder.Kill(SIGKILL);
  EXPECT_EQ(128 + SIGKILL, holder.Wait());
  EXPECT_EQ(free0, FreeWithinASecond(observer, free0));
  EXPECT_NE(std::string::npos, daemon_->log().find("released 1 allocations"));
}

TEST_F(DaemonIpc, ClientOfAKilledDaemonGetsDeviceUnavailableAndKeepsItsMappedMemory) {
  Child client("OutlivesDaemon", Env());
  ASSERT_TRUE(client.Await("ready")) << client.Output();
  EXPECT_EQ(128 + SIGKILL, daemon_->stop(SIGKILL));
  client.Send("go");
  EXPECT_EQ(h20ErrorDeviceUnavailable, Int(client.Await("malloc"))) << client.Output();
  const auto message = client.Await("message");
  ASSERT_TRUE(message);
  EXPECT_NE(std::string::npos, message->find(daemon_->socket())) << *message;
  EXPECT_EQ(h20ErrorDeviceUnavailable, Int(client.Await("getmem")));
  EXPECT_EQ(h20ErrorDeviceUnavailable, Int(client.Await("meminfo")));
  EXPECT_EQ(h20Success, Int(client.Await("copy")));
  EXPECT_EQ(1, Int(client.Await("same"))) << "mapped memory stays readable";
  EXPECT_EQ(h20Success, Int(client.Await("free")));
  EXPECT_EQ(0, client.Wait(20s)) << "the client hung or crashed without its daemon";
}

TEST_F(DaemonIpc, TenThousandForgedOrStaleHandlesAreRefusedAndTheDaemonServesOn) {
  Child c("ForgedHandles", Env({{"COUNT", "10000"}}));
  EXPECT_EQ(17500, Int(c.Await("invalid", 60s))) << c.Output();
  EXPECT_EQ(0, Int(c.Await("other")));
  EXPECT_EQ(h20ErrorInvalidValue, Int(c.Await("own")));
  EXPECT_EQ(h20ErrorInvalidValue, Int(c.Await("stale")));
  EXPECT_EQ(h20Success, Int(c.Await("stillserves")));
  EXPECT_EQ(0, c.Wait());
  EXPECT_TRUE(daemon_->running());
}

TEST_F(DaemonIpc, AbandonedEventRecordFailsTheWaitersInsteadOfHangingThem) {
  Child recorder("AbandonsRecord", Env());
  const auto ev = recorder.Await("eventhandle");
  ASSERT_TRUE(ev) << recorder.Output();
  Child waiter("EventWaiter", Env());
  waiter.Send(*ev);
  EXPECT_EQ(h20Success, Int(waiter.Await("open"))) << waiter.Output();
  EXPECT_EQ(h20ErrorNotReady, Int(waiter.Await("query")));
  EXPECT_EQ(h20Success, Int(waiter.Await("streamwait")));
  ASSERT_TRUE(waiter.Await("waiting"));
  recorder.Kill(SIGKILL);
  EXPECT_EQ(h20ErrorLaunchFailure, Int(waiter.Await("eventsync"))) << waiter.Output();
  EXPECT_EQ(h20ErrorLaunchFailure, Int(waiter.Await("streamsync")));
  EXPECT_EQ(0, waiter.Wait());
}

TEST_F(DaemonIpc, NoDaemonListeningFailsInitialisationNamingTheSocketAndH20d) {
  const std::string socket = daemon_->socket();
  daemon_->stop(SIGTERM);
  const h20test::ChildResult r = h20test::RunChild("InitReport", Env());
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_EQ(h20ErrorInitializationError, r.IntValue("count"));
  EXPECT_NE(std::string::npos, r.Value("message").find(socket)) << r.Value("message");
  EXPECT_NE(std::string::npos, r.Value("message").find("h20d")) << r.Value("message");
}

TEST_F(DaemonIpc, AnotherUserIsRefusedByTheSocketFolderAndByItsCredentials) {
  if (geteuid() != 0 || !getpwnam("nobody")) GTEST_SKIP() << "needs root and the user nobody";
  // The socket folder is 0700: nobody cannot even reach the socket.
  h20test::ChildResult r = h20test::RunChild("InitReport", Env({{"DROP", "1"}}));
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_EQ(h20ErrorInitializationError, r.IntValue("count"));
  EXPECT_NE(std::string::npos, r.Value("message").find("Permission denied")) << r.output;
  // Opened up by hand, the daemon still refuses a foreign uid (SO_PEERCRED), and says why.
  ASSERT_EQ(0, chmod(daemon_->folder().c_str(), 0755));
  ASSERT_EQ(0, chmod(daemon_->socket().c_str(), 0666));
  r = h20test::RunChild("InitReport", Env({{"DROP", "1"}}));
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_EQ(h20ErrorInitializationError, r.IntValue("count"));
  EXPECT_NE(std::string::npos, r.Value("message").find("serves only its own user")) << r.output;
  EXPECT_NE(std::string::npos, daemon_->log().find("refused a connection")) << daemon_->log();
  // The daemon's own user is still served.
  r = h20test::RunChild("InitReport", Env());
  EXPECT_EQ(h20Success, r.IntValue("count")) << r.output;
}

TEST_F(DaemonIpc, ExclusiveProcessModeRefusesASecondProcessNamingTheHolder) {
  Child first("Holder", Env({{"MIB", "16"}}));
  ASSERT_EQ(h20Success, Int(first.Await("malloc"))) << first.Output();
  auto r = h20test::RunChild("ComputeMode", Env({{"MODE", "3"}}));
  EXPECT_EQ(h20Success, r.IntValue("set")) << r.output;
  EXPECT_EQ(h20ComputeModeExclusiveProcess, r.IntValue("mode"));
  EXPECT_EQ(h20ComputeModeExclusiveProcess, r.IntValue("propmode"));
  ASSERT_EQ(1, r.IntValue("count")) << r.output;
  EXPECT_EQ(static_cast<int>(first.pid()), r.IntValue("pid0"));
  std::ifstream comm("/proc/" + std::to_string(first.pid()) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, r.Value("name0"));
  EXPECT_EQ(16 << 20, r.IntValue("bytes0"));

  Child second("Holder", Env({{"MIB", "16"}}));
  EXPECT_EQ(h20ErrorDeviceUnavailable, Int(second.Await("malloc"))) << second.Output();
  const auto message = second.Await("message");
  ASSERT_TRUE(message);
  EXPECT_NE(std::string::npos, message->find("EXCLUSIVE_PROCESS")) << *message;
  EXPECT_NE(std::string::npos, message->find("pid " + std::to_string(first.pid()))) << *message;
  second.Send("exit");
  EXPECT_EQ(0, second.Wait());
  // Once the holder has gone, the next process gets the chip.
  first.Send("exit");
  EXPECT_EQ(0, first.Wait());
  Child third("Holder", Env({{"MIB", "16"}}));
  EXPECT_EQ(h20Success, Int(third.Await("malloc"))) << third.Output();
  third.Send("exit");
  EXPECT_EQ(0, third.Wait());
}

TEST_F(DaemonIpc, ProhibitedModeRefusesEveryProcessUntilSetBackToDefault) {
  auto r = h20test::RunChild("ComputeMode", Env({{"MODE", "2"}}));
  EXPECT_EQ(h20Success, r.IntValue("set")) << r.output;
  EXPECT_EQ(h20ComputeModeProhibited, r.IntValue("mode"));
  {
    Child c("Holder", Env());
    EXPECT_EQ(h20ErrorDeviceUnavailable, Int(c.Await("malloc"))) << c.Output();
    const auto message = c.Await("message");
    ASSERT_TRUE(message);
    EXPECT_NE(std::string::npos, message->find("PROHIBITED")) << *message;
    c.Send("exit");
    EXPECT_EQ(0, c.Wait());
  }
  r = h20test::RunChild("ComputeMode", Env({{"MODE", "0"}}));
  EXPECT_EQ(h20ComputeModeDefault, r.IntValue("mode")) << r.output;
  EXPECT_EQ(0, r.IntValue("count"));
  Child c("Holder", Env());
  EXPECT_EQ(h20Success, Int(c.Await("malloc"))) << c.Output();
  c.Send("exit");
  EXPECT_EQ(0, c.Wait());
  EXPECT_NE(std::string::npos, daemon_->log().find("to PROHIBITED")) << daemon_->log();
}

TEST_F(DaemonIpc, UnknownComputeModeIsInvalidValueAndChangesNothing) {
  for (const char* mode : {"1", "4", "-1", "2147483647"}) {
    auto r = h20test::RunChild("ComputeMode", Env({{"MODE", mode}}));
    EXPECT_EQ(h20ErrorInvalidValue, r.IntValue("set")) << mode << r.output;
    EXPECT_EQ(h20ComputeModeDefault, r.IntValue("mode"));
  }
}

TEST_F(DaemonIpc, ThreadsOpeningAndClosingOneHandleAtOnceShareOneMappingAndLeakNothing) {
  Child observer("Observer", Env());
  const long long free0 = Int(observer.Await("free0"));
  Child holder("Holder", Env({{"MIB", "8"}}));
  const auto mem = holder.Await("memhandle");
  ASSERT_TRUE(mem) << holder.Output();
  Child importer("ThreadedImporter", Env());
  importer.Send(*mem);
  EXPECT_EQ(0, Int(importer.Await("bad", 60s))) << importer.Output();
  EXPECT_EQ(h20ErrorInvalidValue, Int(importer.Await("closeafter")));
  EXPECT_EQ(0, importer.Wait());
  holder.Send("exit");
  EXPECT_EQ(0, holder.Wait());
  EXPECT_EQ(free0, FreeWithinASecond(observer, free0)) << "an import was never closed";
}

TEST_F(DaemonIpc, AWaitIsReleasedByItsOwnRecordNotByALaterOneThatFinishesFirst) {
  const auto r = h20test::RunChild("OutOfOrderRecords", Env());
  ASSERT_EQ(0, r.exitCode) << r.output;
  EXPECT_EQ(h20Success, r.IntValue("record1")) << r.output;
  EXPECT_EQ(h20Success, r.IntValue("record2"));
  EXPECT_EQ(0, r.IntValue("early")) << "the wait for record 1 ended when record 2 finished";
  EXPECT_EQ(h20ErrorNotReady, r.IntValue("querywhile"));
  EXPECT_EQ(h20Success, r.IntValue("waitingsync"));
  EXPECT_EQ(1, r.IntValue("ran"));
  EXPECT_EQ(h20Success, r.IntValue("queryafter"));
}

TEST_F(DaemonIpc, ARecordSkippedOnAFaultedDeviceFailsTheOtherProcessesWaits) {
  Child recorder("FaultedRecord", Env());
  const auto ev = recorder.Await("eventhandle");
  ASSERT_TRUE(ev) << recorder.Output();
  Child waiter("EventWaiter", Env());
  waiter.Send(*ev);
  ASSERT_TRUE(waiter.Await("waiting")) << waiter.Output();
  recorder.Send("go");
  EXPECT_EQ(h20ErrorLaunchFailure, Int(recorder.Await("sync"))) << recorder.Output();
  EXPECT_EQ(h20ErrorLaunchFailure, Int(waiter.Await("eventsync"))) << waiter.Output();
  EXPECT_EQ(h20ErrorLaunchFailure, Int(waiter.Await("streamsync")));
  EXPECT_EQ(0, waiter.Wait());
  recorder.Send("exit");
  EXPECT_EQ(0, recorder.Wait());
}
