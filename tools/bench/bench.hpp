// bench.hpp - the frame every h20-bench suite plugs into.
//
// Owns what the suites share: the global options (--quick, --device, ...), the error type for a
// failed runtime call, timing and statistics helpers, the Report that collects the summary rows
// (compared against the targets of the issue and the PoCL / HIP-CPU reference figures) and the
// detail tables, and the Suite record that main() turns into a subcommand. A suite is one .cpp file
// exporting a `Suite make_<name>_suite()`; adding one is that file plus one line in main.cpp. (The
// ccl subcommand is the exception: it hands its arguments to the collectives benchmark.) The suites
// measure; nothing here decides what is fast enough except the summary's "meets" column, which is
// information, never an exit status.
#pragma once

#include <h20/h20_runtime.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace h20::bench {

struct Options {
  bool quick =
      false;  // a short run that proves every path works (CI smoke test), not a measurement
  bool json = false;
  int device = 0;
  int repetitions = 0;  // 0: the suite's default (fewer in quick mode)
  int load = 0;         // busy-looping child processes kept running during the suites (--load)
  // The suite's repetition count: --reps if given, else `full` or `quick`.
  int reps(int full, int quickReps) const {
    return repetitions > 0 ? repetitions : (quick ? quickReps : full);
  }
};

// A runtime call failed; what() names the call, the error and the runtime's message.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
void check(h20Error_t code, std::string_view call);
#define H20_BENCH_CHECK(call) ::h20::bench::check((call), #call)

// ---- timing ---------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
double median(std::vector<double> v);
double min_of(const std::vector<double>& v);
double max_of(const std::vector<double>& v);
double mean(const std::vector<double>& v);
// The p-th percentile (0..100) of v, nearest rank; 0 for an empty v.
double percentile(std::vector<double> v, double p);

// The distribution of a latency's samples; every latency h20-bench prints comes with these.
struct Spread {
  double p50 = 0, p99 = 0, mean = 0;
  std::size_t samples = 0;
};
Spread spread(const std::vector<double>& samples);

// A kernel that does nothing, for launch overheads.
void empty_kernel(const h20KernelContext*, const void*);

// ---- report ---------------------------------------------------------------------------------

// One line of the summary table: a headline figure, the target and the reference runtimes.
struct SummaryRow {
  std::string benchmark;  // what was measured, with the size where it matters
  std::string key;        // stable JSON key, e.g. "launch_sync_us"
  double value = 0;
  std::string unit;  // "us", "x", "cores"
  int decimals = 2;
  std::string target;  // "<= 10 us"
  bool meets = false;
  std::string pocl;  // reference figures from the issue, as text
  std::string hipcpu;
};

// A detail table: markdown cells for people, a JSON object per row for programs.
struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<bool> rightAligned;
  std::vector<std::vector<std::string>> rows;
  nlohmann::ordered_json json = nlohmann::ordered_json::array();
  std::vector<std::string> notes;
};

class Report {
 public:
  void set_header(std::string line) { header_ = std::move(line); }
  const std::string& header() const { return header_; }
  void set_machine(nlohmann::ordered_json machine) { machine_ = std::move(machine); }
  void add_summary(SummaryRow row) { summary_.push_back(std::move(row)); }
  Table& add_table(std::string title, std::vector<std::string> columns,
                   std::vector<bool> rightAligned);
  void print_markdown() const;
  void print_json() const;

 private:
  std::string header_;
  nlohmann::ordered_json machine_;
  std::vector<SummaryRow> summary_;
  std::vector<Table> tables_;
};

// ---- suites ---------------------------------------------------------------------------------

struct Suite {
  std::string name;  // subcommand name
  std::string help;
  bool inAll = true;  // part of the default run (h20-bench / h20-bench all)
  // Adds the suite's own options to its subcommand (may be empty).
  std::function<void(CLI::App&)> addOptions;
  std::function<void(const Options&, Report&)> run;
};

Suite make_launch_suite();
Suite make_copy_suite();
Suite make_overlap_suite();
Suite make_idle_suite();
Suite make_p2p_suite();     // not part of `all`: it measures every pair of devices
Suite make_daemon_suite();  // not part of `all`: it needs the device daemon

// A child process of the daemon suite (H20_BENCH_ROLE set): runs that role, returns the exit
// status.
int run_daemon_role(const char* role);

// `h20-bench ccl`: runs the collectives benchmark (runCclBench, ccl/bench) with `args` (what
// followed `ccl` on the command line) and returns the exit status. Not a Suite: it prints
// nccl-tests tables of its own rather than filling the Report.
int run_ccl(const Options& o, const std::string& header, std::vector<std::string> args);

// "64 MiB", "256 KiB", "3 B"
std::string format_bytes(std::size_t bytes);
// Parses "64M", "256K", "1G", "4096" (binary units) into bytes; throws CLI::ValidationError.
std::size_t parse_bytes(const std::string& text);
// A CLI11 validator accepting what parse_bytes accepts.
CLI::Validator size_validator();

}  // namespace h20::bench
