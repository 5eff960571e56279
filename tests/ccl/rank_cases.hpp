// rank_cases.hpp - the cases every transport of h20cclCommInitRank communicators runs, from one
// rank's point of view: each rank fills its own inputs on the host, issues its call, and checks
// its own output against values computed on the host (ccl_harness.hpp's data: exact for every
// type and operation). Shared by the thread and process tests and the MPI test program.
// Owns no assertions: it reports #wrong and messages.
#pragma once

#include <h20/ccl.h>

#include <cstddef>
#include <string>
#include <vector>

namespace ccltest {

enum class RankOp { allReduce, allGather, reduceScatter, broadcast, reduce, allToAll, sendRecv };
const char* RankOpName(RankOp op);

struct RankCase {
  RankOp op = RankOp::allReduce;
  h20DataType type = H20_R_32F;
  h20cclRedOp red = h20cclSum;
  bool inPlace = false;
  std::size_t count = 0;  // as the C call takes it
  int root = 0;
};
std::string RankCaseName(const RankCase& c);

// Every operation, type and (for reductions) operation, in place and out of place, at an odd
// small count and at a count over several pieces of the transports (uneven chunks); `quick` keeps
// the sizes small.
// `p2p` includes the send/receive ring (not available between threads of one process yet).
std::vector<RankCase> RankCases(int nranks, bool quick, bool p2p = true);

// Runs one case on rank `rank` of `comm` (nranks ranks) on `stream`. Returns #wrong of this rank's
// output, or -1 with *message when a call failed.
long RunRankCase(h20cclComm_t comm, int rank, int nranks, h20Stream_t stream, const RankCase& c,
                 std::string* message);

// Runs every case; returns the total #wrong, or -1 at the first failure (*message names the case).
long RunRankCases(h20cclComm_t comm, int rank, int nranks, bool quick, bool p2p,
                  std::string* message);

}  // namespace ccltest
