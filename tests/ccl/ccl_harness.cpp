// ccl_harness.cpp - the collective test harness (see ccl_harness.hpp).
#include "ccl_harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>

namespace ccltest {

namespace {

std::uint32_t Bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float FromBits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void Store(h20DataType t, void* base, std::size_t i, float v) {
  if (t == H20_R_32F) {
    static_cast<float*>(base)[i] = v;
  } else if (t == H20_R_16BF) {
    // The test values are exact in bf16: truncation is exact.
    static_cast<std::uint16_t*>(base)[i] = static_cast<std::uint16_t>(Bits(v) >> 16);
  } else {
    static_cast<_Float16*>(base)[i] = static_cast<_Float16>(v);
  }
}
float Load(h20DataType t, const void* base, std::size_t i) {
  if (t == H20_R_32F) return static_cast<const float*>(base)[i];
  if (t == H20_R_16BF)
    return FromBits(static_cast<std::uint32_t>(static_cast<const std::uint16_t*>(base)[i]) << 16);
  return static_cast<float>(static_cast<const _Float16*>(base)[i]);
}

constexpr std::size_t kMaxValuePeriod = 511;

struct FillArgs {
  void* ptr;
  std::uint64_t count;
  std::uint64_t base;  // logical index of element 0
  std::uint64_t perBlock;
  std::int32_t type;
  std::int32_t rank;
};

void FillKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const FillArgs*>(raw);
  const std::uint64_t b = static_cast<std::uint64_t>(ctx->blockIdx.x) * a.perBlock;
  const std::uint64_t e = std::min(a.count, b + a.perBlock);
  const auto t = static_cast<h20DataType>(a.type);
  for (std::uint64_t i = b; i < e; ++i)
    Store(t, a.ptr, i, Value(t, a.rank, a.base + i));
}

struct CheckArgs {
  const void* ptr;
  long long* wrong;  // one counter per block
  std::uint64_t count;
  std::uint64_t per;  // the count passed to the collective
  std::uint64_t perBlock;
  std::int32_t type, coll, op, ranks, rank, root;
};

void CheckKernel(const h20KernelContext* ctx, const void* raw) {
  const auto& a = *static_cast<const CheckArgs*>(raw);
  const std::uint64_t b = static_cast<std::uint64_t>(ctx->blockIdx.x) * a.perBlock;
  const std::uint64_t e = std::min(a.count, b + a.perBlock);
  const auto t = static_cast<h20DataType>(a.type);
  const auto op = static_cast<h20cclRedOp>(a.op);
  // The data repeat with the index (Value's period), so the reductions are tabulated once per
  // block instead of being recomputed from every rank's value per element.
  const std::uint64_t period = ValuePeriod(t);
  float reduced[kMaxValuePeriod];
  const auto coll = static_cast<Coll>(a.coll);
  if (coll == Coll::allReduce || coll == Coll::reduceScatter)
    for (std::uint64_t k = 0; k < period; ++k)
      reduced[k] = Reduced(t, op, a.ranks, k);
  long long wrong = 0;
  for (std::uint64_t i = b; i < e; ++i) {
    float expect = 0;
    switch (coll) {
      case Coll::allReduce:
        expect = reduced[i % period];
        break;
      case Coll::reduceScatter:
        expect = reduced[(static_cast<std::uint64_t>(a.rank) * a.per + i) % period];
        break;
      case Coll::allGather:
        expect = Value(t, static_cast<int>(i / a.per), i);
        break;
      case Coll::broadcast:
        expect = Value(t, a.root, i);
        break;
    }
    // A NaN left by the sentinel never compares equal.
    if (!(Load(t, a.ptr, i) == expect)) ++wrong;
  }
  a.wrong[ctx->blockIdx.x] = wrong;
}

constexpr std::uint64_t kMaxCheckBlocks = 1024;

std::uint64_t PerBlock(std::uint64_t count) {
  return std::max<std::uint64_t>(65536, (count + kMaxCheckBlocks - 1) / kMaxCheckBlocks);
}

std::string Describe(const char* what, h20Error_t rc) {
  std::ostringstream os;
  os << what << " -> " << h20GetErrorName(rc) << ": "
     << (std::strncmp(what, "h20ccl", 6) == 0 ? h20cclGetLastErrorMessage()
                                              : h20GetLastErrorMessage());
  return os.str();
}

}  // namespace

const char* CollName(Coll c) {
  switch (c) {
    case Coll::allReduce:
      return "allReduce";
    case Coll::allGather:
      return "allGather";
    case Coll::reduceScatter:
      return "reduceScatter";
    case Coll::broadcast:
      return "broadcast";
  }
  return "?";
}
const char* TypeName(h20DataType t) {
  return t == H20_R_32F ? "f32" : t == H20_R_16BF ? "bf16" : "f16";
}
const char* OpName(h20cclRedOp op) {
  return op == h20cclSum ? "sum" : op == h20cclMax ? "max" : "min";
}
std::size_t ElemSize(h20DataType t) {
  return t == H20_R_32F ? 4 : 2;
}

std::string CaseName(const Case& c, int ranks) {
  const bool split = c.coll == Coll::allGather || c.coll == Coll::reduceScatter;
  const std::size_t bytes =
      c.count * ElemSize(c.type) * (split ? static_cast<std::size_t>(ranks) : 1);
  std::ostringstream os;
  os << CollName(c.coll) << '.';
  if (c.coll == Coll::allReduce || c.coll == Coll::reduceScatter) os << OpName(c.op) << '.';
  if (c.coll == Coll::broadcast) os << "root" << c.root << '.';
  os << TypeName(c.type) << '.' << bytes << "B." << (c.inPlace ? "inplace" : "outofplace");
  return os.str();
}

std::size_t CountFor(Coll coll, h20DataType type, Size size, int ranks) {
  const std::size_t es = ElemSize(type);
  std::size_t base = 0;
  switch (size) {
    case Size::tiny:
      base = 8 / es;
      break;
    case Size::odd:
      base = 1024 / es + 3;
      break;
    case Size::mib:
      base = (std::size_t{1} << 20) / es;
      break;
    case Size::big:
      base = (std::size_t{64} << 20) / es;
      break;
  }
  if (coll == Coll::allReduce || coll == Coll::broadcast) return base;
  std::size_t per = base / static_cast<std::size_t>(ranks);
  if (size == Size::odd) per |= 1;
  return std::max<std::size_t>(per, 1);
}

std::size_t ValuePeriod(h20DataType type) {
  return type == H20_R_32F ? 17 : 511;
}

float Value(h20DataType type, int rank, std::size_t i) {
  const std::size_t r = static_cast<std::size_t>(rank);
  if (type == H20_R_32F) return static_cast<float>(static_cast<int>((r * 7 + i * 3) % 17) - 8);
  return static_cast<float>(static_cast<int>((r * 37 + i * 11) % 511) - 255) / 64.0f;
}

float RoundToBf16(float v) {
  const std::uint32_t u = Bits(v);
  const std::uint32_t lo = u & 0xffff0000u;  // truncated towards zero
  const std::uint32_t hi = lo + 0x10000u;    // next bf16 away from zero
  const double dlo = std::fabs(static_cast<double>(v) - FromBits(lo));
  const double dhi = std::fabs(static_cast<double>(FromBits(hi)) - v);
  if (dlo < dhi) return FromBits(lo);
  if (dhi < dlo) return FromBits(hi);
  return ((lo >> 16) & 1u) == 0 ? FromBits(lo) : FromBits(hi);
}

float Reduced(h20DataType type, h20cclRedOp op, int ranks, std::size_t i) {
  // The data make every partial sum exact in fp32, so the order does not matter.
  float acc = Value(type, 0, i);
  for (int r = 1; r < ranks; ++r) {
    const float v = Value(type, r, i);
    acc = op == h20cclSum ? acc + v : op == h20cclMax ? std::max(acc, v) : std::min(acc, v);
  }
  if (type == H20_R_16BF) return RoundToBf16(acc);
  if (type == H20_R_16F) return static_cast<float>(static_cast<_Float16>(acc));
  return acc;
}

Clique::Clique(std::vector<int> devices, std::size_t bytes)
    : devices_(std::move(devices)), bytes_(bytes) {
  if (devices_.empty()) {
    int n = 0;
    h20GetDeviceCount(&n);
    for (int d = 0; d < n; ++d)
      devices_.push_back(d);
  }
  const int n = size();
  comms_.assign(static_cast<std::size_t>(n), nullptr);
  streams_.assign(static_cast<std::size_t>(n), nullptr);
  send_.assign(static_cast<std::size_t>(n), nullptr);
  recv_.assign(static_cast<std::size_t>(n), nullptr);
  wrong_.assign(static_cast<std::size_t>(n), nullptr);
  h20Error_t rc = h20cclCommInitAll(comms_.data(), n, devices_.data());
  if (rc != h20Success) {
    error_ = Describe("h20cclCommInitAll", rc);
    return;
  }
  int saved = 0;
  h20GetDevice(&saved);
  for (int r = 0; r < n && error_.empty(); ++r) {
    const std::size_t k = static_cast<std::size_t>(r);
    h20SetDevice(device(r));
    if ((rc = h20StreamCreateWithFlags(&streams_[k], h20StreamNonBlocking)) != h20Success)
      error_ = Describe("h20StreamCreateWithFlags", rc);
    else if ((rc = h20Malloc(&send_[k], bytes_)) != h20Success ||
             (rc = h20Malloc(&recv_[k], bytes_)) != h20Success)
      error_ = Describe("h20Malloc", rc);
    else if ((rc = h20Malloc(reinterpret_cast<void**>(&wrong_[k]),
                             kMaxCheckBlocks * sizeof(long long))) != h20Success)
      error_ = Describe("h20Malloc", rc);
  }
  h20SetDevice(saved);
}

Clique::~Clique() {
  for (int r = 0; r < size(); ++r) {
    const std::size_t k = static_cast<std::size_t>(r);
    if (streams_[k]) h20StreamSynchronize(streams_[k]);
    h20Free(send_[k]);
    h20Free(recv_[k]);
    h20Free(wrong_[k]);
    if (streams_[k]) h20StreamDestroy(streams_[k]);
    h20cclCommDestroy(comms_[k]);
  }
}

namespace {

struct Layout {
  unsigned char* in = nullptr;
  unsigned char* out = nullptr;
  std::size_t inCount = 0, outCount = 0, inBase = 0;
};

Layout LayoutOf(const Case& c, int rank, int ranks, void* send, void* recv) {
  const std::size_t es = ElemSize(c.type), n = static_cast<std::size_t>(ranks);
  const std::size_t r = static_cast<std::size_t>(rank);
  auto* s = static_cast<unsigned char*>(send);
  auto* d = static_cast<unsigned char*>(recv);
  Layout l;
  switch (c.coll) {
    case Coll::allReduce:
    case Coll::broadcast:
      l.in = c.inPlace ? d : s;
      l.out = d;
      l.inCount = l.outCount = c.count;
      break;
    case Coll::allGather:
      l.in = c.inPlace ? d + r * c.count * es : s;
      l.out = d;
      l.inCount = c.count;
      l.outCount = c.count * n;
      l.inBase = r * c.count;
      break;
    case Coll::reduceScatter:
      l.in = s;
      l.out = c.inPlace ? s + r * c.count * es : d;
      l.inCount = c.count * n;
      l.outCount = c.count;
      break;
  }
  return l;
}

}  // namespace

h20Error_t Clique::Issue(const Case& c) {
  h20cclGroupStart();
  for (int r = 0; r < size(); ++r) {
    const Layout l = LayoutOf(c, r, size(), send(r), recv(r));
    switch (c.coll) {
      case Coll::allReduce:
        h20cclAllReduce(l.in, l.out, c.count, c.type, c.op, comm(r), stream(r));
        break;
      case Coll::allGather:
        h20cclAllGather(l.in, l.out, c.count, c.type, comm(r), stream(r));
        break;
      case Coll::reduceScatter:
        h20cclReduceScatter(l.in, l.out, c.count, c.type, c.op, comm(r), stream(r));
        break;
      case Coll::broadcast:
        h20cclBroadcast(l.in, l.out, c.count, c.type, c.root, comm(r), stream(r));
        break;
    }
  }
  return h20cclGroupEnd();
}

h20Error_t Clique::SyncAll() {
  h20Error_t first = h20Success;
  for (int r = 0; r < size(); ++r) {
    const h20Error_t rc = h20StreamSynchronize(stream(r));
    if (first == h20Success) first = rc;
  }
  return first;
}

long Clique::Run(const Case& c, std::string* message) {
  const int n = size();
  int saved = 0;
  h20GetDevice(&saved);
  struct Restore {
    int device;
    ~Restore() { h20SetDevice(device); }
  } restore{saved};
  auto failed = [&](const std::string& m) {
    if (message) *message = m;
    return -1L;
  };
  const std::size_t es = ElemSize(c.type);
  for (int r = 0; r < n; ++r) {
    const Layout l = LayoutOf(c, r, n, send(r), recv(r));
    if (std::max(l.inCount, l.outCount) * es > bytes_)
      return failed("case larger than the buffers");
    h20SetDevice(device(r));
    // A sentinel (NaN in every type) where the output goes, then the input on top of it.
    h20Error_t rc = h20MemsetAsync(l.out, 0xff, l.outCount * es, stream(r));
    if (rc != h20Success) return failed(Describe("h20MemsetAsync", rc));
    if (c.coll == Coll::broadcast && r != c.root) continue;
    FillArgs fa{l.in, l.inCount, l.inBase, PerBlock(l.inCount), static_cast<std::int32_t>(c.type),
                r};
    const unsigned blocks = static_cast<unsigned>((l.inCount + fa.perBlock - 1) / fa.perBlock);
    rc = h20LaunchKernel(&FillKernel, h20Dim3{blocks, 1, 1}, h20Dim3{1, 1, 1}, &fa, sizeof fa, 0,
                         stream(r));
    if (rc != h20Success) return failed(Describe("h20LaunchKernel(fill)", rc));
  }
  h20Error_t rc = Issue(c);
  if (rc != h20Success) return failed(Describe("h20cclGroupEnd", rc));
  std::vector<unsigned> blocks(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) {
    const Layout l = LayoutOf(c, r, n, send(r), recv(r));
    h20SetDevice(device(r));
    CheckArgs ca{l.out,
                 wrong_[static_cast<std::size_t>(r)],
                 l.outCount,
                 c.count,
                 PerBlock(l.outCount),
                 static_cast<std::int32_t>(c.type),
                 static_cast<std::int32_t>(c.coll),
                 static_cast<std::int32_t>(c.op),
                 n,
                 r,
                 c.root};
    blocks[static_cast<std::size_t>(r)] =
        static_cast<unsigned>((l.outCount + ca.perBlock - 1) / ca.perBlock);
    rc = h20LaunchKernel(&CheckKernel, h20Dim3{blocks[static_cast<std::size_t>(r)], 1, 1},
                         h20Dim3{1, 1, 1}, &ca, sizeof ca, 0, stream(r));
    if (rc != h20Success) return failed(Describe("h20LaunchKernel(check)", rc));
  }
  if ((rc = SyncAll()) != h20Success) return failed(Describe("h20StreamSynchronize", rc));
  long wrong = 0;
  std::vector<long long> counts(kMaxCheckBlocks);
  for (int r = 0; r < n; ++r) {
    const std::size_t k = static_cast<std::size_t>(r);
    rc = h20Memcpy(counts.data(), wrong_[k], blocks[k] * sizeof(long long), h20MemcpyDeviceToHost);
    if (rc != h20Success) return failed(Describe("h20Memcpy", rc));
    for (unsigned b = 0; b < blocks[k]; ++b)
      wrong += static_cast<long>(counts[b]);
  }
  return wrong;
}

}  // namespace ccltest
