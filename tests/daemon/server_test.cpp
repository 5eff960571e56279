// server_test.cpp - h20d itself: options, its socket's life (folder mode, stale and live sockets,
// signals), and its wire protocol under hostile input (malformed frames, other clients' ids, a
// seeded frame fuzzer), speaking the protocol directly (driver_shim/daemon/transport.hpp).
#include "daemon/protocol.hpp"
#include "daemon/transport.hpp"
#include "daemon_harness.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

using h20test::Daemon;
using h20test::RunDaemonCommand;
namespace wire = h20::daemon;
using namespace std::chrono_literals;

namespace {

bool Contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// A client speaking the protocol by hand.
class RawClient {
 public:
  explicit RawClient(const std::string& socket) {
    std::string error;
    fd_ = wire::connectSocket(socket, &error);
    timeval tv{5, 0};
    if (fd_) setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  bool connected() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }

  bool SendRaw(const void* bytes, std::size_t n, int passFd = -1) {
    iovec iov{const_cast<void*>(bytes), n};
    std::string error;
    return wire::sendMessage(fd_.get(), &iov, 1, passFd, &error);
  }
  bool Send(wire::MsgType type, const wire::Writer& w, std::uint32_t tag = 1) {
    std::string error;
    return wire::sendFrame(fd_.get(), static_cast<std::uint16_t>(type), tag, w.bytes(), -1, &error);
  }
  // The next reply: its status code (INT32_MIN when the connection closed or nothing came).
  int Reply(wire::Frame* frame = nullptr, std::string* message = nullptr) {
    wire::Frame f;
    std::string error;
    if (wire::receiveFrame(fd_.get(), true, &f, &error) != wire::RecvStatus::frame)
      return INT32_MIN;
    wire::Reader r = f.reader();
    const int code = r.i32();
    const std::string m = r.str();
    if (message) *message = m;
    if (frame) {
      f.payload.erase(f.payload.begin(), f.payload.end() - static_cast<std::ptrdiff_t>(r.left()));
      *frame = std::move(f);
    }
    return code;
  }
  // True once the daemon has closed this connection.
  bool Closed() {
    char b;
    const ssize_t n = recv(fd_.get(), &b, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  int Hello(std::uint32_t version = wire::kProtocolVersion) {
    wire::Writer w;
    w.u32(version);
    w.u32(static_cast<std::uint32_t>(getpid()));
    w.str("raw-client");
    Send(wire::MsgType::hello, w);
    return Reply();
  }
  // Allocates on chip 0: the object id, 0 on failure.
  std::uint64_t Alloc(std::uint64_t bytes, int chip = 0, int* code = nullptr) {
    wire::Writer w;
    w.i32(chip);
    w.u64(bytes);
    Send(wire::MsgType::alloc, w);
    wire::Frame f;
    const int c = Reply(&f);
    if (code) *code = c;
    if (c != h20Success) return 0;
    return f.reader().u64();
  }
  int Free(std::uint64_t object) {
    wire::Writer w;
    w.u64(object);
    Send(wire::MsgType::free, w);
    return Reply();
  }
  std::uint64_t FreeBytes(int chip = 0) {
    wire::Writer w;
    w.i32(chip);
    Send(wire::MsgType::memInfo, w);
    wire::Frame f;
    if (Reply(&f) != h20Success) return 0;
    return f.reader().u64();
  }

 private:
  wire::Fd fd_;
};

class DaemonServer : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(std::vector<std::string>{"--memory-budget", "256MiB"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "h20d log:\n%s\n", daemon_->log().c_str());
  }
  // A well-behaved client still gets served, and the daemon still runs.
  void ExpectStillServing() {
    EXPECT_TRUE(daemon_->running()) << daemon_->log();
    RawClient ok(daemon_->socket());
    ASSERT_EQ(h20Success, ok.Hello());
    const std::uint64_t id = ok.Alloc(4096);
    EXPECT_NE(0u, id);
    EXPECT_EQ(h20Success, ok.Free(id));
  }
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace

// ---- options and the socket's life
// ---------------------------------------------------------------

TEST(H20dOptions, VersionAndHelpExitZero) {
  auto r = RunDaemonCommand({"--version"});
  EXPECT_EQ(0, r.exitCode) << r.output;
  EXPECT_TRUE(Contains(r.output, "h20d ")) << r.output;
  EXPECT_TRUE(Contains(r.output, "protocol 1")) << r.output;
  r = RunDaemonCommand({"--help"});
  EXPECT_EQ(0, r.exitCode) << r.output;
  for (const char* option :
       {"--socket", "--devices", "--topology", "--memory-budget", "--log-level", "--version"})
    EXPECT_TRUE(Contains(r.output, option)) << option << "\n" << r.output;
}

TEST(H20dOptions, BadValuesExitTwoNamingTheOption) {
  struct Case {
    std::vector<std::string> args;
    const char* named;
  };
  for (const Case& c : std::vector<Case>{{{"--devices", "0"}, "--devices"},
                                         {{"--devices", "65"}, "--devices"},
                                         {{"--devices", "x"}, "--devices"},
                                         {{"--memory-budget", "12XB"}, "--memory-budget"},
                                         {{"--memory-budget", "0"}, "--memory-budget"},
                                         {{"--memory-budget", "-5"}, "--memory-budget"},
                                         {{"--log-level", "loud"}, "--log-level"},
                                         {{"--no-such-option"}, "--no-such-option"}}) {
    const auto r = RunDaemonCommand(c.args);
    EXPECT_EQ(2, r.exitCode) << c.args[0] << ": " << r.output;
    EXPECT_TRUE(Contains(r.output, c.named)) << r.output;
  }
}

TEST(H20dOptions, UnknownTopologyOrNonSocketPathExitsOneWithAMessage) {
  char tmpl[] = "/tmp/h20d-opt-XXXXXX";
  ASSERT_NE(nullptr, mkdtemp(tmpl));
  const std::string dir = tmpl;
  auto r = RunDaemonCommand({"--socket", dir + "/s", "--topology", "no-such-preset"});
  EXPECT_EQ(1, r.exitCode) << r.output;
  EXPECT_TRUE(Contains(r.output, "no-such-preset")) << r.output;
  const std::string file = dir + "/file";
  std::fclose(std::fopen(file.c_str(), "w"));
  r = RunDaemonCommand({"--socket", file});
  EXPECT_EQ(1, r.exitCode) << r.output;
  EXPECT_TRUE(Contains(r.output, "is not a socket")) << r.output;
  std::remove(file.c_str());
  ::rmdir(dir.c_str());
}

TEST(H20dSocket, DefaultSocketIsInAPrivateFolderUnderXdgRuntimeDir) {
  char tmpl[] = "/tmp/h20d-xdg-XXXXXX";
  ASSERT_NE(nullptr, mkdtemp(tmpl));
  const std::string xdg = tmpl;
  ASSERT_EQ(0, setenv("XDG_RUNTIME_DIR", xdg.c_str(), 1));
  {
    Daemon d({}, xdg + "/h20/h20d.sock");  // the path h20d picks without --socket
    // Daemon passes --socket; check the default by asking the daemon's help for it too.
    ASSERT_TRUE(d.ok()) << d.log();
    struct stat st {};
    ASSERT_EQ(0, stat((xdg + "/h20").c_str(), &st));
    EXPECT_EQ(0700u, st.st_mode & 0777);
    ASSERT_EQ(0, stat(d.socket().c_str(), &st));
    EXPECT_EQ(0600u, st.st_mode & 0777);
    const auto help = RunDaemonCommand({"--help"});
    EXPECT_TRUE(Contains(help.output, xdg + "/h20/h20d.sock")) << help.output;
    EXPECT_EQ(0, d.stop(SIGTERM));
  }
  unsetenv("XDG_RUNTIME_DIR");
  ::rmdir((xdg + "/h20").c_str());
  ::rmdir(xdg.c_str());
}

TEST(H20dSocket, LiveSocketIsRefusedAndAStaleOneIsReclaimed) {
  Daemon first;
  ASSERT_TRUE(first.ok()) << first.log();
  auto r = RunDaemonCommand({"--socket", first.socket()});
  EXPECT_EQ(1, r.exitCode) << r.output;
  EXPECT_TRUE(Contains(r.output, "already serving")) << r.output;
  EXPECT_TRUE(first.running());
  // Killed, it leaves its socket file behind; the next daemon takes it over.
  EXPECT_EQ(128 + SIGKILL, first.stop(SIGKILL));
  struct stat st {};
  ASSERT_EQ(0, stat(first.socket().c_str(), &st)) << "a killed daemon leaves its socket";
  Daemon second({}, first.socket());
  ASSERT_TRUE(second.ok()) << second.log();
  EXPECT_TRUE(Contains(second.log(), "stale socket")) << second.log();
  RawClient c(second.socket());
  EXPECT_EQ(h20Success, c.Hello());
}

TEST(H20dSocket, SigtermAndSigintStopCleanlyAndRemoveTheSocket) {
  for (int sig : {SIGTERM, SIGINT}) {
    Daemon d;
    ASSERT_TRUE(d.ok()) << d.log();
    RawClient c(d.socket());
    ASSERT_EQ(h20Success, c.Hello());
    ASSERT_NE(0u, c.Alloc(1 << 20));
    EXPECT_EQ(0, d.stop(sig)) << d.log();
    struct stat st {};
    EXPECT_NE(0, stat(d.socket().c_str(), &st)) << "socket left behind after signal " << sig;
    EXPECT_TRUE(c.Closed());
    EXPECT_TRUE(Contains(d.log(), "shutting down")) << d.log();
  }
}

// ---- the protocol under hostile input
// -------------------------------------------------------------

TEST_F(DaemonServer, WrongProtocolVersionIsToldBothVersionsAndCutOff) {
  RawClient c(daemon_->socket());
  wire::Writer w;
  w.u32(wire::kProtocolVersion + 7);
  w.u32(1);
  w.str("old-client");
  c.Send(wire::MsgType::hello, w);
  std::string message;
  EXPECT_EQ(h20ErrorInitializationError, c.Reply(nullptr, &message));
  EXPECT_TRUE(Contains(message, std::to_string(wire::kProtocolVersion + 7))) << message;
  EXPECT_TRUE(Contains(message, std::to_string(wire::kProtocolVersion))) << message;
  EXPECT_TRUE(c.Closed());
  ExpectStillServing();
}

TEST_F(DaemonServer, MalformedFramesCloseThatConnectionOnly) {
  RawClient bystander(daemon_->socket());
  ASSERT_EQ(h20Success, bystander.Hello());
  const std::uint64_t kept = bystander.Alloc(1 << 20);
  ASSERT_NE(0u, kept);

  wire::FrameHeader h;
  h.type = static_cast<std::uint16_t>(wire::MsgType::memInfo);
  h.length = 4;
  struct Case {
    const char* what;
    std::vector<std::uint8_t> bytes;
    bool hello;
    int fd = -1;
  };
  auto frame = [](wire::FrameHeader hdr, std::vector<std::uint8_t> payload) {
    std::vector<std::uint8_t> b(sizeof hdr);
    std::memcpy(b.data(), &hdr, sizeof hdr);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
  };
  std::vector<Case> cases;
  cases.push_back({"shorter than a header", {1, 2, 3}, true});
  auto badMagic = h;
  badMagic.magic = 0xdeadbeef;
  cases.push_back({"bad magic", frame(badMagic, {0, 0, 0, 0}), true});
  auto flags = h;
  flags.flags = 1;
  cases.push_back({"flags set", frame(flags, {0, 0, 0, 0}), true});
  auto longer = h;
  longer.length = 400;
  cases.push_back({"length larger than the payload", frame(longer, {0, 0, 0, 0}), true});
  auto shorter = h;
  shorter.length = 2;
  cases.push_back({"length smaller than the payload", frame(shorter, {0, 0, 0, 0}), true});
  auto huge = h;
  huge.length = 0xffffffffu;
  cases.push_back({"length 4 GiB", frame(huge, {0, 0, 0, 0}), true});
  auto oversize = h;
  oversize.length = static_cast<std::uint32_t>(wire::kMaxPayload + 16);
  cases.push_back({"payload over the cap",
                   frame(oversize, std::vector<std::uint8_t>(wire::kMaxPayload + 16)), true});
  auto unknown = h;
  unknown.type = 999;
  cases.push_back({"unknown type", frame(unknown, {0, 0, 0, 0}), true});
  auto reply = h;
  reply.type |= wire::kReplyBit;
  cases.push_back({"a reply sent to the daemon", frame(reply, {0, 0, 0, 0}), true});
  cases.push_back({"a request before HELLO", frame(h, {0, 0, 0, 0}), false});
  auto truncated = h;
  truncated.type = static_cast<std::uint16_t>(wire::MsgType::alloc);
  truncated.length = 3;
  cases.push_back({"truncated ALLOC", frame(truncated, {1, 2, 3}), true});
  auto trailing = h;
  trailing.type = static_cast<std::uint16_t>(wire::MsgType::memInfo);
  trailing.length = 8;
  cases.push_back({"trailing bytes", frame(trailing, {0, 0, 0, 0, 9, 9, 9, 9}), true});
  auto hello2 = h;
  hello2.type = static_cast<std::uint16_t>(wire::MsgType::hello);
  hello2.length = 4;
  cases.push_back({"a second HELLO", frame(hello2, {1, 0, 0, 0}), true});
  cases.push_back({"a file descriptor", frame(h, {0, 0, 0, 0}), true, STDIN_FILENO});
  for (const Case& c : cases) {
    RawClient evil(daemon_->socket());
    if (c.hello) ASSERT_EQ(h20Success, evil.Hello()) << c.what;
    evil.SendRaw(c.bytes.data(), c.bytes.size(), c.fd);
    // An error reply may come first; then the connection is closed.
    bool closed = false;
    for (int i = 0; i < 2 && !closed; ++i)
      closed = evil.Closed() || evil.Reply() == INT32_MIN;
    EXPECT_TRUE(closed) << c.what;
  }
  // The bystander's allocation and connection are untouched.
  EXPECT_EQ(h20Success, bystander.Free(kept));
  ExpectStillServing();
}

TEST_F(DaemonServer, IdsOfOtherClientsAndImpossibleRequestsAreRefusedWithReasons) {
  RawClient owner(daemon_->socket());
  ASSERT_EQ(h20Success, owner.Hello());
  const std::uint64_t object = owner.Alloc(1 << 20);
  ASSERT_NE(0u, object);
  RawClient other(daemon_->socket());
  ASSERT_EQ(h20Success, other.Hello());
  std::string message;
  // Another client's object, a stale id, a forged id: refused, the connection stays.
  for (std::uint64_t id :
       {object, object + (std::uint64_t{1} << 32), std::uint64_t{0}, ~std::uint64_t{0}}) {
    wire::Writer w;
    w.u64(id);
    other.Send(wire::MsgType::free, w);
    EXPECT_EQ(h20ErrorInvalidValue, other.Reply(nullptr, &message)) << id;
    other.Send(wire::MsgType::ipcExport, w);
    EXPECT_EQ(h20ErrorInvalidValue, other.Reply(nullptr, &message)) << id;
    other.Send(wire::MsgType::ipcClose, w);
    EXPECT_EQ(h20ErrorInvalidValue, other.Reply(nullptr, &message)) << id;
  }
  int code = 0;
  EXPECT_EQ(0u, other.Alloc(std::uint64_t{1} << 63, 0, &code));
  EXPECT_EQ(h20ErrorMemoryAllocation, code);
  EXPECT_EQ(0u, other.Alloc(~std::uint64_t{0}, 0, &code));
  EXPECT_EQ(h20ErrorMemoryAllocation, code);
  EXPECT_EQ(0u, other.Alloc(0, 0, &code));
  EXPECT_EQ(h20ErrorMemoryAllocation, code);
  EXPECT_EQ(0u, other.Alloc(512 << 20, 0, &code));  // past the 256 MiB budget
  EXPECT_EQ(h20ErrorMemoryAllocation, code);
  for (int chip : {-1, 8, 64, INT32_MIN, INT32_MAX}) {
    EXPECT_EQ(0u, other.Alloc(4096, chip, &code));
    EXPECT_EQ(h20ErrorInvalidDevice, code) << chip;
  }
  // The owner's object survived all of it.
  EXPECT_EQ(h20Success, owner.Free(object));
  EXPECT_EQ(h20ErrorInvalidValue, owner.Free(object)) << "a second free of the same id";
}

TEST_F(DaemonServer, SeededFrameFuzzerLeavesTheDaemonServingWithNothingLeaked) {
  // H20_DAEMON_FUZZ_SEED and H20_DAEMON_FUZZ_SECONDS replay or lengthen a run.
  const char* seedEnv = std::getenv("H20_DAEMON_FUZZ_SEED");
  const char* secondsEnv = std::getenv("H20_DAEMON_FUZZ_SECONDS");
  const std::uint64_t seed = seedEnv ? std::strtoull(seedEnv, nullptr, 0) : 20261207;
  const double seconds = secondsEnv ? std::atof(secondsEnv) : 3.0;
  std::mt19937_64 rng(seed);
  RawClient probe(daemon_->socket());
  ASSERT_EQ(h20Success, probe.Hello());
  const std::uint64_t free0 = probe.FreeBytes();
  const std::uint64_t probeObject = probe.Alloc(4096);
  ASSERT_NE(0u, probeObject);

  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int sessions = 0, frames = 0;
  while (std::chrono::steady_clock::now() < end) {
    ++sessions;
    RawClient c(daemon_->socket());
    ASSERT_TRUE(c.connected()) << "seed " << seed << ", session " << sessions;
    timeval tv{0, 20000};
    setsockopt(c.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (rng() % 4 != 0) c.Hello(rng() % 8 == 0 ? static_cast<std::uint32_t>(rng()) : 1);
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i, ++frames) {
      wire::FrameHeader h;
      h.type = static_cast<std::uint16_t>(rng() % 4 == 0 ? rng() : 1 + rng() % wire::kMaxMsgType);
      std::vector<std::uint8_t> payload(rng() % 4 == 0 ? rng() % 512 : rng() % 24);
      for (auto& b : payload)
        b = static_cast<std::uint8_t>(rng());
      // Plausible fields now and then: chips, sizes, the probe's object id, huge counts.
      if (payload.size() >= 12 && rng() % 2) {
        const std::uint64_t picks[] = {probeObject,       0,    1,
                                       ~std::uint64_t{0}, 4096, std::uint64_t{1} << 40};
        const std::uint64_t v = picks[rng() % 6];
        std::memcpy(payload.data() + (rng() % 2 ? 0 : 4), &v, 8);
      }
      h.length = static_cast<std::uint32_t>(payload.size());
      if (rng() % 8 == 0) h.length = static_cast<std::uint32_t>(rng());
      if (rng() % 16 == 0) h.magic = static_cast<std::uint32_t>(rng());
      std::vector<std::uint8_t> bytes(sizeof h);
      std::memcpy(bytes.data(), &h, sizeof h);
      bytes.insert(bytes.end(), payload.begin(), payload.end());
      if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
      if (!c.SendRaw(bytes.data(), bytes.size())) break;
      const int code = c.Reply();
      if (code == h20Success && rng() % 2 == 0) continue;
    }
  }
  RecordProperty("sessions", sessions);
  RecordProperty("frames", frames);
  // Fuzz sessions that allocated released it when they closed; the probe's object lives on.
  EXPECT_EQ(h20Success, probe.Free(probeObject)) << "seed " << seed;
  const auto settle = std::chrono::steady_clock::now() + 2s;
  std::uint64_t freeNow = 0;
  while ((freeNow = probe.FreeBytes()) != free0 && std::chrono::steady_clock::now() < settle)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(free0, freeNow) << "seed " << seed << ": memory leaked by closed sessions";
  ExpectStillServing();
  std::printf("fuzzed %d sessions, %d frames (seed %llu)\n", sessions, frames,
              static_cast<unsigned long long>(seed));
}

TEST(H20dFaults, ChipFaultReachesEveryProcessOnThatChipOnlyUntilEachResets) {
  Daemon d({"--allow-fault-injection"});
  ASSERT_TRUE(d.ok()) << d.log();
  auto env = [&](const char* chip) {
    auto e = d.clientEnv();
    e["H20_VISIBLE_DEVICES"] = chip;
    return e;
  };
  h20test::Child a("FaultWatcher", env("0")), b("FaultWatcher", env("0")),
      other("FaultWatcher", env("1"));
  for (auto* c : {&a, &b, &other})
    ASSERT_TRUE(c->Await("ready")) << c->Output();
  RawClient raw(d.socket());
  ASSERT_EQ(h20Success, raw.Hello());
  wire::Writer w;
  w.i32(0);
  w.i32(h20ErrorIllegalAddress);
  w.str("uncorrectable ECC error (injected)");
  raw.Send(wire::MsgType::raiseFault, w);
  ASSERT_EQ(h20Success, raw.Reply());
  for (auto* c : {&a, &b, &other})
    c->Send("check");
  for (auto* c : {&a, &b}) {
    EXPECT_EQ(std::to_string(h20ErrorIllegalAddress), c->Await("sync").value_or("")) << c->Output();
    EXPECT_TRUE(Contains(c->Await("message").value_or(""), "uncorrectable ECC error"));
    EXPECT_EQ(std::to_string(h20ErrorIllegalAddress), c->Await("memset").value_or(""));
  }
  EXPECT_EQ(std::to_string(h20Success), other.Await("sync").value_or("")) << other.Output();
  // A reset clears it for the process that resets, not for the other one.
  a.Send("reset");
  EXPECT_EQ(std::to_string(h20Success), a.Await("reset").value_or("")) << a.Output();
  EXPECT_EQ(std::to_string(h20Success), a.Await("afterreset").value_or(""));
  EXPECT_EQ(std::to_string(h20Success), a.Await("mallocagain").value_or(""));
  b.Send("reset");
  EXPECT_EQ(std::to_string(h20Success), b.Await("afterreset").value_or("")) << b.Output();
  for (auto* c : {&a, &b, &other}) {
    c->Send("exit");
    EXPECT_EQ(0, c->Wait());
  }
}

TEST_F(DaemonServer, FaultInjectionIsRefusedUnlessEnabledAndChecksItsArguments) {
  RawClient raw(daemon_->socket());
  ASSERT_EQ(h20Success, raw.Hello());
  wire::Writer w;
  w.i32(0);
  w.i32(h20ErrorLaunchFailure);
  w.str("x");
  raw.Send(wire::MsgType::raiseFault, w);
  std::string message;
  EXPECT_EQ(h20ErrorNotPermitted, raw.Reply(nullptr, &message));
  EXPECT_TRUE(Contains(message, "--allow-fault-injection")) << message;
  Daemon d({"--allow-fault-injection"});
  ASSERT_TRUE(d.ok());
  RawClient c(d.socket());
  ASSERT_EQ(h20Success, c.Hello());
  for (auto [chip, code] :
       {std::pair{0, 0}, std::pair{0, 999}, std::pair{8, 719}, std::pair{-1, 719}}) {
    wire::Writer bad;
    bad.i32(chip);
    bad.i32(code);
    bad.str("x");
    c.Send(wire::MsgType::raiseFault, bad);
    EXPECT_NE(h20Success, c.Reply()) << chip << " " << code;
  }
}

TEST(H20dSocket, OutOfDescriptorsPausesAcceptingInsteadOfSpinningAndRecovers) {
  // The daemon runs with a low descriptor limit (hard too: it raises its soft limit itself).
  Daemon d({}, "", {"prlimit", "--nofile=40:40"});
  ASSERT_TRUE(d.ok()) << d.log();
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 60; ++i)
    clients.push_back(std::make_unique<RawClient>(d.socket()));
  auto cpuTicks = [&] {
    std::ifstream stat("/proc/" + std::to_string(d.pid()) + "/stat");
    std::string field;
    long ticks = 0;
    for (int i = 1; stat >> field && i <= 15; ++i)
      if (i == 14 || i == 15) ticks += std::stol(field);  // utime, stime
    return ticks;
  };
  std::this_thread::sleep_for(200ms);
  const long before = cpuTicks();
  std::this_thread::sleep_for(1s);
  EXPECT_LT(cpuTicks() - before, sysconf(_SC_CLK_TCK) / 5) << "h20d spins when out of descriptors";
  EXPECT_TRUE(Contains(d.log(), "accept failed")) << d.log();
  clients.clear();
  // Served again once descriptors are free.
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    RawClient c(d.socket());
    served = c.Hello() == h20Success;
  }
  EXPECT_TRUE(served) << d.log();
  EXPECT_TRUE(d.running());
}

TEST_F(DaemonServer, SharedObjectsCannotBeResizedAndTheStatusPageNotWritten) {
  RawClient c(daemon_->socket());
  wire::Writer hello;
  hello.u32(wire::kProtocolVersion);
  hello.u32(1);
  hello.str("sealing");
  c.Send(wire::MsgType::hello, hello);
  wire::Frame status;
  ASSERT_EQ(h20Success, c.Reply(&status));
  ASSERT_TRUE(status.fd);
  EXPECT_NE(0, ftruncate(status.fd.get(), 0)) << "the status page can be truncated";
  EXPECT_EQ(MAP_FAILED, mmap(nullptr, sizeof(wire::StatusPage), PROT_READ | PROT_WRITE, MAP_SHARED,
                             status.fd.get(), 0))
      << "the status page can be mapped writable";
  wire::Writer ev;
  ev.i32(0);
  c.Send(wire::MsgType::eventCreate, ev);
  wire::Frame event;
  ASSERT_EQ(h20Success, c.Reply(&event));
  ASSERT_TRUE(event.fd);
  EXPECT_NE(0, ftruncate(event.fd.get(), 0)) << "an event page can be truncated";
  wire::Writer al;
  al.i32(0);
  al.u64(1 << 20);
  c.Send(wire::MsgType::alloc, al);
  wire::Frame mem;
  ASSERT_EQ(h20Success, c.Reply(&mem));
  ASSERT_TRUE(mem.fd);
  EXPECT_NE(0, ftruncate(mem.fd.get(), 4096)) << "an allocation can be truncated";
  EXPECT_NE(0, ftruncate(mem.fd.get(), 1 << 30)) << "an allocation can be grown";
  // Closing the session with those attempts behind it leaves the daemon serving.
  ExpectStillServing();
}
