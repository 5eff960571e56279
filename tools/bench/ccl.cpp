// ccl.cpp - `h20-bench ccl`: the collectives benchmark of libh20ccl, run from h20-bench.
//
// The benchmark itself (nccl-tests-style tables of time, algorithm and bus bandwidth, and the
// #wrong check of every size) lives in ccl/bench as runCclBench, shared with the stand-alone
// h20-ccl-bench. This file only adapts h20-bench's conventions to it: every argument after `ccl`
// is handed over unchanged (so `h20-bench ccl --help` lists the benchmark's own options), except
// h20-bench's global --quick, which is taken out (and --json, which main() refuses). --quick
// (before or after `ccl`) supplies a small size range and few iterations for the options the
// caller did not give, and --reps N becomes --iters N. The machine description that every
// h20-bench report starts with is printed first, as nccl-tests-style comment lines. Built only
// when the h20_ccl_bench library exists (H20_BENCH_HAVE_CCL); otherwise the subcommand says so
// and exits 1.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "bench.hpp"

#if H20_BENCH_HAVE_CCL
#include "ccl_bench.hpp"
#endif

namespace h20::bench {

namespace {

// True if `args` sets any of `names` ("-b", "--minbytes"; also "--minbytes=8" and "-b8").
bool given(const std::vector<std::string>& args, std::initializer_list<std::string_view> names) {
  for (const std::string& a : args)
    for (std::string_view n : names) {
      if (a == n) return true;
      if (n.starts_with("--") && a.starts_with(std::string(n) + "=")) return true;
      if (!n.starts_with("--") && a.size() > n.size() && a.starts_with(n)) return true;
    }
  return false;
}

}  // namespace

int run_ccl(const Options& o, const std::string& header, std::vector<std::string> args) {
  // main() has refused --json already; --quick may come after `ccl` too.
  bool quick = o.quick;
  std::vector<std::string> pass;
  for (std::string& a : args) {
    if (a == "--quick")
      quick = true;
    else
      pass.push_back(std::move(a));
  }
#if !H20_BENCH_HAVE_CCL
  (void)quick;
  (void)header;
  std::fprintf(stderr,
               "h20-bench: ccl: this h20-bench was built without the collectives library "
               "(libh20ccl)\n");
  return 1;
#else
  const bool help = given(pass, {"-h", "--help"});
  // --reps before --quick's defaults, so that it wins over them.
  if (o.repetitions > 0 && !given(pass, {"-n", "--iters"}))
    pass.insert(pass.begin(), {"--iters", fmt::format("{}", o.repetitions)});
  if (quick) {
    // Sizes 8 B, 128 B, 2 KiB, 32 KiB, 512 KiB: every code path, a few seconds on 8 chips.
    std::vector<std::string> extra;
    if (!given(pass, {"-b", "--minbytes"})) extra.insert(extra.end(), {"--minbytes", "8"});
    if (!given(pass, {"-e", "--maxbytes"})) extra.insert(extra.end(), {"--maxbytes", "512K"});
    if (!given(pass, {"-f", "--stepfactor"})) extra.insert(extra.end(), {"--stepfactor", "16"});
    if (!given(pass, {"-n", "--iters"})) extra.insert(extra.end(), {"--iters", "2"});
    if (!given(pass, {"-w", "--warmup"})) extra.insert(extra.end(), {"--warmup", "1"});
    pass.insert(pass.begin(), extra.begin(), extra.end());
  }

  if (!help) {
    std::istringstream in(header);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) fmt::print("{}{}\n", line.starts_with("#") ? "" : "# ", line);
    std::string cmd;
    for (const std::string& a : pass)
      cmd += " " + a;
    fmt::print("# runCclBench arguments:{}\n", cmd.empty() ? " (defaults)" : cmd);
    std::fflush(stdout);
  }

  std::string program = "h20-bench ccl";
  std::vector<char*> argv{program.data()};
  for (std::string& a : pass)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = runCclBench(static_cast<int>(argv.size() - 1), argv.data());
  std::fflush(stdout);
  if (help)
    fmt::print(
        "\nh20-bench options accepted after `ccl` too:\n"
        "  --quick                     smoke test: --minbytes 8 --maxbytes 512K --stepfactor 16 "
        "--iters 2 --warmup 1,\n"
        "                              each only where not given\n"
        "Before `ccl`: --quick, and --reps N (same as --iters N).\n");
  return rc;  // 2 for bad arguments, as every h20-bench suite
#endif
}

}  // namespace h20::bench
