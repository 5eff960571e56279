// clique.hpp - the state shared by the communicators created together by h20cclCommInitAll, and
// the rendezvous that turns the ranks' calls into collectives.
//
// Owns: the ranks' devices and events, the ring order and algorithm choice, and the matching of
// calls: rank r's k-th call belongs to the clique's k-th collective. Calls may arrive from one
// thread (a group) or many; the thread whose call completes a set of collectives checks that the
// ranks agree and enqueues them (schedule.cpp), in order, under the clique's lock, so the
// collectives of a clique are enqueued one at a time and in issue order. The callers wait until
// their collectives are enqueued (never for device work). Does not own argument checks of a single
// call (api.cpp) or the data movement (schedule.cpp).
#pragma once

#include "topology.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace h20::ccl {

enum class Func { allReduce, allGather, reduceScatter, broadcast, reduce, allToAll, send, recv };
// The C function's name ("h20cclAllReduce").
const char* funcName(Func f);
inline bool isReduction(Func f) {
  return f == Func::allReduce || f == Func::reduceScatter || f == Func::reduce;
}
// Functions with a root (broadcast, reduce) and point-to-point ones (their peer).
inline bool hasRoot(Func f) {
  return f == Func::broadcast || f == Func::reduce;
}
inline bool isPointToPoint(Func f) {
  return f == Func::send || f == Func::recv;
}

// One rank's call of a collective, as passed (the count as the C function takes it).
struct Call {
  Func func = Func::allReduce;
  const void* send = nullptr;
  void* recv = nullptr;
  std::size_t count = 0;
  h20DataType type = H20_R_32F;
  h20cclRedOp op = h20cclSum;
  int root = 0;  // broadcast and reduce: the root; send and recv: the peer
  h20Stream_t stream = nullptr;
  int rank = 0;
  bool inPlace = false;    // set by the argument checks (api.cpp), from the layouts in h20/ccl.h
  std::thread::id thread;  // the thread that made the call (h20StreamPerThread is its stream)
  // Set when the call's own checks failed: the collective then fails for every rank.
  std::string poison;
};

// Algorithm selection, from the environment at h20cclCommInitAll.
struct AlgoConfig {
  enum class Mode { automatic, ring, direct } mode = Mode::automatic;
  // H20_CCL_DIRECT_MAX_BYTES when set: the largest per-rank buffer for direct, on any topology.
  std::optional<std::size_t> directMaxBytes;
};
// H20_CCL_ALGO and H20_CCL_DIRECT_MAX_BYTES; throws ccl::Error(h20ErrorInitializationError) for a
// bad value.
AlgoConfig configFromEnvironment();
// Where some pair of ranks is more than one hop apart, direct is used up to this per-rank buffer
// size by default (see Clique::algorithm).
inline constexpr std::size_t kDefaultMultiHopDirectMaxBytes = std::size_t{1} << 20;

// A collective being assembled from its ranks' calls.
struct Pending {
  explicit Pending(int ranks) : calls(static_cast<std::size_t>(ranks)) {}
  std::vector<std::optional<Call>> calls;  // by rank
  int filled = 0;
  bool finished = false;  // enqueued, or failed
  h20Error_t rc = h20Success;
  std::string message;
};

class Clique {
 public:
  // Creates the clique over `devices` (validated by the caller): events, ring order, peer access.
  // Throws ccl::Error.
  explicit Clique(std::vector<int> devices);
  ~Clique();
  Clique(const Clique&) = delete;
  Clique& operator=(const Clique&) = delete;

  int size() const { return static_cast<int>(devices_.size()); }
  int device(int rank) const { return devices_[static_cast<std::size_t>(rank)]; }
  const std::vector<int>& ring() const { return ring_; }
  const LinkMatrix& links() const { return links_; }
  // Events of a rank: `step` marks the rank's progress through a collective, `done` the end of
  // its last collective (the next one starts after it, whatever its stream).
  h20Event_t stepEvent(int rank) const { return ranks_[static_cast<std::size_t>(rank)].step; }
  h20Event_t doneEvent(int rank) const { return ranks_[static_cast<std::size_t>(rank)].done; }

  // The algorithm for a collective of `count` elements of `type` (count as the C call takes it).
  h20cclAlgo algorithm(Func f, std::size_t count, h20DataType type) const;

  // Adds calls to the collectives their ranks are at, enqueues every collective that became
  // complete, and returns the collectives the calls joined (in call order). Throws ccl::Error when
  // the clique can no longer run collectives.
  std::vector<std::shared_ptr<Pending>> contribute(std::vector<Call> calls);
  // Waits until `p` is enqueued or failed.
  void wait(const std::shared_ptr<Pending>& p);

  // Waits for the rank's enqueued work, releases its events; the clique can run no collective
  // afterwards (pending ones fail).
  void destroyRank(int rank);

 private:
  struct RankState {
    h20Event_t step = nullptr;
    h20Event_t done = nullptr;
    bool alive = true;
  };

  // Called with mu_ held: enqueues the complete collectives at the head of the queue.
  void launchReady();
  // Called with mu_ held: matches the queued sends and receives of each pair of ranks, in issue
  // order, and enqueues every matched pair.
  void matchPointToPoint();
  // Called with mu_ held: enqueues one matched send and receive (the receiver pulls).
  void enqueuePair(const Call& send, const Call& recv);
  // Empty when the ranks agree about the collective, else the message.
  std::string disagreement(const Pending& p) const;
  void releaseEvents(RankState& r);

  std::vector<int> devices_;
  std::vector<RankState> ranks_;
  LinkMatrix links_;
  std::vector<int> ring_;
  AlgoConfig config_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::uint64_t> nextSeq_;  // per rank: the collective its next call joins
  std::map<std::uint64_t, std::shared_ptr<Pending>> pending_;
  std::uint64_t nextLaunch_ = 0;
  std::string broken_;  // non-empty once a rank was destroyed
  // Point-to-point calls waiting for their match, per (sender, receiver), in issue order. They
  // take no collective's place: a send and a receive are enqueued together once both are known.
  struct P2p {
    Call call;
    std::shared_ptr<Pending> done;
  };
  std::map<std::pair<int, int>, std::deque<P2p>> sends_, recvs_;
};

}  // namespace h20::ccl
