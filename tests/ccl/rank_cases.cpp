// rank_cases.cpp - see rank_cases.hpp.
#include "rank_cases.hpp"

#include "ccl_harness.hpp"

#include <h20/h20_runtime.h>

#include <fmt/format.h>

#include <cstdint>
#include <cstring>

namespace ccltest {

namespace {

std::uint16_t ToBits16(h20DataType t, float v) {
  if (t == H20_R_16BF) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return static_cast<std::uint16_t>(u >> 16);  // the data are exact in bf16
  }
  const _Float16 h = static_cast<_Float16>(v);
  std::uint16_t b;
  std::memcpy(&b, &h, sizeof b);
  return b;
}

float FromElem(h20DataType t, const unsigned char* p) {
  if (t == H20_R_32F) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  std::uint16_t b;
  std::memcpy(&b, p, sizeof b);
  if (t == H20_R_16BF) {
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  _Float16 h;
  std::memcpy(&h, &b, sizeof h);
  return static_cast<float>(h);
}

void PutElem(h20DataType t, unsigned char* p, float v) {
  if (t == H20_R_32F) {
    std::memcpy(p, &v, sizeof v);
    return;
  }
  const std::uint16_t b = ToBits16(t, v);
  std::memcpy(p, &b, sizeof b);
}

}  // namespace

const char* RankOpName(RankOp op) {
  switch (op) {
    case RankOp::allReduce:
      return "allReduce";
    case RankOp::allGather:
      return "allGather";
    case RankOp::reduceScatter:
      return "reduceScatter";
    case RankOp::broadcast:
      return "broadcast";
    case RankOp::reduce:
      return "reduce";
    case RankOp::allToAll:
      return "allToAll";
    case RankOp::sendRecv:
      return "sendRecv";
  }
  return "?";
}

std::string RankCaseName(const RankCase& c) {
  return fmt::format("{}.{}.{}.count{}.root{}{}", RankOpName(c.op), OpName(c.red), TypeName(c.type),
                     c.count, c.root, c.inPlace ? ".inplace" : "");
}

std::vector<RankCase> RankCases(int nranks, bool quick, bool p2p) {
  std::vector<RankCase> cases;
  // 0 elements, an odd small count, and (unless quick) a count over several 256 KiB pieces
  // that does not divide evenly into the ranks' chunks.
  std::vector<std::size_t> counts = {0, 1, 1031};
  if (!quick) counts.push_back(3 * 65536 + 13);
  const RankOp ops[] = {RankOp::allReduce, RankOp::allGather, RankOp::reduceScatter,
                        RankOp::broadcast, RankOp::reduce,    RankOp::allToAll,
                        RankOp::sendRecv};
  for (RankOp op : ops) {
    if (op == RankOp::sendRecv && !p2p) continue;
    const bool reduction =
        op == RankOp::allReduce || op == RankOp::reduceScatter || op == RankOp::reduce;
    for (h20DataType t : {H20_R_32F, H20_R_16BF, H20_R_16F}) {
      for (h20cclRedOp red : {h20cclSum, h20cclMax, h20cclMin}) {
        if (!reduction && red != h20cclSum) continue;
        if (reduction && red != h20cclSum && t != H20_R_32F) continue;  // max/min: fp32 enough
        for (std::size_t count : counts) {
          for (bool inPlace : {false, true}) {
            if (inPlace && (op == RankOp::allToAll || op == RankOp::sendRecv)) continue;
            RankCase c;
            c.op = op;
            c.type = t;
            c.red = red;
            c.count = count;
            c.inPlace = inPlace;
            c.root = (op == RankOp::broadcast || op == RankOp::reduce) ? nranks - 1 : 0;
            cases.push_back(c);
          }
        }
      }
    }
  }
  return cases;
}

long RunRankCase(h20cclComm_t comm, int rank, int n, h20Stream_t stream, const RankCase& c,
                 std::string* message) {
  const std::size_t es = ElemSize(c.type);
  const std::size_t un = static_cast<std::size_t>(n), ur = static_cast<std::size_t>(rank);
  std::size_t sendElems = c.count, recvElems = c.count;
  switch (c.op) {
    case RankOp::allGather:
      recvElems = c.count * un;
      break;
    case RankOp::reduceScatter:
      sendElems = c.count * un;
      break;
    case RankOp::allToAll:
      sendElems = recvElems = c.count * un;
      break;
    default:
      break;
  }
  // Input values of this rank: element i of the logical input.
  std::vector<unsigned char> in(sendElems * es + 1), out(recvElems * es + 1);
  for (std::size_t i = 0; i < sendElems; ++i)
    PutElem(c.type, in.data() + i * es, Value(c.type, rank, i));
  void* sbuf = nullptr;
  void* rbuf = nullptr;
  auto failed = [&](const char* what, h20Error_t rc) {
    *message = fmt::format(
        "{}: {} failed: {} {}", RankCaseName(c), what, h20GetErrorName(rc),
        h20cclGetLastErrorMessage()[0] ? h20cclGetLastErrorMessage() : h20GetLastErrorMessage());
    if (sbuf) h20Free(sbuf);
    if (rbuf && rbuf != sbuf) h20Free(rbuf);
    return -1L;
  };
  // In place, one allocation holds both, at the offsets h20/ccl.h gives.
  const std::size_t total = std::max(sendElems, recvElems) * es + 64;
  h20Error_t rc = h20Malloc(&sbuf, total);
  if (rc != h20Success) return failed("h20Malloc", rc);
  unsigned char* sptr = static_cast<unsigned char*>(sbuf);
  unsigned char* rptr = nullptr;
  if (c.inPlace) {
    rbuf = sbuf;
    rptr = sptr;
    if (c.op == RankOp::allGather) sptr = rptr + ur * c.count * es;
    if (c.op == RankOp::reduceScatter) rptr = sptr + ur * c.count * es;
  } else {
    rc = h20Malloc(&rbuf, total);
    if (rc != h20Success) return failed("h20Malloc", rc);
    rptr = static_cast<unsigned char*>(rbuf);
  }
  if (sendElems) {
    rc = h20Memcpy(sptr, in.data(), sendElems * es, h20MemcpyHostToDevice);
    if (rc != h20Success) return failed("h20Memcpy", rc);
  }
  const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
  switch (c.op) {
    case RankOp::allReduce:
      rc = h20cclAllReduce(sptr, rptr, c.count, c.type, c.red, comm, stream);
      break;
    case RankOp::allGather:
      rc = h20cclAllGather(sptr, rptr, c.count, c.type, comm, stream);
      break;
    case RankOp::reduceScatter:
      rc = h20cclReduceScatter(sptr, rptr, c.count, c.type, c.red, comm, stream);
      break;
    case RankOp::broadcast:
      rc = h20cclBroadcast(sptr, rptr, c.count, c.type, c.root, comm, stream);
      break;
    case RankOp::reduce:
      rc = h20cclReduce(sptr, rptr, c.count, c.type, c.red, c.root, comm, stream);
      break;
    case RankOp::allToAll:
      rc = h20cclAllToAll(sptr, rptr, c.count, c.type, comm, stream);
      break;
    case RankOp::sendRecv:
      // Receive first on even ranks, send first on odd ones: a group completes in any order.
      h20cclGroupStart();
      if (rank % 2 == 0) h20cclRecv(rptr, c.count, c.type, prev, comm, stream);
      h20cclSend(sptr, c.count, c.type, next, comm, stream);
      if (rank % 2 != 0) h20cclRecv(rptr, c.count, c.type, prev, comm, stream);
      rc = h20cclGroupEnd();
      break;
  }
  if (rc != h20Success) return failed(RankOpName(c.op), rc);
  rc = h20StreamSynchronize(stream);
  if (rc != h20Success) return failed("h20StreamSynchronize", rc);
  h20Error_t async = h20Success;
  h20cclCommGetAsyncError(comm, &async);
  if (async != h20Success) return failed("the collective (asynchronous error)", async);
  const bool hasOutput = !((c.op == RankOp::reduce) && rank != c.root);
  long wrong = 0;
  if (hasOutput && recvElems) {
    rc = h20Memcpy(out.data(), rptr, recvElems * es, h20MemcpyDeviceToHost);
    if (rc != h20Success) return failed("h20Memcpy", rc);
    for (std::size_t i = 0; i < recvElems; ++i) {
      float want = 0;
      switch (c.op) {
        case RankOp::allReduce:
        case RankOp::reduce:
          want = Reduced(c.type, c.red, n, i);
          break;
        case RankOp::reduceScatter:
          want = Reduced(c.type, c.red, n, ur * c.count + i);
          break;
        case RankOp::allGather:
          want = Value(c.type, static_cast<int>(i / c.count), i % c.count);
          break;
        case RankOp::broadcast:
          want = Value(c.type, c.root, i);
          break;
        case RankOp::allToAll:
          want = Value(c.type, static_cast<int>(i / c.count), ur * c.count + i % c.count);
          break;
        case RankOp::sendRecv:
          want = Value(c.type, prev, i);
          break;
      }
      if (FromElem(c.type, out.data() + i * es) != want) ++wrong;
    }
  }
  h20Free(sbuf);
  if (rbuf != sbuf) h20Free(rbuf);
  if (wrong) *message = fmt::format("{}: #wrong {} on rank {}", RankCaseName(c), wrong, rank);
  return wrong;
}

long RunRankCases(h20cclComm_t comm, int rank, int nranks, bool quick, bool p2p,
                  std::string* message) {
  h20Stream_t stream = nullptr;
  if (h20StreamCreateWithFlags(&stream, h20StreamNonBlocking) != h20Success) {
    *message = "h20StreamCreateWithFlags failed";
    return -1;
  }
  long total = 0;
  for (const RankCase& c : RankCases(nranks, quick, p2p)) {
    std::string m;
    const long w = RunRankCase(comm, rank, nranks, stream, c, &m);
    if (w < 0) {
      *message = m;
      total = -1;
      break;
    }
    if (w > 0 && message->empty()) *message = m;
    total += w;
  }
  h20StreamDestroy(stream);
  return total;
}

}  // namespace ccltest
