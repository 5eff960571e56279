// ccl_bench.cpp - the collectives benchmark: time and bandwidth of each collective over a range
// of sizes, in the format of nccl-tests, plus a correctness check of every size (#wrong).
//
// Owns: argument parsing, buffers and streams, the timing loop and the table. Sizes are the
// per-rank buffer in bytes, as nccl-tests counts them: the (larger) receive buffer of allGather,
// the send buffer of reduceScatter, the buffer of allReduce and broadcast. Times are host
// wall-clock per iteration over `iters` back-to-back collectives (issued in a group for all ranks)
// followed by a synchronisation of every rank's stream, as nccl-tests measures. Bandwidths
// (nccl-tests' definitions, see its doc/PERFORMANCE.md): algbw = size / time; busbw = algbw times
// 2(n-1)/n for allReduce, (n-1)/n for allGather, reduceScatter and allToAll, 1 for broadcast,
// reduce and sendRecv.
//
// Ranks: without MPI every visible device (or --ndev) is a rank of this process
// (h20cclCommInitAll), issued by one thread in a group. Started by mpirun (the bench is built
// with MPI and OMPI_COMM_WORLD_SIZE / PMI_SIZE say so), every process is one rank, as with
// nccl-tests: rank 0 makes the unique id, MPI_Bcast hands it out, h20cclCommInitRank on device
// (rank mod the visible devices); the time of a size is the slowest rank's, #wrong the sum, and
// rank 0 prints. The transport between the processes is libh20ccl's choice (ipc through the
// device daemon, or mpi; H20_CCL_TRANSPORT forces one).
#include "ccl_bench.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#ifdef H20_CCL_BENCH_MPI
#include <mpi.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

struct Options {
  std::string collective = "all";
  std::string minBytes = "8", maxBytes = "64M";
  double factor = 2;
  std::string type = "float";
  std::string op = "sum";
  int root = 0;
  int ndev = 0;
  int iters = 20;
  int warmup = 5;
  int check = 1;
  std::string algo;
};

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A bad option value: the process exits 2, as for a command-line syntax error.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void ok(h20Error_t rc, const char* what) {
  if (rc != h20Success)
    throw BenchError(fmt::format("{} failed: {}: {}", what, h20GetErrorName(rc),
                                 std::strncmp(what, "h20ccl", 6) == 0 ? h20cclGetLastErrorMessage()
                                                                      : h20GetLastErrorMessage()));
}

// "64M", "512K", "8": bytes with an optional binary suffix.
std::size_t parseBytes(const char* option, const std::string& s) {
  std::size_t pos = 0;
  double v = -1;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  double mult = 1;
  if (pos > 0 && pos + 1 == s.size()) {
    switch (s[pos]) {
      case 'K':
      case 'k':
        mult = 1024.0;
        ++pos;
        break;
      case 'M':
      case 'm':
        mult = 1024.0 * 1024;
        ++pos;
        break;
      case 'G':
      case 'g':
        mult = 1024.0 * 1024 * 1024;
        ++pos;
        break;
      default:
        break;
    }
  }
  if (pos == 0 || pos != s.size() || !(v >= 0) || v * mult > 1e15)
    throw UsageError(
        fmt::format("{} '{}': a size in bytes, optionally with K, M or G (e.g. 64M)", option, s));
  return static_cast<std::size_t>(v * mult);
}

enum class Coll { allReduce, allGather, reduceScatter, broadcast, reduce, allToAll, sendRecv };
const char* collName(Coll c) {
  switch (c) {
    case Coll::allReduce:
      return "allReduce";
    case Coll::allGather:
      return "allGather";
    case Coll::reduceScatter:
      return "reduceScatter";
    case Coll::broadcast:
      return "broadcast";
    case Coll::reduce:
      return "reduce";
    case Coll::allToAll:
      return "allToAll";
    case Coll::sendRecv:
      return "sendRecv";
  }
  return "?";
}
bool reduces(Coll c) {
  return c == Coll::allReduce || c == Coll::reduceScatter || c == Coll::reduce;
}
bool hasRoot(Coll c) {
  return c == Coll::broadcast || c == Coll::reduce;
}
// The size names the larger per-rank buffer: split in n blocks for these.
bool splits(Coll c) {
  return c == Coll::allGather || c == Coll::reduceScatter || c == Coll::allToAll;
}

double busFactor(Coll c, int n) {
  switch (c) {
    case Coll::allReduce:
      return 2.0 * (n - 1) / n;
    case Coll::allGather:
    case Coll::reduceScatter:
    case Coll::allToAll:
      return static_cast<double>(n - 1) / n;
    case Coll::broadcast:
    case Coll::reduce:
    case Coll::sendRecv:
      return 1.0;
  }
  return 1.0;
}

std::size_t elemSize(h20DataType t) {
  return t == H20_R_32F ? 4 : 2;
}

// Host encoding of test values (small integers: exact in every type).
void encode(h20DataType t, float v, unsigned char* out) {
  if (t == H20_R_32F) {
    std::memcpy(out, &v, 4);
  } else if (t == H20_R_16BF) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    const std::uint16_t b = static_cast<std::uint16_t>(u >> 16);  // exact for small integers
    std::memcpy(out, &b, 2);
  } else {
    const _Float16 h = static_cast<_Float16>(v);
    std::memcpy(out, &h, 2);
  }
}
float decode(h20DataType t, const unsigned char* in) {
  if (t == H20_R_32F) {
    float v;
    std::memcpy(&v, in, 4);
    return v;
  }
  if (t == H20_R_16BF) {
    std::uint16_t b;
    std::memcpy(&b, in, 2);
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float v;
    std::memcpy(&v, &u, 4);
    return v;
  }
  _Float16 h;
  std::memcpy(&h, in, 2);
  return static_cast<float>(h);
}

float value(int rank, std::size_t i) {
  return static_cast<float>(static_cast<int>((static_cast<std::size_t>(rank) * 3 + i) % 11) - 5);
}

// Whether mpirun started this process (then each process is one rank).
bool launchedByMpi() {
#ifdef H20_CCL_BENCH_MPI
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (const char* s = std::getenv(v); s && *s) return true;
#endif
  return false;
}

// The processes' part: the max (times) or the sum (#wrong) over the ranks; without MPI, v.
template <class T>
T overProcesses(T v, bool max) {
#ifdef H20_CCL_BENCH_MPI
  int init = 0;
  MPI_Initialized(&init);
  if (init)
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, std::is_same_v<T, double> ? MPI_DOUBLE : MPI_LONG,
                  max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
#endif
  return v;
}

void barrier() {
#ifdef H20_CCL_BENCH_MPI
  int init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

// One rank this process drives.
struct Rank {
  int rank = 0;
  int device = 0;
  h20cclComm_t comm = nullptr;
  h20Stream_t stream = nullptr;
  void* send = nullptr;
  void* recv = nullptr;
};

class Bench {
 public:
  Bench(const Options& o, bool mpi) : o_(o), mpi_(mpi) {
    // Every option value first, so that a typo costs no device set-up.
    if (o.type == "float")
      type_ = H20_R_32F;
    else if (o.type == "bf16")
      type_ = H20_R_16BF;
    else if (o.type == "half")
      type_ = H20_R_16F;
    else
      throw UsageError(fmt::format("--datatype '{}': float, bf16 or half", o.type));
    if (o.op == "sum")
      op_ = h20cclSum;
    else if (o.op == "max")
      op_ = h20cclMax;
    else if (o.op == "min")
      op_ = h20cclMin;
    else
      throw UsageError(fmt::format("--op '{}': sum, max or min", o.op));
    minBytes_ = parseBytes("--minbytes", o.minBytes);
    maxBytes_ = parseBytes("--maxbytes", o.maxBytes);
    if (minBytes_ > maxBytes_)
      throw UsageError(
          fmt::format("--minbytes {} is larger than --maxbytes {}", o.minBytes, o.maxBytes));
    int visible = 0;
    ok(h20GetDeviceCount(&visible), "h20GetDeviceCount");
    if (!o.algo.empty()) setenv("H20_CCL_ALGO", o.algo.c_str(), 1);
    if (mpi_) {
#ifdef H20_CCL_BENCH_MPI
      int me = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
      MPI_Comm_size(MPI_COMM_WORLD, &n_);
      checkRoot();
      Rank r;
      r.rank = me;
      r.device = me % visible;
      ok(h20SetDevice(r.device), "h20SetDevice");
      h20cclUniqueId id{};
      if (me == 0) ok(h20cclGetUniqueId(&id), "h20cclGetUniqueId");
      MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
      ok(h20cclCommInitRank(&r.comm, n_, id, me), "h20cclCommInitRank");
      ranks_.push_back(r);
#endif
    } else {
      n_ = o.ndev > 0 ? o.ndev : visible;
      if (o.ndev < 0 || n_ > visible)
        throw UsageError(fmt::format("--ndev {}: 0 (every device) or 1..{}", o.ndev, visible));
      checkRoot();
      std::vector<h20cclComm_t> comms(static_cast<std::size_t>(n_));
      ok(h20cclCommInitAll(comms.data(), n_, nullptr), "h20cclCommInitAll");
      for (int r = 0; r < n_; ++r)
        ranks_.push_back(Rank{r, r, comms[static_cast<std::size_t>(r)]});
    }
    for (auto& r : ranks_) {
      ok(h20SetDevice(r.device), "h20SetDevice");
      ok(h20StreamCreateWithFlags(&r.stream, h20StreamNonBlocking), "h20StreamCreateWithFlags");
    }
  }
  ~Bench() {
    for (auto& r : ranks_) {
      h20Free(r.send);
      h20Free(r.recv);
      h20StreamDestroy(r.stream);
      h20cclCommDestroy(r.comm);
    }
  }
  bool printer() const {
    return ranks_.front().rank == 0;
  }
  void checkRoot() const {
    if (o_.root < 0 || o_.root >= n_)
      throw UsageError(fmt::format("--root {} is not a rank (0..{})", o_.root, n_ - 1));
  }

  void header() const {
    if (!printer()) return;
    const char* topo = std::getenv("H20_EMU_TOPOLOGY");
    const char* transport = std::getenv("H20_CCL_TRANSPORT");
    if (mpi_)
      fmt::print(
          "# h20-ccl-bench: {} ranks, one per process (mpirun), transport {}, datatype {}, "
          "op {}, iters {}, warmup {}\n",
          n_, transport && *transport ? transport : "auto", o_.type, o_.op, o_.iters, o_.warmup);
    else
      fmt::print(
          "# h20-ccl-bench: {} ranks, topology {}, datatype {}, op {}, iters {}, warmup {}\n", n_,
          topo && *topo ? topo : "switch (default)", o_.type, o_.op, o_.iters, o_.warmup);
    std::vector<int> ring(static_cast<std::size_t>(n_));
    int count = 0;
    ok(h20cclCommGetRingOrder(ranks_[0].comm, ring.data(), n_, &count), "h20cclCommGetRingOrder");
    fmt::print("# ring order (ranks):");
    for (int r : ring)
      fmt::print(" {}", r);
    const char* algo = std::getenv("H20_CCL_ALGO");
    fmt::print("\n# algorithm selection: {}\n", algo && *algo ? algo : "auto");
  }

  // Returns the number of wrong elements over all sizes.
  long run(Coll c) {
    if (printer()) {
      fmt::print("#\n# {}\n", collName(c));
      fmt::print(
          "# {:>12} {:>12} {:>6} {:>6} {:>5} | {:>10} {:>8} {:>8} {:>6} | {:>10} {:>8} {:>8} "
          "{:>6} | {}\n",
          "size(B)", "count", "type", "redop", "root", "time(us)", "algbw", "busbw", "#wrong",
          "time(us)", "algbw", "busbw", "#wrong", "algo");
      fmt::print(
          "# {:>12} {:>12} {:>6} {:>6} {:>5} | {:>10} {:>8} {:>8} {:>6} | {:>10} {:>8} {:>8} "
          "{:>6} |\n",
          "", "(elements)", "", "", "", "out-of-place", "(GB/s)", "(GB/s)", "", "in-place",
          "(GB/s)", "(GB/s)", "");
    }
    const std::size_t es = elemSize(type_);
    const std::size_t minB = minBytes_, maxB = maxBytes_;
    long wrongTotal = 0;
    std::size_t last = 0;
    for (double b = static_cast<double>(std::max<std::size_t>(minB, es));
         b <= static_cast<double>(maxB); b = std::max(b * o_.factor, b + 1)) {
      std::size_t count = static_cast<std::size_t>(b) / es;
      if (splits(c)) count = count / static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_);
      if (count == 0 || count * es == last) continue;
      last = count * es;
      wrongTotal += runSize(c, count);
      if (o_.factor <= 1) break;
    }
    return wrongTotal;
  }

 private:
  // count: elements of the per-rank buffer named by the size.
  long runSize(Coll c, std::size_t count) {
    const std::size_t es = elemSize(type_);
    const std::size_t nn = static_cast<std::size_t>(n_);
    const std::size_t per = splits(c) ? count / nn : count;
    ensureBuffers(count * es);
    double us[2] = {0, 0};
    long wrong[2] = {0, 0};
    // All-to-all and send/receive have no in-place form: the second column stays empty.
    const int forms = c == Coll::allToAll || c == Coll::sendRecv ? 1 : 2;
    for (int inPlace = 0; inPlace < forms; ++inPlace) {
      for (int i = 0; i < o_.warmup; ++i)
        issue(c, per, inPlace);
      syncAll();
      barrier();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < o_.iters; ++i)
        issue(c, per, inPlace);
      syncAll();
      const auto t1 = std::chrono::steady_clock::now();
      us[inPlace] = overProcesses(
          std::chrono::duration<double, std::micro>(t1 - t0).count() / o_.iters, true);
      wrong[inPlace] = o_.check ? overProcesses(check(c, per, inPlace), false) : -1;
    }
    h20cclAlgo algo = h20cclAlgoRing;
    if (c != Coll::allToAll && c != Coll::sendRecv)
      ok(h20cclCommGetAlgorithm(ranks_[0].comm, static_cast<h20cclFunc>(c), per, type_, &algo),
         "h20cclCommGetAlgorithm");
    const double bytes = static_cast<double>(count * es);
    auto row = [&](int k) {
      if (k >= forms) return fmt::format("{:>10} {:>8} {:>8} {:>6}", "N/A", "N/A", "N/A", "N/A");
      const double alg = bytes / (us[k] * 1e-6) / 1e9;
      return fmt::format("{:>10.1f} {:>8.2f} {:>8.2f} {:>6}", us[k], alg, alg * busFactor(c, n_),
                         wrong[k] < 0 ? std::string("N/A") : std::to_string(wrong[k]));
    };
    if (printer()) {
      fmt::print("  {:>12} {:>12} {:>6} {:>6} {:>5} | {} | {} | {}\n", count * es, count, o_.type,
                 reduces(c) ? o_.op : "none", hasRoot(c) ? o_.root : -1, row(0), row(1),
                 c == Coll::allToAll || c == Coll::sendRecv ? "p2p"
                 : algo == h20cclAlgoDirect                 ? "direct"
                                                            : "ring");
      std::fflush(stdout);
    }
    return std::max(0L, wrong[0]) + std::max(0L, wrong[1]);
  }

  // Two buffers per rank (send, recv) of `bytes` each, grown as needed.
  void ensureBuffers(std::size_t bytes) {
    if (bytes <= capacity_) return;
    for (auto& r : ranks_) {
      h20Free(r.send);
      h20Free(r.recv);
      r.send = r.recv = nullptr;
      ok(h20SetDevice(r.device), "h20SetDevice");
      for (void** p : {&r.send, &r.recv}) {
        ok(h20Malloc(p, bytes), "h20Malloc");
        // Back every page before timing: the emulator maps device memory lazily, and reading
        // never-written pages (the kernel's shared zero page) would be faster than any real read.
        // 0x3c bytes are normal numbers in every type; repeated in-place sums only grow them (to
        // infinity in 16-bit types after a few iterations), never into slow subnormals.
        ok(h20Memset(*p, 0x3c, bytes), "h20Memset");
      }
      ok(h20DeviceSynchronize(), "h20DeviceSynchronize");
    }
    capacity_ = bytes;
  }
  // Where rank r's input lives for this placement.
  unsigned char* input(Coll c, const Rank& r, std::size_t per, bool inPlace) const {
    auto* send = static_cast<unsigned char*>(r.send);
    auto* recv = static_cast<unsigned char*>(r.recv);
    if (!inPlace) return send;
    const std::size_t es = elemSize(type_);
    switch (c) {
      case Coll::allGather:
        return recv + static_cast<std::size_t>(r.rank) * per * es;
      case Coll::reduceScatter:
        return send;
      default:
        return recv;
    }
  }
  unsigned char* output(Coll c, const Rank& r, std::size_t per, bool inPlace) const {
    if (inPlace && c == Coll::reduceScatter)
      return static_cast<unsigned char*>(r.send) +
             static_cast<std::size_t>(r.rank) * per * elemSize(type_);
    return static_cast<unsigned char*>(r.recv);
  }

  void issue(Coll c, std::size_t per, bool inPlace) {
    ok(h20cclGroupStart(), "h20cclGroupStart");
    for (const Rank& r : ranks_) {
      const void* in = input(c, r, per, inPlace);
      void* out = output(c, r, per, inPlace);
      switch (c) {
        case Coll::allReduce:
          ok(h20cclAllReduce(in, out, per, type_, op_, r.comm, r.stream), "h20cclAllReduce");
          break;
        case Coll::allGather:
          ok(h20cclAllGather(in, out, per, type_, r.comm, r.stream), "h20cclAllGather");
          break;
        case Coll::reduceScatter:
          ok(h20cclReduceScatter(in, out, per, type_, op_, r.comm, r.stream),
             "h20cclReduceScatter");
          break;
        case Coll::broadcast:
          ok(h20cclBroadcast(in, out, per, type_, o_.root, r.comm, r.stream), "h20cclBroadcast");
          break;
        case Coll::reduce:
          ok(h20cclReduce(in, out, per, type_, op_, o_.root, r.comm, r.stream), "h20cclReduce");
          break;
        case Coll::allToAll:
          ok(h20cclAllToAll(in, out, per, type_, r.comm, r.stream), "h20cclAllToAll");
          break;
        case Coll::sendRecv:
          // Every rank sends to the next and receives from the previous (nccl-tests' sendrecv).
          ok(h20cclSend(in, per, type_, (r.rank + 1) % n_, r.comm, r.stream), "h20cclSend");
          ok(h20cclRecv(out, per, type_, (r.rank + n_ - 1) % n_, r.comm, r.stream), "h20cclRecv");
          break;
      }
    }
    ok(h20cclGroupEnd(), "h20cclGroupEnd");
  }

  void syncAll() {
    for (const Rank& r : ranks_)
      ok(h20StreamSynchronize(r.stream), "h20StreamSynchronize");
    for (const Rank& r : ranks_) {
      h20Error_t async = h20Success;
      ok(h20cclCommGetAsyncError(r.comm, &async), "h20cclCommGetAsyncError");
      ok(async, "a collective (h20cclCommGetAsyncError)");
    }
  }

  float reduced(std::size_t i) const {
    float acc = value(0, i);
    for (int r = 1; r < n_; ++r) {
      const float v = value(r, i);
      acc = op_ == h20cclSum ? acc + v : op_ == h20cclMax ? std::max(acc, v) : std::min(acc, v);
    }
    return acc;
  }

  // Fills the inputs, runs the collective once and counts this process's wrong output elements.
  long check(Coll c, std::size_t per, bool inPlace) {
    const std::size_t es = elemSize(type_);
    const std::size_t nn = static_cast<std::size_t>(n_);
    const std::size_t inCount = c == Coll::reduceScatter || c == Coll::allToAll ? per * nn : per;
    const std::size_t outCount = c == Coll::allGather || c == Coll::allToAll ? per * nn : per;
    std::vector<unsigned char> host(std::max(inCount, outCount) * es);
    for (const Rank& r : ranks_) {
      // Rank r's input element i holds value(r, global index): a gathered element's expected
      // value is then value(owner, its index in the output).
      const std::size_t base = c == Coll::allGather ? static_cast<std::size_t>(r.rank) * per : 0;
      for (std::size_t i = 0; i < inCount; ++i)
        encode(type_, value(r.rank, base + i), host.data() + i * es);
      if (c == Coll::broadcast && r.rank != o_.root) continue;
      ok(h20Memcpy(input(c, r, per, inPlace), host.data(), inCount * es, h20MemcpyHostToDevice),
         "h20Memcpy");
    }
    barrier();
    issue(c, per, inPlace);
    syncAll();
    long wrong = 0;
    for (const Rank& r : ranks_) {
      if (c == Coll::reduce && r.rank != o_.root) continue;
      ok(h20Memcpy(host.data(), output(c, r, per, inPlace), outCount * es, h20MemcpyDeviceToHost),
         "h20Memcpy");
      for (std::size_t i = 0; i < outCount; ++i) {
        float expect = 0;
        const std::size_t rr = static_cast<std::size_t>(r.rank);
        switch (c) {
          case Coll::allReduce:
          case Coll::reduce:
            expect = reduced(i);
            break;
          case Coll::reduceScatter:
            expect = reduced(rr * per + i);
            break;
          case Coll::allGather:
            expect = value(static_cast<int>(i / per), i);
            break;
          case Coll::broadcast:
            expect = value(o_.root, i);
            break;
          case Coll::allToAll:
            expect = value(static_cast<int>(i / per), rr * per + i % per);
            break;
          case Coll::sendRecv:
            expect = value((r.rank + n_ - 1) % n_, i);
            break;
        }
        if (decode(type_, host.data() + i * es) != expect) ++wrong;
      }
    }
    return wrong;
  }

  Options o_;
  bool mpi_ = false;
  int n_ = 0;
  h20DataType type_ = H20_R_32F;
  h20cclRedOp op_ = h20cclSum;
  std::vector<Rank> ranks_;
  std::size_t capacity_ = 0;
  std::size_t minBytes_ = 0, maxBytes_ = 0;
};

}  // namespace

int runCclBench(int argc, char** argv) {
  Options o;
  CLI::App app{"h20-ccl-bench: time and bandwidth of the libh20ccl collectives (nccl-tests style)"};
  app.add_option("-c,--collective", o.collective,
                 "all, allreduce, allgather, reducescatter, broadcast, reduce, alltoall or "
                 "sendrecv")
      ->capture_default_str();
  app.add_option("-b,--minbytes", o.minBytes, "smallest size (bytes; K, M, G suffixes)")
      ->capture_default_str();
  app.add_option("-e,--maxbytes", o.maxBytes, "largest size")->capture_default_str();
  app.add_option("-f,--stepfactor", o.factor, "size multiplier between rows")
      ->capture_default_str();
  app.add_option("-d,--datatype", o.type, "float, bf16 or half")->capture_default_str();
  app.add_option("-o,--op", o.op, "sum, max or min")->capture_default_str();
  app.add_option("-r,--root", o.root, "broadcast and reduce root")->capture_default_str();
  app.add_option("-g,--ndev", o.ndev,
                 "ranks (devices 0..g-1) of this process; 0: every visible device (under mpirun "
                 "each process is one rank)")
      ->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed iterations per size")->capture_default_str();
  app.add_option("-w,--warmup", o.warmup, "untimed iterations per size")->capture_default_str();
  app.add_option("--check", o.check, "1: check every size's results (#wrong)")
      ->capture_default_str();
  app.add_option("-a,--algo", o.algo, "force the algorithm: auto, ring or direct (H20_CCL_ALGO)")
      ->check(CLI::IsMember({"auto", "ring", "direct"}));
  // Messages start with the program's name as the caller gave it (h20-bench passes its own).
  const std::string prog = argc > 0 && argv[0] ? argv[0] : "h20-ccl-bench";
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and exits 0; every syntax error exits 2, the tools' code for bad arguments.
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::vector<Coll> colls;
  const std::pair<const char*, Coll> names[] = {{"allreduce", Coll::allReduce},
                                                {"allgather", Coll::allGather},
                                                {"reducescatter", Coll::reduceScatter},
                                                {"broadcast", Coll::broadcast},
                                                {"reduce", Coll::reduce},
                                                {"alltoall", Coll::allToAll},
                                                {"sendrecv", Coll::sendRecv}};
  for (const auto& [name, c] : names)
    if (o.collective == "all" || o.collective == name) colls.push_back(c);
  if (colls.empty()) {
    fmt::print(stderr,
               "{}: --collective '{}': all, allreduce, allgather, reducescatter, broadcast, "
               "reduce, alltoall or sendrecv\n",
               prog, o.collective);
    return 2;
  }
  if (o.iters < 1 || o.warmup < 0 || !(o.factor >= 1)) {
    fmt::print(stderr, "{}: need --iters >= 1, --warmup >= 0, --stepfactor >= 1\n", prog);
    return 2;
  }
  const bool mpi = launchedByMpi();
#ifdef H20_CCL_BENCH_MPI
  if (mpi) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  }
#endif
  int rc = 0;
  try {
    Bench bench(o, mpi);
    bench.header();
    long wrong = 0;
    for (Coll c : colls)
      wrong += bench.run(c);
    if (bench.printer())
      fmt::print("#\n# Out of bounds values : {} {}\n", wrong, wrong ? "FAILED" : "OK");
    rc = wrong ? 1 : 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {}\n", prog, e.what());
    rc = 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", prog, e.what());
    rc = 1;
  }
#ifdef H20_CCL_BENCH_MPI
  if (mpi) {
    if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);
    MPI_Finalize();
  }
#endif
  return rc;
}
