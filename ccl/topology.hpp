// topology.hpp - what the collectives need to know about the links between a clique's devices,
// and the ring order chosen from it.
//
// Owns the queries of the runtime's topology API (h20DeviceCanAccessPeer,
// h20DeviceGetP2PAttribute) and the search for the best ring. Does not own peer access
// (enabled by the clique) or anything about collectives.
#pragma once

#include <vector>

namespace h20::ccl {

// Links between the ranks of a clique, indexed [from * n + to] by rank.
struct LinkMatrix {
  int n = 0;
  std::vector<char> access;  // a kernel on `from` may read `to`'s memory (chip-to-chip path)
  std::vector<int> hops;     // chip-to-chip links traversed; -1: through the host
  std::vector<double> bandwidthMBps;
  bool canAccess(int from, int to) const { return access[static_cast<std::size_t>(from * n + to)]; }
  int hop(int from, int to) const { return hops[static_cast<std::size_t>(from * n + to)]; }
  double bandwidth(int from, int to) const {
    return bandwidthMBps[static_cast<std::size_t>(from * n + to)];
  }
  // Every ordered pair of distinct ranks has access.
  bool fullyConnected() const;
};

// Queries the links between `devices` (rank i = devices[i]). Throws ccl::Error.
LinkMatrix queryLinks(const std::vector<int>& devices);

// The ring, as ranks in ring order starting with rank 0; data flows from ring[i] to ring[i + 1].
// Chosen to minimise, in this order: the edges without a chip-to-chip link (copies staged through
// the host), the slowest edge's bandwidth (maximised), the links traversed in all. Ties go to the
// order closest to the rank order (the lexicographically smallest), so a clique whose rank order
// already follows the links keeps it. Exhaustive for up to 9 ranks, greedy beyond.
std::vector<int> chooseRing(const LinkMatrix& links);

}  // namespace h20::ccl
