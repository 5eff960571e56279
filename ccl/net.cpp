// net.cpp - communicators across processes: shared FIFOs, the progress loop and the ring programs
// (see net.hpp).
#include "net.hpp"

#include "bootstrap.hpp"
#include "error.hpp"
#include "kernels.hpp"
#include "net_conn.hpp"
#include "util.hpp"

#include <fmt/format.h>

#include <linux/futex.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <thread>

namespace h20::ccl {

void AsyncState::fail(h20Error_t code, const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (code_.load(std::memory_order_relaxed) != h20Success) return;
  message_ = message;
  code_.store(code, std::memory_order_release);
}

std::string AsyncState::message() const {
  std::lock_guard<std::mutex> lock(mu_);
  return message_;
}

namespace {

using Clock = std::chrono::steady_clock;

void futexWake(std::atomic<std::uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr,
            nullptr, 0);
}

void futexWait(std::atomic<std::uint32_t>* word, std::uint32_t seen, std::chrono::microseconds d) {
  timespec ts{static_cast<time_t>(d.count() / 1000000),
              static_cast<long>(d.count() % 1000000) * 1000};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

// False once process `pid` has exited (gone, or a zombie its parent has not reaped yet).
bool processAlive(int pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string text;
  std::getline(stat, text);
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return stat.is_open();
  const char state = text[close + 2];
  return state != 'Z' && state != 'X';
}

constexpr std::size_t kHeaderBytes = 512;
constexpr std::size_t kFifoHeaderBytes = 256;
constexpr std::size_t kFifoStride = kFifoHeaderBytes + kSlots * kPieceBytes;

// The identity of a rank, exchanged at init.
struct Blob {
  char magic[8];
  std::int32_t pid;
  std::int32_t device;
  std::uint64_t hostId;
  std::uint64_t blockAddress;  // valid in the rank's own process
  std::uint32_t pieceBytes;
  std::uint32_t slots;
  std::int32_t hasIpcHandle;
  std::int32_t mpiRank;        // in MPI_COMM_WORLD, -1 without MPI
  std::uint64_t process;       // random per process: "same process" (pids repeat across containers)
  std::uint64_t pidNamespace;  // inode of /proc/self/ns/pid: whether `pid` means anything here
  h20IpcMemHandle_t handle;
};

std::uint64_t processNonce() {
  static const std::uint64_t nonce = [] {
    std::uint64_t v = 0;
    while (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
    }
    return v;
  }();
  return nonce;
}

std::uint64_t pidNamespace() {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

}  // namespace

// Blocks of this process's ranks, shared by the communicators that reach them as plain memory:
// a block is freed when its rank and every local peer using it have let go (a peer may still be
// writing into it when its rank is destroyed or aborted).
class LocalBlock {
 public:
  explicit LocalBlock(void* mem) : mem_(mem) {}
  ~LocalBlock() { h20Free(mem_); }
  LocalBlock(const LocalBlock&) = delete;
  LocalBlock& operator=(const LocalBlock&) = delete;

  static std::shared_ptr<LocalBlock> adopt(void* mem) {
    auto b = std::make_shared<LocalBlock>(mem);
    std::lock_guard<std::mutex> lock(registryMu());
    auto& m = registry();
    for (auto it = m.begin(); it != m.end();)
      it = it->second.expired() ? m.erase(it) : std::next(it);
    m[reinterpret_cast<std::uintptr_t>(mem)] = b;
    return b;
  }
  static std::shared_ptr<LocalBlock> find(std::uintptr_t address) {
    std::lock_guard<std::mutex> lock(registryMu());
    auto it = registry().find(address);
    return it == registry().end() ? nullptr : it->second.lock();
  }

 private:
  static std::mutex& registryMu() {
    static auto* m = new std::mutex;
    return *m;
  }
  static std::map<std::uintptr_t, std::weak_ptr<LocalBlock>>& registry() {
    static auto* r = new std::map<std::uintptr_t, std::weak_ptr<LocalBlock>>;
    return *r;
  }
  void* mem_;
};

namespace {
constexpr char kBlobMagic[8] = {'H', '2', '0', 'B', 'L', 'O', 'B', '1'};

std::size_t typeBytes(std::uint8_t t) {
  return elementSize(static_cast<h20DataType>(t));
}

}  // namespace

// The shared block of a rank: a header, then one FIFO per sender.
struct Block {
  RankHeader header;
  char pad[kHeaderBytes - sizeof(RankHeader)];
  Fifo* fifoFrom(int sender) {
    return reinterpret_cast<Fifo*>(reinterpret_cast<char*>(this) + kHeaderBytes +
                                   static_cast<std::size_t>(sender) * kFifoStride);
  }
  static std::size_t bytes(int nranks) {
    return kHeaderBytes + static_cast<std::size_t>(nranks) * kFifoStride;
  }
};
static_assert(sizeof(RankHeader) <= kHeaderBytes);
static_assert(sizeof(Fifo) <= kFifoHeaderBytes);
static_assert(kSlots == sizeof(Fifo::meta) / sizeof(Fifo::meta[0]));

unsigned char* Fifo::slot(std::uint64_t i) {
  return reinterpret_cast<unsigned char*>(this) + kFifoHeaderBytes + i * kPieceBytes;
}

void ringDoorbell(RankHeader& h) {
  h.doorbell.fetch_add(1, std::memory_order_seq_cst);
  if (h.sleeping.load(std::memory_order_seq_cst) != 0) futexWake(&h.doorbell);
}

namespace {

// A FIFO connection: this rank's pieces go to `out` (in the peer's block), the peer's come from
// `in` (in this rank's block).
class FifoConn : public Conn {
 public:
  FifoConn(Fifo* in, Fifo* out, RankHeader* peer, RankHeader* self)
      : in_(in), out_(out), peer_(peer), self_(self) {
    sent_ = out_->tail.load(std::memory_order_acquire);
    received_ = in_->head.load(std::memory_order_acquire);
  }
  bool canSend() override { return sent_ - out_->head.load(std::memory_order_acquire) < kSlots; }
  void* sendSlot() override { return out_->slot(sent_ % kSlots); }
  void post(const PieceMeta& meta) override {
    out_->meta[sent_ % kSlots] = meta;
    out_->tail.store(++sent_, std::memory_order_release);
    ringDoorbell(*peer_);
  }
  const void* peek(PieceMeta* meta, void*, std::size_t) override {
    if (in_->tail.load(std::memory_order_acquire) <= received_) return nullptr;
    *meta = in_->meta[received_ % kSlots];
    return in_->slot(received_ % kSlots);
  }
  void release() override {
    in_->head.store(++received_, std::memory_order_release);
    ringDoorbell(*peer_);
  }

 private:
  Fifo* in_;
  Fifo* out_;
  RankHeader* peer_;
  RankHeader* self_;
  std::uint64_t sent_ = 0, received_ = 0;
};

// One instruction of a rank's program: take a piece from a peer (or not), combine it with local
// data (or not), store the result in the output (or not) and send it on (or not).
struct Instr {
  int recvPeer = -1;
  int sendPeer = -1;
  const void* local = nullptr;
  void* out = nullptr;
  std::uint64_t count = 0;  // elements
  std::uint8_t inType = 0, localType = 0, outType = 0, sendType = 0;
  bool reduce = false;
};

struct Program {
  Func func = Func::allReduce;
  std::uint8_t op = 0;           // h20cclRedOp
  std::uint64_t totalBytes = 0;  // what the connection carries for it, for mismatch messages
  std::vector<Instr> instrs;
  std::vector<float> scratch;  // host memory some instructions point into (moves with it)
  std::size_t next = 0;
  bool done() const { return next == instrs.size(); }
};

// Copies or converts `count` elements.
void convert(void* dst, std::uint8_t dstType, const void* src, std::uint8_t srcType,
             std::uint64_t count, std::uint8_t op) {
  if (count == 0 || dst == src) return;
  if (dstType == srcType) {
    std::memmove(dst, src, count * typeBytes(srcType));
    return;
  }
  ReduceArgs a;
  a.dst = dst;
  a.dstType = dstType;
  a.src[0] = src;
  a.srcType[0] = srcType;
  a.nsrc = 1;
  a.op = op;
  a.count = count;
  reduceOnHost(a);
}

// Builds the programs of one rank's calls.
class Planner {
 public:
  // `ring`: the ranks in ring order (data flows from ring[i] to ring[i + 1]). `machines`, when
  // not empty: the two-level layout (every machine's ranks, as many on each), for allReduce.
  Planner(const std::vector<int>& ring, int rank, std::vector<std::vector<int>> machines = {})
      : n_(static_cast<int>(ring.size())),
        ring_(ring),
        i_(positionOf(rank)),
        rank_(rank),
        machines_(std::move(machines)) {}

  // `direct`: the direct form of a collective (see directAllReduce; NetComm::algorithm chooses).
  Program plan(const Call& c, bool direct = false) {
    Program p;
    p.func = c.func;
    type_ = inputType_ = resultType_ = static_cast<std::uint8_t>(c.type);
    op_ = static_cast<std::uint8_t>(c.op);
    p.op = op_;
    es_ = typeBytes(type_);
    send_ = static_cast<const unsigned char*>(c.send);
    recv_ = static_cast<unsigned char*>(c.recv);
    switch (c.func) {
      case Func::allReduce:
        if (direct)
          directAllReduce(p, c.count);
        else if (machines_.size() >= 2)
          hierarchicalAllReduce(p, c.count);
        else
          allReduce(p, c.count);
        break;
      case Func::reduceScatter:
        direct ? directReduceScatter(p, c.count) : reduceScatter(p, c.count);
        break;
      case Func::allGather:
        direct ? directAllGather(p, c.count) : allGather(p, c.count);
        break;
      case Func::broadcast:
        direct ? directBroadcast(p, c.count, c.root) : broadcast(p, c.count, c.root);
        break;
      case Func::reduce:
        direct ? directReduce(p, c.count, c.root) : reduce(p, c.count, c.root);
        break;
      case Func::send:
        pointToPoint(p, c.count, c.root, true, send_);
        break;
      case Func::recv:
        pointToPoint(p, c.count, c.root, false, recv_);
        break;
      case Func::allToAll:
        break;  // expanded into sends and receives by the caller
    }
    p.totalBytes = c.count * es_;
    return p;
  }

 private:
  // Ring positions (any integer, taken modulo n) and the ranks at them.
  int at(int pos) const { return ((pos % n_) + n_) % n_; }
  int rankAt(int pos) const { return ring_[static_cast<std::size_t>(at(pos))]; }
  int positionOf(int rank) const {
    return static_cast<int>(std::find(ring_.begin(), ring_.end(), rank) - ring_.begin());
  }
  int next() const { return rankAt(i_ + 1); }
  int prev() const { return rankAt(i_ - 1); }
  static constexpr std::uint8_t kF32 = H20_R_32F;
  std::uint64_t reducePiece() const { return kPieceBytes / sizeof(float); }
  std::uint64_t copyPiece() const { return kPieceBytes / es_; }

  // A copy step of the gathers and the broadcast chain: `count` elements into `out`, taken from
  // `local` (this rank's own data) when `fromLocal`, else from the predecessor, and passed on to
  // the successor when `forward`. (Buffers may be NULL when count is 0: the flag, not the
  // pointer, decides, so every rank's steps match.)
  Instr copyStep(std::uint64_t count, void* out, bool fromLocal, const void* local,
                 bool forward) const {
    Instr in;
    in.count = count;
    in.out = out;
    in.outType = type_;
    if (fromLocal) {
      in.local = local;
      in.localType = type_;
    } else {
      in.recvPeer = prev();
      in.inType = type_;
    }
    if (forward) {
      in.sendPeer = next();
      in.sendType = type_;
    }
    return in;
  }

  void localCopy(Program& p, std::uint64_t count) {
    Instr in;
    in.local = send_;
    in.localType = type_;
    in.out = recv_;
    in.outType = type_;
    in.count = count;
    p.instrs.push_back(in);
  }

  // The reduce-scatter steps of one round over segments seg(0..n-1) (by ring position); the
  // rank ends with segment i_ reduced into `finalOut`, and sends it on when `forward`.
  template <class Seg>
  void reduceScatterRound(Program& p, Seg seg, bool forward) {
    for (int s = 0; s < n_; ++s) {
      const int j = at(i_ - s - 1);
      const auto [off, len, outPtr] = seg(j);
      Instr in;
      in.count = len;
      in.local = send_ + off * typeBytes(inputType_);
      in.localType = inputType_;
      if (s > 0) {
        in.recvPeer = prev();
        in.inType = s == 1 ? inputType_ : kF32;
        in.reduce = true;
      }
      if (s < n_ - 1) {
        in.sendPeer = next();
        in.sendType = s == 0 ? inputType_ : kF32;
      } else {
        in.out = outPtr;
        in.outType = resultType_;
        if (forward) {
          in.sendPeer = next();
          in.sendType = type_;
        }
      }
      p.instrs.push_back(in);
    }
  }

  void allReduce(Program& p, std::uint64_t count) {
    if (n_ == 1) return localCopy(p, count);
    const std::uint64_t piece = reducePiece();
    const std::uint64_t round = piece * static_cast<std::uint64_t>(n_);
    for (std::uint64_t base = 0; base < count || base == 0; base += round) {
      auto seg = [&](int j) {
        const std::uint64_t off = std::min(count, base + static_cast<std::uint64_t>(j) * piece);
        const std::uint64_t len = std::min(count - off, piece);
        return std::tuple{off, len, static_cast<void*>(recv_ + off * es_)};
      };
      reduceScatterRound(p, seg, true);
      for (int t = 1; t < n_; ++t) {
        const auto [off, len, outPtr] = seg(at(i_ - t));
        Instr in;
        in.count = len;
        in.recvPeer = prev();
        in.inType = type_;
        in.out = outPtr;
        in.outType = type_;
        if (t < n_ - 1) {
          in.sendPeer = next();
          in.sendType = type_;
        }
        p.instrs.push_back(in);
      }
      if (count == 0) break;
    }
  }

  // The direct forms: every rank exchanges with each peer at once instead of along the ring (one
  // exchange, two for allReduce, instead of up to 2(n-1) dependent steps, for the same bytes per
  // rank). Peers go in the order rank+1, rank+2, ...: every rank starts with a different one.
  std::vector<int> peersFromHere() const {
    std::vector<int> peers;
    for (int k = 1; k < n_; ++k)
      peers.push_back((rank_ + k) % n_);
    return peers;
  }
  // One piece to each peer q: `piece(q)` is {elements, source}.
  template <class Piece>
  void sendEach(Program& p, const std::vector<int>& peers, Piece piece) const {
    for (int q : peers) {
      const auto [len, src] = piece(q);
      Instr in;
      in.count = len;
      in.local = src;
      in.localType = type_;
      in.sendPeer = q;
      in.sendType = type_;
      p.instrs.push_back(in);
    }
  }
  // One piece from each peer q into `piece(q)` = {elements, destination}.
  template <class Piece>
  void receiveEach(Program& p, const std::vector<int>& peers, Piece piece) const {
    for (int q : peers) {
      const auto [len, dst] = piece(q);
      Instr in;
      in.count = len;
      in.recvPeer = q;
      in.inType = type_;
      in.out = dst;
      in.outType = type_;
      p.instrs.push_back(in);
    }
  }
  // Reduces `len` elements of `local` with a piece from each peer into `out`, in the order of
  // `peers`, partial sums in fp32 in p.scratch (sized by the caller to one piece): whoever reduces
  // a piece, the result has the same bits on every rank that gets it.
  void reduceEach(Program& p, const std::vector<int>& peers, std::uint64_t len, const void* local,
                  void* out) const {
    auto* acc = p.scratch.data();
    for (std::size_t k = 0; k < peers.size(); ++k) {
      const bool first = k == 0, last = k + 1 == peers.size();
      Instr in;
      in.count = len;
      in.recvPeer = peers[k];
      in.inType = type_;
      in.reduce = true;
      in.local = first ? local : acc;
      in.localType = first ? type_ : kF32;
      in.out = last ? out : acc;
      in.outType = last ? type_ : kF32;
      p.instrs.push_back(in);
    }
  }
  void reserveAccumulator(Program& p, std::uint64_t count) const {
    p.scratch.resize(
        static_cast<std::size_t>(std::min(reducePiece(), std::max<std::uint64_t>(count, 1))));
  }

  // allReduce, per round of one piece per rank: every rank sends each peer the peer's piece of its
  // input, reduces the pieces it gets for its own, sends the result to every peer and takes
  // theirs. Each piece is reduced by its owner only, so every rank ends with the same bits.
  void directAllReduce(Program& p, std::uint64_t count) {
    if (n_ == 1) return localCopy(p, count);
    const std::uint64_t piece = reducePiece();
    const std::uint64_t round = piece * static_cast<std::uint64_t>(n_);
    reserveAccumulator(p, count);
    const auto peers = peersFromHere();
    for (std::uint64_t base = 0; base < count || base == 0; base += round) {
      auto off = [&](int r) {
        return std::min(count, base + static_cast<std::uint64_t>(r) * piece);
      };
      auto len = [&](int r) { return std::min(count - off(r), piece); };
      sendEach(p, peers, [&](int q) { return std::pair{len(q), send_ + off(q) * es_}; });
      reduceEach(p, peers, len(rank_), send_ + off(rank_) * es_, recv_ + off(rank_) * es_);
      sendEach(p, peers, [&](int) { return std::pair{len(rank_), recv_ + off(rank_) * es_}; });
      receiveEach(p, peers, [&](int q) { return std::pair{len(q), recv_ + off(q) * es_}; });
      if (count == 0) break;
    }
  }

  // reduceScatter: every rank sends each peer its block of the input and reduces its own.
  void directReduceScatter(Program& p, std::uint64_t recvcount) {
    if (n_ == 1) return localCopy(p, recvcount);
    const std::uint64_t piece = reducePiece();
    reserveAccumulator(p, recvcount);
    const auto peers = peersFromHere();
    for (std::uint64_t base = 0; base < recvcount || base == 0; base += piece) {
      const std::uint64_t len = std::min(recvcount - base, piece);
      auto block = [&](int r) {
        return send_ + (static_cast<std::uint64_t>(r) * recvcount + base) * es_;
      };
      sendEach(p, peers, [&](int q) { return std::pair{len, block(q)}; });
      reduceEach(p, peers, len, block(rank_), recv_ + base * es_);
      if (recvcount == 0) break;
    }
  }

  // allGather: every rank sends its input to each peer and takes theirs.
  void directAllGather(Program& p, std::uint64_t sendcount) {
    if (n_ == 1) return localCopy(p, sendcount);
    const std::uint64_t piece = copyPiece();
    const auto peers = peersFromHere();
    for (std::uint64_t base = 0; base < sendcount || base == 0; base += piece) {
      const std::uint64_t len = std::min(sendcount - base, piece);
      auto block = [&](int r) {
        return recv_ + (static_cast<std::uint64_t>(r) * sendcount + base) * es_;
      };
      p.instrs.push_back(copyStep(len, block(rank_), true, send_ + base * es_, false));
      sendEach(p, peers, [&](int) { return std::pair{len, send_ + base * es_}; });
      receiveEach(p, peers, [&](int q) { return std::pair{len, block(q)}; });
      if (sendcount == 0) break;
    }
  }

  // broadcast: the root sends to every rank.
  void directBroadcast(Program& p, std::uint64_t count, int root) {
    if (n_ == 1) return localCopy(p, count);
    const std::uint64_t piece = copyPiece();
    const auto peers = peersFromHere();
    for (std::uint64_t base = 0; base < count || base == 0; base += piece) {
      const std::uint64_t len = std::min(count - base, piece);
      if (rank_ == root) {
        p.instrs.push_back(copyStep(len, recv_ + base * es_, true, send_ + base * es_, false));
        sendEach(p, peers, [&](int) { return std::pair{len, send_ + base * es_}; });
      } else {
        receiveEach(p, {root}, [&](int) { return std::pair{len, recv_ + base * es_}; });
      }
      if (count == 0) break;
    }
  }

  // reduce: every rank sends its input to the root, which reduces them.
  void directReduce(Program& p, std::uint64_t count, int root) {
    if (n_ == 1) return localCopy(p, count);
    const std::uint64_t piece = reducePiece();
    if (rank_ == root) reserveAccumulator(p, count);
    const auto peers = peersFromHere();
    for (std::uint64_t base = 0; base < count || base == 0; base += piece) {
      const std::uint64_t len = std::min(count - base, piece);
      if (rank_ == root)
        reduceEach(p, peers, len, send_ + base * es_, recv_ + base * es_);
      else
        sendEach(p, {root}, [&](int) { return std::pair{len, send_ + base * es_}; });
      if (count == 0) break;
    }
  }

  // The all-gather steps of one round over segments seg(0..n-1) (by ring position), in place:
  // the rank's own segment is already in the output.
  template <class Seg>
  void gatherRound(Program& p, Seg seg) {
    for (int t = 0; t < n_; ++t) {
      const auto [off, len, outPtr] = seg(at(i_ - t));
      p.instrs.push_back(copyStep(len, outPtr, t == 0, outPtr, t < n_ - 1));
    }
  }

  // Two levels (ranks on several machines, as many on each): per round of one piece per local
  // rank, a reduce-scatter among the machine's ranks (each ends with one piece reduced over its
  // machine), an allReduce of that piece among the ranks with the same local index on every
  // machine (the only traffic between machines: 2(M-1)/M of a piece per rank), and an all-gather
  // among the machine's ranks. Fewer steps than the flat ring (2(L-1) + 2(M-1) against
  // 2(LM-1)), and the traffic between machines runs over L rings at once.
  void hierarchicalAllReduce(Program& p, std::uint64_t count) {
    std::vector<int> local, cross;
    int li = 0;
    for (const auto& m : machines_) {
      const auto it = std::find(m.begin(), m.end(), rank_);
      if (it != m.end()) {
        local = m;
        li = static_cast<int>(it - m.begin());
      }
    }
    for (const auto& m : machines_)
      cross.push_back(m[static_cast<std::size_t>(li)]);
    Planner inside(local, rank_), across(cross, rank_);
    inside.takeBuffers(*this);
    across.takeBuffers(*this);
    const std::uint64_t piece = reducePiece();
    // The machine's partial sum of this rank's piece stays in fp32 (host memory of the work), so
    // that 16-bit types are rounded once, at the end of the allReduce across machines.
    p.scratch.resize(static_cast<std::size_t>(std::min(piece, std::max<std::uint64_t>(count, 1))));
    inside.resultType_ = kF32;
    across.inputType_ = kF32;
    const std::uint64_t round = piece * local.size();
    for (std::uint64_t base = 0; base < count || base == 0; base += round) {
      auto seg = [&](int j) {
        const std::uint64_t off = std::min(count, base + static_cast<std::uint64_t>(j) * piece);
        const std::uint64_t len = std::min(count - off, piece);
        return std::tuple{off, len, static_cast<void*>(recv_ + off * es_)};
      };
      auto partial = [&](int j) {
        const auto [off, len, out] = seg(j);
        return std::tuple{off, len, static_cast<void*>(p.scratch.data())};
      };
      inside.reduceScatterRound(p, partial, false);
      const auto [off, len, mine] = seg(li);
      across.send_ = reinterpret_cast<const unsigned char*>(p.scratch.data());
      across.recv_ = recv_ + off * es_;
      across.allReduce(p, len);
      inside.gatherRound(p, seg);
      if (count == 0) break;
    }
  }
  void takeBuffers(const Planner& o) {
    type_ = inputType_ = resultType_ = o.type_;
    op_ = o.op_;
    es_ = o.es_;
    send_ = o.send_;
    recv_ = o.recv_;
  }

  void reduceScatter(Program& p, std::uint64_t recvcount) {
    if (n_ == 1) return localCopy(p, recvcount);
    const std::uint64_t piece = reducePiece();
    for (std::uint64_t base = 0; base < recvcount || base == 0; base += piece) {
      const std::uint64_t len = std::min(recvcount - base, piece);
      // The segment at ring position j is the block of the rank there.
      auto seg = [&](int j) {
        return std::tuple{static_cast<std::uint64_t>(rankAt(j)) * recvcount + base, len,
                          static_cast<void*>(recv_ + base * es_)};
      };
      reduceScatterRound(p, seg, false);
      if (recvcount == 0) break;
    }
  }

  void allGather(Program& p, std::uint64_t sendcount) {
    if (n_ == 1) return localCopy(p, sendcount);
    const std::uint64_t piece = copyPiece();
    for (std::uint64_t base = 0; base < sendcount || base == 0; base += piece) {
      const std::uint64_t len = std::min(sendcount - base, piece);
      for (int t = 0; t < n_; ++t) {
        const int owner = rankAt(i_ - t);
        p.instrs.push_back(
            copyStep(len, recv_ + (static_cast<std::uint64_t>(owner) * sendcount + base) * es_,
                     t == 0, send_ + base * es_, t < n_ - 1));
      }
      if (sendcount == 0) break;
    }
  }

  void broadcast(Program& p, std::uint64_t count, int root) {
    const int d = at(i_ - positionOf(root));  // hops after the root along the chain
    if (n_ == 1) return localCopy(p, count);
    const std::uint64_t piece = copyPiece();
    for (std::uint64_t base = 0; base < count || base == 0; base += piece) {
      // Only the root has a send buffer (the others' may be NULL).
      p.instrs.push_back(copyStep(std::min(count - base, piece), recv_ + base * es_, d == 0,
                                  d == 0 ? send_ + base * es_ : nullptr, d < n_ - 1));
      if (count == 0) break;
    }
  }

  void reduce(Program& p, std::uint64_t count, int root) {
    if (n_ == 1) return localCopy(p, count);
    const int d = at(i_ - positionOf(root) - 1);  // 0: the chain's start, n-1: the root
    const std::uint64_t piece = reducePiece();
    for (std::uint64_t base = 0; base < count || base == 0; base += piece) {
      Instr in;
      in.count = std::min(count - base, piece);
      in.local = send_ + base * es_;
      in.localType = type_;
      if (d > 0) {
        in.recvPeer = prev();
        in.inType = d == 1 ? type_ : kF32;
        in.reduce = true;
      }
      if (d < n_ - 1) {
        in.sendPeer = next();
        in.sendType = d == 0 ? type_ : kF32;
      } else {
        in.out = recv_ + base * es_;
        in.outType = type_;
      }
      p.instrs.push_back(in);
      if (count == 0) break;
    }
  }

  void pointToPoint(Program& p, std::uint64_t count, int peer, bool isSend,
                    const unsigned char* buf) {
    const std::uint64_t piece = copyPiece();
    for (std::uint64_t base = 0; base < count || base == 0; base += piece) {
      Instr in;
      in.count = std::min(count - base, piece);
      if (isSend) {
        in.local = buf + base * es_;
        in.localType = type_;
        in.sendPeer = peer;
        in.sendType = type_;
      } else {
        in.recvPeer = peer;
        in.inType = type_;
        in.out = const_cast<unsigned char*>(buf) + base * es_;
        in.outType = type_;
      }
      p.instrs.push_back(in);
      if (count == 0) break;
    }
  }

  // The types of the local input and of a reduce-scatter's result: the data type, except inside
  // the two-level allReduce (fp32 partial sums between the levels).
  std::uint8_t inputType_ = 0, resultType_ = 0;
  int n_;
  std::vector<int> ring_;
  int i_;
  int rank_;
  std::vector<std::vector<int>> machines_;
  std::uint8_t type_ = 0, op_ = 0;
  std::size_t es_ = 4;
  const unsigned char* send_ = nullptr;
  unsigned char* recv_ = nullptr;
};

// Expands the calls of one group (allToAll into its sends and receives) into programs.
std::vector<Program> planGroup(const std::vector<int>& ring, int rank,
                               const std::vector<std::vector<int>>& machines,
                               const std::vector<Call>& calls, const NetComm& comm) {
  const int n = static_cast<int>(ring.size());
  Planner planner(ring, rank, machines);
  std::vector<Program> programs;
  for (const Call& c : calls) {
    if (c.func != Func::allToAll) {
      programs.push_back(
          planner.plan(c, comm.algorithm(c.func, c.count, c.type) == h20cclAlgoDirect));
      continue;
    }
    const std::size_t block = c.count * elementSize(c.type);
    for (int q = 0; q < n; ++q) {
      Call s = c;
      s.func = Func::send;
      s.root = q;
      s.send = static_cast<const unsigned char*>(c.send) + static_cast<std::size_t>(q) * block;
      programs.push_back(planner.plan(s));
      programs.back().func = Func::allToAll;
      Call r = c;
      r.func = Func::recv;
      r.root = q;
      r.recv = static_cast<unsigned char*>(c.recv) + static_cast<std::size_t>(q) * block;
      programs.push_back(planner.plan(r));
      programs.back().func = Func::allToAll;
    }
  }
  return programs;
}

}  // namespace

// What one host function runs: the programs of one group of this rank's calls.
struct NetComm::Work {
  NetComm* comm = nullptr;
  std::vector<Program> programs;
  std::string what;  // the calls, for messages
};

namespace {

void runWork(void* data) {
  std::unique_ptr<NetComm::Work> work(static_cast<NetComm::Work*>(data));
  work->comm->run(*work);
}

// The other function's name for mismatch messages.
const char* sentBy(std::uint32_t func) {
  return func <= static_cast<std::uint32_t>(Func::recv) ? funcName(static_cast<Func>(func))
                                                        : "an unknown call";
}

}  // namespace

NetComm::NetComm(int nranks, int rank, int device, const CommOptions& options,
                 std::shared_ptr<AsyncState> async)
    : nranks_(nranks), rank_(rank), device_(device), options_(options), async_(std::move(async)) {}

NetComm::~NetComm() {
  if (done_) {
    h20EventSynchronize(done_);
    h20EventDestroy(done_);
  }
  conns_.clear();
  for (void* p : imports_)
    if (p) h20IpcCloseMemHandle(p);
  localBlocks_.clear();  // this rank's block, and the local peers' it used
}

// Across processes the direct forms are chosen for small buffers, where the dependent steps of
// the ring or the chain (each a hand-off between processes) cost more than the bytes: up to
// kNetDirectMaxBytes per rank (the larger of its send and receive buffers;
// H20_CCL_DIRECT_MAX_BYTES replaces the limit, H20_CCL_ALGO forces either).
h20cclAlgo NetComm::algorithm(Func f, std::size_t count, h20DataType type) const {
  if (nranks_ < 2 || f == Func::send || f == Func::recv || f == Func::allToAll)
    return h20cclAlgoRing;
  switch (algo_.mode) {
    case AlgoConfig::Mode::ring:
      return h20cclAlgoRing;
    case AlgoConfig::Mode::direct:
      return h20cclAlgoDirect;
    case AlgoConfig::Mode::automatic:
      break;
  }
  std::size_t bytes = count * elementSize(type);
  if (f == Func::allGather || f == Func::reduceScatter) bytes *= static_cast<std::size_t>(nranks_);
  return bytes <= algo_.directMaxBytes.value_or(kNetDirectMaxBytes) ? h20cclAlgoDirect
                                                                    : h20cclAlgoRing;
}

bool NetComm::allInThisProcess() const {
  for (const auto& t : transport_)
    if (t != "self" && t != "local") return false;
  return true;
}

const std::string& NetComm::transportOf(int peer) const {
  return transport_[static_cast<std::size_t>(peer)];
}

std::shared_ptr<NetComm> NetComm::create(const char* fn, const IdInfo& id, int nranks, int rank,
                                         int device, const CommOptions& options,
                                         std::shared_ptr<AsyncState> async) {
  std::shared_ptr<NetComm> c(new NetComm(nranks, rank, device, options, std::move(async)));
  c->connect(fn, id);
  return c;
}

void NetComm::connect(const char* fn, const IdInfo& id) {
  algo_ = configFromEnvironment();
  DeviceGuard guard(device_);
  const std::size_t bytes = Block::bytes(nranks_);
  void* mem = nullptr;
  check(h20Malloc(&mem, bytes), fn);
  block_ = static_cast<Block*>(mem);
  localBlocks_.push_back(LocalBlock::adopt(mem));
  check(h20Memset(block_, 0, bytes), fn);
  check(h20DeviceSynchronize(), fn);
  check(h20EventCreateWithFlags(&done_, h20EventDisableTiming), fn);

  Blob mine{};
  std::memcpy(mine.magic, kBlobMagic, sizeof mine.magic);
  mine.pid = static_cast<std::int32_t>(::getpid());
  mine.device = device_;
  mine.hostId = thisHostId();
  mine.blockAddress = reinterpret_cast<std::uintptr_t>(block_);
  mine.pieceBytes = static_cast<std::uint32_t>(kPieceBytes);
  mine.slots = kSlots;
  mine.mpiRank = mpiWorldRank();
  mine.process = processNonce();
  mine.pidNamespace = pidNamespace();
  const h20Error_t before = h20PeekAtLastError();
  if (h20IpcGetMemHandle(&mine.handle, block_) == h20Success) {
    mine.hasIpcHandle = 1;
  } else if (before == h20Success) {
    h20GetLastError();  // not exportable (the embedded emulator): not an error of this call
  }
  const auto table = exchange(fn, id, nranks_, rank_,
                              std::string(reinterpret_cast<const char*>(&mine), sizeof mine),
                              options_.timeout, async_->cancelled());

  std::vector<Blob> blobs(static_cast<std::size_t>(nranks_));
  for (int r = 0; r < nranks_; ++r) {
    const std::string& b = table[static_cast<std::size_t>(r)];
    Blob& x = blobs[static_cast<std::size_t>(r)];
    if (b.size() != sizeof(Blob))
      fail(h20ErrorRemote, "{}: rank {} sent a malformed description", fn, r);
    std::memcpy(&x, b.data(), sizeof x);
    if (std::memcmp(x.magic, kBlobMagic, sizeof x.magic) != 0 || x.pieceBytes != kPieceBytes ||
        x.slots != kSlots)
      fail(h20ErrorRemote, "{}: rank {} runs an incompatible version of libh20ccl", fn, r);
  }
  for (int r = 0; r < nranks_; ++r) {
    for (int q = 0; q < r; ++q) {
      const Blob &a = blobs[static_cast<std::size_t>(q)], &b = blobs[static_cast<std::size_t>(r)];
      if (a.hostId == b.hostId && a.device == b.device)
        fail(h20ErrorInvalidValue,
             "{}: ranks {} (process {}) and {} (process {}) both use device {}; each rank needs a "
             "device of its own",
             fn, q, a.pid, r, b.pid, a.device);
    }
  }

  for (const Blob& b : blobs)
    devices_.push_back(b.device);
  // The ring visits the ranks machine by machine (in the order the machines first appear, by
  // rank within a machine), so that it crosses between machines once per machine, not once per
  // rank: the traffic between machines is then a ring's over the machines.
  std::vector<std::uint64_t> hosts;
  for (const Blob& b : blobs)
    if (std::find(hosts.begin(), hosts.end(), b.hostId) == hosts.end()) hosts.push_back(b.hostId);
  std::vector<std::vector<int>> machines;
  for (std::uint64_t h : hosts) {
    machines.emplace_back();
    for (int r = 0; r < nranks_; ++r)
      if (blobs[static_cast<std::size_t>(r)].hostId == h) {
        ring_.push_back(r);
        machines.back().push_back(r);
      }
  }
  // allReduce goes in two levels where there are several machines with as many ranks (two or
  // more) on each; otherwise the machine-grouped ring is already the best ring.
  bool even = machines.size() >= 2 && machines[0].size() >= 2;
  for (const auto& m : machines)
    even = even && m.size() == machines[0].size();
  if (even) machines_ = std::move(machines);
  // Threads of one process: the caller turns them into a clique; no connection is made (and no
  // peer's block touched: each rank frees its own as soon as it knows).
  bool local = options_.transport == TransportChoice::automatic;
  for (const Blob& b : blobs)
    local = local && b.process == mine.process;
  if (local) {
    transport_.assign(static_cast<std::size_t>(nranks_), "local");
    transport_[static_cast<std::size_t>(rank_)] = "self";
    return;
  }
  // The transport of every pair, decided alike on every rank (each knows every blob), so that
  // all agree whether the MPI communicator is needed and fail alike when a pair has none.
  const bool haveMpi = mpiAvailable();
  auto pairKind = [&](int a, int b) -> std::string {
    const Blob &x = blobs[static_cast<std::size_t>(a)], &y = blobs[static_cast<std::size_t>(b)];
    const bool sameHost = x.hostId == y.hostId;
    if (a == b) return "self";
    if (x.process == y.process) return "local";
    if (options_.transport != TransportChoice::mpi && sameHost && x.hasIpcHandle && y.hasIpcHandle)
      return "ipc";
    if (options_.transport != TransportChoice::ipc && x.mpiRank >= 0 && y.mpiRank >= 0)
      return "mpi";
    return {};
  };
  for (int a = 0; a < nranks_; ++a) {
    for (int b = a + 1; b < nranks_; ++b) {
      if (!pairKind(a, b).empty()) continue;
      const Blob &x = blobs[static_cast<std::size_t>(a)], &y = blobs[static_cast<std::size_t>(b)];
      std::string why;
      if (options_.transport == TransportChoice::ipc)
        why = x.hostId != y.hostId ? "H20_CCL_TRANSPORT=ipc, but they run on different machines"
                                   : "H20_CCL_TRANSPORT=ipc needs both processes on the device "
                                     "daemon (H20_DRIVER=daemon)";
      else if (options_.transport == TransportChoice::mpi)
        why = fmt::format("H20_CCL_TRANSPORT=mpi, but {}",
                          haveMpi ? "one of them has not initialised MPI" : mpiUnavailableReason());
      else
        why = fmt::format(
            "ipc needs both processes on one machine and the device daemon (H20_DRIVER=daemon); "
            "mpi needs MPI_THREAD_MULTIPLE initialised in both{}",
            haveMpi ? "" : fmt::format(" ({})", mpiUnavailableReason()));
      fail(h20ErrorNotSupported,
           "{}: no transport connects rank {} (process {}) and rank {} "
           "(process {}): {}",
           fn, a, x.pid, b, y.pid, why);
    }
  }
  conns_.resize(static_cast<std::size_t>(nranks_));
  transport_.resize(static_cast<std::size_t>(nranks_));
  pids_.assign(static_cast<std::size_t>(nranks_), 0);
  peerBlocks_.assign(static_cast<std::size_t>(nranks_), nullptr);
  imports_.assign(static_cast<std::size_t>(nranks_), nullptr);
  bool anyMpi = false;
  for (int a = 0; a < nranks_; ++a)
    for (int b = a + 1; b < nranks_; ++b)
      anyMpi = anyMpi || pairKind(a, b) == "mpi";
  for (int q = 0; q < nranks_; ++q)
    transport_[static_cast<std::size_t>(q)] = pairKind(rank_, q);
  std::vector<std::unique_ptr<Conn>> mpiConns;
  if (anyMpi) {
    // Collective over every rank (each computed anyMpi alike), and first: nothing before it can
    // fail on one rank only (the checks above see the same table everywhere), so no rank is left
    // waiting in it for one that gave up.
    std::vector<int> mpiRanks;
    for (const Blob& b : blobs)
      mpiRanks.push_back(b.mpiRank);
    // A tag of this communicator's own (from the id's secret), so that communicators created at
    // the same time by overlapping processes do not mix.
    const int tag = 1024 + (id.secret[0] << 8 | id.secret[1]) % 15000;
    mpiConns = connectMpi(fn, mpiRanks, rank_, transport_, tag);
  }
  try {
    for (int q = 0; q < nranks_; ++q) {
      const Blob& b = blobs[static_cast<std::size_t>(q)];
      const auto uq = static_cast<std::size_t>(q);
      const std::string& kind = transport_[uq];
      // Whether the peer's process still exists can be asked only in the same pid namespace.
      if (b.hostId == mine.hostId && b.pidNamespace == mine.pidNamespace && b.pidNamespace != 0)
        pids_[uq] = b.pid;
      Block* peer = nullptr;
      if (kind == "self") {
        peer = block_;
      } else if (kind == "local") {
        auto ref = LocalBlock::find(static_cast<std::uintptr_t>(b.blockAddress));
        if (!ref) fail(h20ErrorRemote, "{}: rank {} (this process) is already gone", fn, q);
        localBlocks_.push_back(std::move(ref));
        peer = reinterpret_cast<Block*>(static_cast<std::uintptr_t>(b.blockAddress));
      } else if (kind == "ipc") {
        void* p = nullptr;
        if (h20IpcOpenMemHandle(&p, b.handle, h20IpcMemLazyEnablePeerAccess) != h20Success)
          fail(h20ErrorRemote,
               "{}: cannot open the shared block of rank {} (process {}): {}; it left before "
               "this rank connected",
               fn, q, b.pid, h20GetLastErrorMessage());
        imports_[uq] = p;
        peer = static_cast<Block*>(p);
      } else {
        usesMpi_ = true;
        conns_[uq] = std::move(mpiConns[uq]);
        continue;
      }
      peerBlocks_[uq] = peer;
      conns_[uq] = std::make_unique<FifoConn>(block_->fifoFrom(q), peer->fifoFrom(rank_),
                                              &peer->header, &block_->header);
    }
    awaitConnected(fn);
  } catch (const Error& e) {
    // The peers waiting for this rank to connect learn why at once.
    failRank(e.code(), e.message());
    throw;
  }
}

// The end of init for the peers reached through memory: this rank says it has opened their
// blocks, and waits until they have opened its own, so that no rank can free its block (return,
// then abort or destroy) before every peer holds it. (MPI_Comm_create_group, before it, is the
// same for the MPI peers.)
void NetComm::awaitConnected(const char* fn) {
  RankHeader& self = block_->header;
  self.connected.store(1, std::memory_order_release);
  for (Block* p : peerBlocks_)
    if (p && p != block_) ringDoorbell(p->header);
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  std::vector<char> waiting(static_cast<std::size_t>(nranks_), 0);
  for (;;) {
    const std::uint32_t bell = self.doorbell.load(std::memory_order_seq_cst);
    bool all = true;
    for (int q = 0; q < nranks_; ++q) {
      Block* p = peerBlocks_[static_cast<std::size_t>(q)];
      waiting[static_cast<std::size_t>(q)] =
          p && p != block_ && p->header.connected.load(std::memory_order_acquire) == 0;
      all = all && !waiting[static_cast<std::size_t>(q)];
    }
    if (all) return;
    if (const std::string why = peerProblem(waiting); !why.empty())
      fail(h20ErrorRemote, "{}: {} before connecting", fn, why);
    if (async_->cancelled().load())
      fail(h20ErrorRemote,
           "{}: init was given up: the communicator was destroyed or aborted before every rank "
           "connected",
           fn);
    if (std::chrono::steady_clock::now() > deadline)
      fail(h20ErrorRemote, "{}: the other ranks did not connect within the timeout of {} ms", fn,
           options_.timeout.count());
    self.sleeping.store(1, std::memory_order_seq_cst);
    if (self.doorbell.load(std::memory_order_seq_cst) == bell)
      futexWait(&self.doorbell, bell, std::chrono::milliseconds(20));
    self.sleeping.store(0, std::memory_order_seq_cst);
  }
}

void NetComm::enqueue(const std::vector<Call>& calls, h20Stream_t stream) {
  auto work = std::make_unique<Work>();
  work->comm = this;
  work->programs = planGroup(ring_, rank_, machines_, calls, *this);
  for (const Call& c : calls)
    work->what += fmt::format("{}{}", work->what.empty() ? "" : ", ", funcName(c.func));
  // One enqueue at a time: each work waits for the previous one, whatever thread and stream.
  std::lock_guard<std::mutex> lock(enqueueMu_);
  DeviceGuard guard(device_);
  check(h20StreamWaitEvent(stream, done_, 0), "h20StreamWaitEvent");
  check(h20LaunchHostFunc(stream, &runWork, work.get()), "h20LaunchHostFunc");
  work.release();  // owned by the host function now
  if (const h20Error_t rc = h20EventRecord(done_, stream); rc != h20Success) {
    // The next work could overtake this one: the communicator cannot go on.
    failRank(rc, fmt::format("h20EventRecord after {} failed: {}", funcName(calls[0].func),
                             h20GetLastErrorMessage()));
    check(rc, "h20EventRecord");
  }
}

void NetComm::drain() {
  if (done_) h20EventSynchronize(done_);
}

void NetComm::failRank(h20Error_t code, const std::string& message) {
  async_->fail(code, message);
  RankHeader& h = block_->header;
  if (h.failed.exchange(1) == 0) {
    const std::string m = async_->message();
    std::snprintf(h.reason, sizeof h.reason, "%s", m.c_str());
    for (auto& c : conns_)
      if (c) c->tellFailed(h.reason);
  }
  for (Block* p : peerBlocks_)
    if (p && p != block_) ringDoorbell(p->header);
  ringDoorbell(h);
}

void NetComm::abort(const std::string& why) {
  aborted_.store(true);
  failRank(h20ErrorRemote, why);
}

std::string NetComm::peerProblem(const std::vector<char>& waitingFor) const {
  for (int q = 0; q < nranks_; ++q) {
    // Only the peers this work waits for: one that finished its part and exited is fine.
    if (q == rank_ || !waitingFor[static_cast<std::size_t>(q)]) continue;
    const auto uq = static_cast<std::size_t>(q);
    if (Block* b = peerBlocks_[uq]; b && b->header.failed.load(std::memory_order_acquire)) {
      char reason[sizeof b->header.reason + 1] = {};
      std::memcpy(reason, b->header.reason, sizeof b->header.reason);
      return fmt::format("rank {} failed: {}", q, reason);
    }
    if (const int pid = pids_[uq]; pid > 0 && pid != ::getpid() && !processAlive(pid))
      return fmt::format("rank {} (process {}) exited", q, pid);
    if (Conn* c = conns_[uq].get())
      if (std::string reason = c->peerFailure(); !reason.empty())
        return fmt::format("rank {} failed: {}", q, reason);
  }
  return {};
}

void NetComm::run(Work& work) {
  const std::string where =
      fmt::format("{} (rank {} of {}, device {})", work.what, rank_, nranks_, device_);
  if (async_->code() != h20Success) return;  // an earlier operation failed: nothing moves
  // Which program may use each direction of each connection now: the earliest unfinished one
  // that uses it (pieces of one connection go in issue order).
  std::map<std::pair<int, int>, std::deque<Program*>> users;  // (peer, 0 recv / 1 send)
  for (auto& p : work.programs) {
    std::vector<std::pair<int, int>> dirs;
    for (const Instr& in : p.instrs) {
      if (in.recvPeer >= 0) dirs.emplace_back(in.recvPeer, 0);
      if (in.sendPeer >= 0) dirs.emplace_back(in.sendPeer, 1);
    }
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    for (auto& d : dirs)
      users[d].push_back(&p);
  }
  auto mayUse = [&](int peer, int dir, Program* p) {
    return peer < 0 || users[{peer, dir}].front() == p;
  };
  auto finish = [&](Program* p) {
    for (auto& [d, q] : users)
      if (!q.empty() && q.front() == p) q.pop_front();
  };

  // The peers the work could not move on for in its last pass (their pieces or their room).
  std::vector<char> waitingFor(static_cast<std::size_t>(nranks_), 0);
  // Tries the program's next instruction; true when it ran.
  auto step = [&](Program& p) -> bool {
    const Instr& in = p.instrs[p.next];
    if (!mayUse(in.recvPeer, 0, &p) || !mayUse(in.sendPeer, 1, &p)) return false;
    Conn* rc = in.recvPeer >= 0 ? conns_[static_cast<std::size_t>(in.recvPeer)].get() : nullptr;
    Conn* sc = in.sendPeer >= 0 ? conns_[static_cast<std::size_t>(in.sendPeer)].get() : nullptr;
    PieceMeta meta{};
    const void* got = nullptr;
    if (rc) {
      // A piece that only lands in the output may be delivered there directly.
      const bool direct = in.out && !in.reduce && in.inType == in.outType;
      got = direct ? rc->peek(&meta, in.out, in.count * typeBytes(in.inType)) : rc->peek(&meta);
      if (!got) {
        waitingFor[static_cast<std::size_t>(in.recvPeer)] = 1;
        return false;
      }
    }
    if (sc && !sc->canSend()) {
      waitingFor[static_cast<std::size_t>(in.sendPeer)] = 1;
      return false;
    }
    const std::uint64_t inBytes = in.count * typeBytes(in.inType);
    // A receive matches a send; everything else matches the same operation.
    const auto peerFunc = static_cast<std::uint32_t>(p.func == Func::recv ? Func::send : p.func);
    if (rc && (meta.bytes != inBytes || (meta.func != kMetaUnknown &&
                                         (meta.func != peerFunc || meta.total != p.totalBytes))))
      fail(h20ErrorInvalidValue,
           "the ranks disagree: rank {} runs {} moving {} bytes and expects a piece of {} bytes "
           "from rank {}, but rank {} sent a piece of {} bytes of {} moving {} bytes",
           rank_, funcName(p.func), p.totalBytes, inBytes, in.recvPeer, in.recvPeer, meta.bytes,
           sentBy(meta.func), meta.total);
    const std::uint64_t sendBytes = in.count * typeBytes(in.sendType);
    PieceMeta outMeta{sendBytes, static_cast<std::uint32_t>(p.func), 0, p.totalBytes};
    if (sc && !rc && !in.out && !in.reduce && in.localType == in.sendType) {
      sc->postFrom(in.local, outMeta);  // straight from the buffer (no slot on mpi)
    } else {
      void* slot = sc ? sc->sendSlot() : nullptr;
      void* dst = in.out ? in.out : slot;
      const std::uint8_t dstType = in.out ? in.outType : in.sendType;
      if (in.reduce) {
        ReduceArgs a;
        a.op = p.op;
        a.count = in.count;
        a.nsrc = 2;
        a.src[0] = in.local;
        a.srcType[0] = in.localType;
        a.src[1] = got;
        a.srcType[1] = in.inType;
        a.dst = dst;
        a.dstType = dstType;
        if (in.count) reduceOnHost(a);
      } else if (dst) {
        convert(dst, dstType, got ? got : in.local, got ? in.inType : in.localType, in.count, 0);
      }
      if (in.out && sc) {
        // The result is forwarded from the output itself (no copy into a slot on mpi).
        if (in.sendType == in.outType) {
          sc->postFrom(in.out, outMeta);
        } else {
          convert(slot, in.sendType, in.out, in.outType, in.count, 0);
          sc->post(outMeta);
        }
      } else if (sc) {
        sc->post(outMeta);
      }
    }
    if (rc) rc->release();
    if (++p.next == p.instrs.size()) finish(&p);
    return true;
  };

  RankHeader& self = block_->header;
  auto lastProgress = Clock::now();
  auto lastCheck = Clock::now();
  int idle = 0;
  try {
    for (;;) {
      const std::uint32_t bell = self.doorbell.load(std::memory_order_seq_cst);
      std::fill(waitingFor.begin(), waitingFor.end(), 0);
      bool moved = false, all = true;
      for (auto& p : work.programs) {
        while (!p.done() && step(p))
          moved = true;
        all = all && p.done();
      }
      if (all) {
        // Sends that went straight from a buffer must have left it before the work ends.
        for (std::size_t q = 0; q < conns_.size(); ++q)
          if (conns_[q] && !conns_[q]->sendsComplete()) {
            all = false;
            waitingFor[q] = 1;
          }
        if (all) return;
      }
      const auto now = Clock::now();
      if (moved) {
        lastProgress = now;
        idle = 0;
        continue;
      }
      if (aborted_.load()) fail(h20ErrorRemote, "the communicator was aborted");
      if (now - lastCheck > std::chrono::milliseconds(20) || ++idle % 64 == 0) {
        lastCheck = now;
        if (const std::string why = peerProblem(waitingFor); !why.empty())
          fail(h20ErrorRemote, "{}", why);
        if (now - lastProgress > options_.timeout)
          fail(h20ErrorRemote, "no progress from the other ranks within the timeout of {} ms",
               options_.timeout.count());
      }
      if (usesMpi_) {
        // MPI requests complete without ringing the doorbell: poll, yielding the core.
        if (idle > 8)
          std::this_thread::sleep_for(std::chrono::microseconds(idle > 64 ? 200 : 50));
        else
          std::this_thread::yield();
        continue;
      }
      // A piece usually follows within microseconds: yield a few times before sleeping (a futex
      // wake-up costs more than the step it waits for at small sizes).
      if (idle <= 16) {
        std::this_thread::yield();
        continue;
      }
      self.sleeping.store(1, std::memory_order_seq_cst);
      if (self.doorbell.load(std::memory_order_seq_cst) == bell)
        futexWait(&self.doorbell, bell, std::chrono::milliseconds(20));
      self.sleeping.store(0, std::memory_order_seq_cst);
    }
  } catch (const Error& e) {
    failRank(e.code(), fmt::format("{}: {}", where, e.message()));
  } catch (const std::exception& e) {
    failRank(h20ErrorUnknown, fmt::format("{}: {}", where, e.what()));
  }
  // Nothing may land in the application's buffers after the work has ended.
  for (auto& c : conns_)
    if (c) c->cancel();
}

}  // namespace h20::ccl
