// path_code.hpp - the cell codes of a chip-to-chip path, shared by `h20-smi topo -m` and
// `h20-bench p2p` so that both tools print the same matrix for the same box.
//
// The codes play the part of nvidia-smi's (X, NV#, SYS): X is the device itself, L# a path over
// # direct chip-to-chip links (L2 and up route through other chips), SW# a path through the chip
// switch (# links traversed, 1 for a single switch), HOST no chip-to-chip path at all.
#pragma once

#include <h20/h20_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

namespace h20::tools {

// kind: the h20DevP2PAttrLinkKind value (h20P2PLinkKind); hops: h20DevP2PAttrHopCount.
inline std::string path_code(bool self, int kind, int hops) {
  if (self) return "X";
  if (hops < 1) return "HOST";
  switch (kind) {
    case h20P2PLinkDirect:
      return "L" + std::to_string(hops);
    case h20P2PLinkSwitch:
      return "SW" + std::to_string(hops);
    default:
      return "HOST";
  }
}

// Code and meaning of each cell code; a '\n' in a meaning marks where a terminal line may wrap.
inline constexpr std::pair<const char*, const char*> kPathCodeLegend[] = {
    {"X", "Self"},
    {"L#",
     "A path over # direct chip-to-chip links: L1 joins neighbours, L2 and up route\n"
     "through other chips; peer access can be enabled"},
    {"SW#", "Through the chip switch, # links traversed; peer access can be enabled"},
    {"HOST",
     "No chip-to-chip path: copies are staged through host memory over both\n"
     "chips' host links; no peer access"},
};

// A legend meaning with each '\n' replaced by `joiner` (an indent for the terminal, " " for JSON).
inline std::string legend_text(const char* meaning, const std::string& joiner) {
  std::string s = meaning;
  for (std::size_t at = s.find('\n'); at != std::string::npos;
       at = s.find('\n', at + joiner.size()))
    s.replace(at, 1, joiner);
  return s;
}

}  // namespace h20::tools
