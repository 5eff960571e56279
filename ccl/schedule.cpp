// schedule.cpp - the algorithms: one collective becomes steps of work on the ranks' streams.
//
// Execution model. A collective is a list of steps; in each step a rank waits for the step events
// of the ranks it depends on (h20StreamWaitEvent), runs its actions (peer copies, reduction
// kernels) and records its own step event. All waits of a step are enqueued before any event of
// that step is recorded, because a wait captures the event's latest record at the time of the
// call: one reusable event per rank then stands for "this rank has finished step s-1". Work is
// pulled: a rank only ever writes its own memory and reads its peers', so the hazards are
//  - read after write: the reader waits for the writer's step that produced the data;
//  - write after read: before a rank overwrites data a peer may still be reading, it waits for
//    that peer's step that read it (the ring's double-buffered partial sums need this), and at
//    the end of the collective every rank waits for the peers that read its buffers, so later
//    work on its stream may overwrite them.
// Every collective starts after the rank's previous collective (its `done` event), so the
// collectives of a clique never overlap even when they use different streams.
//
// Algorithms (n ranks, ring order from topology.cpp, chunk c is the part of the data owned by
// rank c):
//  - ring reduce(-scatter): n-1 steps; at step s the rank at ring position i reduces chunk
//    ring[i-s-2] of its own input with its predecessor's partial sum (the predecessor's input at
//    step 0), into a double-buffered fp32 scratch slot, or into its output at the last step. It
//    ends owning the full reduction of its own chunk. Partial sums stay in fp32, so 16-bit types
//    are rounded once. Where the rank cannot access its predecessor (no chip-to-chip link), the
//    partial is first copied into a local staging buffer (h20MemcpyPeerAsync stages it through
//    the host) and reduced from there.
//  - ring gather: n-1 steps; at step t the rank at position i copies chunk ring[i-1-t] from its
//    predecessor (allReduce = ring reduce + ring gather; allGather = ring gather).
//  - ring broadcast: a chain from the root along the ring, pipelined in slices.
//  - direct: every rank reduces/copies its share from all peers at once: allReduce in two steps
//    (reduce own chunk from all inputs, then gather all chunks), the others in one. Up to
//    kOneShotMaxBytes per rank and with no rank in place, allReduce is one-shot instead: every
//    rank reduces the whole buffer from all inputs in one step (one kernel instead of a kernel
//    and n-1 copies, for n times the reads). All ranks add the inputs in the same order, so their
//    results are identical and equal to the two-step version's. (In place, a rank could only
//    overwrite its input after every peer had read it: a second step, which costs what it saves.)
#include "schedule.hpp"

#include "error.hpp"
#include "kernels.hpp"
#include "util.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace h20::ccl {

namespace {

constexpr std::size_t kScratchAlign = 256;
// Ring broadcast pipelines the chain in slices of about this size, at most kMaxSlices.
constexpr std::uint64_t kSliceBytes = 256 * 1024;
constexpr std::uint64_t kMaxSlices = 16;
// Largest per-rank allReduce done one-shot by the direct algorithm (see the top of the file):
// above it the n-fold reads cost more than the saved steps (measured on 8 emulated chips).
constexpr std::size_t kOneShotMaxBytes = 16 * 1024;

std::size_t alignUp(std::size_t v) {
  return (v + kScratchAlign - 1) / kScratchAlign * kScratchAlign;
}

struct Copy {
  void* dst = nullptr;
  int dstDevice = 0;
  const void* src = nullptr;
  int srcDevice = 0;
  std::size_t bytes = 0;
};

struct Action {
  bool isReduce = false;
  ReduceArgs reduce;
  Copy copy;
};

struct RankStep {
  bool active = false;       // runs actions and records its step event
  std::vector<int> waitFor;  // ranks whose step events it waits for first
  std::vector<Action> actions;
};

// Offsets and lengths (in elements) of the chunks, by owning rank.
struct Chunks {
  std::vector<std::uint64_t> off, len;
  std::uint64_t maxLen = 0;
};

// `count` elements split into `parts` nearly equal parts (the first count % parts one larger).
Chunks balanced(std::uint64_t count, std::uint64_t parts) {
  Chunks c;
  const std::uint64_t base = count / parts, rem = count % parts;
  for (std::uint64_t i = 0; i < parts; ++i) {
    c.off.push_back(i * base + std::min(i, rem));
    c.len.push_back(base + (i < rem ? 1 : 0));
    c.maxLen = std::max(c.maxLen, c.len.back());
  }
  return c;
}

// `parts` chunks of `each` elements back to back.
Chunks uniform(std::uint64_t each, std::uint64_t parts) {
  Chunks c;
  for (std::uint64_t i = 0; i < parts; ++i) {
    c.off.push_back(i * each);
    c.len.push_back(each);
  }
  c.maxLen = each;
  return c;
}

class Schedule {
 public:
  Schedule(const Clique& clique, const std::vector<Call>& calls, h20cclAlgo algo)
      : clique_(clique), calls_(calls), algo_(algo), n_(clique.size()) {
    const Call& c = calls[0];
    func_ = c.func;
    type_ = c.type;
    es_ = elementSize(type_);
    op_ = c.op;
    count_ = c.count;
    switch (func_) {
      case Func::allReduce:
        chunks_ = balanced(count_, static_cast<std::uint64_t>(n_));
        break;
      case Func::allGather:
      case Func::reduceScatter:
        chunks_ = uniform(count_, static_cast<std::uint64_t>(n_));
        break;
      case Func::broadcast:
      case Func::reduce:
      case Func::allToAll:
      case Func::send:
      case Func::recv:
        break;
    }
  }

  void enqueue();

 private:
  const unsigned char* send(int r) const {
    return static_cast<const unsigned char*>(calls_[static_cast<std::size_t>(r)].send);
  }
  unsigned char* recv(int r) const {
    return static_cast<unsigned char*>(calls_[static_cast<std::size_t>(r)].recv);
  }
  h20Stream_t stream(int r) const { return calls_[static_cast<std::size_t>(r)].stream; }
  int dev(int r) const { return clique_.device(r); }
  // The rank at ring position i (any integer, taken modulo n).
  int ringAt(int i) const { return clique_.ring()[static_cast<std::size_t>(((i % n_) + n_) % n_)]; }
  int position(int rank) const {
    const auto& ring = clique_.ring();
    return static_cast<int>(std::find(ring.begin(), ring.end(), rank) - ring.begin());
  }
  bool inPlace(int r) const { return calls_[static_cast<std::size_t>(r)].inPlace; }
  std::vector<int> allBut(int r) const {
    std::vector<int> v;
    for (int q = 0; q < n_; ++q)
      if (q != r) v.push_back(q);
    return v;
  }

  std::vector<RankStep>& newStep() {
    steps_.emplace_back(static_cast<std::size_t>(n_));
    return steps_.back();
  }
  void addCopy(RankStep& s, void* dst, int dstRank, const void* src, int srcRank,
               std::size_t bytes) {
    if (bytes == 0 || dst == src) return;
    Action a;
    a.copy = Copy{dst, dev(dstRank), src, dev(srcRank), bytes};
    s.actions.push_back(a);
  }
  // Rank r's part of `step`, active and waiting for every other rank's previous step.
  RankStep& afterEveryPeer(std::vector<RankStep>& step, int r) const;
  // Reduces `count` elements at byte `offset` of every rank's input into dst (this rank's memory),
  // the inputs in rank order on every rank, so that all ranks compute identical results.
  void addReduceOfEveryInput(RankStep& s, std::size_t offset, std::uint64_t count, void* dst);
  void addReduce(RankStep& s, const ReduceArgs& args) {
    if (args.count == 0) return;
    Action a;
    a.isReduce = true;
    a.reduce = args;
    s.actions.push_back(a);
  }

  // Scratch of the ring reduction: two fp32 slots for partial sums (n >= 3) and a staging buffer
  // where the predecessor cannot be accessed.
  bool usesRingReduce() const {
    return algo_ == h20cclAlgoRing && (func_ == Func::allReduce || func_ == Func::reduceScatter) &&
           n_ >= 2;
  }
  bool oneShot() const {
    if (algo_ != h20cclAlgoDirect || func_ != Func::allReduce || n_ < 2 ||
        count_ * es_ > kOneShotMaxBytes)
      return false;
    for (int r = 0; r < n_; ++r)
      if (inPlace(r)) return false;
    return true;
  }
  std::size_t slotBytes() const { return alignUp(chunks_.maxLen * sizeof(float)); }
  // The reduce chain (ring algorithm): ranks between the chain's start and the root keep an fp32
  // partial; a rank that cannot access its predecessor stages the predecessor's partial.
  std::size_t chainSlotBytes() const { return alignUp(count_ * sizeof(float)); }
  bool usesReduceChain() const {
    return func_ == Func::reduce && n_ >= 2 && algo_ == h20cclAlgoRing;
  }
  std::size_t scratchBytes(int r) const {
    if (usesReduceChain()) {
      const int d = chainPos(r);
      std::size_t bytes = d > 0 && d < n_ - 1 ? chainSlotBytes() : 0;
      if (d > 0 && !clique_.links().canAccess(r, ringAt(position(r) - 1)))
        bytes += chainSlotBytes();
      return bytes;
    }
    if (!usesRingReduce()) return 0;
    std::size_t bytes = n_ >= 3 ? 2 * slotBytes() : 0;
    if (!clique_.links().canAccess(r, ringAt(position(r) - 1))) bytes += slotBytes();
    return bytes;
  }
  unsigned char* slot(int r, int k) const {
    return scratch_[static_cast<std::size_t>(r)] + static_cast<std::size_t>(k) * slotBytes();
  }
  unsigned char* stage(int r) const {
    return scratch_[static_cast<std::size_t>(r)] + (n_ >= 3 ? 2 * slotBytes() : 0);
  }

  void build();
  void buildSingle();
  void ringReduce();
  void ringGather(bool firstFromSend);
  void ringBroadcast();
  void directAllReduce();
  void oneShotAllReduce();
  void directReduceScatter();
  void directAllGather();
  void directBroadcast();
  void directReduce();
  void chainReduce();
  void allToAll();
  // Position of a rank on the reduce chain, which runs along the ring and ends at the root.
  int chainPos(int r) const {
    return ((position(r) - position(calls_[0].root) - 1) % n_ + n_) % n_;
  }
  void runAction(int r, const Action& a) const;
  void checkRank(h20Error_t rc, int r, const char* call) const;

  const Clique& clique_;
  const std::vector<Call>& calls_;
  h20cclAlgo algo_;
  int n_;
  Func func_ = Func::allReduce;
  h20DataType type_ = H20_R_32F;
  std::size_t es_ = 4;
  h20cclRedOp op_ = h20cclSum;
  std::uint64_t count_ = 0;
  Chunks chunks_;
  std::vector<unsigned char*> scratch_;
  std::vector<std::vector<RankStep>> steps_;  // [step][rank]
  std::vector<std::vector<int>> endWaits_;    // [rank]
};

void Schedule::checkRank(h20Error_t rc, int r, const char* call) const {
  if (rc == h20Success) return;
  throw Error(rc, fmt::format("{} (rank {}, device {}): {}", funcName(func_), r, dev(r),
                              h20GetLastErrorMessage()[0] ? h20GetLastErrorMessage() : call));
}

void Schedule::build() {
  endWaits_.assign(static_cast<std::size_t>(n_), {});
  if (n_ == 1) return buildSingle();
  if (algo_ == h20cclAlgoDirect) {
    switch (func_) {
      case Func::allReduce:
        return oneShot() ? oneShotAllReduce() : directAllReduce();
      case Func::reduceScatter:
        return directReduceScatter();
      case Func::allGather:
        return directAllGather();
      case Func::broadcast:
        return directBroadcast();
      case Func::reduce:
        return directReduce();
      case Func::allToAll:
      case Func::send:
      case Func::recv:
        break;
    }
  }
  if (func_ == Func::allToAll) return allToAll();
  if (func_ == Func::reduce) return chainReduce();
  switch (func_) {
    case Func::allReduce:
      ringReduce();
      ringGather(false);
      break;
    case Func::reduceScatter:
      ringReduce();
      break;
    case Func::allGather: {
      ringGather(true);
      for (int r = 0; r < n_; ++r)
        addCopy(steps_[0][static_cast<std::size_t>(r)],
                recv(r) + static_cast<std::size_t>(r) * count_ * es_, r, send(r), r, count_ * es_);
      break;
    }
    case Func::broadcast:
      return ringBroadcast();
    case Func::reduce:
    case Func::allToAll:
    case Func::send:
    case Func::recv:
      break;
  }
  // Each rank's buffers were last read by its successor, in the last step.
  for (int i = 0; i < n_; ++i)
    endWaits_[static_cast<std::size_t>(ringAt(i))] = {ringAt(i + 1)};
}

void Schedule::buildSingle() {
  auto& s = newStep()[0];
  s.active = true;
  const std::size_t bytes = count_ * es_;
  addCopy(s, recv(0), 0, send(0), 0, bytes);
}

void Schedule::ringReduce() {
  const bool toChunk = func_ == Func::allReduce;  // allReduce writes chunk c at its offset
  for (int s = 0; s + 1 < n_; ++s) {
    auto& step = newStep();
    for (int i = 0; i < n_; ++i) {
      const int r = ringAt(i), p = ringAt(i - 1), q = ringAt(i + 1);
      const int c = ringAt(i - s - 2);
      RankStep& rs = step[static_cast<std::size_t>(r)];
      rs.active = true;
      // The predecessor's partial (read after write) and the successor's read of the slot this
      // step overwrites (write after read, two steps back).
      rs.waitFor = {p};
      if (q != p) rs.waitFor.push_back(q);
      const std::uint64_t len = chunks_.len[static_cast<std::size_t>(c)];
      const std::uint64_t off = chunks_.off[static_cast<std::size_t>(c)] * es_;
      ReduceArgs a;
      a.op = static_cast<std::uint8_t>(op_);
      a.count = len;
      a.nsrc = 2;
      a.src[0] = send(r) + off;
      a.srcType[0] = static_cast<std::uint8_t>(type_);
      const void* peer = s == 0 ? static_cast<const void*>(send(p) + off) : slot(p, (s - 1) % 2);
      const h20DataType peerType = s == 0 ? type_ : H20_R_32F;
      if (s == n_ - 2) {
        a.dst = toChunk ? recv(r) + off : recv(r);
        a.dstType = static_cast<std::uint8_t>(type_);
      } else {
        a.dst = slot(r, s % 2);
        a.dstType = H20_R_32F;
      }
      if (len > 0 && !clique_.links().canAccess(r, p)) {
        addCopy(rs, stage(r), r, peer, p, len * elementSize(peerType));
        peer = stage(r);
      }
      a.src[1] = peer;
      a.srcType[1] = static_cast<std::uint8_t>(peerType);
      addReduce(rs, a);
    }
  }
}

void Schedule::ringGather(bool firstFromSend) {
  for (int t = 0; t + 1 < n_; ++t) {
    auto& step = newStep();
    for (int i = 0; i < n_; ++i) {
      const int r = ringAt(i), p = ringAt(i - 1);
      const int c = ringAt(i - 1 - t);
      RankStep& rs = step[static_cast<std::size_t>(r)];
      rs.active = true;
      rs.waitFor = {p};
      const std::size_t off = chunks_.off[static_cast<std::size_t>(c)] * es_;
      const std::size_t bytes = chunks_.len[static_cast<std::size_t>(c)] * es_;
      // At the first step the predecessor's own chunk is still only in its send buffer.
      const unsigned char* src = firstFromSend && t == 0 ? send(p) : recv(p) + off;
      addCopy(rs, recv(r) + off, r, src, p, bytes);
    }
  }
}

void Schedule::ringBroadcast() {
  const int root = calls_[0].root;
  const int pr = position(root);
  const std::uint64_t bytes = count_ * es_;
  const std::uint64_t slices =
      std::clamp<std::uint64_t>((bytes + kSliceBytes - 1) / kSliceBytes, 1, kMaxSlices);
  const Chunks sl = balanced(count_, slices);
  const std::uint64_t stepCount = slices + static_cast<std::uint64_t>(n_) - 2;
  for (std::uint64_t k = 0; k < stepCount; ++k) {
    auto& step = newStep();
    if (k == 0 && !inPlace(root)) {
      step[static_cast<std::size_t>(root)].active = true;
      addCopy(step[static_cast<std::size_t>(root)], recv(root), root, send(root), root, bytes);
    }
    // The rank d links after the root copies slice k - (d - 1) from the rank before it.
    for (int d = 1; d < n_; ++d) {
      const std::int64_t j = static_cast<std::int64_t>(k) - (d - 1);
      if (j < 0 || j >= static_cast<std::int64_t>(slices)) continue;
      const int r = ringAt(pr + d), prev = ringAt(pr + d - 1);
      RankStep& rs = step[static_cast<std::size_t>(r)];
      rs.active = true;
      rs.waitFor = {prev};
      const std::size_t off = sl.off[static_cast<std::size_t>(j)] * es_;
      const unsigned char* src = (d == 1 ? send(root) : recv(prev)) + off;
      addCopy(rs, recv(r) + off, r, src, prev, sl.len[static_cast<std::size_t>(j)] * es_);
    }
  }
  for (int d = 0; d + 1 < n_; ++d)
    endWaits_[static_cast<std::size_t>(ringAt(pr + d))] = {ringAt(pr + d + 1)};
}

RankStep& Schedule::afterEveryPeer(std::vector<RankStep>& step, int r) const {
  RankStep& rs = step[static_cast<std::size_t>(r)];
  rs.active = true;
  rs.waitFor = allBut(r);
  return rs;
}

void Schedule::addReduceOfEveryInput(RankStep& s, std::size_t offset, std::uint64_t count,
                                     void* dst) {
  ReduceArgs a;
  a.op = static_cast<std::uint8_t>(op_);
  a.count = count;
  a.nsrc = static_cast<std::uint32_t>(n_);
  a.dst = dst;
  a.dstType = static_cast<std::uint8_t>(type_);
  for (int q = 0; q < n_; ++q) {
    a.src[q] = send(q) + offset;
    a.srcType[q] = static_cast<std::uint8_t>(type_);
  }
  addReduce(s, a);
}

void Schedule::directAllReduce() {
  auto& reduce = newStep();
  for (int r = 0; r < n_; ++r) {
    const std::size_t off = chunks_.off[static_cast<std::size_t>(r)] * es_;
    addReduceOfEveryInput(afterEveryPeer(reduce, r), off, chunks_.len[static_cast<std::size_t>(r)],
                          recv(r) + off);
  }
  auto& gather = newStep();
  for (int r = 0; r < n_; ++r) {
    RankStep& rs = afterEveryPeer(gather, r);
    for (int q : allBut(r)) {
      const std::size_t off = chunks_.off[static_cast<std::size_t>(q)] * es_;
      addCopy(rs, recv(r) + off, r, recv(q) + off, q,
              chunks_.len[static_cast<std::size_t>(q)] * es_);
    }
  }
  for (int r = 0; r < n_; ++r)
    endWaits_[static_cast<std::size_t>(r)] = allBut(r);
}

void Schedule::oneShotAllReduce() {
  auto& step = newStep();
  for (int r = 0; r < n_; ++r) {
    addReduceOfEveryInput(afterEveryPeer(step, r), 0, count_, recv(r));
    endWaits_[static_cast<std::size_t>(r)] = allBut(r);  // the peers read this rank's input
  }
}

void Schedule::directReduceScatter() {
  auto& step = newStep();
  for (int r = 0; r < n_; ++r) {
    addReduceOfEveryInput(afterEveryPeer(step, r), static_cast<std::size_t>(r) * count_ * es_,
                          count_, recv(r));
    endWaits_[static_cast<std::size_t>(r)] = allBut(r);
  }
}

void Schedule::directAllGather() {
  auto& step = newStep();
  for (int r = 0; r < n_; ++r) {
    RankStep& rs = afterEveryPeer(step, r);
    for (int q = 0; q < n_; ++q)
      addCopy(rs, recv(r) + static_cast<std::size_t>(q) * count_ * es_, r, send(q), q,
              count_ * es_);
    endWaits_[static_cast<std::size_t>(r)] = allBut(r);
  }
}

void Schedule::directBroadcast() {
  const int root = calls_[0].root;
  auto& step = newStep();
  for (int r = 0; r < n_; ++r) {
    RankStep& rs = step[static_cast<std::size_t>(r)];
    rs.active = true;
    if (r != root) rs.waitFor = {root};
    addCopy(rs, recv(r), r, send(root), root, count_ * es_);
  }
  endWaits_[static_cast<std::size_t>(root)] = allBut(root);
}

void Schedule::directReduce() {
  const int root = calls_[0].root;
  auto& step = newStep();
  addReduceOfEveryInput(afterEveryPeer(step, root), 0, count_, recv(root));
  endWaits_[static_cast<std::size_t>(root)] = {};
  for (int r = 0; r < n_; ++r)
    if (r != root) endWaits_[static_cast<std::size_t>(r)] = {root};  // the root read its input
}

// One step per chain position: the rank at position d reduces its input with the partial of the
// rank before it (its input at d = 1), into its fp32 slot, or into the output at the root.
void Schedule::chainReduce() {
  const int root = calls_[0].root;
  int prevRank = -1;
  for (int d = 0; d < n_; ++d) {
    int r = 0;
    while (chainPos(r) != d)
      ++r;
    if (d > 0) {
      auto& step = newStep();
      RankStep& rs = step[static_cast<std::size_t>(r)];
      rs.active = true;
      rs.waitFor = {prevRank};
      const bool fromInput = d == 1;
      const void* peer = fromInput ? static_cast<const void*>(send(prevRank)) : slot(prevRank, 0);
      const h20DataType peerType = fromInput ? type_ : H20_R_32F;
      const bool last = d == n_ - 1;
      if (!clique_.links().canAccess(r, prevRank)) {
        unsigned char* stageBuf =
            scratch_[static_cast<std::size_t>(r)] + (last ? 0 : chainSlotBytes());
        addCopy(rs, stageBuf, r, peer, prevRank, count_ * elementSize(peerType));
        peer = stageBuf;
      }
      ReduceArgs a;
      a.op = static_cast<std::uint8_t>(op_);
      a.count = count_;
      a.nsrc = 2;
      a.src[0] = send(r);
      a.srcType[0] = static_cast<std::uint8_t>(type_);
      a.src[1] = peer;
      a.srcType[1] = static_cast<std::uint8_t>(peerType);
      a.dst = last ? static_cast<void*>(recv(root)) : slot(r, 0);
      a.dstType = static_cast<std::uint8_t>(last ? type_ : H20_R_32F);
      addReduce(rs, a);
      endWaits_[static_cast<std::size_t>(prevRank)] = {r};  // r read prevRank's input or slot
    }
    prevRank = r;
  }
}

// recv_r[q * count] = send_q[r * count]: every rank pulls its block from every rank at once.
void Schedule::allToAll() {
  auto& step = newStep();
  const std::size_t block = count_ * es_;
  for (int r = 0; r < n_; ++r) {
    RankStep& rs = afterEveryPeer(step, r);
    for (int q = 0; q < n_; ++q)
      addCopy(rs, recv(r) + static_cast<std::size_t>(q) * block, r,
              send(q) + static_cast<std::size_t>(r) * block, q, block);
    endWaits_[static_cast<std::size_t>(r)] = allBut(r);
  }
}

void Schedule::runAction(int r, const Action& a) const {
  if (a.isReduce) return checkRank(launchReduce(a.reduce, stream(r)), r, "h20LaunchKernel");
  const Copy& c = a.copy;
  if (c.dstDevice == c.srcDevice)
    return checkRank(h20MemcpyAsync(c.dst, c.src, c.bytes, h20MemcpyDeviceToDevice, stream(r)), r,
                     "h20MemcpyAsync");
  checkRank(h20MemcpyPeerAsync(c.dst, c.dstDevice, c.src, c.srcDevice, c.bytes, stream(r)), r,
            "h20MemcpyPeerAsync");
}

void Schedule::enqueue() {
  if (count_ == 0) return;  // nothing moves, nothing to order
  DeviceGuard guard;
  // Entry: after the rank's previous collective, and mark where this one starts. Recording the
  // rank's event on its stream is also where a stream of the wrong device is refused.
  for (int r = 0; r < n_; ++r) {
    guard.set(dev(r));
    checkRank(h20StreamWaitEvent(stream(r), clique_.doneEvent(r), 0), r, "h20StreamWaitEvent");
    checkRank(h20EventRecord(clique_.stepEvent(r), stream(r)), r, "h20EventRecord");
  }
  scratch_.assign(static_cast<std::size_t>(n_), nullptr);
  auto finish = [&] {
    for (int r = 0; r < n_; ++r) {
      guard.set(dev(r));
      if (scratch_[static_cast<std::size_t>(r)])
        h20FreeAsync(scratch_[static_cast<std::size_t>(r)], stream(r));
      scratch_[static_cast<std::size_t>(r)] = nullptr;
      h20EventRecord(clique_.doneEvent(r), stream(r));
    }
  };
  try {
    // Scratch comes from the stream-ordered pool: no host synchronisation, and it is reused by
    // the next collective on the same stream.
    for (int r = 0; r < n_; ++r) {
      const std::size_t bytes = scratchBytes(r);
      if (bytes == 0) continue;
      guard.set(dev(r));
      void* p = nullptr;
      checkRank(h20MallocAsync(&p, bytes, stream(r)), r, "h20MallocAsync");
      scratch_[static_cast<std::size_t>(r)] = static_cast<unsigned char*>(p);
    }
    build();
    for (const auto& step : steps_) {
      for (int r = 0; r < n_; ++r) {
        const RankStep& rs = step[static_cast<std::size_t>(r)];
        if (!rs.active) continue;
        guard.set(dev(r));
        for (int q : rs.waitFor)
          checkRank(h20StreamWaitEvent(stream(r), clique_.stepEvent(q), 0), r,
                    "h20StreamWaitEvent");
      }
      for (int r = 0; r < n_; ++r) {
        const RankStep& rs = step[static_cast<std::size_t>(r)];
        if (!rs.active) continue;
        guard.set(dev(r));
        for (const Action& a : rs.actions)
          runAction(r, a);
        checkRank(h20EventRecord(clique_.stepEvent(r), stream(r)), r, "h20EventRecord");
      }
    }
    for (int r = 0; r < n_; ++r) {
      guard.set(dev(r));
      for (int q : endWaits_[static_cast<std::size_t>(r)])
        checkRank(h20StreamWaitEvent(stream(r), clique_.stepEvent(q), 0), r, "h20StreamWaitEvent");
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

}  // namespace

void enqueueCollective(const Clique& clique, const std::vector<Call>& calls, h20cclAlgo algo) {
  Schedule(clique, calls, algo).enqueue();
}

}  // namespace h20::ccl
