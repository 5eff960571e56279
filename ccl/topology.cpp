// topology.cpp - link queries and the ring search (see topology.hpp).
#include "topology.hpp"

#include "error.hpp"

#include <h20/h20_runtime.h>

#include <algorithm>
#include <numeric>
#include <tuple>

namespace h20::ccl {

namespace {

// Cost of a ring in the order of importance described in topology.hpp; smaller is better.
using Cost = std::tuple<int, double, long>;

Cost ringCost(const LinkMatrix& l, const std::vector<int>& ring) {
  int hostEdges = 0;
  double slowest = 0;
  long hops = 0;
  bool first = true;
  const int n = static_cast<int>(ring.size());
  for (int i = 0; i < n; ++i) {
    const int from = ring[static_cast<std::size_t>(i)];
    const int to = ring[static_cast<std::size_t>((i + 1) % n)];
    if (from == to) continue;
    // The receiver reads from its predecessor: the edge needs access to -> from.
    if (!l.canAccess(to, from)) {
      ++hostEdges;
      continue;
    }
    const double bw = l.bandwidth(from, to);
    slowest = first ? bw : std::min(slowest, bw);
    first = false;
    hops += std::max(1, l.hop(from, to));
  }
  return {hostEdges, -slowest, hops};
}

std::vector<int> greedyRing(const LinkMatrix& l) {
  // Nearest neighbour from rank 0: the best next edge by the same criteria, lowest rank on ties.
  std::vector<int> ring{0};
  std::vector<char> used(static_cast<std::size_t>(l.n), 0);
  used[0] = 1;
  while (static_cast<int>(ring.size()) < l.n) {
    const int from = ring.back();
    int best = -1;
    Cost bestCost{};
    for (int to = 0; to < l.n; ++to) {
      if (used[static_cast<std::size_t>(to)]) continue;
      const bool linked = l.canAccess(to, from);
      const Cost c{linked ? 0 : 1, linked ? -l.bandwidth(from, to) : 0,
                   linked ? std::max(1, l.hop(from, to)) : 0};
      if (best < 0 || c < bestCost) {
        best = to;
        bestCost = c;
      }
    }
    ring.push_back(best);
    used[static_cast<std::size_t>(best)] = 1;
  }
  return ring;
}

}  // namespace

bool LinkMatrix::fullyConnected() const {
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b)
      if (a != b && !canAccess(a, b)) return false;
  return true;
}

LinkMatrix queryLinks(const std::vector<int>& devices) {
  LinkMatrix l;
  l.n = static_cast<int>(devices.size());
  const std::size_t cells = static_cast<std::size_t>(l.n * l.n);
  l.access.assign(cells, 0);
  l.hops.assign(cells, 0);
  l.bandwidthMBps.assign(cells, 0);
  for (int a = 0; a < l.n; ++a) {
    for (int b = 0; b < l.n; ++b) {
      if (a == b) continue;
      const int da = devices[static_cast<std::size_t>(a)];
      const int db = devices[static_cast<std::size_t>(b)];
      const std::size_t k = static_cast<std::size_t>(a * l.n + b);
      int can = 0, hops = 0, mbps = 0;
      check(h20DeviceCanAccessPeer(&can, da, db), "h20DeviceCanAccessPeer");
      check(h20DeviceGetP2PAttribute(&hops, h20DevP2PAttrHopCount, da, db),
            "h20DeviceGetP2PAttribute(hop count)");
      check(h20DeviceGetP2PAttribute(&mbps, h20DevP2PAttrLinkBandwidthMBps, da, db),
            "h20DeviceGetP2PAttribute(link bandwidth)");
      l.access[k] = static_cast<char>(can != 0);
      l.hops[k] = hops;
      l.bandwidthMBps[k] = mbps;
    }
  }
  return l;
}

std::vector<int> chooseRing(const LinkMatrix& links) {
  std::vector<int> ring(static_cast<std::size_t>(links.n));
  std::iota(ring.begin(), ring.end(), 0);
  if (links.n > 9) return greedyRing(links);
  // Rank 0 stays first (rotations are the same ring); permute the rest in lexicographic order so
  // the first optimum found is the one closest to the rank order.
  std::vector<int> best = ring;
  Cost bestCost = ringCost(links, ring);
  while (std::next_permutation(ring.begin() + 1, ring.end())) {
    const Cost c = ringCost(links, ring);
    if (c < bestCost) {
      bestCost = c;
      best = ring;
    }
  }
  return best;
}

}  // namespace h20::ccl
