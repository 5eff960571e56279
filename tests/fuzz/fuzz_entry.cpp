// fuzz_entry.cpp - what the single- and multi-threaded fuzz test binaries share (fuzzer.hpp):
// reading H20_FUZZ_* numbers, the replay of one seed and the soak over random seeds.
#include "fuzzer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace h20fuzz {

std::uint64_t EnvU64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

void ReplayFromEnvironment(bool threaded, std::size_t defaultOps) {
  if (!std::getenv("H20_FUZZ_SEED")) GTEST_SKIP() << "set H20_FUZZ_SEED (and H20_FUZZ_KEEP)";
  const SeedResult r = RunSeed(EnvU64("H20_FUZZ_SEED", 0), threaded, Options::FromEnv(defaultOps));
  EXPECT_TRUE(r.passed) << r.report;
}

void SoakFromEnvironment(bool threaded, std::size_t defaultOps) {
  const std::uint64_t seeds = EnvU64("H20_FUZZ_SEEDS", 0);
  const std::uint64_t seconds = EnvU64("H20_FUZZ_SECONDS", 0);
  if (seeds == 0 && seconds == 0) GTEST_SKIP() << "set H20_FUZZ_SEEDS or H20_FUZZ_SECONDS";
  const std::uint64_t base = EnvU64("H20_FUZZ_SEED_BASE", std::random_device{}() * 1000003ull);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  const Options o = Options::FromEnv(defaultOps);
  std::uint64_t ran = 0, failed = 0;
  for (std::uint64_t i = 0; seeds ? i < seeds : std::chrono::steady_clock::now() < deadline; ++i) {
    const SeedResult r = RunSeed(base + i, threaded, o);
    ++ran;
    if (!r.passed) {
      ++failed;
      ADD_FAILURE() << r.report;
    }
  }
  std::printf("soak: %llu %sseeds from %llu, %llu failed\n", static_cast<unsigned long long>(ran),
              threaded ? "threaded " : "", static_cast<unsigned long long>(base),
              static_cast<unsigned long long>(failed));
}

}  // namespace h20fuzz
