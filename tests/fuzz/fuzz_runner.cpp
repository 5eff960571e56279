// fuzz_runner.cpp - running fuzz sequences, shrinking failures, reporting (see fuzzer.hpp).
//
// Every run (the first one and each shrinking attempt) starts from a fresh runtime state: every
// visible device is reset (h20DeviceReset: allocations, streams, events, faults and peer access
// of the device go), and the host memory of the previous run is released. That makes replay in
// process sound for what the API lets a caller observe, and fast (no runtime initialisation per
// attempt). What resets do not restore (handle values, for one) can matter to a failure: when a
// failure does not come back in process, every attempt runs in a fresh child process instead
// (child_process.hpp), which generates the seed's sequence again and replays the subset.
#include "fuzzer.hpp"

#include "child_process.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

namespace h20fuzz {

namespace {

using Clock = std::chrono::steady_clock;
using Key = std::pair<int, std::size_t>;  // (thread, index)

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "<test binary>";
  buf[n] = '\0';
  return buf;
}

std::uint64_t Mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct ExecResult {
  std::optional<Failure> failure;
  int thread = 0;
};

void Drain(World& w, const Config& c, std::size_t index) {
  for (int d = 0; d < c.devices && !w.failure(); ++d) {
    Op s;
    s.k = OpKind::DeviceSync;
    s.dev = d;
    w.Step(s, Mode::exec, index);
  }
  w.Verify(true, index);
}

// The keys of `keep` that belong to `thread`, in order; all of the thread's ops without `keep`.
std::vector<std::size_t> IndicesOf(int thread, std::size_t n, const std::vector<Key>* keep) {
  std::vector<std::size_t> out;
  if (!keep) {
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(i);
    return out;
  }
  for (const Key& k : *keep)
    if (k.first == thread && k.second < n) out.push_back(k.second);
  std::sort(out.begin(), out.end());
  return out;
}

void RunOps(World& w, int thread, const std::vector<Op>& ops, const std::vector<std::size_t>& idx,
            const Config& c, bool verbose, const std::atomic<bool>* stop) {
  for (std::size_t i : idx) {
    if (w.failure() || (stop && stop->load())) return;
    if (verbose) std::fprintf(stderr, "[t%d #%zu] %s\n", thread, i, Describe(ops[i]).c_str());
    w.Step(ops[i], Mode::exec, i);
  }
  if (!w.failure() && !(stop && stop->load())) Drain(w, c, ops.size());
  if (verbose) {
    const Stats& st = w.stats();
    std::fprintf(stderr,
                 "[t%d] %zu ops run (%zu invalid on purpose, %zu expected to fail), %zu not "
                 "applicable; %zu comparisons of %zu bytes\n",
                 thread, st.ops, st.invalid, st.failedAsExpected, st.skipped, st.checks,
                 st.checkedBytes);
    for (int k = 0; k < static_cast<int>(OpKind::Count); ++k)
      std::fprintf(stderr, "  %-16s %zu\n", OpName(static_cast<OpKind>(k)), st.byKind[k]);
  }
}

// Peer access a threaded run enables before its threads start (fixed by the seed).
std::vector<std::pair<int, int>> ThreadedPeers(const Config& c, std::uint64_t seed) {
  std::vector<std::pair<int, int>> peers;
  for (int d = 0; d < c.devices; ++d)
    for (int p = 0; p < c.devices; ++p)
      if (d != p && c.canAccess[static_cast<std::size_t>(d * c.devices + p)] &&
          Mix(seed * 131 + static_cast<std::uint64_t>(d * 17 + p)) % 3 != 0)
        peers.emplace_back(d, p);
  return peers;
}

ExecResult ExecuteThreads(const Config& c, std::uint64_t seed, bool threaded,
                          const std::vector<std::vector<Op>>& ops, const std::vector<Key>* keep,
                          bool verbose) {
  ResetRuntime();
  ExecResult result;
  if (!threaded) {
    World w(c, 0, true);
    RunOps(w, 0, ops[0], IndicesOf(0, ops[0].size(), keep), c, verbose, nullptr);
    result.failure = w.failure();
    ResetRuntime();
    w.ReleaseHost();
    return result;
  }
  World owner(c, -1, true);
  owner.CreateShared(seed);
  const auto peers = ThreadedPeers(c, seed);
  for (auto [d, p] : peers) {
    h20SetDevice(d);
    h20DeviceEnablePeerAccess(p, 0);
  }
  h20SetDevice(0);
  h20GetLastError();
  std::vector<std::unique_ptr<World>> worlds;
  for (std::size_t t = 0; t < ops.size(); ++t) {
    worlds.push_back(std::make_unique<World>(c, static_cast<int>(t), true));
    worlds.back()->AdoptShared(owner);
    for (auto [d, p] : peers)
      worlds.back()->AssumePeer(d, p, true);
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  if (!owner.failure()) {
    for (std::size_t t = 0; t < ops.size(); ++t) {
      threads.emplace_back([&, t] {
        const int ti = static_cast<int>(t);
        RunOps(*worlds[t], ti, ops[t], IndicesOf(ti, ops[t].size(), keep), c, verbose, &stop);
        if (worlds[t]->failure()) stop.store(true);
      });
    }
    for (auto& th : threads)
      th.join();
  }
  if (owner.failure()) result.failure = owner.failure();
  for (std::size_t t = 0; t < worlds.size() && !result.failure; ++t) {
    if (worlds[t]->failure()) {
      result.failure = worlds[t]->failure();
      result.thread = static_cast<int>(t);
    }
  }
  if (!result.failure) owner.Verify(true, 0);  // the shared buffers are unchanged
  if (!result.failure && owner.failure()) result.failure = owner.failure();
  ResetRuntime();
  for (auto& w : worlds)
    w->ReleaseHost();
  owner.ReleaseHost();
  return result;
}

std::vector<std::vector<Op>> GenerateAll(const Config& c, std::uint64_t seed, bool threaded,
                                         const Options& o) {
  if (!threaded) return {Generate(c, seed, o)};
  World ownerDry(c, -1, false);
  ownerDry.CreateShared(seed);
  ThreadSetup setup;
  setup.threaded = true;
  setup.shared = &ownerDry;
  setup.peers = ThreadedPeers(c, seed);
  std::vector<std::vector<Op>> all;
  for (int t = 0; t < o.threads; ++t) {
    setup.thread = t;
    all.push_back(GenerateThread(c, seed, o, setup));
  }
  return all;
}

// Delta debugging (ddmin, complements only, then one op at a time) over `keys`; test() is true
// when a subset still fails the same way.
std::vector<Key> Shrink(std::vector<Key> keys,
                        const std::function<bool(const std::vector<Key>&)>& test, double seconds,
                        int* runs) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  auto timeLeft = [&] { return Clock::now() < deadline; };
  std::size_t n = 2;
  while (keys.size() >= 2 && timeLeft()) {
    const std::size_t chunk = (keys.size() + n - 1) / n;
    bool reduced = false;
    for (std::size_t start = 0; start < keys.size() && timeLeft(); start += chunk) {
      std::vector<Key> rest;
      for (std::size_t i = 0; i < keys.size(); ++i)
        if (i < start || i >= start + chunk) rest.push_back(keys[i]);
      ++*runs;
      if (!rest.empty() && test(rest)) {
        keys = std::move(rest);
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= keys.size()) break;
      n = std::min(n * 2, keys.size());
    }
  }
  // One op at a time, from the end (later ops depend on earlier ones, not the other way).
  for (std::size_t i = keys.size(); i-- > 0 && timeLeft();) {
    std::vector<Key> rest = keys;
    rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i));
    ++*runs;
    if (!rest.empty() && test(rest)) keys = std::move(rest);
  }
  return keys;
}

std::string KeepText(const std::vector<Key>& keys, bool threaded) {
  std::string s;
  for (const Key& k : keys) {
    if (!s.empty()) s += ",";
    if (threaded) s += std::to_string(k.first) + ":";
    s += std::to_string(k.second);
  }
  return s;
}

// A replay in a fresh child process (this binary, child_process.hpp): the sequence is generated
// again there from the seed and the options in the environment.
std::optional<Failure> ReplayInChild(std::uint64_t seed, bool threaded, const Options& o,
                                     const std::vector<Key>& keys) {
  h20test::EnvChanges env = {{"H20_FUZZ_SEED", std::to_string(seed)},
                             {"H20_FUZZ_OPS", std::to_string(o.ops)},
                             {"H20_FUZZ_THREADS", std::to_string(o.threads)},
                             {"H20_FUZZ_DEVICES", std::to_string(o.devices)},
                             {"H20_FUZZ_REPLAY_THREADED", threaded ? "1" : "0"},
                             {"H20_FUZZ_KEEP", KeepText(keys, true)},
                             {"H20_FUZZ_VERBOSE", "0"}};
  for (const char* v : {"H20_VISIBLE_DEVICES", "H20_EMU_DEVICES", "H20_EMU_MEMORY_BUDGET"})
    if (const char* value = std::getenv(v)) env[v] = value;
  const h20test::ChildResult r = h20test::RunChild("FuzzReplayInChild", env);
  if (r.exitCode >= 128)
    return Failure{0, "crash " + std::to_string(r.exitCode - 128),
                   "the child replay died of signal " + std::to_string(r.exitCode - 128)};
  if (r.exitCode != 0 || r.values.count("signature") == 0) return std::nullopt;
  return Failure{0, r.Value("signature"), r.Value("message")};
}

}  // namespace

// The child side of ReplayInChild: one run of the keys in H20_FUZZ_KEEP, its failure emitted.
H20_CHILD_SCENARIO(FuzzReplayInChild) {
  const char* seedText = std::getenv("H20_FUZZ_SEED");
  const std::uint64_t seed = seedText ? std::strtoull(seedText, nullptr, 10) : 0;
  const bool threaded = std::getenv("H20_FUZZ_REPLAY_THREADED") &&
                        std::strcmp(std::getenv("H20_FUZZ_REPLAY_THREADED"), "1") == 0;
  const Options o = Options::FromEnv(300);
  Config c = ProbeConfig(o.devices);
  c.multiThreaded = threaded;
  const auto ops = GenerateAll(c, seed, threaded, o);
  const ExecResult r = ExecuteThreads(c, seed, threaded, ops, o.keep ? &*o.keep : nullptr, false);
  if (r.failure) {
    h20test::Emit("signature", r.failure->signature);
    h20test::Emit("message", r.failure->message);
  }
  return 0;
}

Options Options::FromEnv(std::size_t defaultOps) {
  Options o;
  o.ops = defaultOps;
  if (const char* v = Env("H20_FUZZ_OPS")) o.ops = std::strtoull(v, nullptr, 10);
  if (const char* v = Env("H20_FUZZ_THREADS")) o.threads = std::max(1, std::atoi(v));
  if (const char* v = Env("H20_FUZZ_DEVICES")) o.devices = std::max(1, std::atoi(v));
  if (const char* v = Env("H20_FUZZ_SHRINK_SECONDS")) o.shrinkSeconds = std::atof(v);
  if (const char* v = Env("H20_FUZZ_VERBOSE")) o.verbose = std::strcmp(v, "0") != 0;
  if (const char* v = Env("H20_FUZZ_DISABLE")) {
    std::stringstream ss(v);
    std::string name;
    while (std::getline(ss, name, ','))
      for (int k = 0; k < static_cast<int>(OpKind::Count); ++k)
        if (name == OpName(static_cast<OpKind>(k))) o.disabled.push_back(static_cast<OpKind>(k));
  }
  if (const char* v = Env("H20_FUZZ_KEEP")) {
    std::vector<Key> keep;
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const auto colon = item.find(':');
      if (colon == std::string::npos)
        keep.emplace_back(0, std::strtoull(item.c_str(), nullptr, 10));
      else
        keep.emplace_back(std::atoi(item.substr(0, colon).c_str()),
                          std::strtoull(item.c_str() + colon + 1, nullptr, 10));
    }
    o.keep = keep;
  }
  return o;
}

void ResetRuntime() {
  int count = 0;
  if (h20GetDeviceCount(&count) != h20Success) count = 0;
  for (int d = 0; d < count; ++d) {
    h20SetDevice(d);
    h20DeviceReset();
  }
  h20SetDevice(0);
  h20GetLastError();
}

SeedResult RunSeed(std::uint64_t seed, bool threaded, const Options& options) {
  SeedResult out;
  Config c = ProbeConfig(options.devices);
  c.multiThreaded = threaded;
  if (c.devices <= 0) {
    out.passed = false;
    out.report = "no device is visible";
    return out;
  }
  const auto start = Clock::now();
  const auto ops = GenerateAll(c, seed, threaded, options);
  for (const auto& t : ops)
    out.opsRun += t.size();
  const std::vector<Key>* keep = options.keep ? &*options.keep : nullptr;
  const ExecResult first = ExecuteThreads(c, seed, threaded, ops, keep, options.verbose);
  if (!first.failure) return out;
  out.passed = false;
  const Failure f = *first.failure;
  const double firstSeconds = std::chrono::duration<double>(Clock::now() - start).count();

  // The candidate ops: everything up to the failing op of the failing thread.
  std::vector<Key> keys;
  for (int t = 0; t < static_cast<int>(ops.size()); ++t)
    for (std::size_t i : IndicesOf(t, ops[static_cast<std::size_t>(t)].size(), keep))
      if (t != first.thread || i <= f.opIndex) keys.emplace_back(t, i);
  int tries = threaded ? 3 : 1;
  bool inChild = false;
  std::string lastMessage;
  auto test = [&](const std::vector<Key>& subset) {
    for (int k = 0; k < tries; ++k) {
      const std::optional<Failure> r =
          inChild ? ReplayInChild(seed, threaded, options, subset)
                  : ExecuteThreads(c, seed, threaded, ops, &subset, false).failure;
      if (r && r->signature == f.signature) {
        lastMessage = r->message;
        return true;
      }
    }
    return false;
  };
  std::ostringstream o;
  o << "H20 API fuzzer: seed " << seed << " ("
    << (threaded ? std::to_string(options.threads) + " threads" : std::string("single-threaded"))
    << ", " << options.ops << " ops" << (threaded ? " per thread" : "") << ", " << c.devices
    << " devices) failed";
  if (threaded) o << " in thread " << first.thread;
  o << " at op #" << f.opIndex
    << (f.opIndex >= ops[static_cast<std::size_t>(first.thread)].size() ? " (the final check)" : "")
    << ":\n  " << f.message << "\n";
  int runs = 0;
  std::vector<Key> shrunk = keys;
  bool reproduced = options.shrinkSeconds > 0 && (++runs, test(keys));
  if (!reproduced && options.shrinkSeconds > 0 && !threaded) {
    // Timing-dependent: give every candidate a few tries.
    tries = 3;
    reproduced = (++runs, test(keys));
  }
  if (!reproduced && options.shrinkSeconds > 0) {
    // Perhaps it needs a fresh process (state that device resets do not clear, e.g. handle
    // values): replay each candidate in a child process.
    inChild = true;
    tries = threaded ? 3 : 2;
    reproduced = (++runs, test(keys));
  }
  if (reproduced) {
    const double budget = std::max(1.0, options.shrinkSeconds);
    shrunk = Shrink(keys, test, budget, &runs);
    test(shrunk);  // for the message of the shrunk trace
  }
  if (options.shrinkSeconds <= 0) {
    o << "Not shrunk (H20_FUZZ_SHRINK_SECONDS=0). Trace of " << keys.size() << " ops:\n";
  } else if (!reproduced) {
    o << "The failure did not reproduce on a re-run (timing-dependent); unshrunk trace of "
      << keys.size() << " ops:\n";
  } else {
    o << "Shrunk to " << shrunk.size() << " of " << keys.size() << " ops (" << runs << " runs"
      << (inChild ? ", each in a fresh child process" : "") << "), which fail the same way:\n";
  }
  const std::vector<Key>& listed = reproduced ? shrunk : keys;
  std::size_t shown = 0;
  for (const Key& k : listed) {
    if (++shown > 400) {
      o << "  ... (" << listed.size() - 400 << " more)\n";
      break;
    }
    o << "  ";
    if (threaded) o << "t" << k.first;
    o << "#" << k.second << "  " << Describe(ops[static_cast<std::size_t>(k.first)][k.second])
      << "\n";
  }
  if (reproduced && !lastMessage.empty())
    o << "The shrunk trace fails with:\n  " << lastMessage << "\n";
  o << "Replay: H20_FUZZ_SEED=" << seed << " H20_FUZZ_OPS=" << options.ops;
  if (threaded) o << " H20_FUZZ_THREADS=" << options.threads;
  if (options.devices != 4) o << " H20_FUZZ_DEVICES=" << options.devices;
  o << " H20_FUZZ_KEEP=" << KeepText(listed, threaded) << " " << SelfExe()
    << " --gtest_filter='*Replay*'\n";
  o << "(first run " << firstSeconds << " s)\n";
  out.report = o.str();
  return out;
}

}  // namespace h20fuzz
