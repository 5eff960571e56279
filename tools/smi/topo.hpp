// topo.hpp - `h20-smi topo`: the chip-to-chip topology as nvidia-smi topo prints it.
//
// Owns the snapshot of the topology between a set of devices (gathered through
// h20DeviceGetP2PAttribute, h20DeviceCanAccessPeer and h20DeviceGetCpuAffinity), the cell codes
// of the connection matrix and their legend, and the three output forms: the connection matrix
// (-m), the peer-capability matrix (--p2p r|w|a|n) and the JSON document (--json). It does not
// parse the command line (main.cpp does) and changes no device state: it enables no peer access.
#pragma once

#include <h20/h20_runtime.h>

#include <string>
#include <vector>

#include "device_info.hpp"

namespace h20::smi {

// What the runtime says about the path from one device to another (src -> dst).
struct PeerPath {
  bool self = false;
  bool accessSupported = false;  // h20DeviceCanAccessPeer: a chip-to-chip path exists
  bool nativeAtomics = false;
  int performanceRank = -1;       // 0 is the best link; -1 without access
  int hops = -1;                  // chip-to-chip links traversed; 0 for self, -1 through the host
  int linkKind = h20P2PLinkHost;  // h20DevP2PAttrLinkKind
  int bandwidthMBps = 0;          // modelled, per direction (1e6 bytes/s); 0 for self
};

struct Topology {
  std::vector<DeviceInfo> devices;
  std::vector<std::vector<PeerPath>> paths;  // [row][column], indices into `devices`
};

// Queries the paths between every ordered pair of `ids` (device indices). Throws RuntimeError.
Topology query_topology(const std::vector<int>& ids);

// The cell code of a path: "X" (self), "L<n>" (n direct chip-to-chip links), "SW<n>" (through the
// chip switch), "HOST" (no chip-to-chip path: staged through host memory over the host links).
std::string path_code(const PeerPath& p);

struct TopoOutput {
  bool matrix = false;  // -m: connection matrix, bandwidth matrix, legend
  bool json = false;    // --json: everything, machine-readable
  std::string p2p;      // --p2p r|w|a|n: one capability matrix ("" for none)
};
void print_topology(const Topology& t, const TopoOutput& what);

}  // namespace h20::smi
