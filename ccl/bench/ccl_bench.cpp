// ccl_bench.cpp - the collectives benchmark: time and bandwidth of each collective over a range
// of sizes, in the format of nccl-tests, plus a correctness check of every size (#wrong).
//
// Owns: argument parsing, buffers and streams, the timing loop and the table. Sizes are the
// per-rank buffer in bytes, as nccl-tests counts them: the (larger) receive buffer of allGather,
// the send buffer of reduceScatter, the buffer of allReduce and broadcast. Times are host
// wall-clock per iteration over `iters` back-to-back collectives (issued in a group for all ranks)
// followed by a synchronisation of every rank's stream, as nccl-tests measures. Bandwidths
// (nccl-tests' definitions, see its doc/PERFORMANCE.md): algbw = size / time; busbw = algbw times
// 2(n-1)/n for allReduce, (n-1)/n for allGather and reduceScatter, 1 for broadcast.
#include "ccl_bench.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
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

// The collectives, as the public header names them (h20cclCommGetAlgorithm takes the same).
using Coll = h20cclFunc;
const char* collName(Coll c) {
  switch (c) {
    case h20cclFuncAllReduce:
      return "allReduce";
    case h20cclFuncAllGather:
      return "allGather";
    case h20cclFuncReduceScatter:
      return "reduceScatter";
    case h20cclFuncBroadcast:
      return "broadcast";
  }
  return "?";
}

double busFactor(Coll c, int n) {
  switch (c) {
    case h20cclFuncAllReduce:
      return 2.0 * (n - 1) / n;
    case h20cclFuncAllGather:
    case h20cclFuncReduceScatter:
      return static_cast<double>(n - 1) / n;
    case h20cclFuncBroadcast:
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

class Bench {
 public:
  Bench(const Options& o) : o_(o) {
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
    n_ = o.ndev > 0 ? o.ndev : visible;
    if (o.ndev < 0 || n_ > visible)
      throw UsageError(fmt::format("--ndev {}: 0 (every device) or 1..{}", o.ndev, visible));
    if (o.root < 0 || o.root >= n_)
      throw UsageError(fmt::format("--root {} is not a rank (0..{})", o.root, n_ - 1));
    if (!o.algo.empty()) setenv("H20_CCL_ALGO", o.algo.c_str(), 1);
    comms_.resize(static_cast<std::size_t>(n_));
    ok(h20cclCommInitAll(comms_.data(), n_, nullptr), "h20cclCommInitAll");
    streams_.resize(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r) {
      ok(h20SetDevice(r), "h20SetDevice");
      ok(h20StreamCreateWithFlags(&streams_[static_cast<std::size_t>(r)], h20StreamNonBlocking),
         "h20StreamCreateWithFlags");
    }
  }
  ~Bench() {
    for (auto* p : bufs_)
      h20Free(p);
    for (auto s : streams_)
      h20StreamDestroy(s);
    for (auto c : comms_)
      h20cclCommDestroy(c);
  }

  void header() const {
    const char* topo = std::getenv("H20_EMU_TOPOLOGY");
    fmt::print("# h20-ccl-bench: {} ranks, topology {}, datatype {}, op {}, iters {}, warmup {}\n",
               n_, topo && *topo ? topo : "switch (default)", o_.type, o_.op, o_.iters, o_.warmup);
    std::vector<int> ring(static_cast<std::size_t>(n_));
    int count = 0;
    ok(h20cclCommGetRingOrder(comms_[0], ring.data(), n_, &count), "h20cclCommGetRingOrder");
    fmt::print("# ring order (ranks = devices):");
    for (int r : ring)
      fmt::print(" {}", r);
    const char* algo = std::getenv("H20_CCL_ALGO");
    fmt::print("\n# algorithm selection: {}\n", algo && *algo ? algo : "auto");
  }

  // Returns the number of wrong elements over all sizes.
  long run(Coll c) {
    fmt::print("#\n# {}\n", collName(c));
    fmt::print(
        "# {:>12} {:>12} {:>6} {:>6} {:>5} | {:>10} {:>8} {:>8} {:>6} | {:>10} {:>8} {:>8} {:>6} | "
        "{}\n",
        "size(B)", "count", "type", "redop", "root", "time(us)", "algbw", "busbw", "#wrong",
        "time(us)", "algbw", "busbw", "#wrong", "algo");
    fmt::print(
        "# {:>12} {:>12} {:>6} {:>6} {:>5} | {:>10} {:>8} {:>8} {:>6} | {:>10} {:>8} {:>8} "
        "{:>6} |\n",
        "", "(elements)", "", "", "", "out-of-place", "(GB/s)", "(GB/s)", "", "in-place", "(GB/s)",
        "(GB/s)", "");
    const std::size_t es = elemSize(type_);
    const std::size_t minB = minBytes_, maxB = maxBytes_;
    long wrongTotal = 0;
    std::size_t last = 0;
    for (double b = static_cast<double>(std::max<std::size_t>(minB, es));
         b <= static_cast<double>(maxB); b = std::max(b * o_.factor, b + 1)) {
      std::size_t count = static_cast<std::size_t>(b) / es;
      const bool split = c == h20cclFuncAllGather || c == h20cclFuncReduceScatter;
      if (split) count = count / static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_);
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
    const std::size_t per =
        (c == h20cclFuncAllGather || c == h20cclFuncReduceScatter) ? count / nn : count;
    ensureBuffers(count * es);
    double us[2] = {0, 0};
    long wrong[2] = {0, 0};
    for (int inPlace = 0; inPlace < 2; ++inPlace) {
      for (int i = 0; i < o_.warmup; ++i)
        issue(c, per, inPlace);
      syncAll();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < o_.iters; ++i)
        issue(c, per, inPlace);
      syncAll();
      const auto t1 = std::chrono::steady_clock::now();
      us[inPlace] = std::chrono::duration<double, std::micro>(t1 - t0).count() / o_.iters;
      wrong[inPlace] = o_.check ? check(c, per, inPlace) : -1;
    }
    h20cclAlgo algo = h20cclAlgoRing;
    ok(h20cclCommGetAlgorithm(comms_[0], c, per, type_, &algo), "h20cclCommGetAlgorithm");
    const double bytes = static_cast<double>(count * es);
    auto row = [&](int k) {
      const double alg = bytes / (us[k] * 1e-6) / 1e9;
      return fmt::format("{:>10.1f} {:>8.2f} {:>8.2f} {:>6}", us[k], alg, alg * busFactor(c, n_),
                         wrong[k] < 0 ? std::string("N/A") : std::to_string(wrong[k]));
    };
    const bool reduces = c == h20cclFuncAllReduce || c == h20cclFuncReduceScatter;
    fmt::print("  {:>12} {:>12} {:>6} {:>6} {:>5} | {} | {} | {}\n", count * es, count, o_.type,
               reduces ? o_.op : "none", c == h20cclFuncBroadcast ? o_.root : -1, row(0), row(1),
               algo == h20cclAlgoDirect ? "direct" : "ring");
    std::fflush(stdout);
    return std::max(0L, wrong[0]) + std::max(0L, wrong[1]);
  }

  // Two buffers per rank (send, recv) of `bytes` each, grown as needed.
  void ensureBuffers(std::size_t bytes) {
    if (bytes <= capacity_) return;
    for (auto* p : bufs_)
      h20Free(p);
    bufs_.assign(2 * static_cast<std::size_t>(n_), nullptr);
    for (int r = 0; r < n_; ++r) {
      ok(h20SetDevice(r), "h20SetDevice");
      for (int k = 0; k < 2; ++k) {
        void*& p = bufs_[static_cast<std::size_t>(2 * r + k)];
        ok(h20Malloc(&p, bytes), "h20Malloc");
        // Back every page before timing: the emulator maps device memory lazily, and reading
        // never-written pages (the kernel's shared zero page) would be faster than any real read.
        // 0x3c bytes are normal numbers in every type; repeated in-place sums only grow them (to
        // infinity in 16-bit types after a few iterations), never into slow subnormals.
        ok(h20Memset(p, 0x3c, bytes), "h20Memset");
      }
    }
    capacity_ = bytes;
  }
  unsigned char* sendBuf(int r) const {
    return static_cast<unsigned char*>(bufs_[static_cast<std::size_t>(2 * r)]);
  }
  unsigned char* recvBuf(int r) const {
    return static_cast<unsigned char*>(bufs_[static_cast<std::size_t>(2 * r + 1)]);
  }
  // Where rank r's input lives for this placement.
  unsigned char* input(Coll c, int r, std::size_t per, bool inPlace) const {
    if (!inPlace) return sendBuf(r);
    const std::size_t es = elemSize(type_);
    switch (c) {
      case h20cclFuncAllGather:
        return recvBuf(r) + static_cast<std::size_t>(r) * per * es;
      case h20cclFuncReduceScatter:
        return sendBuf(r);
      default:
        return recvBuf(r);
    }
  }
  unsigned char* output(Coll c, int r, std::size_t per, bool inPlace) const {
    if (inPlace && c == h20cclFuncReduceScatter)
      return sendBuf(r) + static_cast<std::size_t>(r) * per * elemSize(type_);
    return recvBuf(r);
  }

  void issue(Coll c, std::size_t per, bool inPlace) {
    ok(h20cclGroupStart(), "h20cclGroupStart");
    for (int r = 0; r < n_; ++r) {
      const auto comm = comms_[static_cast<std::size_t>(r)];
      const auto s = streams_[static_cast<std::size_t>(r)];
      const void* in = input(c, r, per, inPlace);
      void* out = output(c, r, per, inPlace);
      switch (c) {
        case h20cclFuncAllReduce:
          ok(h20cclAllReduce(in, out, per, type_, op_, comm, s), "h20cclAllReduce");
          break;
        case h20cclFuncAllGather:
          ok(h20cclAllGather(in, out, per, type_, comm, s), "h20cclAllGather");
          break;
        case h20cclFuncReduceScatter:
          ok(h20cclReduceScatter(in, out, per, type_, op_, comm, s), "h20cclReduceScatter");
          break;
        case h20cclFuncBroadcast:
          ok(h20cclBroadcast(in, out, per, type_, o_.root, comm, s), "h20cclBroadcast");
          break;
      }
    }
    ok(h20cclGroupEnd(), "h20cclGroupEnd");
  }

  void syncAll() {
    for (auto s : streams_)
      ok(h20StreamSynchronize(s), "h20StreamSynchronize");
  }

  float reduced(std::size_t i) const {
    float acc = value(0, i);
    for (int r = 1; r < n_; ++r) {
      const float v = value(r, i);
      acc = op_ == h20cclSum ? acc + v : op_ == h20cclMax ? std::max(acc, v) : std::min(acc, v);
    }
    return acc;
  }

  // Fills the inputs, runs the collective once and counts the wrong output elements.
  long check(Coll c, std::size_t per, bool inPlace) {
    const std::size_t es = elemSize(type_);
    const std::size_t nn = static_cast<std::size_t>(n_);
    const std::size_t inCount = c == h20cclFuncReduceScatter ? per * nn : per;
    const std::size_t outCount = c == h20cclFuncAllGather ? per * nn : per;
    std::vector<unsigned char> host(std::max(inCount, outCount) * es);
    for (int r = 0; r < n_; ++r) {
      // Rank r's input element i holds value(r, global index): a gathered element's expected
      // value is then value(owner, its index in the output).
      const std::size_t base = c == h20cclFuncAllGather ? static_cast<std::size_t>(r) * per : 0;
      for (std::size_t i = 0; i < inCount; ++i)
        encode(type_, value(r, base + i), host.data() + i * es);
      if (c == h20cclFuncBroadcast && r != o_.root) continue;
      ok(h20Memcpy(input(c, r, per, inPlace), host.data(), inCount * es, h20MemcpyHostToDevice),
         "h20Memcpy");
    }
    issue(c, per, inPlace);
    syncAll();
    long wrong = 0;
    for (int r = 0; r < n_; ++r) {
      ok(h20Memcpy(host.data(), output(c, r, per, inPlace), outCount * es, h20MemcpyDeviceToHost),
         "h20Memcpy");
      for (std::size_t i = 0; i < outCount; ++i) {
        float expect = 0;
        switch (c) {
          case h20cclFuncAllReduce:
            expect = reduced(i);
            break;
          case h20cclFuncReduceScatter:
            expect = reduced(static_cast<std::size_t>(r) * per + i);
            break;
          case h20cclFuncAllGather:
            expect = value(static_cast<int>(i / per), i);
            break;
          case h20cclFuncBroadcast:
            expect = value(o_.root, i);
            break;
        }
        if (decode(type_, host.data() + i * es) != expect) ++wrong;
      }
    }
    return wrong;
  }

  Options o_;
  int n_ = 0;
  h20DataType type_ = H20_R_32F;
  h20cclRedOp op_ = h20cclSum;
  std::vector<h20cclComm_t> comms_;
  std::vector<h20Stream_t> streams_;
  std::vector<void*> bufs_;
  std::size_t capacity_ = 0;
  std::size_t minBytes_ = 0, maxBytes_ = 0;
};

}  // namespace

int runCclBench(int argc, char** argv) {
  Options o;
  CLI::App app{"h20-ccl-bench: time and bandwidth of the libh20ccl collectives (nccl-tests style)"};
  app.add_option("-c,--collective", o.collective,
                 "all, allreduce, allgather, reducescatter or broadcast")
      ->capture_default_str();
  app.add_option("-b,--minbytes", o.minBytes, "smallest size (bytes; K, M, G suffixes)")
      ->capture_default_str();
  app.add_option("-e,--maxbytes", o.maxBytes, "largest size")->capture_default_str();
  app.add_option("-f,--stepfactor", o.factor, "size multiplier between rows")
      ->capture_default_str();
  app.add_option("-d,--datatype", o.type, "float, bf16 or half")->capture_default_str();
  app.add_option("-o,--op", o.op, "sum, max or min")->capture_default_str();
  app.add_option("-r,--root", o.root, "broadcast root")->capture_default_str();
  app.add_option("-g,--ndev", o.ndev, "ranks (devices 0..g-1); 0: every visible device")
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
  if (o.collective == "all")
    colls = {h20cclFuncAllReduce, h20cclFuncAllGather, h20cclFuncReduceScatter,
             h20cclFuncBroadcast};
  else if (o.collective == "allreduce")
    colls = {h20cclFuncAllReduce};
  else if (o.collective == "allgather")
    colls = {h20cclFuncAllGather};
  else if (o.collective == "reducescatter")
    colls = {h20cclFuncReduceScatter};
  else if (o.collective == "broadcast")
    colls = {h20cclFuncBroadcast};
  else {
    fmt::print(stderr,
               "{}: --collective '{}': all, allreduce, allgather, reducescatter or broadcast\n",
               prog, o.collective);
    return 2;
  }
  if (o.iters < 1 || o.warmup < 0 || !(o.factor >= 1)) {
    fmt::print(stderr, "{}: need --iters >= 1, --warmup >= 0, --stepfactor >= 1\n", prog);
    return 2;
  }
  try {
    Bench bench(o);
    bench.header();
    long wrong = 0;
    for (Coll c : colls)
      wrong += bench.run(c);
    fmt::print("#\n# Out of bounds values : {} {}\n", wrong, wrong ? "FAILED" : "OK");
    return wrong ? 1 : 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {}\n", prog, e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", prog, e.what());
    return 1;
  }
}
