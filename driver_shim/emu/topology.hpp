// topology.hpp - the emulated box's topology: chips, chip-to-chip links, host links and the NUMA
// node and CPUs each chip is attached to.
//
// A topology comes from a built-in preset (H20_EMU_TOPOLOGY=mesh|switch|ring|pairs) or from a
// JSON file (H20_EMU_TOPOLOGY=/path/to/file.json; format in the README). Loading validates
// everything and reports the file, the entry and the problem; it never half-applies a file.
// Value type, no threads.
#pragma once

#include "driver.hpp"

#include <string>
#include <vector>

namespace h20::emu {

// Builds the topology named by `spec` (a preset name or a JSON file path) for `chips` chips.
// Returns false with *error set when the spec is unknown or the file is malformed/inconsistent.
// hostNodes/hostCpus describe the host so chips are spread over its NUMA nodes honestly.
bool loadTopology(const std::string& spec, int chips, int hostNodes,
                  const std::vector<std::vector<int>>& cpusOfNode, driver::Topology* out,
                  std::string* error);

// The preset names, for messages and tools.
const std::vector<std::string>& topologyPresets();

}  // namespace h20::emu
