// fuzzer.hpp - the seeded, stateful API fuzzer: sequence generation, execution, shrinking.
//
// A seed determines a sequence of ops completely: Generate() runs the shadow model in dry mode
// (assuming the runtime behaves as documented) and picks each next op from the model's state, so
// the same seed gives the same sequence on every run and machine. Execute() runs a sequence (or a
// subset of it) against the runtime from a fresh state (every device reset) and checks every
// result and, after every synchronisation, the memory contents. On a failure RunSeed() shrinks
// the sequence by delta debugging (re-running subsets, each from a fresh state: in process after
// resetting every device, or in a child process when that does not reproduce the failure) and
// reports the seed, the failure and the shrunk trace, with the environment that replays it.
//
// Multi-threaded runs give each host thread its own sequence (own streams, events and
// allocations, so each thread's model stays exact) plus read-only buffers shared by all threads;
// peer access is fixed before the threads start, and there are no resets or injected faults. The
// interleaving of the threads is not determined by the seed, so a multi-threaded failure is
// shrunk with a few tries per candidate.
//
// Environment (read by Options::FromEnv):
//   H20_FUZZ_OPS=N             ops per sequence (per thread in threaded runs)
//   H20_FUZZ_SEED=S            the seed the Replay tests run
//   H20_FUZZ_KEEP=i,j,...      replay only these ops of the seed's sequence (a shrunk trace)
//   H20_FUZZ_THREADS=N         host threads of threaded runs (default 3)
//   H20_FUZZ_DEVICES=N         devices used (default 4, at most the visible ones)
//   H20_FUZZ_SEEDS=N           the Soak tests run N random seeds ...
//   H20_FUZZ_SECONDS=S         ... or as many as fit in S seconds
//   H20_FUZZ_SHRINK_SECONDS=S  time limit of shrinking (default 60; 0: do not shrink)
//   H20_FUZZ_DISABLE=a,b       op kinds not to generate (names as in traces, e.g. InjectFault)
//   H20_FUZZ_VERBOSE=1         print every op as it runs, and what a run did
//   H20_FUZZ_NO_INNER_CALLS=1  kernels and host functions make no h20 call from inside (triage)
#pragma once

#include "fuzz_world.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace h20fuzz {

struct Options {
  std::size_t ops = 300;
  int threads = 3;
  int devices = 4;
  double shrinkSeconds = 60;
  std::vector<OpKind> disabled;
  bool verbose = false;
  // Replay only these ops: (thread, index in the thread's sequence).
  std::optional<std::vector<std::pair<int, std::size_t>>> keep;

  // Defaults overridden by the H20_FUZZ_* variables.
  static Options FromEnv(std::size_t defaultOps);
};

// One op of a sequence, tagged with its host thread (always 0 in single-threaded runs).
struct TracedOp {
  int thread = 0;
  std::size_t index = 0;  // position in its thread's sequence
  Op op;
};

struct SeedResult {
  bool passed = true;
  std::string report;  // on failure: seed, failure, shrunk trace, how to replay
  std::size_t opsRun = 0;
};

// Generates the single-threaded sequence of `seed`.
std::vector<Op> Generate(const Config& config, std::uint64_t seed, const Options& options);

// Runs `seed` single-threaded (or with options.threads host threads), shrinking on failure.
SeedResult RunSeed(std::uint64_t seed, bool threaded, const Options& options);

// The test binaries' shared pieces (fuzz_entry.cpp): an unsigned environment variable, and the
// bodies of the replay test (H20_FUZZ_SEED, skipped when unset) and of the soak test
// (H20_FUZZ_SEEDS or H20_FUZZ_SECONDS, skipped when neither is set), with GoogleTest assertions.
std::uint64_t EnvU64(const char* name, std::uint64_t fallback);
void ReplayFromEnvironment(bool threaded, std::size_t defaultOps);
void SoakFromEnvironment(bool threaded, std::size_t defaultOps);

// Threaded runs: what every thread's sequence starts from.
struct ThreadSetup {
  int thread = 0;
  bool threaded = false;
  const World* shared = nullptr;           // owner of the shared read-only buffers
  std::vector<std::pair<int, int>> peers;  // (device, peer) with access enabled
};
std::vector<Op> GenerateThread(const Config& config, std::uint64_t seed, const Options& options,
                               const ThreadSetup& setup);

// Resets every visible device (h20DeviceReset) so that the next run starts from a fresh state.
void ResetRuntime();

}  // namespace h20fuzz
