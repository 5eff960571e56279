// fuzz_world.hpp - the API fuzzer's operations and its shadow model of the runtime.
//
// An Op is one step of a fuzz sequence: usually one h20 call (a few are short fixed sequences,
// such as "launch a faulting kernel and synchronise"), with its arguments named symbolically
// (memory object, stream and event ids, offsets), so that any subset of a sequence can be replayed
// against a fresh runtime: an op whose objects do not exist in the subset is skipped.
//
// The World is one host thread's view: every object that thread created, and for each
// allocation the bytes it must hold. It decides, for each op, the result codes the call may
// return (from the header comments and CUDA's documented semantics) and whether the op may run at
// all without a data race against work still in flight. It orders work with vector clocks: one
// agent per stream; an op's clock joins its stream's, the host's (what the host has already
// synchronised with), the implicit synchronisation between the legacy stream and blocking
// streams, events waited for and h20MemcpyPeer's ordering with both devices' legacy streams. Every
// pending access of an allocation is kept with its agent and sequence number; an op that
// conflicts with an access its clock does not cover is not run. Effects are applied to the model
// in program order, which is a valid execution order for race-free work.
//
// The same code runs in two modes: dry (no h20 calls, used to generate sequences: the model
// assumes the runtime behaves as documented) and exec (each call is made, its result checked, and
// after every synchronisation the memory the host may now read is compared with the model). The
// World does not choose ops (fuzz_gen.cpp) nor run sequences and shrink them (fuzz_runner.cpp).
#pragma once

#include "fuzz_kernels.hpp"

#include <h20/h20_runtime.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace h20fuzz {

enum class OpKind : std::uint8_t {
  SetDevice,
  Malloc,
  MallocAsync,
  Free,
  FreeAsync,
  HostAlloc,
  FreeHost,
  NewPageable,
  HostRegister,
  HostUnregister,
  HostWrite,
  StreamCreate,
  StreamDestroy,
  StreamSync,
  StreamQuery,
  StreamWaitEvent,
  EventCreate,
  EventRecord,
  EventSync,
  EventQuery,
  EventElapsed,
  EventDestroy,
  Memcpy,
  MemcpyAsync,
  MemcpyPeer,
  MemcpyPeerAsync,
  Memset,
  MemsetAsync,
  Transform,
  Checksum,
  HostFn,
  DeviceSync,
  DeviceReset,
  PeerEnable,
  PeerDisable,
  InjectFault,
  Query,
  Count
};
const char* OpName(OpKind k);

// The one thing wrong with an op that is meant to fail (none: a valid op).
enum class Bad : std::uint8_t {
  none,
  kindRange,       // memcpy kind out of range (op.value)
  kindMismatch,    // a kind that does not match the pointers (op.kind)
  countOver,       // count exceeds the bytes left in dst's or src's allocation
  countMax,        // count SIZE_MAX
  nullDst,         // dst (or the only pointer) NULL with count > 0
  nullSrc,         // src NULL with count > 0
  freedDst,        // dst in a freed device allocation
  freedSrc,        // src in a freed device allocation
  streamEvent,     // an event handle (op.ev) passed as the stream
  streamDead,      // a destroyed stream (op.s)
  streamGarbage,   // a handle value never returned by h20StreamCreate
  streamDefault,   // NULL / legacy / per-thread where a stream to destroy is needed
  eventStream,     // a stream handle (op.s) passed as the event
  eventDead,       // a destroyed event (op.ev)
  eventGarbage,    // a handle value never returned by h20EventCreate
  device,          // device ordinal out of range (op.value)
  ptrDevice,       // peer copy: the pointer is memory of another device than the one named
  hostPtr,         // device memory expected, host memory given
  interior,        // a pointer inside an allocation, not its start
  flags,           // unknown or forbidden flag bits (op.flags)
  nullOut,         // NULL output pointer
  sizeMax,         // size SIZE_MAX
  sizeHuge,        // size beyond the device's memory
  zeroSize,        // size 0 where it is an error
  grid,            // a grid dimension of 0
  block,           // more threads per block than allowed
  shared,          // more shared memory than allowed
  argsBytes,       // argsBytes above H20_MAX_KERNEL_ARGS_BYTES
  nullFn,          // kernel or host function NULL
  nullArgs,        // args NULL with argsBytes > 0
  peerNotEnabled,  // kernel argument on a device the stream's device has no peer access to
  notRegistered,   // unregister of memory that is not a registered range's start
  alreadyRegistered,
  ioMemory,            // h20HostRegisterIoMemory
  interprocess,        // h20EventInterprocess without h20EventDisableTiming
  interprocessTiming,  // h20EventInterprocess | h20EventDisableTiming
  self,                // peer access to the current device itself
  otherDevice,         // event recorded on a stream of another device
  notRecorded,         // elapsed time of an event never recorded
  noTiming,            // elapsed time of an event created with h20EventDisableTiming
  Count
};
const char* BadName(Bad b);

struct MemRef {
  int obj = -1;
  std::size_t off = 0;
};

struct StreamRef {
  enum Kind : std::uint8_t { none, user, null, legacy, perThread } kind = none;
  int id = -1;
};

struct Op {
  OpKind k = OpKind::SetDevice;
  Bad bad = Bad::none;
  int dev = -1;   // the device the op is about (made current first where the call uses it)
  int dev2 = -1;  // the second device (peer, copy source device)
  MemRef dst, src;
  std::size_t count = 0;  // bytes
  StreamRef s;
  int ev = -1, ev2 = -1;
  int kind = 0;  // h20MemcpyKind, or the flavour of a query / allocation call
  unsigned flags = 0;
  int value = 0;  // memset byte, bad enum or ordinal, priority, fault code
  std::uint32_t grid = 1;
  std::uint32_t salt = 0;
  std::uint32_t spinUs = 0;
  std::size_t size = 0;
  int id = -1;  // id of the object the op creates
};

// One line describing the op as the call(s) it makes, e.g.
// "h20MemcpyAsync(m3+64, m1+0, 256, h20MemcpyHostToDevice, s2)".
std::string Describe(const Op& op);

using VC = std::vector<std::uint64_t>;  // vector clock, indexed by agent

struct Access {
  std::size_t begin, end;
  bool write;
  int agent;
  std::uint64_t seq;
};

enum class MemKind : std::uint8_t { device, pool, pinned, pageable };

struct Mem {
  int id = -1;
  MemKind kind = MemKind::device;
  int device = -1;  // device memory: its device; pinned/registered: the device current at creation
  std::size_t size = 0;
  bool live = true;
  bool registered = false;  // pageable memory registered with h20HostRegister
  bool sharedRO = false;    // multi-threaded runs: created before the threads, read by all
  std::vector<std::uint8_t> bytes, defined;  // the model's contents; defined[i] == 0: unknown
  std::vector<Access> pending;
  std::uint64_t version = 1, verified = 0;
  // exec mode
  unsigned char* ptr = nullptr;
  std::unique_ptr<unsigned char[]> storage;  // pageable memory
  bool isDevice() const { return kind == MemKind::device || kind == MemKind::pool; }
  bool isPinned() const { return kind == MemKind::pinned || registered; }
  bool isPageable() const { return kind == MemKind::pageable && !registered; }
};

enum class StreamKind : std::uint8_t { user, legacy, perThread };

struct StreamM {
  int key = 0;
  int device = 0;
  StreamKind kind = StreamKind::user;
  bool blocking = true;
  bool live = true;
  unsigned flags = 0;
  int priority = 0;
  int agent = 0;
  std::uint64_t seq = 0;
  VC vc;
  VC waitJoin;  // events waited for, joined into the stream's next op
  // A wait enqueued since the last op: it completes after the event's work, asynchronously, so
  // only a synchronisation of this stream tells the host it is done.
  bool pendingWait = false;
  h20Stream_t handle = nullptr;
};

struct EventM {
  int id = -1;
  int device = 0;
  unsigned flags = 0;
  bool live = true;
  bool recorded = false;
  int recAgent = 0;
  std::uint64_t recSeq = 0;
  VC vc;
  h20Event_t handle = nullptr;
};

// A launch or host function whose record is checked once its work is known complete.
struct PendingRecord {
  int agent;
  std::uint64_t seq;
  int expectRuns;
  std::shared_ptr<void> owner;  // keeps the record (and host function arguments) alive
  WorkRecord* record;
  std::string what;
};

struct DevM {
  h20Error_t fault = h20Success;  // sticky fault until reset
  std::vector<std::int8_t> peer;  // access from this device to each other: 0 off, 1 on, 2 unknown
  std::vector<std::int8_t> canAccess;
  int perThreadGen = 0;
  h20Stream_t verifier = nullptr;  // exec: non-blocking stream the checks read back with
};

struct Failure {
  std::size_t opIndex = 0;  // index in the sequence being run
  std::string signature;    // what must stay the same while shrinking
  std::string message;
};

struct Config {
  int devices = 4;             // devices the fuzzer uses (the first `devices` visible ones)
  int visibleDevices = 0;      // all visible devices (ordinals from here on are invalid)
  bool multiThreaded = false;  // restrictions of the threaded runs (see fuzz_gen.cpp)
  std::size_t totalGlobalMem = 0;
  std::size_t sharedMemOptin = 0;
  int maxThreadsPerBlock = 1024;
  int priorityLeast = 0, priorityGreatest = 0;
  std::vector<std::int8_t> canAccess;  // devices * devices
};

// Reads the configuration the fuzzer needs from the runtime (device count capped at `maxDevices`).
Config ProbeConfig(int maxDevices);

struct Analysis {
  bool applicable = true;
  std::string why;                // why not applicable
  std::vector<h20Error_t> codes;  // allowed results; codes[0] is the documented one
  int conflictAgent = -1;         // a hazard with work of this agent
  bool hostConflict = false;      // ... found for an access made by the calling thread
  bool ok() const { return applicable && conflictAgent < 0; }
  bool expectSuccess() const { return codes.size() == 1 && codes[0] == h20Success; }
};

enum class Mode { analyze, dry, exec };

// What a run did, for the verbose report.
struct Stats {
  std::size_t ops = 0, skipped = 0, invalid = 0, failedAsExpected = 0;
  std::size_t checks = 0, checkedBytes = 0;
  std::size_t byKind[static_cast<std::size_t>(OpKind::Count)] = {};
};

class World {
 public:
  World(const Config& config, int thread, bool exec);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // Analyzes, and in dry/exec mode runs, one op. In exec mode a mismatch sets failure().
  Analysis Step(const Op& op, Mode mode, std::size_t index = 0);
  const std::optional<Failure>& failure() const { return failure_; }
  const Stats& stats() const { return stats_; }

  // Exec: compares every live object the host may read with the model (full: also the unchanged).
  void Verify(bool full, std::size_t index);
  // Exec: creates the shared read-only objects of a multi-threaded run (device `d` memory and
  // pinned memory) from `seed`; each thread's World then adopts them with AdoptShared.
  void CreateShared(std::uint64_t seed);
  void AdoptShared(const World& owner);
  // Exec: frees what this World owns on the host (pageable, pinned, registrations) after the
  // devices were reset; device objects are left to h20DeviceReset.
  void ReleaseHost();
  // Peer access state known from outside (multi-threaded runs enable peers before they start).
  void AssumePeer(int device, int peer, bool enabled) {
    devs_[static_cast<std::size_t>(device)].peer[static_cast<std::size_t>(peer)] = enabled ? 1 : 0;
  }

  // State the generator reads.
  const Config& config() const { return config_; }
  int current() const { return current_; }
  int thread() const { return thread_; }
  const std::map<int, Mem>& mems() const { return mems_; }
  const std::map<int, StreamM>& streams() const { return streams_; }
  const std::map<int, EventM>& events() const { return events_; }
  const std::vector<DevM>& devs() const { return devs_; }
  const StreamM* Resolve(const StreamRef& r) const;
  // The stream an op on `r` would run on and the agent of the conflicting access, if any, for an
  // access of [begin, end) of `mem`.
  int Conflict(const Mem& m, std::size_t begin, std::size_t end, bool write, const VC& vc) const;
  VC TrialVC(const StreamM& s) const;
  const VC& host() const { return host_; }
  bool Covered(int agent, std::uint64_t seq) const;
  bool CoversAll(const VC& vc) const;
  // What the host knows complete after h20StreamSynchronize(s).
  VC SyncVC(const StreamM& s) const;
  // True when no work of any agent is in flight (the host has synchronised with everything).
  bool Quiescent() const;
  // Agents with work in flight on device d, or touching device d's memory.
  std::vector<int> BusyAgentsFor(int d) const;
  const StreamM* StreamOfAgent(int agent) const;

 private:
  struct Ctx;
  StreamM& Legacy(int d);
  StreamM& PerThread(int d);
  const StreamM& LegacyC(int d) const;
  StreamM* ResolveMut(const StreamRef& r);
  StreamM& NewStream(int key, int device, StreamKind kind, bool blocking);
  void Commit(StreamM& s, VC vc);
  void HostJoinDevice(int d);
  void Prune(Mem& m);
  void Touch(Mem& m);
  bool Check(const Analysis& a, h20Error_t rc, const Op& op, std::size_t index);
  void Fail(std::size_t index, const std::string& signature, const std::string& message);
  void CheckRecords(std::size_t index);
  void KillDevice(int d);
  std::vector<h20Error_t> FaultCodes(std::initializer_list<int> devices) const;
  h20Stream_t VerifierStream(int d);
  void EnsureCurrent(int d);

  Config config_;
  int thread_;
  bool exec_;
  int current_ = 0;
  int agents_ = 0;
  VC host_;
  std::map<int, Mem> mems_;
  std::map<int, StreamM> streams_;  // user streams (key = id >= 0), legacy and per-thread (< 0)
  std::map<int, EventM> events_;
  std::vector<DevM> devs_;
  std::deque<PendingRecord> records_;
  std::optional<Failure> failure_;
  std::vector<unsigned char> scratch_;
  std::vector<unsigned char*> registerAttempts_;
  std::vector<std::shared_ptr<void>> keepAlive_;  // records of every launch that was accepted
  Stats stats_;
};

}  // namespace h20fuzz
