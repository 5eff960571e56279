// net_conn.hpp - the pieces of net.cpp that transports share: the layout of a rank's shared block
// and the connection interface, and the MPI transport's entry points (net_mpi.cpp, or the stubs
// of a build without MPI).
#pragma once

#include "error.hpp"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace h20::ccl {

// What travels with every piece, so that a receiver can tell when the ranks disagree.
struct PieceMeta {
  std::uint64_t bytes = 0;
  std::uint32_t func = 0;  // Func of the sender's operation
  std::uint32_t reserved = 0;
  std::uint64_t total = 0;  // bytes the sender's operation moves over this connection
};
// A piece whose sender's operation is unknown (MPI carries only the bytes).
inline constexpr std::uint32_t kMetaUnknown = 0xffffffffu;

// The head of a rank's shared block: its doorbell (a futex word peers bump after posting a piece
// for it or consuming one of its pieces), whether it sleeps on it, whether it failed (why), and
// whether it has connected to its peers (init ends once every peer has: until then no rank may
// free its block).
struct RankHeader {
  std::atomic<std::uint32_t> doorbell;
  std::atomic<std::uint32_t> sleeping;
  std::atomic<std::uint32_t> failed;
  std::atomic<std::uint32_t> connected;  // set once the rank has opened every peer's block
  char reason[240];
};

// A FIFO of pieces from one sender, in the receiver's block.
struct Fifo {
  alignas(64) std::atomic<std::uint64_t> tail;  // pieces posted (written by the sender)
  alignas(64) std::atomic<std::uint64_t> head;  // pieces consumed (written by the receiver)
  alignas(64) PieceMeta meta[4];
  unsigned char* slot(std::uint64_t i);
};

void ringDoorbell(RankHeader& h);

// One peer's connection, used only by the rank's host functions (one at a time).
class Conn {
 public:
  virtual ~Conn() = default;
  // Sending: whether a piece can be posted now, the buffer to write it into, posting it.
  virtual bool canSend() = 0;
  virtual void* sendSlot() = 0;
  virtual void post(const PieceMeta& meta) = 0;
  // Posts meta.bytes bytes from `src` (which stays untouched until sendsComplete()).
  virtual void postFrom(const void* src, const PieceMeta& meta) {
    if (meta.bytes) std::memcpy(sendSlot(), src, meta.bytes);
    post(meta);
  }
  // True once every posted piece has left this rank's buffers.
  virtual bool sendsComplete() { return true; }
  // Receiving: the next piece (nullptr while none has arrived) and letting go of it. `into`
  // (intoBytes long), when given, is where the caller will copy the piece: a transport that can
  // deliver it there directly does (mpi), and returns `into`. The same `into` must be passed
  // until the piece arrives.
  virtual const void* peek(PieceMeta* meta, void* into = nullptr, std::size_t intoBytes = 0) = 0;
  virtual void release() = 0;
  // Withdraws what is posted but not done (mpi: a receive into the application's buffer), after
  // a failure.
  virtual void cancel() {}
  // Failure notices, for transports where the peers cannot read this rank's failed flag (mpi: a
  // message on a control tag). tellFailed is called once, from any thread; peerFailure returns
  // the peer's reason once it has told ("" until then).
  virtual void tellFailed(const std::string& /*reason*/) {}
  virtual std::string peerFailure() { return {}; }
};

// MPI (net_mpi.cpp): whether this library was built with MPI and the process initialised it,
// why not, this process's rank in MPI_COMM_WORLD (-1 without MPI), and the connections to the
// ranks whose transport is "mpi" (others are NULL). connectMpi is collective over those ranks.
bool mpiAvailable();
std::string mpiUnavailableReason();
int mpiWorldRank();
// `tag` tells concurrent creations apart (the same on every rank, from the id; < 32768).
std::vector<std::unique_ptr<Conn>> connectMpi(const char* fn, const std::vector<int>& worldRanks,
                                              int rank, const std::vector<std::string>& transport,
                                              int tag);

}  // namespace h20::ccl
