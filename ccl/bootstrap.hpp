// bootstrap.hpp - how the ranks of a communicator created with h20cclCommInitRank meet: the
// unique id and the exchange of every rank's description (an all-gather of small blobs).
//
// h20cclGetUniqueId starts a root in the calling process: a thread listening on an abstract
// unix socket whose name (with a 128-bit secret) the id carries, as NCCL's bootstrap root listens
// on the address its id carries. In a process with MPI initialised (MPI_THREAD_MULTIPLE) the root
// receives the hellos on MPI_COMM_WORLD instead, on a tag the id carries with the creator's MPI
// rank, so that ranks on other machines can meet it (the application owns MPI; the library only
// uses that pair of tags). Every rank connects, presents the secret, its rank, nranks and
// its blob; once all ranks have arrived the root sends each the table of blobs and exits. Errors
// (a rank claimed twice, ranks that disagree about nranks, the timeout) are sent to every rank
// that arrived. The socket is checked with SO_PEERCRED: only the same user (or root) may join.
//
// Owns the id's layout and the socket protocol; does not know what the blobs contain.
#pragma once

#include <h20/ccl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace h20::ccl {

// What a unique id says, decoded and checked.
struct IdInfo {
  std::string socketName;  // abstract socket name (without the leading NUL)
  std::uint8_t secret[16] = {};
  std::uint64_t hostId = 0;  // which machine made the id
  int creatorPid = 0;
  bool mpi = false;  // the ranks meet over MPI_COMM_WORLD (the id was made under MPI)
  int mpiRoot = -1;  // the creator's rank in MPI_COMM_WORLD
  int mpiTag = 0;    // the hellos' tag (answers use the next)
};

// Makes an id and starts its root. Throws ccl::Error.
h20cclUniqueId makeUniqueId(std::chrono::milliseconds timeout);
// Decodes an id; throws ccl::Error(h20ErrorInvalidValue) naming what is wrong.
IdInfo decodeId(const char* fn, const h20cclUniqueId& id);
// This machine's identity, as ids and blobs record it (a hash of /proc/sys/kernel/random/boot_id
// and the host name).
std::uint64_t thisHostId();

// Sends this rank's blob to the root and returns every rank's blob, by rank. Throws ccl::Error:
// h20ErrorInvalidValue for what the root refused (duplicate rank, nranks that disagree), and
// h20ErrorRemote when the root cannot be reached or the ranks did not all arrive in time, or
// when `cancel` became true while waiting (the root then tells the other ranks this one left).
std::vector<std::string> exchange(const char* fn, const IdInfo& id, int nranks, int rank,
                                  const std::string& blob, std::chrono::milliseconds timeout,
                                  const std::atomic<bool>& cancel);

}  // namespace h20::ccl
