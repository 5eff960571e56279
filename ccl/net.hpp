// net.hpp - communicators whose ranks live in several processes (h20cclCommInitRank when the
// ranks are not all threads of one process).
//
// Each rank runs its own part of every operation: the calling thread enqueues, on the rank's
// stream, one host function per group of operations (h20LaunchHostFunc), which moves the data
// through connections to the peers and reduces on the host (device memory is host-addressable on
// the emulated chips). Operations of one communicator run one after another whatever their
// streams (an event orders them), so every connection carries the pieces of one operation at a
// time, in issue order, on every rank.
//
// Connections (one per peer, both directions; net.cpp):
//  - fifo: the receiver owns, in its device memory, a FIFO of kSlots pieces of kPieceBytes per
//    sender with two counters (pieces posted, pieces consumed); the sender writes a piece straight
//    into the receiver's slot and bumps the counter, then rings the receiver's doorbell (a futex
//    word in the receiver's block). Across processes the block is shared with IPC memory handles
//    (the device daemon); within a process it is a plain pointer.
//  - mpi (net_mpi.cpp): pieces are MPI messages on a communicator of the library's own; sends go
//    straight from device buffers, receives land in preposted slots.
// The host function advances every operation of its group in turn, without blocking on any one,
// so sends and receives of a group complete in any order; when nothing can move it sleeps on the
// rank's doorbell, checking the deadline, this communicator's abort flag and whether the peers
// are alive (their process, their failed flag) at least every few milliseconds.
#pragma once

#include "clique.hpp"

#include <h20/ccl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace h20::ccl {

struct IdInfo;

// Pieces: the unit a connection moves. A piece is at most kPieceBytes.
inline constexpr std::size_t kPieceBytes = 1024 * 1024;
inline constexpr std::uint32_t kSlots = 4;

// Across processes, the collectives go direct up to this many bytes per rank by default (with 4
// processes through h20d on 2 cores, direct and ring are even up to a few KiB and the direct
// reductions lose 1.7-2.7x from 32 KiB; docs/ccl.md has the table).
inline constexpr std::size_t kNetDirectMaxBytes = 4 * 1024;

// Which transport reaches ranks of another process (H20_CCL_TRANSPORT).
enum class TransportChoice { automatic, ipc, mpi };

// What the application asked for (h20cclConfig, environment).
struct CommOptions {
  bool blocking = true;
  std::chrono::milliseconds timeout{300000};
  TransportChoice transport = TransportChoice::automatic;
};

// The sticky asynchronous state of a communicator (h20cclCommGetAsyncError).
class AsyncState {
 public:
  // Records the first failure; later ones are dropped.
  void fail(h20Error_t code, const std::string& message);
  h20Error_t code() const { return code_.load(std::memory_order_acquire); }
  std::string message() const;
  // Set when the handle is destroyed or aborted while its init still runs: the init gives up at
  // its next look (the meeting, the wait for the peers to connect).
  void cancel() { cancelled_.store(true, std::memory_order_release); }
  const std::atomic<bool>& cancelled() const { return cancelled_; }

 private:
  std::atomic<h20Error_t> code_{h20Success};
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::string message_;
};

class Conn;
class LocalBlock;
struct Block;

class NetComm {
 public:
  // Meets the other ranks through `id` and connects to them. Runs on the calling thread with
  // `device` current. Throws ccl::Error.
  // Failures of its work are recorded in `async` (shared with the handle's state).
  static std::shared_ptr<NetComm> create(const char* fn, const IdInfo& id, int nranks, int rank,
                                         int device, const CommOptions& options,
                                         std::shared_ptr<AsyncState> async);
  ~NetComm();
  NetComm(const NetComm&) = delete;
  NetComm& operator=(const NetComm&) = delete;

  int size() const { return nranks_; }
  int rank() const { return rank_; }
  int device() const { return device_; }
  const std::string& transportOf(int peer) const;  // "self", "local", "ipc" or "mpi"
  // Every rank's device (by rank), and whether every rank is a thread of this process.
  const std::vector<int>& devices() const { return devices_; }
  bool allInThisProcess() const;
  // The algorithm of a collective (count as the C call takes it).
  h20cclAlgo algorithm(Func f, std::size_t count, h20DataType type) const;
  // The ring order of the ranks (grouped by machine).
  const std::vector<int>& ring() const { return ring_; }

  // Enqueues this rank's calls (one group, checked) on `stream` as one host function. Throws
  // ccl::Error when the runtime refuses (nothing of the group is then left enqueued that waits).
  void enqueue(const std::vector<Call>& calls, h20Stream_t stream);
  // Waits for the enqueued work to finish (it fails within the timeout if a peer is gone).
  void drain();
  // Makes running and queued work fail at once, tells the peers.
  void abort(const std::string& why);
  // Makes the communicator fail (this rank's error, and h20ErrorRemote for the peers).
  void failRank(h20Error_t code, const std::string& message);

  // Run by the host function (net.cpp).
  struct Work;
  void run(Work& work);

 private:
  NetComm(int nranks, int rank, int device, const CommOptions& options,
          std::shared_ptr<AsyncState> async);
  void connect(const char* fn, const IdInfo& id);
  void awaitConnected(const char* fn);
  // "" while every peer this work waits for can still answer, else why not.
  std::string peerProblem(const std::vector<char>& waitingFor) const;

  int nranks_, rank_, device_;
  CommOptions options_;
  std::shared_ptr<AsyncState> async_;
  std::atomic<bool> aborted_{false};
  Block* block_ = nullptr;                    // this rank's shared block (device memory)
  std::vector<void*> imports_;                // peers' blocks opened with h20IpcOpenMemHandle
  std::vector<std::unique_ptr<Conn>> conns_;  // by peer
  std::vector<std::string> transport_;        // by peer
  std::vector<int> pids_;                     // by peer; 0 where not on this machine
  std::vector<Block*> peerBlocks_;            // by peer, where reachable as memory
  std::vector<int> devices_;                  // by rank
  std::vector<int> ring_;                     // ranks in ring order
  AlgoConfig algo_;
  // Every machine's ranks where allReduce goes in two levels (several machines, as many ranks on
  // each, at least two); empty otherwise.
  std::vector<std::vector<int>> machines_;
  // This rank's block and the blocks of local peers (threads of this process) it uses.
  std::vector<std::shared_ptr<LocalBlock>> localBlocks_;
  h20Event_t done_ = nullptr;  // end of the last enqueued work
  std::mutex enqueueMu_;
  bool usesMpi_ = false;
};

}  // namespace h20::ccl
