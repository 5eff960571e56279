// fuzz_gen.cpp - generation of fuzz sequences from a seed (see fuzzer.hpp).
//
// The generator keeps a dry-mode World and proposes ops at random (weights below), building each
// from the objects that exist at that point. A proposal becomes invalid on purpose with a small
// probability: exactly one argument is broken (Bad), so that exactly one documented error
// applies. A valid proposal that would race with work in flight is ordered first, either through
// an event (record on the stream with the conflicting work, wait on the op's stream) or by a host
// synchronisation; proposals the model cannot decide (see the Skip reasons in fuzz_world.cpp)
// are dropped. The sequence ends with a synchronisation of every device.
#include "fuzzer.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>

namespace h20fuzz {

namespace {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed * 0x2545F4914F6CDD1Dull + 0x1234567ull) {}
  std::uint64_t Next() {  // splitmix64: the same stream on every platform
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t Below(std::uint64_t n) { return n ? Next() % n : 0; }
  bool Chance(double p) { return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p; }
  int Range(int lo, int hi) {
    return lo + static_cast<int>(Below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  template <class T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  std::uint64_t s_;
};

struct Weighted {
  OpKind kind;
  double weight;
};

class Gen {
 public:
  Gen(const Config& c, std::uint64_t seed, const Options& o, const ThreadSetup& setup)
      : w_(c, setup.thread, false), r_(seed), opt_(o), setup_(setup) {
    if (setup.shared) w_.AdoptShared(*setup.shared);
    for (auto [d, p] : setup.peers)
      w_.AssumePeer(d, p, true);
  }

  std::vector<Op> Run() {
    std::size_t attempts = 0;
    while (out_.size() < opt_.ops && attempts < opt_.ops * 60) {
      ++attempts;
      Op op;
      if (!Propose(&op)) continue;
      if (r_.Chance(kBadRate) && !Mutate(&op)) continue;
      TryEmit(op, op.k == OpKind::InjectFault || op.k == OpKind::DeviceReset ? 12 : 4);
    }
    // The end: every device synchronised, so that everything can be compared with the model.
    for (int d = 0; d < cfg().devices; ++d) {
      Op s;
      s.k = OpKind::DeviceSync;
      s.dev = d;
      TryEmit(s, 1);
    }
    return out_;
  }

 private:
  static constexpr double kBadRate = 0.14;

  const Config& cfg() const { return w_.config(); }
  bool threaded() const { return setup_.threaded; }
  int Dev() { return static_cast<int>(r_.Below(static_cast<std::uint64_t>(cfg().devices))); }
  bool Faulted(int d) const {
    return d >= 0 && w_.devs()[static_cast<std::size_t>(d)].fault != h20Success;
  }
  bool AnyFaulted() const {
    for (int d = 0; d < cfg().devices; ++d)
      if (Faulted(d)) return true;
    return false;
  }
  int NewId() { return nextId_++; }

  void Emit(const Op& op) {
    w_.Step(op, Mode::dry);
    out_.push_back(op);
  }

  bool TryEmit(const Op& op, int rounds) {
    for (int round = 0; round <= rounds; ++round) {
      const Analysis a = w_.Step(op, Mode::analyze);
      if (!a.applicable) return false;
      if (a.conflictAgent < 0) {
        Emit(op);
        return true;
      }
      if (round == rounds || !FixUp(op, a)) return false;
    }
    return false;
  }

  // ---- ordering fix-ups ----

  StreamRef RefOf(const StreamM& t, int* dev) {
    StreamRef r;
    *dev = t.device;
    switch (t.kind) {
      case StreamKind::user:
        r.kind = StreamRef::user;
        r.id = t.key;
        *dev = -1;
        break;
      case StreamKind::legacy:
        r.kind = r_.Chance(0.5) ? StreamRef::null : StreamRef::legacy;
        break;
      case StreamKind::perThread:
        r.kind = StreamRef::perThread;
        break;
    }
    return r;
  }

  bool HostSync(const StreamM& t) {
    Op s;
    if (t.live) {
      s.k = OpKind::StreamSync;
      s.s = RefOf(t, &s.dev);
    } else {
      s.k = OpKind::DeviceSync;
      s.dev = t.device;
    }
    const Analysis a = w_.Step(s, Mode::analyze);
    if (!a.ok()) return false;
    Emit(s);
    return true;
  }

  // The stream `op` runs on, as a reference to use in a fix-up.
  bool RunStream(const Op& op, StreamRef* ref, int* dev) {
    switch (op.k) {
      case OpKind::MemcpyAsync:
      case OpKind::MemcpyPeerAsync:
      case OpKind::MemsetAsync:
      case OpKind::Transform:
      case OpKind::Checksum:
      case OpKind::HostFn:
      case OpKind::FreeAsync:
        *ref = op.s;
        *dev = op.dev;
        return op.s.kind != StreamRef::none;
      case OpKind::Memcpy:
      case OpKind::Memset:
        ref->kind = StreamRef::null;
        *dev = op.dev >= 0 ? op.dev : w_.current();
        return true;
      case OpKind::MemcpyPeer:
        ref->kind = StreamRef::null;
        *dev = op.dev2;
        return true;
      default:
        return false;
    }
  }

  bool EventOrder(const StreamM& t, const StreamRef& run, int runDev) {
    if (!t.live || Faulted(t.device) || (runDev >= 0 && Faulted(runDev))) return false;
    int ev = -1;
    std::vector<int> evs;
    for (const auto& [id, e] : w_.events())
      if (e.live && e.device == t.device) evs.push_back(id);
    if (!evs.empty() && r_.Chance(0.8)) {
      ev = r_.Pick(evs);
    } else {
      Op c;
      c.k = OpKind::EventCreate;
      c.dev = t.device;
      c.id = NewId();
      c.kind = r_.Chance(0.5) ? 1 : 0;
      c.flags = c.kind ? static_cast<unsigned>(r_.Below(4)) : 0u;
      if (!w_.Step(c, Mode::analyze).ok()) return false;
      Emit(c);
      ev = c.id;
    }
    Op rec;
    rec.k = OpKind::EventRecord;
    rec.ev = ev;
    rec.s = RefOf(t, &rec.dev);
    if (!w_.Step(rec, Mode::analyze).ok()) return false;
    Emit(rec);
    Op wait;
    wait.k = OpKind::StreamWaitEvent;
    wait.ev = ev;
    wait.s = run;
    wait.dev = run.kind == StreamRef::user ? -1 : runDev;
    if (!w_.Step(wait, Mode::analyze).ok()) return false;
    Emit(wait);
    return true;
  }

  bool FixUp(const Op& op, const Analysis& a) {
    const StreamM* t = w_.StreamOfAgent(a.conflictAgent);
    if (!t) return false;
    if (!a.hostConflict && r_.Chance(0.5)) {
      StreamRef run;
      int runDev = -1;
      if (RunStream(op, &run, &runDev) && EventOrder(*t, run, runDev)) return true;
    }
    return HostSync(*t);
  }

  // ---- object choice ----

  std::vector<int> Mems(const std::function<bool(const Mem&)>& pred) const {
    std::vector<int> ids;
    for (const auto& [id, m] : w_.mems())
      if (pred(m)) ids.push_back(id);
    return ids;
  }
  int PickMem(const std::function<bool(const Mem&)>& pred) {
    const std::vector<int> ids = Mems(pred);
    return ids.empty() ? -1 : r_.Pick(ids);
  }
  std::size_t CountMems(const std::function<bool(const Mem&)>& pred) const {
    return Mems(pred).size();
  }
  const Mem& MemOf(int id) const { return w_.mems().at(id); }

  static bool WritableDevice(const Mem& m) { return m.live && m.isDevice() && !m.sharedRO; }
  static bool ReadableDevice(const Mem& m) { return m.live && m.isDevice(); }
  static bool WritableHost(const Mem& m) { return m.live && !m.isDevice() && !m.sharedRO; }
  static bool ReadableHost(const Mem& m) { return m.live && !m.isDevice(); }

  std::size_t PickSize() {
    const std::uint64_t r = r_.Below(100);
    if (r < 1) return 0;
    if (r < 60) return 1 + r_.Below(4096);
    if (r < 86) return 4096 + r_.Below(60 * 1024);
    if (r < 98) return 64 * 1024 + r_.Below(448 * 1024);
    // Up to 6.5 MiB: past the emulator's 4 MiB threshold for copies split over its workers.
    return (1u << 20) + r_.Below(5632 * 1024);
  }

  void PickRange(std::size_t size, std::size_t maxLen, std::size_t* off, std::size_t* len) {
    const std::size_t cap = std::min(size, maxLen);
    if (cap == 0) {
      *off = 0;
      *len = 0;
      return;
    }
    const std::uint64_t r = r_.Below(100);
    if (r < 2)
      *len = 0;
    else if (r < 30)
      *len = cap;
    else if (r < 75)
      *len = 1 + r_.Below(std::min<std::size_t>(cap, 512));
    else
      *len = 1 + r_.Below(cap);
    *off = r_.Below(size - *len + 1);
    if (r_.Chance(0.3)) *off &= ~std::size_t{63};
  }

  // A stream for an op; `device` >= 0 restricts it to that device. Sets op->s and op->dev.
  bool PickStream(Op* op, int device, bool allowDefault = true) {
    std::vector<int> user;
    for (const auto& [k, s] : w_.streams())
      if (s.live && s.kind == StreamKind::user && (device < 0 || s.device == device))
        user.push_back(k);
    if (!allowDefault && user.empty()) return false;
    if (allowDefault && (user.empty() || r_.Chance(0.35))) {
      const std::uint64_t r = r_.Below(3);
      op->s.kind = r == 0 ? StreamRef::null : r == 1 ? StreamRef::legacy : StreamRef::perThread;
      op->dev = device >= 0 ? device : Dev();
      return true;
    }
    op->s.kind = StreamRef::user;
    op->s.id = r_.Pick(user);
    op->dev = r_.Chance(0.25) ? Dev() : -1;
    return true;
  }
  int StreamDevice(const Op& op) const {
    if (op.s.kind == StreamRef::user) return w_.streams().at(op.s.id).device;
    return op.dev >= 0 ? op.dev : w_.current();
  }

  // ---- proposals ----

  std::vector<Weighted> Weights() const {
    std::vector<Weighted> w = {{OpKind::SetDevice, 2},
                               {OpKind::Malloc, 5},
                               {OpKind::MallocAsync, 3},
                               {OpKind::Free, 2.5},
                               {OpKind::FreeAsync, 2},
                               {OpKind::HostAlloc, 2},
                               {OpKind::FreeHost, 1},
                               {OpKind::NewPageable, 2},
                               {OpKind::HostRegister, 1.5},
                               {OpKind::HostUnregister, 1},
                               {OpKind::HostWrite, 3},
                               {OpKind::StreamCreate, 2.5},
                               {OpKind::StreamDestroy, 1.5},
                               {OpKind::StreamSync, 4},
                               {OpKind::StreamQuery, 1.5},
                               {OpKind::StreamWaitEvent, 2},
                               {OpKind::EventCreate, 2},
                               {OpKind::EventRecord, 3},
                               {OpKind::EventSync, 2},
                               {OpKind::EventQuery, 1},
                               {OpKind::EventElapsed, 1},
                               {OpKind::EventDestroy, 1},
                               {OpKind::Memcpy, 6},
                               {OpKind::MemcpyAsync, 10},
                               {OpKind::MemcpyPeer, 3},
                               {OpKind::MemcpyPeerAsync, 3},
                               {OpKind::Memset, 2},
                               {OpKind::MemsetAsync, 3},
                               {OpKind::Transform, 5},
                               {OpKind::Checksum, 3},
                               {OpKind::HostFn, 3},
                               {OpKind::DeviceSync, 2.5},
                               {OpKind::DeviceReset, 0.6},
                               {OpKind::PeerEnable, 1.5},
                               {OpKind::PeerDisable, 1},
                               {OpKind::InjectFault, 0.5},
                               {OpKind::Query, 2}};
    for (auto& x : w) {
      if (std::find(opt_.disabled.begin(), opt_.disabled.end(), x.kind) != opt_.disabled.end())
        x.weight = 0;
      if (threaded() && (x.kind == OpKind::DeviceReset || x.kind == OpKind::InjectFault ||
                         x.kind == OpKind::PeerEnable || x.kind == OpKind::PeerDisable))
        x.weight = 0;
      if (x.kind == OpKind::DeviceReset && AnyFaulted() && x.weight > 0) x.weight = 8;
    }
    return w;
  }

  OpKind PickKind() {
    const std::vector<Weighted> w = Weights();
    double total = 0;
    for (const auto& x : w)
      total += x.weight;
    double r = static_cast<double>(r_.Below(1u << 30)) / static_cast<double>(1u << 30) * total;
    for (const auto& x : w) {
      if (r < x.weight) return x.kind;
      r -= x.weight;
    }
    return OpKind::StreamSync;
  }

  bool Propose(Op* out) {
    Op op;
    op.k = PickKind();
    const std::size_t devMems = CountMems(WritableDevice);
    const std::size_t hostMems = CountMems(WritableHost);
    switch (op.k) {
      case OpKind::SetDevice:
        op.dev = Dev();
        break;
      case OpKind::Malloc:
        if (devMems >= 10) return false;
        op.dev = Dev();
        op.size = PickSize();
        op.id = NewId();
        break;
      case OpKind::MallocAsync:
        if (devMems >= 10 || !PickStream(&op, -1, !threaded())) return false;
        op.size = PickSize();
        op.id = NewId();
        break;
      case OpKind::Free:
        if ((op.dst.obj = PickMem(WritableDevice)) < 0) return false;
        break;
      case OpKind::FreeAsync:
        if ((op.dst.obj = PickMem([](const Mem& m) {
               return m.live && m.kind == MemKind::pool && !m.sharedRO;
             })) < 0)
          return false;
        if (!PickStream(&op, r_.Chance(0.7) ? MemOf(op.dst.obj).device : -1, !threaded()))
          return false;
        break;
      case OpKind::HostAlloc:
        if (hostMems >= 8) return false;
        op.dev = Dev();
        op.kind = r_.Chance(0.5) ? 1 : 0;
        op.flags = op.kind ? static_cast<unsigned>(r_.Below(8)) : 0u;
        op.size = std::min<std::size_t>(PickSize(), 256 * 1024);
        op.id = NewId();
        op.salt = static_cast<std::uint32_t>(r_.Next());
        break;
      case OpKind::FreeHost:
        if ((op.dst.obj = PickMem([](const Mem& m) {
               return m.live && m.kind == MemKind::pinned && !m.sharedRO;
             })) < 0)
          return false;
        break;
      case OpKind::NewPageable:
        if (hostMems >= 8) return false;
        op.size = std::max<std::size_t>(1, std::min<std::size_t>(PickSize(), 512 * 1024));
        op.id = NewId();
        op.salt = static_cast<std::uint32_t>(r_.Next());
        break;
      case OpKind::HostRegister:
        if ((op.dst.obj = PickMem([](const Mem& m) {
               return m.live && m.kind == MemKind::pageable && !m.registered;
             })) < 0)
          return false;
        op.dev = Dev();
        op.count = MemOf(op.dst.obj).size;
        op.flags = static_cast<unsigned>(r_.Below(4));  // Portable | Mapped
        break;
      case OpKind::HostUnregister:
        if ((op.dst.obj = PickMem([](const Mem& m) { return m.live && m.registered; })) < 0)
          return false;
        break;
      case OpKind::HostWrite: {
        if ((op.dst.obj = PickMem(WritableHost)) < 0) return false;
        PickRange(MemOf(op.dst.obj).size, 1 << 20, &op.dst.off, &op.count);
        op.salt = static_cast<std::uint32_t>(r_.Next());
        break;
      }
      case OpKind::StreamCreate: {
        std::size_t live = 0;
        for (const auto& [k, s] : w_.streams())
          live += s.live && s.kind == StreamKind::user;
        if (live >= 7) return false;
        op.dev = Dev();
        op.kind = static_cast<int>(r_.Below(3));
        op.flags = op.kind >= 1 && r_.Chance(0.5) ? h20StreamNonBlocking : 0u;
        op.value = r_.Range(-6, 6);
        op.id = NewId();
        break;
      }
      case OpKind::StreamDestroy:
        if (!PickStream(&op, -1, false)) return false;
        op.dev = -1;
        break;
      case OpKind::StreamSync:
      case OpKind::StreamQuery:
        if (!PickStream(&op, -1)) return false;
        break;
      case OpKind::StreamWaitEvent: {
        std::vector<int> evs;
        for (const auto& [id, e] : w_.events())
          if (e.live) evs.push_back(id);
        if (evs.empty() || !PickStream(&op, -1)) return false;
        op.ev = r_.Pick(evs);
        break;
      }
      case OpKind::EventCreate: {
        std::size_t live = 0;
        for (const auto& [id, e] : w_.events())
          live += e.live;
        if (live >= 7) return false;
        op.dev = Dev();
        op.kind = r_.Chance(0.6) ? 1 : 0;
        op.flags = op.kind ? static_cast<unsigned>(r_.Below(4)) : 0u;
        op.id = NewId();
        break;
      }
      case OpKind::EventRecord: {
        std::vector<int> evs;
        for (const auto& [id, e] : w_.events())
          if (e.live) evs.push_back(id);
        if (evs.empty()) return false;
        op.ev = r_.Pick(evs);
        if (!PickStream(&op, w_.events().at(op.ev).device)) return false;
        break;
      }
      case OpKind::EventSync:
      case OpKind::EventQuery:
      case OpKind::EventDestroy: {
        std::vector<int> evs;
        for (const auto& [id, e] : w_.events())
          if (e.live) evs.push_back(id);
        if (evs.empty()) return false;
        op.ev = r_.Pick(evs);
        break;
      }
      case OpKind::EventElapsed: {
        std::vector<int> evs;
        for (const auto& [id, e] : w_.events())
          if (e.live && e.recorded && !(e.flags & h20EventDisableTiming)) evs.push_back(id);
        if (evs.empty()) return false;
        op.ev = r_.Pick(evs);
        op.ev2 = r_.Pick(evs);
        break;
      }
      case OpKind::Memcpy:
      case OpKind::MemcpyAsync:
        if (!BuildCopy(&op)) return false;
        break;
      case OpKind::MemcpyPeer:
      case OpKind::MemcpyPeerAsync:
        if (!BuildPeer(&op)) return false;
        break;
      case OpKind::Memset:
      case OpKind::MemsetAsync: {
        if ((op.dst.obj = PickMem(WritableDevice)) < 0) return false;
        const Mem& m = MemOf(op.dst.obj);
        PickRange(m.size, 1 << 22, &op.dst.off, &op.count);
        op.value = r_.Chance(0.1) ? r_.Range(-300, 600) : r_.Range(0, 255);
        if (op.k == OpKind::Memset)
          op.dev = r_.Chance(0.7) ? m.device : Dev();
        else if (!PickStream(&op, r_.Chance(0.8) ? m.device : -1))
          return false;
        break;
      }
      case OpKind::Transform:
      case OpKind::Checksum:
        if (!BuildKernel(&op)) return false;
        break;
      case OpKind::HostFn: {
        if ((op.dst.obj = PickMem(WritableHost)) < 0) return false;
        if ((op.src.obj = PickMem(ReadableHost)) < 0) return false;
        const std::size_t n = std::min(MemOf(op.dst.obj).size, MemOf(op.src.obj).size);
        PickRange(n, 64 * 1024, &op.src.off, &op.count);
        op.dst.off = r_.Below(MemOf(op.dst.obj).size - op.count + 1);
        op.src.off = r_.Below(MemOf(op.src.obj).size - op.count + 1);
        op.spinUs = r_.Chance(0.15) ? static_cast<std::uint32_t>(r_.Range(50, 1500)) : 0u;
        if (!PickStream(&op, -1)) return false;
        break;
      }
      case OpKind::DeviceSync:
        op.dev = Dev();
        break;
      case OpKind::DeviceReset: {
        std::vector<int> faulted;
        for (int d = 0; d < cfg().devices; ++d)
          if (Faulted(d)) faulted.push_back(d);
        op.dev = !faulted.empty() && r_.Chance(0.8) ? r_.Pick(faulted) : Dev();
        break;
      }
      case OpKind::PeerEnable:
      case OpKind::PeerDisable:
        if (cfg().devices < 2) return false;
        op.dev = Dev();
        op.dev2 = (op.dev + 1 +
                   static_cast<int>(r_.Below(static_cast<std::uint64_t>(cfg().devices - 1)))) %
                  cfg().devices;
        break;
      case OpKind::InjectFault: {
        op.dev = Dev();
        if (Faulted(op.dev) || !PickStream(&op, op.dev)) return false;
        op.dev = StreamDevice(op);
        // "any other value, h20Success included, is reported as h20ErrorLaunchFailure"
        const int codes[] = {h20ErrorLaunchFailure,
                             h20ErrorLaunchFailure,
                             h20ErrorLaunchFailure,
                             h20ErrorIllegalAddress,
                             h20ErrorIllegalAddress,
                             h20ErrorIllegalAddress,
                             h20Success,
                             h20ErrorInvalidValue,
                             h20ErrorNotReady,
                             h20ErrorUnknown};
        op.value = codes[r_.Below(10)];
        op.grid = static_cast<std::uint32_t>(r_.Range(1, 4));
        op.salt = static_cast<std::uint32_t>(r_.Below(16));
        break;
      }
      case OpKind::Query:
        op.kind = static_cast<int>(r_.Below(5));
        if (op.kind == 1 && !PickStream(&op, -1)) return false;
        if (op.kind == 2 || op.kind == 3) {
          if ((op.dst.obj = PickMem([](const Mem& m) { return m.live || m.isDevice(); })) < 0)
            return false;
          const Mem& m = MemOf(op.dst.obj);
          op.dst.off = m.size > 1 && r_.Chance(0.4) ? r_.Below(m.size) : 0;
          if (threaded() && !m.live) return false;
        }
        break;
      case OpKind::Count:
        return false;
    }
    *out = op;
    return true;
  }

  // A host, device or cross-device copy for h20Memcpy / h20MemcpyAsync.
  bool BuildCopy(Op* op) {
    const std::uint64_t combo = r_.Below(5);
    const bool dDev = combo == 0 || combo == 2 || combo == 4;
    const bool sDev = combo == 1 || combo == 2 || combo == 4;
    op->dst.obj = PickMem(dDev ? WritableDevice : WritableHost);
    op->src.obj = PickMem(sDev ? ReadableDevice : ReadableHost);
    if (op->dst.obj < 0 || op->src.obj < 0) return false;
    const Mem& d = MemOf(op->dst.obj);
    const Mem& s = MemOf(op->src.obj);
    if (combo == 4 && d.device == s.device) return false;
    PickRange(std::min(d.size, s.size), 1 << 22, &op->dst.off, &op->count);
    op->dst.off = r_.Below(d.size - op->count + 1);
    op->src.off = r_.Below(s.size - op->count + 1);
    if (op->dst.obj == op->src.obj && op->dst.off < op->src.off + op->count &&
        op->src.off < op->dst.off + op->count)
      return false;
    op->kind = r_.Chance(0.2) ? h20MemcpyDefault
               : dDev         ? (sDev ? h20MemcpyDeviceToDevice : h20MemcpyHostToDevice)
               : sDev         ? h20MemcpyDeviceToHost
                              : h20MemcpyHostToHost;
    const int near = dDev ? d.device : sDev ? s.device : -1;
    if (op->k == OpKind::MemcpyAsync)
      return PickStream(op, near >= 0 && r_.Chance(0.6) ? near : -1);
    op->dev = near >= 0 && r_.Chance(0.6) ? near : Dev();
    return true;
  }

  bool BuildPeer(Op* op) {
    op->dst.obj = PickMem(WritableDevice);
    op->src.obj = PickMem(ReadableDevice);
    if (op->dst.obj < 0 || op->src.obj < 0) return false;
    const Mem& d = MemOf(op->dst.obj);
    const Mem& s = MemOf(op->src.obj);
    PickRange(std::min(d.size, s.size), 1 << 22, &op->dst.off, &op->count);
    op->dst.off = r_.Below(d.size - op->count + 1);
    op->src.off = r_.Below(s.size - op->count + 1);
    if (op->dst.obj == op->src.obj && op->dst.off < op->src.off + op->count &&
        op->src.off < op->dst.off + op->count)
      return false;
    op->dev2 = d.device;
    op->flags = static_cast<unsigned>(s.device);
    if (op->k == OpKind::MemcpyPeerAsync) {
      const std::uint64_t r = r_.Below(10);
      return PickStream(op, r < 4 ? d.device : r < 8 ? s.device : -1);
    }
    op->dev = r_.Chance(0.5) ? d.device : Dev();
    return true;
  }

  bool BuildKernel(Op* op) {
    const bool checksum = op->k == OpKind::Checksum;
    if (!PickStream(op, -1)) return false;
    const int sd = StreamDevice(*op);
    const bool local = r_.Chance(0.75);
    op->dst.obj =
        PickMem([&](const Mem& m) { return WritableDevice(m) && (!local || m.device == sd); });
    if (op->dst.obj < 0) return false;
    const std::uint64_t r = r_.Below(10);
    if (!checksum && r < 2) {
      op->src = op->dst;  // in place
    } else if (r < 3) {
      op->src.obj = PickMem([](const Mem& m) { return m.live && m.isPinned(); });
    } else {
      op->src.obj =
          PickMem([&](const Mem& m) { return ReadableDevice(m) && (!local || m.device == sd); });
    }
    if (op->src.obj < 0) return false;
    const Mem& d = MemOf(op->dst.obj);
    const Mem& s = MemOf(op->src.obj);
    op->grid = static_cast<std::uint32_t>(r_.Range(1, 8));
    op->salt = static_cast<std::uint32_t>(r_.Next());
    op->spinUs = r_.Chance(0.1) ? static_cast<std::uint32_t>(r_.Range(50, 2000)) : 0u;
    if (checksum) {
      if (d.size < 8u * op->grid) return false;
      op->dst.off = r_.Below(d.size - 8u * op->grid + 1);
      PickRange(s.size, 1 << 22, &op->src.off, &op->count);
    } else {
      op->flags = r_.Chance(0.2) ? 1u : 0u;
      if (op->src.obj == op->dst.obj && op->dst.off == op->src.off) {
        PickRange(d.size, 1 << 22, &op->dst.off, &op->count);
        op->src.off = op->dst.off;
      } else {
        PickRange(std::min(d.size, s.size), 1 << 22, &op->dst.off, &op->count);
        op->dst.off = r_.Below(d.size - op->count + 1);
        op->src.off = r_.Below(s.size - op->count + 1);
      }
      if (op->flags && (op->count + op->grid - 1) / op->grid > cfg().sharedMemOptin) op->flags = 0;
    }
    return true;
  }

  // ---- invalid arguments: exactly one thing wrong ----

  int DeadDevice(MemKind only = MemKind::pageable) {
    return PickMem([&](const Mem& m) {
      return !m.live && m.isDevice() && (only == MemKind::pageable || m.kind == only);
    });
  }
  int DeadStream() {
    std::vector<int> ids;
    for (const auto& [k, s] : w_.streams())
      if (!s.live && s.kind == StreamKind::user) ids.push_back(k);
    return ids.empty() ? -1 : r_.Pick(ids);
  }
  int AnyEvent(bool dead) {
    std::vector<int> ids;
    for (const auto& [id, e] : w_.events())
      if (!dead || !e.live) ids.push_back(id);
    return ids.empty() ? -1 : r_.Pick(ids);
  }
  int AnyUserStream() {
    std::vector<int> ids;
    for (const auto& [k, s] : w_.streams())
      if (s.kind == StreamKind::user) ids.push_back(k);
    return ids.empty() ? -1 : r_.Pick(ids);
  }
  int BadOrdinal() {
    const int v[] = {-1, cfg().visibleDevices, cfg().visibleDevices + 7, 1 << 30};
    return v[r_.Below(4)];
  }

  bool BadStreamArg(Op* op) {
    const std::uint64_t r = r_.Below(3);
    if (r == 0) {
      if ((op->ev = AnyEvent(false)) < 0) return false;
      op->bad = Bad::streamEvent;
    } else if (r == 1) {
      const int s = DeadStream();
      if (s < 0) return false;
      op->s = StreamRef{StreamRef::user, s};
      op->bad = Bad::streamDead;
    } else {
      op->bad = Bad::streamGarbage;
    }
    return true;
  }
  bool BadEventArg(Op* op) {
    const std::uint64_t r = r_.Below(3);
    if (r == 0) {
      if (op->s.kind != StreamRef::user) {
        const int s = AnyUserStream();
        if (s < 0) return false;
        if (op->k == OpKind::EventRecord || op->k == OpKind::StreamWaitEvent) return false;
        op->s = StreamRef{StreamRef::user, s};
      }
      op->bad = Bad::eventStream;
    } else if (r == 1) {
      if ((op->ev = AnyEvent(true)) < 0) return false;
      op->bad = Bad::eventDead;
    } else {
      op->bad = Bad::eventGarbage;
    }
    return true;
  }

  bool FreedRef(MemRef* ref, std::size_t* count, MemKind only = MemKind::pageable) {
    if (threaded()) return false;  // another thread may own the address by now
    const int id = DeadDevice(only);
    if (id < 0) return false;
    const Mem& m = MemOf(id);
    if (m.size == 0) return false;
    ref->obj = id;
    ref->off = r_.Below(m.size);
    *count = std::min<std::size_t>(std::max<std::size_t>(*count, 1), m.size - ref->off);
    return true;
  }

  std::size_t OverCount(const Op& op) {
    std::size_t left = 0;
    for (const MemRef* r : {&op.dst, &op.src}) {
      if (r->obj < 0) continue;
      const Mem& m = MemOf(r->obj);
      if (!m.isPageable()) left = std::max(left, m.size - std::min(m.size, r->off));
    }
    return left + 1 + r_.Below(r_.Chance(0.5) ? 16 : 4096);
  }

  bool Mutate(Op* op) {
    const std::uint64_t r = r_.Below(16);
    switch (op->k) {
      case OpKind::SetDevice:
        op->bad = Bad::device;
        op->value = BadOrdinal();
        return true;
      case OpKind::Malloc:
        op->bad = r < 5 ? Bad::nullOut : r < 10 ? Bad::sizeMax : Bad::sizeHuge;
        return true;
      case OpKind::MallocAsync:
        if (r < 6) return BadStreamArg(op);
        op->bad = r < 11 ? Bad::nullOut : Bad::sizeMax;
        return true;
      case OpKind::Free: {
        const Mem& m = MemOf(op->dst.obj);
        if (r < 5 && m.size > 1) {
          op->bad = Bad::interior;
          op->dst.off = 1 + r_.Below(m.size - 1);
          return true;
        }
        if (r < 10) {
          std::size_t c = 1;
          op->bad = Bad::freedDst;
          return FreedRef(&op->dst, &c);
        }
        if (r < 12) {
          op->kind = 1;  // h20Free(NULL): valid
          return true;
        }
        op->bad = Bad::hostPtr;
        return (op->dst.obj = PickMem(ReadableHost)) >= 0 && !MemOf(op->dst.obj).sharedRO;
      }
      case OpKind::FreeAsync: {
        const Mem& m = MemOf(op->dst.obj);
        if (r < 5) return BadStreamArg(op);
        if (r < 9 && m.size > 1) {
          op->bad = Bad::interior;
          op->dst.off = 1 + r_.Below(m.size - 1);
          return true;
        }
        if (r < 12) {
          op->kind = 1;
          return true;
        }
        std::size_t c = 1;
        op->bad = Bad::freedDst;
        return FreedRef(&op->dst, &c, MemKind::pool);
      }
      case OpKind::HostAlloc:
        op->bad = r < 5 ? Bad::nullOut : r < 10 ? Bad::sizeMax : Bad::flags;
        if (op->bad == Bad::flags) op->kind = 1, op->flags = 0x80;
        return true;
      case OpKind::FreeHost: {
        const Mem& m = MemOf(op->dst.obj);
        if (r < 5 && m.size > 1) {
          op->bad = Bad::interior;
          op->dst.off = 1 + r_.Below(m.size - 1);
          return true;
        }
        if (r < 8) {
          op->kind = 1;
          return true;
        }
        op->bad = Bad::hostPtr;
        op->dst.obj = PickMem(
            [](const Mem& x) { return x.live && x.kind != MemKind::pinned && !x.sharedRO; });
        return op->dst.obj >= 0;
      }
      case OpKind::HostRegister: {
        op->dev = Dev();
        if (r < 5) {
          op->bad = Bad::alreadyRegistered;
          op->dst.obj = PickMem([](const Mem& m) { return m.live && m.isPinned() && !m.sharedRO; });
          if (op->dst.obj < 0) return false;
          const Mem& m = MemOf(op->dst.obj);
          if (m.size == 0) return false;
          PickRange(m.size, m.size, &op->dst.off, &op->count);
          op->count = std::max<std::size_t>(op->count, 1);
          op->dst.off = std::min(op->dst.off, m.size - op->count);
          op->flags = 0;
          return true;
        }
        if (r < 7) {
          op->bad = Bad::hostPtr;
          op->dst.obj = PickMem(WritableDevice);
          op->dst.off = 0;
          op->flags = 0;
          if (op->dst.obj < 0) return false;
          op->count = MemOf(op->dst.obj).size;
          return op->count > 0;
        }
        const Bad bads[] = {Bad::nullDst, Bad::zeroSize, Bad::flags, Bad::sizeMax, Bad::ioMemory};
        op->bad = bads[r_.Below(5)];
        return true;
      }
      case OpKind::HostUnregister:
        if (r < 3) {
          op->kind = 1;  // NULL
          return true;
        }
        op->bad = Bad::notRegistered;
        if (r < 8 && MemOf(op->dst.obj).size > 1) {
          op->dst.off = 1 + r_.Below(MemOf(op->dst.obj).size - 1);
          return true;
        }
        op->dst.obj = PickMem([](const Mem& m) { return m.live && !m.registered && !m.sharedRO; });
        return op->dst.obj >= 0;
      case OpKind::StreamCreate:
        op->bad = r < 8 ? Bad::nullOut : Bad::flags;
        if (op->bad == Bad::flags && op->kind == 0) op->kind = 1;
        return true;
      case OpKind::StreamDestroy:
        if (r < 6) {
          op->bad = Bad::streamDefault;
          const std::uint64_t k = r_.Below(3);
          op->s.kind = k == 0 ? StreamRef::null : k == 1 ? StreamRef::legacy : StreamRef::perThread;
          op->dev = Dev();
          return true;
        }
        return BadStreamArg(op);
      case OpKind::StreamSync:
      case OpKind::StreamQuery:
        return BadStreamArg(op);
      case OpKind::StreamWaitEvent:
        if (r < 5) {
          op->bad = Bad::flags;
          return true;
        }
        return r < 10 ? BadStreamArg(op) : BadEventArg(op);
      case OpKind::EventCreate: {
        const Bad bads[] = {Bad::nullOut, Bad::flags, Bad::interprocess, Bad::interprocessTiming};
        op->bad = bads[r_.Below(4)];
        if (op->bad != Bad::nullOut) op->kind = 1;
        return true;
      }
      case OpKind::EventRecord:
        if (r < 6) {
          op->bad = Bad::otherDevice;
          const int ed = w_.events().at(op->ev).device;
          if (cfg().devices < 2) return false;
          const int other =
              (ed + 1 + static_cast<int>(r_.Below(static_cast<std::uint64_t>(cfg().devices - 1)))) %
              cfg().devices;
          return PickStream(op, other);
        }
        return r < 11 ? BadStreamArg(op) : BadEventArg(op);
      case OpKind::EventSync:
      case OpKind::EventQuery:
      case OpKind::EventDestroy:
        return BadEventArg(op);
      case OpKind::EventElapsed: {
        if (r < 4) {
          op->bad = Bad::nullOut;
          return true;
        }
        if (r < 8) {
          op->bad = Bad::eventDead;
          return (op->ev = AnyEvent(true)) >= 0;
        }
        op->bad = r < 12 ? Bad::notRecorded : Bad::noTiming;
        std::vector<int> ids;
        for (const auto& [id, e] : w_.events()) {
          const bool timing = !(e.flags & h20EventDisableTiming);
          if (e.live &&
              (op->bad == Bad::notRecorded ? !e.recorded && timing : e.recorded && !timing))
            ids.push_back(id);
        }
        if (ids.empty()) return false;
        op->ev = r_.Pick(ids);
        return true;
      }
      case OpKind::Memcpy:
      case OpKind::MemcpyAsync:
        return MutateCopy(op, r);
      case OpKind::MemcpyPeer:
      case OpKind::MemcpyPeerAsync:
        return MutatePeer(op, r);
      case OpKind::Memset:
      case OpKind::MemsetAsync:
        if (op->k == OpKind::MemsetAsync && r < 4) return BadStreamArg(op);
        if (r < 7) {
          op->bad = r < 6 ? Bad::countOver : Bad::countMax;
          op->count = OverCount(*op);
          return true;
        }
        if (r < 10) {
          op->bad = Bad::nullDst;
          op->count = std::max<std::size_t>(op->count, 1);
          return true;
        }
        if (r < 13) {
          op->bad = Bad::freedDst;
          return FreedRef(&op->dst, &op->count);
        }
        op->bad = Bad::hostPtr;
        op->dst.obj = PickMem([](const Mem& m) { return m.live && m.isPageable(); });
        if (op->dst.obj < 0) return false;
        op->dst.off = 0;
        op->count = std::max<std::size_t>(1, std::min(op->count, MemOf(op->dst.obj).size));
        return true;
      case OpKind::Transform:
      case OpKind::Checksum: {
        if (r < 4) return BadStreamArg(op);
        if (r < 7) {
          // Memory of a device the stream's device has no peer access to.
          const int sd = StreamDevice(*op);
          op->bad = Bad::peerNotEnabled;
          const int id = PickMem([&](const Mem& m) {
            return ReadableDevice(m) && m.device != sd &&
                   w_.devs()[static_cast<std::size_t>(sd)]
                           .peer[static_cast<std::size_t>(m.device)] == 0;
          });
          if (id < 0) return false;
          if (op->k == OpKind::Checksum || r_.Chance(0.5) || MemOf(id).sharedRO) {
            op->src.obj = id;
            op->src.off = 0;
            op->count = std::min(op->count, MemOf(id).size);
          } else {
            op->dst.obj = id;
            op->dst.off = 0;
            op->src = op->dst;
            op->count = std::min(op->count, MemOf(id).size);
          }
          if (op->k == OpKind::Checksum && op->src.obj == op->dst.obj) return false;
          return true;
        }
        const Bad bads[] = {Bad::grid,      Bad::block,  Bad::shared,
                            Bad::argsBytes, Bad::nullFn, Bad::nullArgs};
        op->bad = bads[r_.Below(6)];
        return true;
      }
      case OpKind::HostFn:
        if (r < 6) {
          op->bad = Bad::nullFn;
          return true;
        }
        return BadStreamArg(op);
      case OpKind::PeerEnable:
        op->bad = r < 5 ? Bad::flags : r < 10 ? Bad::self : Bad::device;
        op->value = BadOrdinal();
        return true;
      case OpKind::PeerDisable:
        op->bad = Bad::device;
        op->value = BadOrdinal();
        return true;
      default:
        return false;
    }
  }

  bool MutateCopy(Op* op, std::uint64_t r) {
    if (op->k == OpKind::MemcpyAsync && r < 3) return BadStreamArg(op);
    switch (r % 8) {
      case 0: {
        op->bad = Bad::kindRange;
        const int v[] = {5, 99, -1, 0x7fffffff, 1 << 16};
        op->value = v[r_.Below(5)];
        return true;
      }
      case 1: {
        op->bad = Bad::kindMismatch;
        op->kind = static_cast<int>(r_.Below(4));
        return true;
      }
      case 2:
      case 3:
        op->bad = r % 8 == 2 ? Bad::countOver : Bad::countMax;
        op->count = OverCount(*op);
        return true;
      case 4:
        op->bad = Bad::nullDst;
        return true;
      case 5:
        op->bad = Bad::nullSrc;
        return true;
      case 6:
        if (op->kind != h20MemcpyDefault && op->kind != h20MemcpyDeviceToDevice &&
            op->kind != h20MemcpyHostToDevice)
          return false;
        op->bad = Bad::freedDst;
        return FreedRef(&op->dst, &op->count);
      default:
        if (op->kind != h20MemcpyDefault && op->kind != h20MemcpyDeviceToDevice &&
            op->kind != h20MemcpyDeviceToHost)
          return false;
        op->bad = Bad::freedSrc;
        return FreedRef(&op->src, &op->count);
    }
  }

  bool MutatePeer(Op* op, std::uint64_t r) {
    if (op->k == OpKind::MemcpyPeerAsync && r < 3) return BadStreamArg(op);
    switch (r % 9) {
      case 0:
        op->bad = Bad::device;
        op->kind = static_cast<int>(r_.Below(2));
        op->value = BadOrdinal();
        return true;
      case 1:
        if (cfg().devices < 2) return false;
        op->bad = Bad::ptrDevice;
        if (r_.Chance(0.5))
          op->dev2 = (op->dev2 + 1) % cfg().devices;
        else
          op->flags = (op->flags + 1) % static_cast<unsigned>(cfg().devices);
        return true;
      case 2: {
        op->bad = Bad::hostPtr;
        const int id = PickMem(r_.Chance(0.5) ? WritableHost : ReadableHost);
        if (id < 0) return false;
        MemRef& ref = r_.Chance(0.5) ? op->dst : op->src;
        if (&ref == &op->src || !MemOf(id).sharedRO) {
          ref.obj = id;
          ref.off = 0;
          op->count = std::max<std::size_t>(1, std::min(op->count, MemOf(id).size));
          return true;
        }
        return false;
      }
      case 3:
      case 4:
        op->bad = r % 9 == 3 ? Bad::countOver : Bad::countMax;
        op->count = OverCount(*op);
        return true;
      case 5:
        op->bad = Bad::nullDst;
        op->count = std::max<std::size_t>(op->count, 1);
        return true;
      case 6:
        op->bad = Bad::nullSrc;
        op->count = std::max<std::size_t>(op->count, 1);
        return true;
      case 7:
        op->bad = Bad::freedDst;
        if (!FreedRef(&op->dst, &op->count)) return false;
        op->dev2 = MemOf(op->dst.obj).device;
        return true;
      default:
        op->bad = Bad::freedSrc;
        if (!FreedRef(&op->src, &op->count)) return false;
        op->flags = static_cast<unsigned>(MemOf(op->src.obj).device);
        return true;
    }
  }

  World w_;
  Rng r_;
  Options opt_;
  ThreadSetup setup_;
  int nextId_ = 1;
  std::vector<Op> out_;
};

}  // namespace

std::vector<Op> GenerateThread(const Config& config, std::uint64_t seed, const Options& options,
                               const ThreadSetup& setup) {
  Gen g(config, seed ^ (static_cast<std::uint64_t>(setup.thread) * 0x9E3779B97F4A7C15ull), options,
        setup);
  return g.Run();
}

std::vector<Op> Generate(const Config& config, std::uint64_t seed, const Options& options) {
  return GenerateThread(config, seed, options, ThreadSetup{});
}

}  // namespace h20fuzz
