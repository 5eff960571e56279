// fuzz_world.cpp - the shadow model and the executor of the API fuzzer (see fuzz_world.hpp).
//
// Each op's case below does three things in order: work out from the model whether the op can
// run and which codes the call may return (every sentence of h20_runtime.h it relies on is quoted
// or named next to it), make the call (exec mode only) and check its result and the thread's last
// error, then apply the documented effects to the model.
#include "fuzz_world.hpp"

#include "c_callers.h"
#include "h20_test.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace h20fuzz {

namespace {

constexpr int kLegacyKeyBase = -1000;
constexpr int kPerThreadKeyBase = -(1 << 20);

int LegacyKey(int d) {
  return kLegacyKeyBase - d;
}
int PerThreadKey(int d, int gen) {
  return kPerThreadKeyBase - d * (1 << 12) - gen;
}

void Join(VC& a, const VC& b) {
  if (a.size() < b.size()) a.resize(b.size(), 0);
  for (std::size_t i = 0; i < b.size(); ++i)
    a[i] = std::max(a[i], b[i]);
}

bool Overlap(std::size_t b1, std::size_t e1, std::size_t b2, std::size_t e2) {
  return b1 < e2 && b2 < e1;
}

std::string Hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

const char* KindName(int k) {
  switch (k) {
    case h20MemcpyHostToHost:
      return "h20MemcpyHostToHost";
    case h20MemcpyHostToDevice:
      return "h20MemcpyHostToDevice";
    case h20MemcpyDeviceToHost:
      return "h20MemcpyDeviceToHost";
    case h20MemcpyDeviceToDevice:
      return "h20MemcpyDeviceToDevice";
    case h20MemcpyDefault:
      return "h20MemcpyDefault";
  }
  return nullptr;
}

std::string CodeList(const std::vector<h20Error_t>& codes) {
  std::string s;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    if (i) s += " or ";
    s += h20GetErrorName(codes[i]);
  }
  return s;
}

bool KindMatches(int kind, bool dstDevice, bool srcDevice) {
  switch (kind) {
    case h20MemcpyHostToHost:
      return !dstDevice && !srcDevice;
    case h20MemcpyHostToDevice:
      return dstDevice && !srcDevice;
    case h20MemcpyDeviceToHost:
      return !dstDevice && srcDevice;
    case h20MemcpyDeviceToDevice:
      return dstDevice && srcDevice;
    case h20MemcpyDefault:
      return true;
  }
  return false;
}

// The bytes a fuzzer-owned host buffer is filled with.
void Pattern(std::uint8_t* p, std::size_t n, std::uint32_t salt) {
  std::uint32_t x = salt * 2654435761u + 12345u;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    p[i] = static_cast<std::uint8_t>(x >> 16);
  }
}

// Triage switch: kernels and host functions make no h20 call from inside.
bool InnerCallsOff() {
  static const bool off = [] {
    const char* v = std::getenv("H20_FUZZ_NO_INNER_CALLS");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return off;
}

}  // namespace

const char* OpName(OpKind k) {
  static const char* const names[] = {
      "SetDevice",       "Malloc",       "MallocAsync",   "Free",         "FreeAsync",
      "HostAlloc",       "FreeHost",     "NewPageable",   "HostRegister", "HostUnregister",
      "HostWrite",       "StreamCreate", "StreamDestroy", "StreamSync",   "StreamQuery",
      "StreamWaitEvent", "EventCreate",  "EventRecord",   "EventSync",    "EventQuery",
      "EventElapsed",    "EventDestroy", "Memcpy",        "MemcpyAsync",  "MemcpyPeer",
      "MemcpyPeerAsync", "Memset",       "MemsetAsync",   "Transform",    "Checksum",
      "HostFn",          "DeviceSync",   "DeviceReset",   "PeerEnable",   "PeerDisable",
      "InjectFault",     "Query"};
  static_assert(sizeof names / sizeof names[0] == static_cast<std::size_t>(OpKind::Count));
  return names[static_cast<std::size_t>(k)];
}

const char* BadName(Bad b) {
  static const char* const names[] = {"none",
                                      "kind out of range",
                                      "kind does not match the pointers",
                                      "count past the allocation",
                                      "count SIZE_MAX",
                                      "NULL dst",
                                      "NULL src",
                                      "dst freed",
                                      "src freed",
                                      "event handle as stream",
                                      "destroyed stream",
                                      "garbage stream handle",
                                      "default stream",
                                      "stream handle as event",
                                      "destroyed event",
                                      "garbage event handle",
                                      "bad device ordinal",
                                      "pointer of another device",
                                      "host memory as device memory",
                                      "interior pointer",
                                      "bad flags",
                                      "NULL output pointer",
                                      "size SIZE_MAX",
                                      "size beyond the device",
                                      "size 0",
                                      "grid dimension 0",
                                      "too many threads per block",
                                      "too much shared memory",
                                      "argsBytes too large",
                                      "NULL function",
                                      "NULL args",
                                      "peer access not enabled",
                                      "not registered",
                                      "already registered",
                                      "h20HostRegisterIoMemory",
                                      "interprocess without DisableTiming",
                                      "interprocess event",
                                      "the current device itself",
                                      "stream of another device",
                                      "event never recorded",
                                      "event without timing"};
  static_assert(sizeof names / sizeof names[0] == static_cast<std::size_t>(Bad::Count));
  return names[static_cast<std::size_t>(b)];
}

namespace {

std::string Ref(const MemRef& r) {
  if (r.obj < 0) return "NULL";
  return "m" + std::to_string(r.obj) + "+" + std::to_string(r.off);
}

std::string StreamText(const Op& op) {
  switch (op.bad) {
    case Bad::streamEvent:
      return "e" + std::to_string(op.ev) + "(event as stream)";
    case Bad::streamDead:
      return "s" + std::to_string(op.s.id) + "(destroyed)";
    case Bad::streamGarbage:
      return "(h20Stream_t)0x7";
    default:
      break;
  }
  switch (op.s.kind) {
    case StreamRef::user:
      return "s" + std::to_string(op.s.id);
    case StreamRef::null:
      return "NULL";
    case StreamRef::legacy:
      return "h20StreamLegacy";
    case StreamRef::perThread:
      return "h20StreamPerThread";
    case StreamRef::none:
      break;
  }
  return "?";
}

std::string EventText(const Op& op, int ev) {
  if (op.bad == Bad::eventStream) return "s" + std::to_string(op.s.id) + "(stream as event)";
  if (op.bad == Bad::eventGarbage) return "(h20Event_t)0x7";
  return "e" + std::to_string(ev) + (op.bad == Bad::eventDead ? "(destroyed)" : "");
}

std::string KindText(const Op& op) {
  if (op.bad == Bad::kindRange) return "(h20MemcpyKind)" + std::to_string(op.value);
  const char* n = KindName(op.kind);
  return n ? n : "?";
}

std::string CountText(const Op& op) {
  return op.bad == Bad::countMax ? std::string("SIZE_MAX") : std::to_string(op.count);
}

std::string SizeText(const Op& op) {
  return op.bad == Bad::sizeMax ? std::string("SIZE_MAX") : std::to_string(op.size);
}

}  // namespace

std::string Describe(const Op& op) {
  std::ostringstream o;
  if (op.dev >= 0 && op.k != OpKind::SetDevice) o << "[dev " << op.dev << "] ";
  const std::string dst = op.bad == Bad::nullDst ? "NULL" : Ref(op.dst);
  const std::string src = op.bad == Bad::nullSrc ? "NULL" : Ref(op.src);
  switch (op.k) {
    case OpKind::SetDevice:
      o << "h20SetDevice(" << (op.bad == Bad::device ? op.value : op.dev) << ")";
      break;
    case OpKind::Malloc:
      o << "h20Malloc(" << (op.bad == Bad::nullOut ? "NULL" : "&m" + std::to_string(op.id)) << ", "
        << SizeText(op) << ")";
      break;
    case OpKind::MallocAsync:
      o << "h20MallocAsync(" << (op.bad == Bad::nullOut ? "NULL" : "&m" + std::to_string(op.id))
        << ", " << SizeText(op) << ", " << StreamText(op) << ")";
      break;
    case OpKind::Free:
      o << "h20Free(" << (op.kind == 1 ? "NULL" : Ref(op.dst)) << ")";
      break;
    case OpKind::FreeAsync:
      o << "h20FreeAsync(" << (op.kind == 1 ? "NULL" : Ref(op.dst)) << ", " << StreamText(op)
        << ")";
      break;
    case OpKind::HostAlloc:
      if (op.kind == 0)
        o << "h20MallocHost(" << (op.bad == Bad::nullOut ? "NULL" : "&m" + std::to_string(op.id))
          << ", " << SizeText(op) << ")";
      else
        o << "h20HostAlloc(" << (op.bad == Bad::nullOut ? "NULL" : "&m" + std::to_string(op.id))
          << ", " << SizeText(op) << ", 0x" << std::hex << op.flags << std::dec << ")";
      break;
    case OpKind::FreeHost:
      o << "h20FreeHost(" << (op.kind == 1 ? "NULL" : Ref(op.dst)) << ")";
      break;
    case OpKind::NewPageable:
      o << "m" << op.id << " = pageable host buffer of " << op.size << " bytes";
      break;
    case OpKind::HostRegister:
      o << "h20HostRegister(" << dst << ", "
        << (op.bad == Bad::sizeMax ? std::string("SIZE_MAX") : std::to_string(op.count)) << ", 0x"
        << std::hex << op.flags << std::dec << ")";
      break;
    case OpKind::HostUnregister:
      o << "h20HostUnregister(" << (op.kind == 1 ? "NULL" : Ref(op.dst)) << ")";
      break;
    case OpKind::HostWrite:
      o << "host writes " << op.count << " bytes to " << Ref(op.dst);
      break;
    case OpKind::StreamCreate:
      o << (op.kind == 0   ? "h20StreamCreate("
            : op.kind == 1 ? "h20StreamCreateWithFlags("
                           : "h20StreamCreateWithPriority(")
        << (op.bad == Bad::nullOut ? "NULL" : "&s" + std::to_string(op.id));
      if (op.kind >= 1) o << ", 0x" << std::hex << op.flags << std::dec;
      if (op.kind == 2) o << ", " << op.value;
      o << ")";
      break;
    case OpKind::StreamDestroy:
      o << "h20StreamDestroy(" << StreamText(op) << ")";
      break;
    case OpKind::StreamSync:
      o << "h20StreamSynchronize(" << StreamText(op) << ")";
      break;
    case OpKind::StreamQuery:
      o << "h20StreamQuery(" << StreamText(op) << ")";
      break;
    case OpKind::StreamWaitEvent:
      o << "h20StreamWaitEvent(" << StreamText(op) << ", " << EventText(op, op.ev) << ", "
        << op.flags << ")";
      break;
    case OpKind::EventCreate:
      o << (op.kind == 0 ? "h20EventCreate(" : "h20EventCreateWithFlags(")
        << (op.bad == Bad::nullOut ? "NULL" : "&e" + std::to_string(op.id));
      if (op.kind == 1) o << ", 0x" << std::hex << op.flags << std::dec;
      o << ")";
      break;
    case OpKind::EventRecord:
      o << "h20EventRecord(" << EventText(op, op.ev) << ", " << StreamText(op) << ")";
      break;
    case OpKind::EventSync:
      o << "h20EventSynchronize(" << EventText(op, op.ev) << ")";
      break;
    case OpKind::EventQuery:
      o << "h20EventQuery(" << EventText(op, op.ev) << ")";
      break;
    case OpKind::EventElapsed:
      o << "h20EventElapsedTime(" << (op.bad == Bad::nullOut ? "NULL" : "&ms") << ", "
        << EventText(op, op.ev) << ", e" << op.ev2 << ")";
      break;
    case OpKind::EventDestroy:
      o << "h20EventDestroy(" << EventText(op, op.ev) << ")";
      break;
    case OpKind::Memcpy:
      o << "h20Memcpy(" << dst << ", " << src << ", " << CountText(op) << ", " << KindText(op)
        << ")";
      break;
    case OpKind::MemcpyAsync:
      o << "h20MemcpyAsync(" << dst << ", " << src << ", " << CountText(op) << ", " << KindText(op)
        << ", " << StreamText(op) << ")";
      break;
    case OpKind::MemcpyPeer:
    case OpKind::MemcpyPeerAsync:
      o << (op.k == OpKind::MemcpyPeer ? "h20MemcpyPeer(" : "h20MemcpyPeerAsync(") << dst << ", "
        << (op.bad == Bad::device && op.kind == 0 ? op.value
            : op.dev2 >= 0                        ? op.dev2
                                                  : -1)
        << ", " << src << ", " << (op.bad == Bad::device && op.kind == 1 ? op.value : op.flags)
        << ", " << CountText(op);
      if (op.k == OpKind::MemcpyPeerAsync) o << ", " << StreamText(op);
      o << ")";
      break;
    case OpKind::Memset:
      o << "h20Memset(" << dst << ", " << op.value << ", " << CountText(op) << ")";
      break;
    case OpKind::MemsetAsync:
      o << "h20MemsetAsync(" << dst << ", " << op.value << ", " << CountText(op) << ", "
        << StreamText(op) << ")";
      break;
    case OpKind::Transform:
    case OpKind::Checksum:
      o << "h20LaunchKernel(" << (op.bad == Bad::nullFn ? "NULL" : OpName(op.k)) << ", grid "
        << (op.bad == Bad::grid ? 0u : op.grid) << ", {src " << src << ", dst " << dst << ", count "
        << op.count << ", salt " << op.salt << (op.flags & 1 ? ", shared" : "")
        << (op.spinUs ? ", spin " + std::to_string(op.spinUs) + "us" : "") << "}, "
        << StreamText(op) << ")";
      break;
    case OpKind::HostFn:
      o << "h20LaunchHostFunc(" << StreamText(op) << ", "
        << (op.bad == Bad::nullFn ? "NULL" : "copy") << " " << op.count << " bytes " << src
        << " -> " << dst << (op.spinUs ? ", spin " + std::to_string(op.spinUs) + "us" : "") << ")";
      break;
    case OpKind::DeviceSync:
      o << "h20DeviceSynchronize()";
      break;
    case OpKind::DeviceReset:
      o << "h20DeviceReset()";
      break;
    case OpKind::PeerEnable:
      o << "h20DeviceEnablePeerAccess(" << (op.bad == Bad::device ? op.value : op.dev2) << ", "
        << op.flags << ")";
      break;
    case OpKind::PeerDisable:
      o << "h20DeviceDisablePeerAccess(" << (op.bad == Bad::device ? op.value : op.dev2) << ")";
      break;
    case OpKind::InjectFault:
      o << "h20LaunchKernel(FaultKernel, grid " << op.grid << ", block " << op.salt % op.grid
        << " reports " << h20GetErrorName(static_cast<h20Error_t>(op.value)) << ", "
        << StreamText(op) << "); h20StreamSynchronize(" << StreamText(op) << ")";
      break;
    case OpKind::Query:
      switch (op.kind) {
        case 0:
          o << "h20GetDevice(&d)";
          break;
        case 1:
          o << "h20StreamGetFlags/GetPriority/GetDevice(" << StreamText(op) << ")";
          break;
        case 2:
          o << "h20PointerGetAttributes(&a, " << dst << ")";
          break;
        case 3:
          o << "h20MemGetAddressRange(&base, &size, " << dst << ")";
          break;
        default:
          o << "h20GetDeviceCount(&n)";
          break;
      }
      break;
    case OpKind::Count:
      break;
  }
  if (op.bad != Bad::none) o << "  /* " << BadName(op.bad) << " */";
  return o.str();
}

Config ProbeConfig(int maxDevices) {
  Config c;
  int count = 0;
  if (h20GetDeviceCount(&count) != h20Success) count = 0;
  h20GetLastError();
  c.devices = std::min(count, maxDevices);
  c.visibleDevices = count;
  if (c.devices <= 0) return c;
  h20DeviceProp prop;
  std::memset(&prop, 0, sizeof prop);
  h20GetDeviceProperties(&prop, 0);
  c.totalGlobalMem = prop.totalGlobalMem;
  c.sharedMemOptin = prop.sharedMemPerBlockOptin;
  c.maxThreadsPerBlock = prop.maxThreadsPerBlock;
  c.priorityLeast = prop.streamPriorityLowest;
  c.priorityGreatest = prop.streamPriorityHighest;
  c.canAccess.assign(static_cast<std::size_t>(c.devices * c.devices), 0);
  for (int a = 0; a < c.devices; ++a)
    for (int b = 0; b < c.devices; ++b) {
      int can = 0;
      h20DeviceCanAccessPeer(&can, a, b);
      c.canAccess[static_cast<std::size_t>(a * c.devices + b)] = static_cast<std::int8_t>(can);
    }
  h20GetLastError();
  return c;
}

// ---- World: bookkeeping -------------------------------------------------------------------------

World::World(const Config& config, int thread, bool exec)
    : config_(config), thread_(thread), exec_(exec) {
  devs_.resize(static_cast<std::size_t>(config_.devices));
  for (int d = 0; d < config_.devices; ++d) {
    DevM& dm = devs_[static_cast<std::size_t>(d)];
    dm.peer.assign(static_cast<std::size_t>(config_.devices), 0);
    dm.canAccess.assign(config_.canAccess.begin() + d * config_.devices,
                        config_.canAccess.begin() + (d + 1) * config_.devices);
    NewStream(LegacyKey(d), d, StreamKind::legacy, false);
    NewStream(PerThreadKey(d, 0), d, StreamKind::perThread, true);
  }
}

World::~World() {
  if (!exec_) return;
  // Work still in flight reads the host buffers and records owned here: let it finish.
  for (int d = 0; d < config_.devices; ++d) {
    h20SetDevice(d);
    h20DeviceSynchronize();
  }
  h20SetDevice(0);
  h20GetLastError();
  keepAlive_.clear();
}

StreamM& World::NewStream(int key, int device, StreamKind kind, bool blocking) {
  StreamM s;
  s.key = key;
  s.device = device;
  s.kind = kind;
  s.blocking = blocking;
  s.agent = agents_++;
  host_.resize(static_cast<std::size_t>(agents_), 0);
  auto [it, inserted] = streams_.insert_or_assign(key, std::move(s));
  return it->second;
}

StreamM& World::Legacy(int d) {
  return streams_.at(LegacyKey(d));
}
const StreamM& World::LegacyC(int d) const {
  return streams_.at(LegacyKey(d));
}
StreamM& World::PerThread(int d) {
  const int gen = devs_[static_cast<std::size_t>(d)].perThreadGen;
  auto it = streams_.find(PerThreadKey(d, gen));
  if (it != streams_.end()) return it->second;
  return NewStream(PerThreadKey(d, gen), d, StreamKind::perThread, true);
}

const StreamM* World::Resolve(const StreamRef& r) const {
  return const_cast<World*>(this)->ResolveMut(r);
}

StreamM* World::ResolveMut(const StreamRef& r) {
  switch (r.kind) {
    case StreamRef::user: {
      auto it = streams_.find(r.id);
      return it == streams_.end() ? nullptr : &it->second;
    }
    case StreamRef::null:
    case StreamRef::legacy:
      return &Legacy(current_);
    case StreamRef::perThread:
      return &PerThread(current_);
    case StreamRef::none:
      break;
  }
  return nullptr;
}

const StreamM* World::StreamOfAgent(int agent) const {
  for (const auto& [k, s] : streams_)
    if (s.agent == agent) return &s;
  return nullptr;
}

VC World::TrialVC(const StreamM& s) const {
  VC v = s.vc;
  Join(v, host_);
  Join(v, s.waitJoin);
  if (s.kind == StreamKind::legacy) {
    // The legacy stream waits for the work already enqueued on every blocking stream of its
    // device (CUDA's implicit synchronisation; h20StreamNonBlocking opts out).
    for (const auto& [k, t] : streams_)
      if (t.live && t.device == s.device && t.blocking) Join(v, t.vc);
  } else if (s.blocking) {
    Join(v, LegacyC(s.device).vc);
  }
  v.resize(static_cast<std::size_t>(agents_), 0);
  v[static_cast<std::size_t>(s.agent)] = s.seq + 1;
  return v;
}

void World::Commit(StreamM& s, VC vc) {
  s.seq += 1;
  vc.resize(static_cast<std::size_t>(agents_), 0);
  vc[static_cast<std::size_t>(s.agent)] = s.seq;
  s.vc = std::move(vc);
  s.waitJoin.clear();
  s.pendingWait = false;
}

bool World::Covered(int agent, std::uint64_t seq) const {
  return static_cast<std::size_t>(agent) < host_.size() &&
         host_[static_cast<std::size_t>(agent)] >= seq;
}

bool World::Quiescent() const {
  for (const auto& [k, s] : streams_)
    if (!Covered(s.agent, s.seq)) return false;
  return true;
}

std::vector<int> World::BusyAgentsFor(int d) const {
  std::vector<int> out;
  for (const auto& [k, s] : streams_)
    if (s.device == d && !Covered(s.agent, s.seq)) out.push_back(s.agent);
  for (const auto& [id, m] : mems_) {
    if (!m.live || !m.isDevice() || m.device != d) continue;
    for (const Access& a : m.pending)
      if (!Covered(a.agent, a.seq)) out.push_back(a.agent);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int World::Conflict(const Mem& m, std::size_t begin, std::size_t end, bool write,
                    const VC& vc) const {
  for (const Access& a : m.pending) {
    if (!Overlap(begin, end, a.begin, a.end) || !(write || a.write)) continue;
    if (static_cast<std::size_t>(a.agent) < vc.size() &&
        vc[static_cast<std::size_t>(a.agent)] >= a.seq)
      continue;
    return a.agent;
  }
  return -1;
}

void World::Prune(Mem& m) {
  m.pending.erase(std::remove_if(m.pending.begin(), m.pending.end(),
                                 [&](const Access& a) { return Covered(a.agent, a.seq); }),
                  m.pending.end());
}

void World::Touch(Mem& m) {
  ++m.version;
}

void World::HostJoinDevice(int d) {
  // "Blocks until all work on every stream of the current device has completed" - including the
  // work of streams destroyed meanwhile ("work already enqueued still completes").
  for (auto& [k, s] : streams_)
    if (s.device == d) {
      Join(host_, s.vc);
      Join(host_, s.waitJoin);
      s.pendingWait = false;
    }
}

VC World::SyncVC(const StreamM& s) const {
  // Waits enqueued by h20StreamWaitEvent are work of the stream too. "For the legacy stream ...
  // that includes the work enqueued so far to the device's blocking streams (destroyed ones
  // too)."
  VC v = s.vc;
  Join(v, s.waitJoin);
  if (s.kind == StreamKind::legacy)
    for (const auto& [k, t] : streams_)
      if (t.device == s.device && t.blocking) {
        Join(v, t.vc);
        Join(v, t.waitJoin);
      }
  return v;
}

bool World::CoversAll(const VC& vc) const {
  for (std::size_t i = 0; i < vc.size(); ++i)
    if (vc[i] > (i < host_.size() ? host_[i] : 0)) return false;
  return true;
}

std::vector<h20Error_t> World::FaultCodes(std::initializer_list<int> devices) const {
  std::vector<h20Error_t> codes;
  for (int d : devices) {
    if (d < 0) continue;
    const h20Error_t f = devs_[static_cast<std::size_t>(d)].fault;
    if (f != h20Success && std::find(codes.begin(), codes.end(), f) == codes.end())
      codes.push_back(f);
  }
  if (codes.empty()) codes.push_back(h20Success);
  return codes;
}

void World::Fail(std::size_t index, const std::string& signature, const std::string& message) {
  if (failure_) return;
  failure_ = Failure{index, signature, message};
}

bool World::Check(const Analysis& a, h20Error_t rc, const Op& op, std::size_t index) {
  const std::string detail = rc == h20Success ? std::string() : h20GetLastErrorMessage();
  if (std::find(a.codes.begin(), a.codes.end(), rc) == a.codes.end()) {
    Fail(index,
         std::string("code ") + OpName(op.k) + " " + BadName(op.bad) + ": " + CodeList(a.codes) +
             " -> " + h20GetErrorName(rc),
         Describe(op) + " returned " + h20GetErrorName(rc) + ", expected " + CodeList(a.codes) +
             (detail.empty() ? "" : " (message: " + detail + ")"));
    h20GetLastError();
    return false;
  }
  // "A synchronous error ... is also stored as the calling thread's last error";
  // "h20ErrorNotReady is a status, not an error, and is never stored."
  const h20Error_t last = h20GetLastError();
  const h20Error_t want = (rc == h20Success || rc == h20ErrorNotReady) ? h20Success : rc;
  if (last != want) {
    Fail(index, std::string("last error ") + OpName(op.k),
         Describe(op) + " returned " + h20GetErrorName(rc) + " but h20GetLastError() then gave " +
             h20GetErrorName(last) + ", expected " + h20GetErrorName(want));
    return false;
  }
  return true;
}

void World::EnsureCurrent(int d) {
  if (d < 0 || d == current_) return;
  if (exec_) {
    const h20Error_t rc = h20SetDevice(d);
    h20GetLastError();
    if (rc != h20Success)
      Fail(0, "SetDevice",
           "h20SetDevice(" + std::to_string(d) + ") failed: " + h20GetErrorName(rc));
  }
  current_ = d;
}

h20Stream_t World::VerifierStream(int d) {
  DevM& dm = devs_[static_cast<std::size_t>(d)];
  if (dm.verifier) return dm.verifier;
  h20SetDevice(d);
  h20Stream_t s = nullptr;
  const h20Error_t rc = h20StreamCreateWithFlags(&s, h20StreamNonBlocking);
  h20SetDevice(current_);
  if (rc != h20Success) {
    Fail(0, "verifier stream",
         std::string("the checker could not create a stream on device ") + std::to_string(d) +
             ": " + h20GetErrorName(rc) + " " + h20GetLastErrorMessage());
    h20GetLastError();
    return nullptr;
  }
  dm.verifier = s;
  return s;
}

void World::CheckRecords(std::size_t index) {
  for (auto it = records_.begin(); it != records_.end();) {
    if (!Covered(it->agent, it->seq)) {
      ++it;
      continue;
    }
    const int runs = it->record->runs.load();
    const int api = it->record->apiResult.load();
    if (runs != it->expectRuns)
      Fail(index, "record runs",
           it->what + " ran " + std::to_string(runs) + " times, expected " +
               std::to_string(it->expectRuns));
    else if (api != h20ErrorNotPermitted)
      Fail(index, "record api",
           it->what + ": h20GetDevice called from inside returned " +
               h20GetErrorName(static_cast<h20Error_t>(api)) +
               ", expected h20ErrorNotPermitted (\"Calls made from inside a host function or a "
               "kernel return h20ErrorNotPermitted\")");
    else if (it->record->sharedBad.load())
      Fail(index, "record shared",
           it->what + ": the block's shared memory was missing, short or not 64-byte aligned");
    it = records_.erase(it);
  }
}

void World::Verify(bool full, std::size_t index) {
  if (!exec_ || failure_) return;
  CheckRecords(index);
  for (auto& [id, m] : mems_) {
    if (failure_) return;
    if (!m.live || m.size == 0 || (!full && m.version == m.verified)) continue;
    if (m.isDevice() && devs_[static_cast<std::size_t>(m.device)].fault != h20Success) continue;
    Prune(m);
    if (Conflict(m, 0, m.size, false, host_) >= 0) continue;  // a write still in flight
    const unsigned char* actual = m.ptr;
    if (m.isDevice()) {
      h20Stream_t v = VerifierStream(m.device);
      if (!v) return;
      scratch_.resize(m.size);
      const h20Error_t rc =
          h20MemcpyAsync(scratch_.data(), m.ptr, m.size, h20MemcpyDeviceToHost, v);
      if (rc != h20Success) {
        Fail(index, "readback",
             "reading back m" + std::to_string(id) + " (" + std::to_string(m.size) +
                 " bytes of device " + std::to_string(m.device) +
                 ") failed: " + h20GetErrorName(rc) + " " + h20GetLastErrorMessage());
        h20GetLastError();
        return;
      }
      actual = scratch_.data();
    }
    std::size_t first = m.size, bad = 0;
    for (std::size_t i = 0; i < m.size; ++i) {
      if (m.defined[i] && m.bytes[i] != actual[i]) {
        if (first == m.size) first = i;
        ++bad;
      }
    }
    if (bad) {
      std::ostringstream o;
      o << "m" << id << " ("
        << (m.kind == MemKind::device   ? "h20Malloc"
            : m.kind == MemKind::pool   ? "h20MallocAsync"
            : m.kind == MemKind::pinned ? "pinned"
            : m.registered              ? "registered"
                                        : "pageable")
        << ", " << m.size << " bytes";
      if (m.isDevice()) o << ", device " << m.device;
      o << ") differs from the model in " << bad << " bytes, first at offset " << first
        << ": expected";
      for (std::size_t i = first; i < std::min(m.size, first + 8); ++i)
        o << " " << (m.defined[i] ? std::to_string(m.bytes[i]) : std::string("?"));
      o << ", actual";
      for (std::size_t i = first; i < std::min(m.size, first + 8); ++i)
        o << " " << static_cast<int>(actual[i]);
      Fail(index, "data", o.str());
      return;
    }
    m.verified = m.version;
    ++stats_.checks;
    stats_.checkedBytes += m.size;
  }
}

void World::CreateShared(std::uint64_t seed) {
  // One read-only device buffer per device and one pinned buffer, created before the threads
  // start and read by all of them.
  int id = 1000000;
  for (int d = 0; d < config_.devices; ++d) {
    Mem m;
    m.id = id++;
    m.kind = MemKind::device;
    m.device = d;
    m.size = 4096 + 256 * static_cast<std::size_t>(d);
    m.sharedRO = true;
    m.bytes.resize(m.size);
    m.defined.assign(m.size, 1);
    Pattern(m.bytes.data(), m.size, static_cast<std::uint32_t>(seed * 31 + d));
    if (exec_) {
      EnsureCurrent(d);
      void* p = nullptr;
      if (h20Malloc(&p, m.size) != h20Success ||
          h20Memcpy(p, m.bytes.data(), m.size, h20MemcpyHostToDevice) != h20Success)
        Fail(0, "setup",
             std::string("creating the shared buffers failed: ") + h20GetLastErrorMessage());
      m.ptr = static_cast<unsigned char*>(p);
    }
    mems_.emplace(m.id, std::move(m));
  }
  Mem h;
  h.id = id++;
  h.kind = MemKind::pinned;
  h.device = current_;
  h.size = 8192;
  h.sharedRO = true;
  h.bytes.resize(h.size);
  h.defined.assign(h.size, 1);
  Pattern(h.bytes.data(), h.size, static_cast<std::uint32_t>(seed * 77));
  if (exec_) {
    void* p = nullptr;
    if (h20MallocHost(&p, h.size) != h20Success)
      Fail(0, "setup", std::string("h20MallocHost failed: ") + h20GetLastErrorMessage());
    else
      std::memcpy(p, h.bytes.data(), h.size);
    h.ptr = static_cast<unsigned char*>(p);
  }
  mems_.emplace(h.id, std::move(h));
  EnsureCurrent(0);
}

void World::AdoptShared(const World& owner) {
  for (const auto& [id, m] : owner.mems_) {
    if (!m.sharedRO) continue;
    Mem c;
    c.id = m.id;
    c.kind = m.kind;
    c.device = m.device;
    c.size = m.size;
    c.sharedRO = true;
    c.bytes = m.bytes;
    c.defined = m.defined;
    c.ptr = m.ptr;
    c.verified = 0;
    mems_.emplace(id, std::move(c));
  }
}

void World::ReleaseHost() {
  if (!exec_) return;
  for (auto& [id, m] : mems_) {
    if (m.kind == MemKind::pinned && m.live && m.ptr && (!m.sharedRO || thread_ == -1)) {
      h20FreeHost(m.ptr);
      m.live = false;
    }
    if (m.kind == MemKind::pageable && m.registered) {
      h20HostUnregister(m.ptr);
      m.registered = false;
    }
  }
  // Whatever a failed run may have left registered (every start a register call used), so that
  // the addresses are plain pageable memory again for later runs in this process.
  for (unsigned char* p : registerAttempts_)
    h20HostUnregister(p);
  registerAttempts_.clear();
  h20GetLastError();
}

void World::KillDevice(int d) {
  // "destroys every allocation, stream and event of that device (their handles become invalid)
  // and clears its fault state"; "h20DeviceReset of the current device disables its accesses."
  for (auto& [k, s] : streams_)
    if (s.device == d && s.kind == StreamKind::user) s.live = false;
  for (auto& [k, s] : streams_)
    if (s.device == d && s.kind == StreamKind::perThread) s.live = false;
  DevM& dm = devs_[static_cast<std::size_t>(d)];
  ++dm.perThreadGen;
  for (auto& [id, e] : events_)
    if (e.device == d) e.live = false;
  for (auto& [id, m] : mems_)
    if (m.isDevice() && m.device == d && !m.sharedRO) {
      m.live = false;
      m.pending.clear();
    }
  dm.fault = h20Success;
  dm.verifier = nullptr;
  std::fill(dm.peer.begin(), dm.peer.end(), 0);
  // Other devices' access to this one: the header does not say whether it survives the reset.
  for (int o = 0; o < config_.devices; ++o) {
    auto& p = devs_[static_cast<std::size_t>(o)].peer[static_cast<std::size_t>(d)];
    if (p == 1) p = 2;
  }
}

// ---- World::Step ------------------------------------------------------------------------------

struct World::Ctx {
  World& w;
  const Op& op;
  Mode mode;
  std::size_t index;
  Analysis a;
  int cur;

  Ctx(World& world, const Op& o, Mode m, std::size_t i)
      : w(world), op(o), mode(m), index(i), cur(o.dev >= 0 ? o.dev : world.current_) {}

  bool exec() const { return mode == Mode::exec; }
  bool analyzing() const { return mode == Mode::analyze; }
  Analysis Skip(const char* why) {
    a.applicable = false;
    a.why = why;
    return a;
  }
  void Expect(std::vector<h20Error_t> codes) { a.codes = std::move(codes); }
  void Expect(h20Error_t code) { a.codes = {code}; }
  bool Faulted(int d) const {
    return d >= 0 && w.devs_[static_cast<std::size_t>(d)].fault != h20Success;
  }
  bool ValidDev(int d) const { return d >= 0 && d < w.config_.devices; }

  Mem* M(int id) {
    auto it = w.mems_.find(id);
    return it == w.mems_.end() ? nullptr : &it->second;
  }
  Mem* Live(const MemRef& r) {
    Mem* m = M(r.obj);
    return m && m->live ? m : nullptr;
  }
  unsigned char* Ptr(const MemRef& r) {
    Mem* m = M(r.obj);
    return m && m->ptr ? m->ptr + r.off : nullptr;
  }
  // True when `p` lies in a live allocation of this world (a freed address handed out again).
  bool AddressLive(const void* p) const {
    const auto* c = static_cast<const unsigned char*>(p);
    for (const auto& [id, m] : w.mems_)
      if (m.live && m.ptr && c >= m.ptr && c < m.ptr + std::max<std::size_t>(m.size, 1))
        return true;
    return false;
  }
  bool FreedRefOk(const MemRef& r) {
    Mem* m = M(r.obj);
    if (!m || m->live || !m->isDevice()) return false;
    return !(exec() && AddressLive(m->ptr + r.off));
  }

  // The stream argument: 1 when it is one of the invalid handles of op.bad, 0 when valid (*out),
  // -1 when the op cannot run (its stream does not exist in this sequence).
  int StreamArg(StreamM** out) {
    *out = nullptr;
    switch (op.bad) {
      case Bad::streamEvent:
        return w.events_.count(op.ev) ? 1 : -1;
      case Bad::streamDead: {
        auto it = w.streams_.find(op.s.id);
        return it != w.streams_.end() && !it->second.live ? 1 : -1;
      }
      case Bad::streamGarbage:
        return 1;
      default:
        break;
    }
    if (op.s.kind == StreamRef::none) return -1;
    if (op.s.kind == StreamRef::user) {
      auto it = w.streams_.find(op.s.id);
      if (it == w.streams_.end() || !it->second.live) return -1;
      *out = &it->second;
      return 0;
    }
    *out = op.s.kind == StreamRef::perThread ? &w.PerThread(cur) : &w.Legacy(cur);
    return 0;
  }
  h20Stream_t StreamHandle() {
    switch (op.bad) {
      case Bad::streamEvent:
        return reinterpret_cast<h20Stream_t>(w.events_.at(op.ev).handle);
      case Bad::streamDead:
        return w.streams_.at(op.s.id).handle;
      case Bad::streamGarbage:
        return reinterpret_cast<h20Stream_t>(std::uintptr_t{0x7});
      default:
        break;
    }
    switch (op.s.kind) {
      case StreamRef::user:
        return w.streams_.at(op.s.id).handle;
      case StreamRef::legacy:
        return h20StreamLegacy;
      case StreamRef::perThread:
        return h20StreamPerThread;
      default:
        return nullptr;
    }
  }
  bool BadStream() const {
    return op.bad == Bad::streamEvent || op.bad == Bad::streamDead || op.bad == Bad::streamGarbage;
  }
  // The event argument `id`: like StreamArg.
  int EventArg(int id, EventM** out) {
    *out = nullptr;
    switch (op.bad) {
      case Bad::eventStream:
        return w.streams_.count(op.s.id) && op.s.id >= 0 ? 1 : -1;
      case Bad::eventGarbage:
        return 1;
      case Bad::eventDead: {
        auto it = w.events_.find(id);
        return it != w.events_.end() && !it->second.live ? 1 : -1;
      }
      default:
        break;
    }
    auto it = w.events_.find(id);
    if (it == w.events_.end() || !it->second.live) return -1;
    *out = &it->second;
    return 0;
  }
  h20Event_t EventHandle(int id) {
    if (op.bad == Bad::eventStream)
      return reinterpret_cast<h20Event_t>(w.streams_.at(op.s.id).handle);
    if (op.bad == Bad::eventGarbage) return reinterpret_cast<h20Event_t>(std::uintptr_t{0x7});
    return w.events_.at(id).handle;
  }
  bool BadEvent() const {
    return op.bad == Bad::eventStream || op.bad == Bad::eventDead || op.bad == Bad::eventGarbage;
  }

  // Runs the calls of an op in exec mode and checks the result; false on a mismatch.
  bool Call(h20Error_t rc) { return w.Check(a, rc, op, index); }

  void Begin() {
    if (!analyzing()) w.EnsureCurrent(op.dev);
  }

  // Accesses of the op, checked against the work still in flight.
  struct Acc {
    Mem* m;
    std::size_t begin, end;
    bool write;
    bool hostTime;  // happens on the calling thread during the call, not in stream order
  };
  std::vector<Acc> acc;
  void Read(Mem* m, std::size_t off, std::size_t n, bool hostTime = false) {
    acc.push_back({m, off, off + n, false, hostTime});
  }
  void Write(Mem* m, std::size_t off, std::size_t n, bool hostTime = false) {
    acc.push_back({m, off, off + n, true, hostTime});
  }
  bool Hazard(const VC* vc) {
    for (const Acc& x : acc) {
      w.Prune(*x.m);
      const int agent =
          w.Conflict(*x.m, x.begin, x.end, x.write, x.hostTime || !vc ? w.host_ : *vc);
      if (agent >= 0) {
        a.conflictAgent = agent;
        a.hostConflict = x.hostTime || !vc;
        return true;
      }
    }
    return false;
  }
  void Record(const StreamM* s) {
    for (const Acc& x : acc) {
      if (x.hostTime || !s || x.begin == x.end) continue;
      x.m->pending.push_back({x.begin, x.end, x.write, s->agent, s->seq});
    }
  }

  // "A copy or memset on a legacy stream (h20Memcpy, h20Memset, or the NULL stream) that touches
  // another device's memory is also an operation of that device's legacy stream, ordered as
  // h20MemcpyPeer is": the op waits for those legacy streams (and their blocking streams), and
  // their later work waits for it.
  std::vector<int> across;
  void AcrossDevices(const StreamM* run, std::initializer_list<const Mem*> mems) {
    across.clear();
    if (!run || run->kind != StreamKind::legacy) return;
    for (const Mem* m : mems)
      if (m && m->isDevice() && m->device != run->device &&
          std::find(across.begin(), across.end(), m->device) == across.end())
        across.push_back(m->device);
  }
  void JoinAcross(VC& vc) {
    for (int d : across) {
      StreamM& l = w.Legacy(d);
      VC other = w.TrialVC(l);
      other[static_cast<std::size_t>(l.agent)] -= 1;
      Join(vc, other);
    }
  }
  void CommitAcross(const StreamM& run) {
    for (int d : across) {
      StreamM& l = w.Legacy(d);
      VC after = w.TrialVC(l);
      Join(after, run.vc);
      w.Commit(l, after);
    }
  }

  // Model effects on bytes.
  void CopyBytes(Mem& d, std::size_t doff, const Mem& s, std::size_t soff, std::size_t n) {
    std::vector<std::uint8_t> b(s.bytes.begin() + soff, s.bytes.begin() + soff + n);
    std::vector<std::uint8_t> f(s.defined.begin() + soff, s.defined.begin() + soff + n);
    std::copy(b.begin(), b.end(), d.bytes.begin() + doff);
    std::copy(f.begin(), f.end(), d.defined.begin() + doff);
    w.Touch(d);
  }

  Analysis Run();
  Analysis SetDevice();
  Analysis Malloc();
  Analysis MallocAsync();
  Analysis Free();
  Analysis FreeAsync();
  Analysis HostAlloc();
  Analysis FreeHost();
  Analysis NewPageable();
  Analysis HostRegister();
  Analysis HostUnregister();
  Analysis HostWrite();
  Analysis StreamCreate();
  Analysis StreamDestroy();
  Analysis StreamSync(bool query);
  Analysis StreamWaitEvent();
  Analysis EventCreate();
  Analysis EventRecord();
  Analysis EventSync(bool query);
  Analysis EventElapsed();
  Analysis EventDestroy();
  Analysis Copy();
  Analysis Peer();
  Analysis Memset();
  Analysis Kernel();
  Analysis HostFn();
  Analysis DeviceSync();
  Analysis DeviceReset();
  Analysis PeerAccess();
  Analysis InjectFault();
  Analysis Query();
};

Analysis World::Step(const Op& op, Mode mode, std::size_t index) {
  if (failure_ && mode != Mode::analyze) return Analysis{false, "failed", {}, -1};
  Ctx c(*this, op, mode, index);
  const VC before = host_;
  Analysis a = c.Run();
  if (mode == Mode::exec) {
    if (!a.ok()) {
      ++stats_.skipped;
    } else {
      ++stats_.ops;
      ++stats_.byKind[static_cast<std::size_t>(op.k)];
      if (op.bad != Bad::none) ++stats_.invalid;
      if (!a.codes.empty() && a.codes[0] != h20Success && a.codes[0] != h20ErrorNotReady)
        ++stats_.failedAsExpected;
    }
  }
  if (mode == Mode::exec && a.ok() && !failure_ && host_ != before) Verify(false, index);
  return a;
}

Analysis World::Ctx::Run() {
  if (op.dev >= w.config_.devices) return Skip("device");
  switch (op.k) {
    case OpKind::SetDevice:
      return SetDevice();
    case OpKind::Malloc:
      return Malloc();
    case OpKind::MallocAsync:
      return MallocAsync();
    case OpKind::Free:
      return Free();
    case OpKind::FreeAsync:
      return FreeAsync();
    case OpKind::HostAlloc:
      return HostAlloc();
    case OpKind::FreeHost:
      return FreeHost();
    case OpKind::NewPageable:
      return NewPageable();
    case OpKind::HostRegister:
      return HostRegister();
    case OpKind::HostUnregister:
      return HostUnregister();
    case OpKind::HostWrite:
      return HostWrite();
    case OpKind::StreamCreate:
      return StreamCreate();
    case OpKind::StreamDestroy:
      return StreamDestroy();
    case OpKind::StreamSync:
      return StreamSync(false);
    case OpKind::StreamQuery:
      return StreamSync(true);
    case OpKind::StreamWaitEvent:
      return StreamWaitEvent();
    case OpKind::EventCreate:
      return EventCreate();
    case OpKind::EventRecord:
      return EventRecord();
    case OpKind::EventSync:
      return EventSync(false);
    case OpKind::EventQuery:
      return EventSync(true);
    case OpKind::EventElapsed:
      return EventElapsed();
    case OpKind::EventDestroy:
      return EventDestroy();
    case OpKind::Memcpy:
    case OpKind::MemcpyAsync:
      return Copy();
    case OpKind::MemcpyPeer:
    case OpKind::MemcpyPeerAsync:
      return Peer();
    case OpKind::Memset:
    case OpKind::MemsetAsync:
      return Memset();
    case OpKind::Transform:
    case OpKind::Checksum:
      return Kernel();
    case OpKind::HostFn:
      return HostFn();
    case OpKind::DeviceSync:
      return DeviceSync();
    case OpKind::DeviceReset:
      return DeviceReset();
    case OpKind::PeerEnable:
    case OpKind::PeerDisable:
      return PeerAccess();
    case OpKind::InjectFault:
      return InjectFault();
    case OpKind::Query:
      return Query();
    case OpKind::Count:
      break;
  }
  return Skip("kind");
}

Analysis World::Ctx::SetDevice() {
  if (op.bad == Bad::device) {
    Expect(h20ErrorInvalidDevice);  // "a device ordinal is out of range"
  } else if (op.bad != Bad::none || !ValidDev(op.dev)) {
    return Skip("args");
  } else {
    Expect(h20Success);
  }
  if (analyzing()) return a;
  if (exec() && !Call(h20SetDevice(op.bad == Bad::device ? op.value : op.dev))) return a;
  if (op.bad == Bad::none) w.current_ = op.dev;
  return a;
}

Analysis World::Ctx::Malloc() {
  if (op.id >= 0 && M(op.id)) return Skip("id");
  switch (op.bad) {
    case Bad::none:
      // "size 0 succeeds with *devPtr = NULL"
      Expect(w.FaultCodes({cur}));
      break;
    case Bad::nullOut:
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::sizeMax:
    case Bad::sizeHuge:
      Expect(h20ErrorMemoryAllocation);  // "Fails with h20ErrorMemoryAllocation when ... full"
      break;
    default:
      return Skip("bad");
  }
  if (op.bad != Bad::none && Faulted(cur)) return Skip("faulted");
  if (analyzing()) return a;
  Begin();
  const std::size_t size = op.bad == Bad::sizeMax    ? SIZE_MAX
                           : op.bad == Bad::sizeHuge ? w.config_.totalGlobalMem * 2 + 4096
                                                     : op.size;
  void* p = reinterpret_cast<void*>(std::uintptr_t{0x10});
  if (exec()) {
    if (!Call(h20Malloc(op.bad == Bad::nullOut ? nullptr : &p, size))) return a;
    if (op.bad == Bad::none && a.expectSuccess()) {
      if (op.size == 0 && p != nullptr)
        w.Fail(index, "malloc 0", Describe(op) + " gave " + Hex(p) + ", expected NULL");
      if (op.size > 0 && (p == nullptr || reinterpret_cast<std::uintptr_t>(p) % 256 != 0))
        w.Fail(index, "malloc align", Describe(op) + " gave " + Hex(p) + ", not 256-aligned");
    }
  }
  if (op.bad != Bad::none || !a.expectSuccess() || op.size == 0) return a;
  Mem m;
  m.id = op.id;
  m.kind = MemKind::device;
  m.device = cur;
  m.size = op.size;
  m.bytes.assign(op.size, 0);
  m.defined.assign(op.size, 0);
  if (exec()) m.ptr = static_cast<unsigned char*>(p);
  w.mems_.emplace(op.id, std::move(m));
  return a;
}

Analysis World::Ctx::MallocAsync() {
  if (op.id >= 0 && M(op.id)) return Skip("id");
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  if (sa == 1) {
    Expect(h20ErrorInvalidResourceHandle);  // "a stream or event handle is invalid or destroyed"
  } else if (op.bad == Bad::nullOut) {
    Expect(h20ErrorInvalidValue);
  } else if (op.bad == Bad::sizeMax) {
    Expect(h20ErrorMemoryAllocation);
  } else if (op.bad == Bad::none) {
    Expect(w.FaultCodes({s->device}));
  } else {
    return Skip("bad");
  }
  if (op.bad != Bad::none && (Faulted(cur) || (s && Faulted(s->device)))) return Skip("faulted");
  if (analyzing()) return a;
  Begin();
  void* p = nullptr;
  if (exec()) {
    if (!Call(h20MallocAsync(op.bad == Bad::nullOut ? nullptr : &p,
                             op.bad == Bad::sizeMax ? SIZE_MAX : op.size, StreamHandle())))
      return a;
  }
  if (op.bad != Bad::none || !a.expectSuccess() || op.size == 0) return a;
  Mem m;
  m.id = op.id;
  m.kind = MemKind::pool;
  m.device = s->device;
  m.size = op.size;
  m.bytes.assign(op.size, 0);
  m.defined.assign(op.size, 0);
  // "The pointer may be used by work enqueued after this call on `stream` (or ordered after
  // it)": the model puts a marker at the call's position in the stream, and work elsewhere must
  // be ordered after it.
  // The marker is no command: it waits for nothing the stream's own order does not give.
  VC mark = s->vc;
  Join(mark, w.host_);
  mark.resize(static_cast<std::size_t>(w.agents_), 0);
  s->seq += 1;
  mark[static_cast<std::size_t>(s->agent)] = s->seq;
  s->vc = std::move(mark);
  m.pending.push_back({0, op.size, true, s->agent, s->seq});
  if (exec()) m.ptr = static_cast<unsigned char*>(p);
  w.mems_.emplace(op.id, std::move(m));
  return a;
}

Analysis World::Ctx::Free() {
  Mem* m = nullptr;
  if (op.kind == 1) {
    Expect(h20Success);  // "NULL is a no-op"
  } else if (op.bad == Bad::freedDst) {
    if (!FreedRefOk(op.dst)) return Skip("freed");
    Expect(h20ErrorInvalidValue);  // "not the start of a live allocation"
  } else {
    m = Live(op.dst);
    if (!m || op.dst.off > m->size) return Skip("mem");
    if (m->sharedRO) return Skip("shared");
    if (op.bad == Bad::interior) {
      if (!m->isDevice() || op.dst.off == 0 || op.dst.off >= m->size) return Skip("interior");
      Expect(h20ErrorInvalidValue);
    } else if (op.bad == Bad::hostPtr) {
      if (m->isDevice()) return Skip("host");
      Expect(h20ErrorInvalidValue);
    } else if (op.bad == Bad::none) {
      if (!m->isDevice() || op.dst.off != 0) return Skip("args");
      Expect(h20Success);
    } else {
      return Skip("bad");
    }
    // h20Free of a faulted device's memory: the header does not say; not generated.
    if (m->isDevice() && Faulted(m->device)) return Skip("faulted");
  }
  if (op.bad == Bad::none && m) {
    // "Waits for the device's pending work first": work of other devices on this memory must
    // already be known complete.
    const VC saved = w.host_;
    w.HostJoinDevice(m->device);
    w.Prune(*m);
    const int agent = w.Conflict(*m, 0, m->size, true, w.host_);
    w.host_ = saved;
    w.Prune(*m);
    if (agent >= 0) {
      a.conflictAgent = agent;
      a.hostConflict = true;
      return a;
    }
  }
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20Free(op.kind == 1 ? nullptr : Ptr(op.dst)))) return a;
  if (op.bad == Bad::none && m) {
    w.HostJoinDevice(m->device);
    m->live = false;
    m->pending.clear();
  }
  return a;
}

Analysis World::Ctx::FreeAsync() {
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  Mem* m = nullptr;
  if (op.kind != 1) {
    if (op.bad == Bad::freedDst) {
      if (!FreedRefOk(op.dst) || M(op.dst.obj)->kind != MemKind::pool) return Skip("freed");
    } else {
      m = Live(op.dst);
      if (!m || m->kind != MemKind::pool || m->sharedRO) return Skip("mem");
      if (Faulted(m->device)) return Skip("faulted");
    }
  }
  if (s && Faulted(s->device)) return Skip("faulted");  // the header does not say
  if (sa == 1) {
    Expect(h20ErrorInvalidResourceHandle);
  } else if (op.kind == 1) {
    Expect(h20Success);
  } else if (op.bad == Bad::freedDst) {
    Expect(h20ErrorInvalidValue);
  } else if (op.bad == Bad::interior) {
    if (op.dst.off == 0 || op.dst.off >= m->size) return Skip("interior");
    Expect(h20ErrorInvalidValue);
  } else if (op.bad == Bad::none) {
    if (op.dst.off != 0) return Skip("args");
    Expect(h20Success);
  } else {
    return Skip("bad");
  }
  VC vc;
  if (op.bad == Bad::none && m) {
    vc = w.TrialVC(*s);
    Write(m, 0, m->size);
    if (Hazard(&vc)) return a;
  }
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20FreeAsync(op.kind == 1 ? nullptr : Ptr(op.dst), StreamHandle()))) return a;
  if (op.bad == Bad::none && m) {
    w.Commit(*s, vc);
    m->live = false;
    m->pending.clear();
  }
  return a;
}

Analysis World::Ctx::HostAlloc() {
  if (op.id >= 0 && M(op.id)) return Skip("id");
  if (Faulted(cur)) return Skip("faulted");
  switch (op.bad) {
    case Bad::none:
      if (op.kind == 1 &&
          (op.flags & ~(h20HostAllocPortable | h20HostAllocMapped | h20HostAllocWriteCombined)))
        return Skip("flags");
      Expect(h20Success);
      break;
    case Bad::nullOut:
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::flags:
      if (op.kind != 1) return Skip("flags");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::sizeMax:
      Expect(h20ErrorMemoryAllocation);
      break;
    default:
      return Skip("bad");
  }
  if (analyzing()) return a;
  Begin();
  void* p = nullptr;
  const std::size_t size = op.bad == Bad::sizeMax ? SIZE_MAX : op.size;
  if (exec()) {
    void** out = op.bad == Bad::nullOut ? nullptr : &p;
    if (!Call(op.kind == 0 ? h20MallocHost(out, size) : h20HostAlloc(out, size, op.flags)))
      return a;
  }
  if (op.bad != Bad::none || op.size == 0) return a;
  Mem m;
  m.id = op.id;
  m.kind = MemKind::pinned;
  m.device = cur;
  m.size = op.size;
  m.bytes.resize(op.size);
  m.defined.assign(op.size, 1);
  Pattern(m.bytes.data(), m.size, op.salt);
  if (exec()) {
    m.ptr = static_cast<unsigned char*>(p);
    std::memcpy(m.ptr, m.bytes.data(), m.size);
  }
  w.mems_.emplace(op.id, std::move(m));
  return a;
}

Analysis World::Ctx::FreeHost() {
  Mem* m = nullptr;
  for (int d = 0; d < w.config_.devices; ++d)
    if (Faulted(d)) return Skip("faulted");  // the header does not say
  if (op.kind == 1) {
    Expect(h20Success);
  } else {
    m = Live(op.dst);
    if (!m || op.dst.off >= std::max<std::size_t>(m->size, 1) || m->sharedRO) return Skip("mem");
    if (op.bad == Bad::none) {
      if (m->kind != MemKind::pinned || op.dst.off != 0) return Skip("args");
      Expect(h20Success);
    } else if (op.bad == Bad::interior) {
      if (m->kind != MemKind::pinned || op.dst.off == 0) return Skip("interior");
      Expect(h20ErrorInvalidValue);
    } else if (op.bad == Bad::hostPtr) {
      // Memory h20MallocHost/h20HostAlloc did not return: device, pageable or registered.
      if (m->kind == MemKind::pinned || op.dst.off != 0) return Skip("kind");
      Expect(h20ErrorInvalidValue);
    } else {
      return Skip("bad");
    }
  }
  if (op.bad == Bad::none && m) {
    // The header does not say that h20FreeHost waits for copies still using the memory: the
    // model requires none in flight.
    w.Prune(*m);
    const int agent = w.Conflict(*m, 0, m->size, true, w.host_);
    if (agent >= 0) {
      a.conflictAgent = agent;
      a.hostConflict = true;
      return a;
    }
  }
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20FreeHost(op.kind == 1 ? nullptr : Ptr(op.dst)))) return a;
  if (op.bad == Bad::none && m) {
    m->live = false;
    m->pending.clear();
    m->ptr = nullptr;
  }
  return a;
}

Analysis World::Ctx::NewPageable() {
  if (op.id < 0 || M(op.id) || op.size == 0) return Skip("id");
  Expect(h20Success);
  if (analyzing()) return a;
  Mem m;
  m.id = op.id;
  m.kind = MemKind::pageable;
  m.size = op.size;
  m.bytes.resize(op.size);
  m.defined.assign(op.size, 1);
  Pattern(m.bytes.data(), m.size, op.salt);
  if (exec()) {
    m.storage.reset(new unsigned char[m.size]);
    m.ptr = m.storage.get();
    std::memcpy(m.ptr, m.bytes.data(), m.size);
  }
  w.mems_.emplace(op.id, std::move(m));
  return a;
}

Analysis World::Ctx::HostRegister() {
  if (Faulted(cur)) return Skip("faulted");
  Mem* m = nullptr;
  if (op.bad != Bad::nullDst) {
    m = Live(op.dst);
    if (!m || m->sharedRO) return Skip("mem");
    if (op.dst.off + op.count > m->size) return Skip("range");
  }
  const unsigned known = h20HostRegisterPortable | h20HostRegisterMapped | h20HostRegisterIoMemory |
                         h20HostRegisterReadOnly;
  switch (op.bad) {
    case Bad::none:
      if (m->kind != MemKind::pageable || m->registered || op.dst.off != 0 || op.count != m->size ||
          (op.flags & ~known) || (op.flags & h20HostRegisterIoMemory))
        return Skip("args");
      Expect(h20Success);
      break;
    case Bad::alreadyRegistered:
      // "Overlapping an already registered range: h20ErrorHostMemoryAlreadyRegistered" (pinned
      // allocations are registered with the runtime too).
      if (!m->isPinned() || op.count == 0) return Skip("args");
      Expect(h20ErrorHostMemoryAlreadyRegistered);
      break;
    case Bad::nullDst:
    case Bad::zeroSize:
    case Bad::flags:
      Expect(h20ErrorInvalidValue);
      if (m && !m->isPageable()) return Skip("not pageable");
      break;
    case Bad::sizeMax:
      // "a range that wraps past the end of the address space ...: h20ErrorInvalidValue"
      if (!m->isPageable()) return Skip("not pageable");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::ioMemory:
      if (!m->isPageable()) return Skip("not pageable");
      Expect(h20ErrorNotSupported);
      break;
    case Bad::hostPtr:  // device memory
      if (!m->isDevice() || Faulted(m->device)) return Skip("device");
      Expect(h20ErrorInvalidValue);
      break;
    default:
      return Skip("bad");
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    const std::size_t size = op.bad == Bad::sizeMax    ? SIZE_MAX
                             : op.bad == Bad::zeroSize ? 0
                                                       : op.count;
    const unsigned flags = op.bad == Bad::ioMemory ? h20HostRegisterIoMemory
                           : op.bad == Bad::flags  ? 0x40u
                                                   : op.flags;
    if (op.bad != Bad::nullDst && m->kind == MemKind::pageable)
      w.registerAttempts_.push_back(Ptr(op.dst));
    if (!Call(h20HostRegister(op.bad == Bad::nullDst ? nullptr : Ptr(op.dst), size, flags)))
      return a;
  }
  if (op.bad == Bad::none) {
    m->registered = true;
    m->device = cur;
  }
  return a;
}

Analysis World::Ctx::HostUnregister() {
  Mem* m = nullptr;
  if (op.kind == 1) {
    Expect(h20ErrorHostMemoryNotRegistered);  // "ptr must be the start of a registered range
                                              // (NULL included): else NotRegistered"
  } else {
    m = Live(op.dst);
    if (!m || m->sharedRO || op.dst.off >= std::max<std::size_t>(m->size, 1)) return Skip("mem");
    if (m->isDevice() && Faulted(m->device)) return Skip("faulted");
    if (op.bad == Bad::none) {
      if (!m->registered || op.dst.off != 0) return Skip("args");
      Expect(h20Success);
      // Not said to wait for copies in flight: the model requires none.
      w.Prune(*m);
      const int agent = w.Conflict(*m, 0, m->size, true, w.host_);
      if (agent >= 0) {
        a.conflictAgent = agent;
        a.hostConflict = true;
        return a;
      }
    } else if (op.bad == Bad::notRegistered) {
      if (m->registered && op.dst.off == 0) return Skip("registered");
      Expect(h20ErrorHostMemoryNotRegistered);
    } else {
      return Skip("bad");
    }
  }
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20HostUnregister(op.kind == 1 ? nullptr : Ptr(op.dst)))) return a;
  if (op.bad == Bad::none && m) m->registered = false;
  return a;
}

Analysis World::Ctx::HostWrite() {
  Mem* m = Live(op.dst);
  if (!m || m->isDevice() || m->sharedRO || op.dst.off + op.count > m->size) return Skip("mem");
  Expect(h20Success);
  Write(m, op.dst.off, op.count, true);
  if (Hazard(nullptr)) return a;
  if (analyzing()) return a;
  std::vector<std::uint8_t> b(op.count);
  Pattern(b.data(), b.size(), op.salt);
  std::copy(b.begin(), b.end(), m->bytes.begin() + op.dst.off);
  w.Touch(*m);
  if (exec() && !b.empty()) std::memcpy(m->ptr + op.dst.off, b.data(), b.size());
  return a;
}

Analysis World::Ctx::StreamCreate() {
  if (op.id < 0 || w.streams_.count(op.id)) return Skip("id");
  if (Faulted(cur)) return Skip("faulted");
  switch (op.bad) {
    case Bad::none:
      if (op.kind >= 1 && (op.flags & ~h20StreamNonBlocking)) return Skip("flags");
      Expect(h20Success);
      break;
    case Bad::nullOut:
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::flags:
      if (op.kind == 0) return Skip("flags");
      Expect(h20ErrorInvalidValue);
      break;
    default:
      return Skip("bad");
  }
  if (analyzing()) return a;
  Begin();
  h20Stream_t h = nullptr;
  const unsigned flags = op.bad == Bad::flags ? 0x4u : op.kind >= 1 ? op.flags : 0u;
  if (exec()) {
    h20Stream_t* out = op.bad == Bad::nullOut ? nullptr : &h;
    const h20Error_t rc = op.kind == 0   ? h20StreamCreate(out)
                          : op.kind == 1 ? h20StreamCreateWithFlags(out, flags)
                                         : h20StreamCreateWithPriority(out, flags, op.value);
    if (!Call(rc)) return a;
  }
  if (op.bad != Bad::none) return a;
  StreamM& s = w.NewStream(op.id, cur, StreamKind::user, (flags & h20StreamNonBlocking) == 0);
  s.flags = flags;
  // "Priority outside the device's range is clamped to it, as in CUDA."
  s.priority =
      op.kind == 2 ? std::clamp(op.value, w.config_.priorityGreatest, w.config_.priorityLeast) : 0;
  s.handle = h;
  return a;
}

Analysis World::Ctx::StreamDestroy() {
  StreamM* s = nullptr;
  if (op.bad == Bad::streamDefault) {
    if (op.s.kind == StreamRef::user || op.s.kind == StreamRef::none) return Skip("args");
    // "NULL, h20StreamLegacy and h20StreamPerThread cannot be destroyed"
    Expect(h20ErrorInvalidResourceHandle);
  } else {
    const int sa = StreamArg(&s);
    if (sa < 0) return Skip("stream");
    if (sa == 0 && s->kind != StreamKind::user) return Skip("default");
    if (s && Faulted(s->device)) return Skip("faulted");
    Expect(sa == 1 ? h20ErrorInvalidResourceHandle : h20Success);
  }
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20StreamDestroy(StreamHandle()))) return a;
  // "Returns at once; work already enqueued still completes."
  if (op.bad == Bad::none) s->live = false;
  return a;
}

Analysis World::Ctx::StreamSync(bool query) {
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  if (sa == 1) {
    if (Faulted(cur)) return Skip("faulted");
    Expect(h20ErrorInvalidResourceHandle);
  } else if (Faulted(s->device)) {
    Expect(w.FaultCodes({s->device}));  // reported "by the next synchronisation"
  } else if (query && (!w.CoversAll(w.SyncVC(*s)) || s->pendingWait ||
                       (w.config_.multiThreaded && s->kind == StreamKind::legacy))) {
    // Threaded runs: other threads' work on the legacy stream is unknown here.
    Expect({h20Success, h20ErrorNotReady});
  } else {
    Expect(h20Success);
  }
  if (analyzing()) return a;
  Begin();
  if (exec() &&
      !Call(query ? h20StreamQuery(StreamHandle()) : h20StreamSynchronize(StreamHandle())))
    return a;
  if (!query && sa == 0) {
    Join(w.host_, w.SyncVC(*s));
    s->pendingWait = false;
    if (s->kind == StreamKind::legacy)
      for (auto& [k, t] : w.streams_)
        if (t.device == s->device && t.blocking) t.pendingWait = false;
  }
  return a;
}

Analysis World::Ctx::StreamWaitEvent() {
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  EventM* e = nullptr;
  const int ea = EventArg(op.ev, &e);
  if (ea < 0) return Skip("event");
  if (e && Faulted(e->device)) return Skip("faulted");
  if (sa == 1 || ea == 1) {
    if (s && Faulted(s->device)) return Skip("faulted");
    Expect(h20ErrorInvalidResourceHandle);
  } else if (op.bad == Bad::flags) {
    if (Faulted(s->device)) return Skip("faulted");
    Expect(h20ErrorInvalidValue);  // "flags must be 0"
  } else if (op.bad == Bad::none) {
    // On a faulted device: a wait enqueues work ("every later call that submits work to that
    // device" fails), but a wait for an event never recorded "is a no-op". Either is accepted.
    Expect(w.FaultCodes({s->device}));
    if (Faulted(s->device)) a.codes.push_back(h20Success);
  } else {
    return Skip("bad");
  }
  if (analyzing()) return a;
  Begin();
  if (exec() &&
      !Call(h20StreamWaitEvent(StreamHandle(), EventHandle(op.ev), op.bad == Bad::flags ? 1u : 0u)))
    return a;
  // "Makes all later work on `stream` wait until the work captured by the event's most recent
  // h20EventRecord completes ... An event never recorded is a no-op."
  if (op.bad == Bad::none && a.expectSuccess() && e->recorded) {
    Join(s->waitJoin, e->vc);
    s->pendingWait = true;
  }
  return a;
}

Analysis World::Ctx::EventCreate() {
  if (op.id < 0 || w.events_.count(op.id)) return Skip("id");
  if (Faulted(cur)) return Skip("faulted");
  unsigned flags = op.kind == 1 ? op.flags : 0u;
  switch (op.bad) {
    case Bad::none:
      if (flags & ~(h20EventBlockingSync | h20EventDisableTiming)) return Skip("flags");
      Expect(h20Success);
      break;
    case Bad::nullOut:
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::flags:
      flags = 0x10u;
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::interprocess:
      flags = h20EventInterprocess;
      Expect(h20ErrorInvalidValue);  // CUDA requires DisableTiming with it
      break;
    case Bad::interprocessTiming:
      // Refused by the embedded device; with the device daemon an event like any untimed one.
      flags = h20EventInterprocess | h20EventDisableTiming;
      Expect(h20test::DaemonBackend() ? h20Success : h20ErrorNotSupported);
      break;
    default:
      return Skip("bad");
  }
  if (op.bad != Bad::none && op.bad != Bad::nullOut && op.kind != 1) return Skip("kind");
  if (analyzing()) return a;
  Begin();
  h20Event_t h = nullptr;
  if (exec()) {
    h20Event_t* out = op.bad == Bad::nullOut ? nullptr : &h;
    if (!Call(op.kind == 0 ? h20EventCreate(out) : h20EventCreateWithFlags(out, flags))) return a;
  }
  if (op.bad != Bad::none && !(op.bad == Bad::interprocessTiming && h20test::DaemonBackend()))
    return a;
  EventM e;
  e.id = op.id;
  e.device = cur;
  e.flags = flags;
  e.handle = h;
  w.events_.emplace(op.id, std::move(e));
  return a;
}

Analysis World::Ctx::EventRecord() {
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  EventM* e = nullptr;
  const int ea = EventArg(op.ev, &e);
  if (ea < 0) return Skip("event");
  if ((e && Faulted(e->device)) || (s && Faulted(s->device)) || Faulted(cur)) {
    if (op.bad != Bad::none || !s || !e || s->device != e->device ||
        (Faulted(cur) && cur != s->device))
      return Skip("faulted");
  }
  if (sa == 1 || ea == 1) {
    Expect(h20ErrorInvalidResourceHandle);
  } else if (op.bad == Bad::otherDevice) {
    // "`stream`, which must belong to the event's device ... else h20ErrorInvalidResourceHandle"
    if (s->device == e->device) return Skip("same device");
    Expect(h20ErrorInvalidResourceHandle);
  } else if (op.bad == Bad::none) {
    if (s->device != e->device) return Skip("device");
    Expect(w.FaultCodes({s->device}));
  } else {
    return Skip("bad");
  }
  VC vc;
  if (op.bad == Bad::none) vc = w.TrialVC(*s);
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20EventRecord(EventHandle(op.ev), StreamHandle()))) return a;
  if (op.bad == Bad::none && a.expectSuccess()) {
    w.Commit(*s, vc);
    // "Re-recording replaces the previous capture."
    e->recorded = true;
    e->vc = s->vc;
    e->recAgent = s->agent;
    e->recSeq = s->seq;
  }
  return a;
}

Analysis World::Ctx::EventSync(bool query) {
  EventM* e = nullptr;
  const int ea = EventArg(op.ev, &e);
  if (ea < 0) return Skip("event");
  if (ea == 1) {
    if (Faulted(cur)) return Skip("faulted");
    Expect(h20ErrorInvalidResourceHandle);
  } else if (op.bad != Bad::none) {
    return Skip("bad");
  } else if (Faulted(e->device)) {
    Expect(w.FaultCodes({e->device}));
  } else if (query && e->recorded && !w.Covered(e->recAgent, e->recSeq)) {
    Expect({h20Success, h20ErrorNotReady});
  } else {
    Expect(h20Success);  // "(or the event was never recorded)"
  }
  if (analyzing()) return a;
  Begin();
  if (exec() &&
      !Call(query ? h20EventQuery(EventHandle(op.ev)) : h20EventSynchronize(EventHandle(op.ev))))
    return a;
  if (!query && ea == 0 && e->recorded) Join(w.host_, e->vc);
  return a;
}

Analysis World::Ctx::EventElapsed() {
  EventM* e = nullptr;
  const int ea = EventArg(op.ev, &e);
  if (ea < 0) return Skip("event");
  auto it2 = w.events_.find(op.ev2);
  if (it2 == w.events_.end() || !it2->second.live) return Skip("event2");
  EventM* e2 = &it2->second;
  if (Faulted(e2->device) || (e && Faulted(e->device)) || Faulted(cur)) return Skip("faulted");
  auto timingOk = [](const EventM* x) { return (x->flags & h20EventDisableTiming) == 0; };
  if (ea == 1) {
    if (!e2->recorded || !timingOk(e2)) return Skip("e2");
    Expect(h20ErrorInvalidResourceHandle);
  } else {
    if (e->device != e2->device) return Skip("devices");
    const bool ready = e->recorded && e2->recorded && timingOk(e) && timingOk(e2);
    switch (op.bad) {
      case Bad::none:
        if (!ready) return Skip("not ready");
        if (w.Covered(e->recAgent, e->recSeq) && w.Covered(e2->recAgent, e2->recSeq))
          Expect(h20Success);
        else
          Expect({h20Success, h20ErrorNotReady});
        break;
      case Bad::nullOut:
        Expect(h20ErrorInvalidValue);
        break;
      case Bad::notRecorded:
        // "Either event not recorded or created with h20EventDisableTiming:
        // h20ErrorInvalidResourceHandle"
        if (e->recorded || !timingOk(e) || !e2->recorded || !timingOk(e2)) return Skip("args");
        Expect(h20ErrorInvalidResourceHandle);
        break;
      case Bad::noTiming:
        if (timingOk(e) || !e2->recorded || !timingOk(e2) || !e->recorded) return Skip("args");
        Expect(h20ErrorInvalidResourceHandle);
        break;
      default:
        return Skip("bad");
    }
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    float ms = -1.0f;
    const h20Error_t rc = h20EventElapsedTime(op.bad == Bad::nullOut ? nullptr : &ms,
                                              EventHandle(op.ev), it2->second.handle);
    if (!Call(rc)) return a;
    if (rc == h20Success && !std::isfinite(ms))
      w.Fail(index, "elapsed", Describe(op) + " gave a non-finite time");
  }
  return a;
}

Analysis World::Ctx::EventDestroy() {
  EventM* e = nullptr;
  const int ea = EventArg(op.ev, &e);
  if (ea < 0) return Skip("event");
  if (e && Faulted(e->device)) return Skip("faulted");
  if (op.bad != Bad::none && ea == 0) return Skip("bad");
  Expect(ea == 1 ? h20ErrorInvalidResourceHandle : h20Success);
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20EventDestroy(EventHandle(op.ev)))) return a;
  if (ea == 0) e->live = false;  // "a pending capture still completes"
  return a;
}

// h20Memcpy / h20MemcpyAsync.
Analysis World::Ctx::Copy() {
  const bool async = op.k == OpKind::MemcpyAsync;
  StreamM* s = nullptr;
  int sa = 0;
  if (async) {
    sa = StreamArg(&s);
    if (sa < 0) return Skip("stream");
  } else if (BadStream()) {
    return Skip("bad");
  }
  Mem* dm = nullptr;
  Mem* sm = nullptr;
  if (op.bad == Bad::freedDst) {
    if (!FreedRefOk(op.dst)) return Skip("freed");
    dm = M(op.dst.obj);
  } else if (op.bad != Bad::nullDst) {
    dm = Live(op.dst);
    if (!dm) return Skip("dst");
  }
  if (op.bad == Bad::freedSrc) {
    if (!FreedRefOk(op.src)) return Skip("freed");
    sm = M(op.src.obj);
  } else if (op.bad != Bad::nullSrc) {
    sm = Live(op.src);
    if (!sm) return Skip("src");
  }
  if (dm && op.dst.off > dm->size) return Skip("dst off");
  if (sm && op.src.off > sm->size) return Skip("src off");
  if (dm && dm->sharedRO) return Skip("shared");
  const bool dDev = dm && dm->isDevice(), sDev = sm && sm->isDevice();
  const int streamDev = async ? (s ? s->device : -1) : cur;
  std::vector<h20Error_t> faults =
      w.FaultCodes({streamDev, dDev ? dm->device : -1, sDev ? sm->device : -1});
  const bool anyFault = faults[0] != h20Success || Faulted(cur);
  const std::size_t dLeft = dm ? dm->size - op.dst.off : 0, sLeft = sm ? sm->size - op.src.off : 0;
  const bool sameRange = dm && sm && dm == sm &&
                         Overlap(op.dst.off, op.dst.off + std::max<std::size_t>(op.count, 1),
                                 op.src.off, op.src.off + std::max<std::size_t>(op.count, 1));
  switch (op.bad) {
    case Bad::none:
      if (op.count > dLeft || op.count > sLeft || sameRange) return Skip("range");
      if (!KindMatches(op.kind, dDev, sDev)) return Skip("kind");
      if (op.count == 0 && anyFault) return Skip("faulted");  // not said
      // An asynchronous copy while an uninvolved current device is faulted: not said.
      if (async && Faulted(cur) && cur != streamDev && !(dDev && dm->device == cur) &&
          !(sDev && sm->device == cur))
        return Skip("current faulted");
      Expect(faults);
      break;
    case Bad::kindRange:
      // "Enum parameters out of range (e.g. a h20MemcpyKind of 99): h20ErrorInvalidValue"
      if (anyFault || op.count > dLeft || op.count > sLeft || sameRange) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::kindMismatch:
      if (anyFault || op.count == 0 || op.count > dLeft || op.count > sLeft || sameRange ||
          KindMatches(op.kind, dDev, sDev))
        return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::countOver:
      // "a range past its end ... fails with h20ErrorInvalidValue and copies nothing"; every
      // pageable side must still hold count bytes.
      if (anyFault || !KindMatches(op.kind, dDev, sDev) || sameRange) return Skip("args");
      if (!((!dm->isPageable() && op.count > dLeft) || (!sm->isPageable() && op.count > sLeft)))
        return Skip("not over");
      if ((dm->isPageable() && op.count > dLeft) || (sm->isPageable() && op.count > sLeft))
        return Skip("pageable");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::countMax:
      if (anyFault || !KindMatches(op.kind, dDev, sDev) || (dm->isPageable() && sm->isPageable()))
        return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::nullDst:
    case Bad::nullSrc:
      if (anyFault || op.count == 0) return Skip("args");
      if ((dm && op.count > dLeft) || (sm && op.count > sLeft)) return Skip("range");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::freedDst:
    case Bad::freedSrc:
      // "a range ... into freed memory ... fails with h20ErrorInvalidValue"
      if (anyFault || op.count == 0 || op.count > dLeft || op.count > sLeft ||
          !KindMatches(op.kind, dDev, sDev))
        return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::streamEvent:
    case Bad::streamDead:
    case Bad::streamGarbage:
      if (anyFault || op.count == 0 || op.count > dLeft || op.count > sLeft || sameRange ||
          !KindMatches(op.kind, dDev, sDev))
        return Skip("args");
      Expect(h20ErrorInvalidResourceHandle);
      break;
    default:
      return Skip("bad");
  }
  // Ordering. h20Memcpy runs on the current device's legacy stream; h20MemcpyAsync on `stream`.
  // A pageable source of an asynchronous copy "is staged before the call returns" (read by the
  // calling thread); copies into pageable memory and synchronous host<->device copies "return
  // when the copy is done". A synchronous host-to-host copy is done when it returns; the model
  // orders it with nothing.
  const bool valid = op.bad == Bad::none && a.expectSuccess() && op.count > 0;
  const bool hostToHost = !dDev && !sDev;
  StreamM* run = async ? s : (hostToHost ? nullptr : &w.Legacy(cur));
  VC vc;
  if (valid) {
    AcrossDevices(run, {dm, sm});
    if (run) {
      vc = w.TrialVC(*run);
      JoinAcross(vc);
    }
    const bool stagedRead = !run || (async && sm->isPageable());
    Read(sm, op.src.off, op.count, stagedRead);
    Write(dm, op.dst.off, op.count, !run);
    if (Hazard(run ? &vc : nullptr)) return a;
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    void* d = op.bad == Bad::nullDst ? nullptr : Ptr(op.dst);
    const void* sp = op.bad == Bad::nullSrc ? nullptr : Ptr(op.src);
    const std::size_t count = op.bad == Bad::countMax ? SIZE_MAX : op.count;
    // The kind goes through C (c_callers.h): a value outside the enum, as a C caller passes it.
    const int kind = op.bad == Bad::kindRange ? op.value : op.kind;
    if (!Call(async ? h20test_MemcpyAsyncKind(d, sp, count, kind, StreamHandle())
                    : h20test_MemcpyKind(d, sp, count, kind)))
      return a;
  }
  if (!valid) return a;
  if (run) {
    w.Commit(*run, vc);
    Record(run);
    CommitAcross(*run);
  }
  CopyBytes(*dm, op.dst.off, *sm, op.src.off, op.count);
  const bool hostWaits = run && (async ? dm->isPageable() : !(dDev && sDev));
  if (hostWaits) Join(w.host_, run->vc);
  return a;
}

// h20MemcpyPeer / h20MemcpyPeerAsync.
Analysis World::Ctx::Peer() {
  const bool async = op.k == OpKind::MemcpyPeerAsync;
  StreamM* s = nullptr;
  if (async) {
    const int sa = StreamArg(&s);
    if (sa < 0) return Skip("stream");
  } else if (BadStream()) {
    return Skip("bad");
  }
  Mem* dm = nullptr;
  Mem* sm = nullptr;
  if (op.bad == Bad::freedDst) {
    if (!FreedRefOk(op.dst)) return Skip("freed");
    dm = M(op.dst.obj);
  } else if (op.bad != Bad::nullDst) {
    if (!(dm = Live(op.dst))) return Skip("dst");
  }
  if (op.bad == Bad::freedSrc) {
    if (!FreedRefOk(op.src)) return Skip("freed");
    sm = M(op.src.obj);
  } else if (op.bad != Bad::nullSrc) {
    if (!(sm = Live(op.src))) return Skip("src");
  }
  if ((dm && op.dst.off > dm->size) || (sm && op.src.off > sm->size)) return Skip("off");
  if (dm && dm->sharedRO) return Skip("shared");
  // The device arguments: the devices the pointers belong to, unless the op breaks one.
  const int dstDev = op.dev2, srcDev = static_cast<int>(op.flags);
  if (!ValidDev(dstDev) || !ValidDev(srcDev)) return Skip("devices");
  if (dm && dm->isDevice() && dm->device != dstDev && op.bad != Bad::ptrDevice) return Skip("dd");
  if (sm && sm->isDevice() && sm->device != srcDev && op.bad != Bad::ptrDevice) return Skip("sd");
  const int streamDev = async ? (s ? s->device : -1) : -1;
  const std::vector<h20Error_t> faults = w.FaultCodes({streamDev, dstDev, srcDev});
  const bool anyFault = faults[0] != h20Success || Faulted(cur) ||
                        (dm && dm->isDevice() && Faulted(dm->device)) ||
                        (sm && sm->isDevice() && Faulted(sm->device));
  const std::size_t dLeft = dm ? dm->size - op.dst.off : 0, sLeft = sm ? sm->size - op.src.off : 0;
  const bool sameRange =
      dm && sm && dm == sm &&
      Overlap(op.dst.off, op.dst.off + op.count, op.src.off, op.src.off + op.count);
  const bool bothDevice = dm && sm && dm->isDevice() && sm->isDevice();
  const bool inRange = op.count <= dLeft && op.count <= sLeft;
  if (Faulted(cur) && !(cur == dstDev || cur == srcDev || cur == streamDev))
    return Skip("current faulted");  // the header does not say
  switch (op.bad) {
    case Bad::none:
      if (!bothDevice || !inRange || sameRange) return Skip("args");
      if (op.count == 0 && anyFault) return Skip("faulted");
      // "Both ranges are checked against their device's live allocations"; a fault of either
      // device is reported by "every later call that submits work to that device".
      Expect(faults);
      break;
    case Bad::device:
      if (anyFault || !bothDevice || !inRange || sameRange || op.count == 0) return Skip("args");
      Expect(h20ErrorInvalidDevice);
      break;
    case Bad::ptrDevice:
      if (anyFault || !bothDevice || !inRange || sameRange || op.count == 0) return Skip("args");
      if (dm->device == dstDev && sm->device == srcDev) return Skip("same");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::hostPtr:
      if (anyFault || !dm || !sm || bothDevice || !inRange || sameRange || op.count == 0)
        return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::countOver:
      if (anyFault || !bothDevice || inRange || sameRange) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::countMax:
      if (anyFault || !bothDevice) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::nullDst:
    case Bad::nullSrc:
    case Bad::freedDst:
    case Bad::freedSrc:
      if (anyFault || op.count == 0 || (dm && (!dm->isDevice() || op.count > dLeft)) ||
          (sm && (!sm->isDevice() || op.count > sLeft)))
        return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::streamEvent:
    case Bad::streamDead:
    case Bad::streamGarbage:
      if (anyFault || !bothDevice || !inRange || sameRange || op.count == 0) return Skip("args");
      Expect(h20ErrorInvalidResourceHandle);
      break;
    default:
      return Skip("bad");
  }
  const bool valid = op.bad == Bad::none && a.expectSuccess() && op.count > 0;
  VC vc;
  if (valid) {
    if (async) {
      vc = w.TrialVC(*s);
    } else {
      // "ordered after all work enqueued so far, and before all work enqueued later, on both
      // devices' legacy streams (and so with their blocking streams)"
      vc = w.TrialVC(w.Legacy(dstDev));
      if (srcDev != dstDev) {
        VC other = w.TrialVC(w.Legacy(srcDev));
        other[static_cast<std::size_t>(w.Legacy(srcDev).agent)] -= 1;
        Join(vc, other);
      }
    }
    Read(sm, op.src.off, op.count);
    Write(dm, op.dst.off, op.count);
    if (Hazard(&vc)) return a;
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    void* d = op.bad == Bad::nullDst ? nullptr : Ptr(op.dst);
    const void* sp = op.bad == Bad::nullSrc ? nullptr : Ptr(op.src);
    const std::size_t count = op.bad == Bad::countMax ? SIZE_MAX : op.count;
    const int dd = op.bad == Bad::device && op.kind == 0 ? op.value : dstDev;
    const int sd = op.bad == Bad::device && op.kind == 1 ? op.value : srcDev;
    if (!Call(async ? h20MemcpyPeerAsync(d, dd, sp, sd, count, StreamHandle())
                    : h20MemcpyPeer(d, dd, sp, sd, count)))
      return a;
  }
  if (!valid) return a;
  StreamM* run = async ? s : &w.Legacy(dstDev);
  w.Commit(*run, vc);
  Record(run);
  if (!async && srcDev != dstDev) {
    StreamM& ls = w.Legacy(srcDev);
    VC after = w.TrialVC(ls);
    Join(after, run->vc);
    w.Commit(ls, after);
  }
  CopyBytes(*dm, op.dst.off, *sm, op.src.off, op.count);
  return a;
}

// h20Memset / h20MemsetAsync.
Analysis World::Ctx::Memset() {
  const bool async = op.k == OpKind::MemsetAsync;
  StreamM* s = nullptr;
  if (async) {
    if (StreamArg(&s) < 0) return Skip("stream");
  } else if (BadStream()) {
    return Skip("bad");
  }
  Mem* dm = nullptr;
  if (op.bad == Bad::freedDst) {
    if (!FreedRefOk(op.dst)) return Skip("freed");
    dm = M(op.dst.obj);
  } else if (op.bad != Bad::nullDst) {
    if (!(dm = Live(op.dst))) return Skip("dst");
  }
  if (dm && (op.dst.off > dm->size || dm->sharedRO)) return Skip("dst");
  const int streamDev = async ? (s ? s->device : -1) : cur;
  const bool anyFault =
      Faulted(cur) || Faulted(streamDev) || (dm && dm->isDevice() && Faulted(dm->device));
  const std::size_t left = dm ? dm->size - op.dst.off : 0;
  switch (op.bad) {
    case Bad::none:
      // Device memory; of another device only on a legacy stream, where the header says how it is
      // ordered.
      if (!dm->isDevice() || op.count > left) return Skip("args");
      if (dm->device != streamDev && async && s->kind != StreamKind::legacy) return Skip("device");
      if (op.count == 0 && anyFault) return Skip("faulted");
      if (Faulted(cur) && cur != streamDev) return Skip("current faulted");
      Expect(w.FaultCodes({streamDev, dm->device}));
      break;
    case Bad::countOver:
      if (anyFault || !dm->isDevice() || op.count <= left) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::countMax:
      if (anyFault || !dm->isDevice()) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::nullDst:
    case Bad::freedDst:
      if (anyFault || op.count == 0 || (dm && op.count > left)) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::hostPtr:
      // Pageable memory is not device memory.
      if (anyFault || !dm->isPageable() || op.count == 0 || op.count > left) return Skip("args");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::streamEvent:
    case Bad::streamDead:
    case Bad::streamGarbage:
      if (anyFault || !dm->isDevice() || op.count == 0 || op.count > left) return Skip("args");
      Expect(h20ErrorInvalidResourceHandle);
      break;
    default:
      return Skip("bad");
  }
  const bool valid = op.bad == Bad::none && a.expectSuccess() && op.count > 0;
  StreamM* run = async ? s : &w.Legacy(cur);
  VC vc;
  if (valid) {
    AcrossDevices(run, {dm});
    vc = w.TrialVC(*run);
    JoinAcross(vc);
    Write(dm, op.dst.off, op.count);
    if (Hazard(&vc)) return a;
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    void* d = op.bad == Bad::nullDst ? nullptr : Ptr(op.dst);
    const std::size_t count = op.bad == Bad::countMax ? SIZE_MAX : op.count;
    if (!Call(async ? h20MemsetAsync(d, op.value, count, StreamHandle())
                    : h20Memset(d, op.value, count)))
      return a;
  }
  if (!valid) return a;
  w.Commit(*run, vc);
  Record(run);
  CommitAcross(*run);
  std::fill(dm->bytes.begin() + op.dst.off, dm->bytes.begin() + op.dst.off + op.count,
            static_cast<std::uint8_t>(op.value));
  std::fill(dm->defined.begin() + op.dst.off, dm->defined.begin() + op.dst.off + op.count, 1);
  w.Touch(*dm);
  return a;
}

// The transform and checksum kernels.
Analysis World::Ctx::Kernel() {
  const bool checksum = op.k == OpKind::Checksum;
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  Mem* dm = Live(op.dst);
  Mem* sm = Live(op.src);
  if (!dm || !sm || !dm->isDevice() || dm->sharedRO) return Skip("mem");
  if (!sm->isDevice() && !sm->isPinned()) return Skip("src kind");
  if (op.grid == 0 || op.grid > 64) return Skip("grid");
  const std::size_t dstBytes = checksum ? 8u * op.grid : op.count;
  if (op.dst.off + dstBytes > dm->size || op.src.off + op.count > sm->size) return Skip("range");
  if (dm == sm) {
    const bool inPlace = !checksum && op.dst.off == op.src.off;
    if (!inPlace && Overlap(op.dst.off, op.dst.off + dstBytes, op.src.off, op.src.off + op.count))
      return Skip("overlap");
  }
  const std::size_t chunk = (op.count + op.grid - 1) / op.grid;
  const bool useShared = !checksum && (op.flags & 1u);
  const std::size_t sharedBytes = useShared ? std::max<std::size_t>(chunk, 1) : 0;
  if (sharedBytes > w.config_.sharedMemOptin) return Skip("shared");
  const int sd = s ? s->device : -1;
  // "Every 8-byte-aligned word of `args` that holds an address inside a live allocation of
  // another device requires peer access to that device (h20ErrorPeerAccessNotEnabled otherwise)"
  bool needsPeer = false, peerUnknown = false;
  for (const Mem* m : {dm, sm}) {
    if (!s || !m->isDevice() || m->device == sd) continue;
    const std::int8_t p =
        w.devs_[static_cast<std::size_t>(sd)].peer[static_cast<std::size_t>(m->device)];
    if (p == 0) needsPeer = true;
    if (p == 2) peerUnknown = true;
  }
  if (peerUnknown) return Skip("peer state unknown");
  const bool anyFault = Faulted(cur) || Faulted(sd) || (dm->isDevice() && Faulted(dm->device)) ||
                        (sm->isDevice() && Faulted(sm->device));
  if (op.bad != Bad::none && anyFault) return Skip("faulted");
  if (op.bad != Bad::peerNotEnabled && op.bad != Bad::none && needsPeer) return Skip("peer");
  switch (op.bad) {
    case Bad::none:
      if (needsPeer) return Skip("peer");
      if (Faulted(cur) && cur != sd) return Skip("current faulted");
      // A kernel given a faulted peer's memory: the header speaks of copies and memsets only.
      if ((dm->device != sd && Faulted(dm->device)) ||
          (sm->isDevice() && sm->device != sd && Faulted(sm->device)))
        return Skip("faulted peer memory");
      Expect(w.FaultCodes({sd}));
      break;
    case Bad::peerNotEnabled:
      if (!needsPeer) return Skip("no peer");
      Expect(h20ErrorPeerAccessNotEnabled);
      break;
    case Bad::grid:
    case Bad::block:
    case Bad::shared:
    case Bad::argsBytes:
    case Bad::nullFn:
    case Bad::nullArgs:
      Expect(h20ErrorInvalidValue);  // "otherwise h20ErrorInvalidValue"
      break;
    case Bad::streamEvent:
    case Bad::streamDead:
    case Bad::streamGarbage:
      Expect(h20ErrorInvalidResourceHandle);
      break;
    default:
      return Skip("bad");
  }
  const bool valid = op.bad == Bad::none && a.expectSuccess();
  VC vc;
  if (valid) {
    vc = w.TrialVC(*s);
    if (!(dm == sm && !checksum && op.dst.off == op.src.off)) Read(sm, op.src.off, op.count);
    Write(dm, op.dst.off, dstBytes);
    if (Hazard(&vc)) return a;
  }
  if (analyzing()) return a;
  Begin();
  std::shared_ptr<WorkRecord> rec;
  if (exec()) {
    rec = std::make_shared<WorkRecord>();
    alignas(16) unsigned char buf[H20_MAX_KERNEL_ARGS_BYTES + 64];
    std::memset(buf, 0, sizeof buf);
    KernelArgs ka;
    std::memset(&ka, 0, sizeof ka);
    ka.src = Ptr(op.src);
    ka.dst = Ptr(op.dst);
    ka.count = op.count;
    ka.record = rec.get();
    ka.salt = op.salt;
    ka.spinUs = op.spinUs;
    ka.useShared = useShared ? 1u : 0u;
    ka.noApiCall = InnerCallsOff() ? 1u : 0u;
    std::memcpy(buf, &ka, sizeof ka);
    h20Dim3 grid{op.bad == Bad::grid ? 0u : op.grid, 1, 1};
    h20Dim3 block{64, 1, 1};
    if (op.bad == Bad::block) block.x = static_cast<unsigned>(w.config_.maxThreadsPerBlock) + 1;
    std::size_t shared = op.bad == Bad::shared ? w.config_.sharedMemOptin + 1 : sharedBytes;
    std::size_t argsBytes =
        op.bad == Bad::argsBytes ? H20_MAX_KERNEL_ARGS_BYTES + 1 : sizeof(KernelArgs);
    h20KernelFn fn = op.bad == Bad::nullFn ? nullptr : checksum ? ChecksumKernel : TransformKernel;
    const void* args = op.bad == Bad::nullArgs ? nullptr : buf;
    const h20Error_t rc = h20LaunchKernel(fn, grid, block, args, argsBytes, shared, StreamHandle());
    // Work enqueued by a launch that should have failed still runs: keep what it reads alive.
    if (rc == h20Success) w.keepAlive_.push_back(rec);
    if (!Call(rc)) return a;
  }
  if (!valid) return a;
  w.Commit(*s, vc);
  Record(s);
  if (exec())
    w.records_.push_back({s->agent, s->seq, static_cast<int>(op.grid), rec, rec.get(),
                          "launch #" + std::to_string(index) + " " + Describe(op)});
  if (checksum) {
    for (std::uint32_t b = 0; b < op.grid; ++b) {
      std::size_t begin = 0, end = 0;
      ChunkOf(op.count, op.grid, b, &begin, &end);
      bool def = true;
      for (std::size_t i = begin; i < end; ++i)
        def = def && sm->defined[op.src.off + i];
      const std::uint64_t h = Fnv1a(sm->bytes.data() + op.src.off + begin, end - begin) ^ op.salt;
      std::memcpy(dm->bytes.data() + op.dst.off + 8u * b, &h, sizeof h);
      std::fill(dm->defined.begin() + op.dst.off + 8u * b,
                dm->defined.begin() + op.dst.off + 8u * (b + 1), def ? 1 : 0);
    }
  } else {
    std::vector<std::uint8_t> out(op.count), def(op.count);
    for (std::size_t i = 0; i < op.count; ++i) {
      out[i] = TransformByte(sm->bytes[op.src.off + i], op.salt, i);
      def[i] = sm->defined[op.src.off + i];
    }
    std::copy(out.begin(), out.end(), dm->bytes.begin() + op.dst.off);
    std::copy(def.begin(), def.end(), dm->defined.begin() + op.dst.off);
  }
  w.Touch(*dm);
  return a;
}

Analysis World::Ctx::HostFn() {
  StreamM* s = nullptr;
  const int sa = StreamArg(&s);
  if (sa < 0) return Skip("stream");
  Mem* dm = Live(op.dst);
  Mem* sm = Live(op.src);
  if (!dm || !sm || dm->isDevice() || sm->isDevice() || dm->sharedRO) return Skip("mem");
  if (op.dst.off + op.count > dm->size || op.src.off + op.count > sm->size) return Skip("range");
  if (dm == sm && Overlap(op.dst.off, op.dst.off + op.count, op.src.off, op.src.off + op.count))
    return Skip("overlap");
  const bool anyFault = Faulted(cur) || (s && Faulted(s->device));
  switch (op.bad) {
    case Bad::none:
      if (Faulted(cur) && cur != s->device) return Skip("current faulted");
      Expect(w.FaultCodes({s->device}));
      break;
    case Bad::nullFn:
      if (anyFault) return Skip("faulted");
      Expect(h20ErrorInvalidValue);
      break;
    case Bad::streamEvent:
    case Bad::streamDead:
    case Bad::streamGarbage:
      if (anyFault) return Skip("faulted");
      Expect(h20ErrorInvalidResourceHandle);
      break;
    default:
      return Skip("bad");
  }
  const bool valid = op.bad == Bad::none && a.expectSuccess();
  VC vc;
  if (valid) {
    vc = w.TrialVC(*s);
    Read(sm, op.src.off, op.count);
    Write(dm, op.dst.off, op.count);
    if (Hazard(&vc)) return a;
  }
  if (analyzing()) return a;
  Begin();
  std::shared_ptr<HostCopyArgs> args;
  if (exec()) {
    args = std::make_shared<HostCopyArgs>();
    args->dst = Ptr(op.dst);
    args->src = Ptr(op.src);
    args->n = op.count;
    args->spinUs = op.spinUs;
    args->noApiCall = InnerCallsOff() ? 1u : 0u;
    const h20Error_t rc =
        h20LaunchHostFunc(StreamHandle(), op.bad == Bad::nullFn ? nullptr : HostCopyFn, args.get());
    if (rc == h20Success) w.keepAlive_.push_back(args);
    if (!Call(rc)) return a;
  }
  if (!valid) return a;
  w.Commit(*s, vc);
  Record(s);
  if (exec())
    w.records_.push_back({s->agent, s->seq, 1, args, &args->record,
                          "host function #" + std::to_string(index) + " " + Describe(op)});
  CopyBytes(*dm, op.dst.off, *sm, op.src.off, op.count);
  return a;
}

Analysis World::Ctx::DeviceSync() {
  if (!ValidDev(op.dev)) return Skip("device");
  Expect(w.FaultCodes({op.dev}));
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20DeviceSynchronize())) return a;
  w.HostJoinDevice(op.dev);
  return a;
}

Analysis World::Ctx::DeviceReset() {
  if (!ValidDev(op.dev)) return Skip("device");
  // "Waits for the current device's pending work, then destroys every allocation ...": work of
  // other devices on this device's memory must already be complete.
  const VC saved = w.host_;
  w.HostJoinDevice(op.dev);
  int agent = -1;
  for (auto& [id, m] : w.mems_) {
    if (!m.live || !m.isDevice() || m.device != op.dev || m.sharedRO) continue;
    w.Prune(m);
    agent = w.Conflict(m, 0, m.size, true, w.host_);
    if (agent >= 0) break;
  }
  w.host_ = saved;
  if (agent >= 0) {
    a.conflictAgent = agent;
    a.hostConflict = true;
    return a;
  }
  for (const auto& [id, m] : w.mems_)
    if (m.sharedRO && m.isDevice() && m.device == op.dev) return Skip("shared");
  Expect(h20Success);
  if (analyzing()) return a;
  Begin();
  if (exec() && !Call(h20DeviceReset())) return a;
  w.HostJoinDevice(op.dev);
  w.KillDevice(op.dev);
  return a;
}

Analysis World::Ctx::PeerAccess() {
  const bool enable = op.k == OpKind::PeerEnable;
  if (!ValidDev(op.dev)) return Skip("device");
  if (Faulted(op.dev)) return Skip("faulted");
  const DevM& dmv = w.devs_[static_cast<std::size_t>(op.dev)];
  switch (op.bad) {
    case Bad::none: {
      if (!ValidDev(op.dev2) || op.dev2 == op.dev) return Skip("peer");
      if (Faulted(op.dev2)) return Skip("faulted");
      const std::int8_t st = dmv.peer[static_cast<std::size_t>(op.dev2)];
      if (enable) {
        if (!dmv.canAccess[static_cast<std::size_t>(op.dev2)])
          Expect(h20ErrorPeerAccessUnsupported);  // "(no link)"
        else if (st == 0)
          Expect(h20Success);
        else if (st == 1)
          Expect(h20ErrorPeerAccessAlreadyEnabled);
        else
          Expect({h20Success, h20ErrorPeerAccessAlreadyEnabled});
      } else {
        if (st == 0)
          Expect(h20ErrorPeerAccessNotEnabled);  // "if access was not enabled"
        else if (st == 1)
          Expect(h20Success);
        else
          Expect({h20Success, h20ErrorPeerAccessNotEnabled});
      }
      break;
    }
    case Bad::flags:
      if (!enable || !ValidDev(op.dev2) || op.dev2 == op.dev) return Skip("args");
      Expect(h20ErrorInvalidValue);  // "flags must be 0"
      break;
    case Bad::self:
      if (!enable) return Skip("args");
      Expect(h20ErrorInvalidDevice);  // "h20ErrorInvalidDevice (bad or equal ids)"
      break;
    case Bad::device:
      Expect(h20ErrorInvalidDevice);
      break;
    default:
      return Skip("bad");
  }
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    const int peer = op.bad == Bad::device ? op.value : op.bad == Bad::self ? op.dev : op.dev2;
    if (!Call(enable ? h20DeviceEnablePeerAccess(peer, op.bad == Bad::flags ? 1u : 0u)
                     : h20DeviceDisablePeerAccess(peer)))
      return a;
  }
  if (op.bad == Bad::none && (a.codes.size() > 1 || a.codes[0] == h20Success)) {
    w.devs_[static_cast<std::size_t>(op.dev)].peer[static_cast<std::size_t>(op.dev2)] =
        enable ? 1 : 0;
  }
  return a;
}

Analysis World::Ctx::InjectFault() {
  if (!ValidDev(op.dev) || op.bad != Bad::none) return Skip("args");
  StreamM* s = nullptr;
  if (StreamArg(&s) != 0) return Skip("stream");
  if (s->device != op.dev || Faulted(op.dev)) return Skip("device");
  if (!w.BusyAgentsFor(op.dev).empty()) {
    a.conflictAgent = w.BusyAgentsFor(op.dev).front();
    a.hostConflict = true;
    return a;
  }
  if (op.grid == 0) return Skip("grid");
  Expect(h20Success);
  // "reported, with the code the kernel gave (h20ErrorLaunchFailure unless it said
  // h20ErrorIllegalAddress), by the next synchronisation"
  const h20Error_t fault =
      op.value == h20ErrorIllegalAddress ? h20ErrorIllegalAddress : h20ErrorLaunchFailure;
  VC vc = w.TrialVC(*s);
  if (analyzing()) return a;
  Begin();
  if (exec()) {
    FaultKernelArgs fa{op.salt % op.grid, op.value};
    if (!Call(h20LaunchKernel(FaultKernel, h20Dim3{op.grid, 1, 1}, h20Dim3{1, 1, 1}, &fa, sizeof fa,
                              0, StreamHandle())))
      return a;
    a.codes = {fault};
    if (!Call(h20StreamSynchronize(StreamHandle()))) return a;
    a.codes = {h20Success};
  }
  w.Commit(*s, vc);
  Join(w.host_, s->vc);
  w.devs_[static_cast<std::size_t>(op.dev)].fault = fault;
  return a;
}

Analysis World::Ctx::Query() {
  switch (op.kind) {
    case 0: {  // h20GetDevice
      Expect(h20Success);
      if (analyzing()) return a;
      Begin();
      if (exec()) {
        int d = -1;
        if (!Call(h20GetDevice(&d))) return a;
        if (d != w.current_)
          w.Fail(index, "GetDevice",
                 "h20GetDevice gave " + std::to_string(d) + ", expected " +
                     std::to_string(w.current_));
      }
      return a;
    }
    case 1: {  // stream properties
      StreamM* s = nullptr;
      const int sa = StreamArg(&s);
      if (sa < 0) return Skip("stream");
      if (Faulted(cur) || (s && Faulted(s->device))) return Skip("faulted");
      Expect(sa == 1 ? h20ErrorInvalidResourceHandle : h20Success);
      if (analyzing()) return a;
      Begin();
      if (exec()) {
        unsigned flags = 99;
        if (!Call(h20StreamGetFlags(StreamHandle(), &flags))) return a;
        if (sa == 1) return a;
        int prio = 99, dev = -1;
        if (!Call(h20StreamGetPriority(StreamHandle(), &prio))) return a;
        if (!Call(h20StreamGetDevice(StreamHandle(), &dev))) return a;
        const unsigned wantFlags = s->kind == StreamKind::user ? s->flags : 0u;
        if (flags != wantFlags || prio != s->priority || dev != s->device)
          w.Fail(index, "stream props",
                 Describe(op) + " gave flags " + std::to_string(flags) + " priority " +
                     std::to_string(prio) + " device " + std::to_string(dev) + ", expected " +
                     std::to_string(wantFlags) + " " + std::to_string(s->priority) + " " +
                     std::to_string(s->device));
      }
      return a;
    }
    case 2:
    case 3: {  // pointer attributes, address range
      Mem* m = M(op.dst.obj);
      if (!m || op.dst.off >= std::max<std::size_t>(m->size, 1)) return Skip("mem");
      if (!m->live && (!m->isDevice() || !FreedRefOk(op.dst))) return Skip("dead");
      if (m->isDevice() && Faulted(m->device)) return Skip("faulted");
      if (!m->live)
        Expect(h20ErrorInvalidValue);  // "A pointer into a device's memory range that is not in a
                                       // live allocation (freed): h20ErrorInvalidValue"
      else if (op.kind == 3 && m->isPageable())
        Expect(h20ErrorInvalidValue);  // "Pageable or freed memory: h20ErrorInvalidValue"
      else
        Expect(h20Success);
      if (analyzing()) return a;
      Begin();
      if (!exec()) return a;
      const void* p = Ptr(op.dst);
      if (op.kind == 2) {
        h20PointerAttributes at{};
        if (!Call(h20PointerGetAttributes(&at, p)) || !m->live) return a;
        const h20MemoryType want = m->isDevice()   ? h20MemoryTypeDevice
                                   : m->isPinned() ? h20MemoryTypeHost
                                                   : h20MemoryTypeUnregistered;
        const int wantDev = m->isPageable() ? -2 : m->device;
        if (at.type != want || at.device != wantDev ||
            (want != h20MemoryTypeUnregistered && at.devicePointer != p) ||
            (want == h20MemoryTypeHost && at.hostPointer != p))
          w.Fail(index, "attributes",
                 Describe(op) + " gave type " + std::to_string(at.type) + " device " +
                     std::to_string(at.device) + ", expected type " + std::to_string(want) +
                     " device " + std::to_string(wantDev));
      } else {
        void* base = nullptr;
        std::size_t size = 0;
        if (!Call(h20MemGetAddressRange(&base, &size, p)) || !m->live || m->isPageable()) return a;
        if (base != m->ptr || size != m->size)
          w.Fail(index, "address range",
                 Describe(op) + " gave " + Hex(base) + " + " + std::to_string(size) +
                     ", expected " + Hex(m->ptr) + " + " + std::to_string(m->size));
      }
      return a;
    }
    default: {
      Expect(h20Success);
      if (analyzing()) return a;
      if (exec()) {
        int n = 0;
        if (!Call(h20GetDeviceCount(&n))) return a;
        if (n < w.config_.devices)
          w.Fail(index, "device count", "h20GetDeviceCount gave " + std::to_string(n));
      }
      return a;
    }
  }
}

}  // namespace h20fuzz
