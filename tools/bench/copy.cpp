// copy.cpp - the `copy` suite: host<->device and device<->device copy bandwidth against memcpy.
//
// On the emulated device every copy is a host memory copy, so the fair yardstick is plain memcpy
// of the same size in the same process: the ratio h20 / memcpy says what the runtime's path
// (validation, queueing, engine hand-off, synchronisation) costs on top of moving the bytes.
// How each row copies (the `call` column):
//  - pinned host memory (h20MallocHost) and device->device: h20MemcpyAsync on a stream, then
//    h20StreamSynchronize - the way pinned memory is meant to be used;
//  - pageable host memory (malloc, never registered): h20Memcpy, which returns when the copy is
//    done; and for H2D also h20MemcpyAsync on the stream + h20StreamSynchronize, the form ported
//    CUDA code uses most (the runtime stages the source before the call returns).
// Each timed sample repeats the copy enough times to move about 32 MiB (so small sizes are not
// lost in clock resolution); h20 and memcpy samples alternate, so both see the same load on a
// shared machine. The report gives the median of each and the ratio of the medians.
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "bench.hpp"

namespace h20::bench {
namespace {

struct CopyConfig {
  std::vector<std::string> sizes;  // from --sizes; empty: the defaults
};

// Keeps the compiler from treating a buffer as dead after a memcpy into it.
inline void clobber(void* p) {
  asm volatile("" : : "r"(p) : "memory");
}

struct HostBuffer {
  void* p = nullptr;
  bool pinned = false;
  HostBuffer(std::size_t n, bool pin) : pinned(pin) {
    if (pin) {
      H20_BENCH_CHECK(h20MallocHost(&p, n));
    } else {
      p = std::malloc(n);
      if (!p) throw BenchError(fmt::format("malloc({}) failed", n));
    }
    std::memset(p, 0x5a, n);  // fault every page in before anything is timed
  }
  ~HostBuffer() {
    if (pinned)
      h20FreeHost(p);
    else
      std::free(p);
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
};

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(std::size_t n) {
    H20_BENCH_CHECK(h20Malloc(&p, n));
    H20_BENCH_CHECK(h20Memset(p, 0x5a, n));
    H20_BENCH_CHECK(h20DeviceSynchronize());
  }
  ~DeviceBuffer() { h20Free(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

enum class Dir { H2D, D2H, D2D };

struct Case {
  Dir dir;
  bool pinned;  // host side pinned (ignored for D2D)
  bool async;   // h20MemcpyAsync + h20StreamSynchronize; else h20Memcpy
  const char* label;
  const char* key;
  double target;  // the summary's target ratio at the headline size
};

constexpr Case kCases[] = {
    {Dir::H2D, true, true, "H2D", "h2d_pinned", 0.95},
    {Dir::H2D, false, false, "H2D", "h2d_pageable", 0.95},
    {Dir::H2D, false, true, "H2D", "h2d_pageable_async", 0.9},
    {Dir::D2H, true, true, "D2H", "d2h_pinned", 0.95},
    {Dir::D2H, false, false, "D2H", "d2h_pageable", 0.95},
    {Dir::D2D, false, true, "D2D", "d2d", 0.95},
};

struct Measured {
  double h20Seconds = 0;     // median per copy
  double memcpySeconds = 0;  // median per copy
};

Measured measure(const Case& c, std::size_t n, int reps, h20Stream_t s, HostBuffer& pinned,
                 HostBuffer& pageable, DeviceBuffer& devA, DeviceBuffer& devB, HostBuffer& plainA,
                 HostBuffer& plainB) {
  const int inner = static_cast<int>(
      std::clamp<std::size_t>((std::size_t{32} << 20) / n, std::size_t{1}, std::size_t{4096}));
  HostBuffer& host = c.pinned ? pinned : pageable;

  auto h20_sample = [&] {
    auto t0 = Clock::now();
    for (int i = 0; i < inner; ++i) {
      switch (c.dir) {
        case Dir::H2D:
          if (c.async)
            H20_BENCH_CHECK(h20MemcpyAsync(devA.p, host.p, n, h20MemcpyHostToDevice, s));
          else
            H20_BENCH_CHECK(h20Memcpy(devA.p, host.p, n, h20MemcpyHostToDevice));
          break;
        case Dir::D2H:
          if (c.async)
            H20_BENCH_CHECK(h20MemcpyAsync(host.p, devA.p, n, h20MemcpyDeviceToHost, s));
          else
            H20_BENCH_CHECK(h20Memcpy(host.p, devA.p, n, h20MemcpyDeviceToHost));
          break;
        case Dir::D2D:
          H20_BENCH_CHECK(h20MemcpyAsync(devB.p, devA.p, n, h20MemcpyDeviceToDevice, s));
          break;
      }
    }
    if (c.async) H20_BENCH_CHECK(h20StreamSynchronize(s));
    return seconds_since(t0) / inner;
  };
  auto memcpy_sample = [&] {
    auto t0 = Clock::now();
    for (int i = 0; i < inner; ++i) {
      std::memcpy(plainB.p, plainA.p, n);
      clobber(plainB.p);
    }
    return seconds_since(t0) / inner;
  };

  h20_sample();  // warm-up: first use of the stream, the staging path, the caches
  memcpy_sample();
  std::vector<double> h, m;
  for (int r = 0; r < reps; ++r) {
    h.push_back(h20_sample());
    m.push_back(memcpy_sample());
  }
  return {median(h), median(m)};
}

void run_copy(const CopyConfig& cfg, const Options& o, Report& report) {
  std::vector<std::size_t> sizes;
  for (const auto& s : cfg.sizes)
    sizes.push_back(parse_bytes(s));
  if (sizes.empty()) {
    if (o.quick)
      sizes = {std::size_t{1} << 20};
    else
      sizes = {std::size_t{256} << 10, std::size_t{4} << 20, std::size_t{64} << 20,
               std::size_t{256} << 20};
  }
  const int reps = o.reps(11, 3);

  H20_BENCH_CHECK(h20SetDevice(o.device));
  h20Stream_t s = nullptr;
  H20_BENCH_CHECK(h20StreamCreateWithFlags(&s, h20StreamNonBlocking));

  Table& t = report.add_table(
      "Copies",
      {"direction", "host memory", "call", "size", "h20 GB/s", "memcpy GB/s", "h20 / memcpy"},
      {false, false, false, true, true, true, true});
  t.notes.push_back(fmt::format(
      "h20MemcpyAsync: on a created non-blocking stream, then h20StreamSynchronize; h20Memcpy "
      "returns when done. Pageable: malloc'd, never registered. memcpy: plain memcpy between two "
      "malloc'd buffers of the same size. Median of {} alternating samples, each moving about 32 "
      "MiB.",
      reps));

  // The headline compares at 64 MiB, or at the largest size measured when 64 MiB is not.
  std::size_t headline = sizes.front();
  for (std::size_t n : sizes)
    if (n == (std::size_t{64} << 20) || (headline != (std::size_t{64} << 20) && n > headline))
      headline = n;

  for (std::size_t n : sizes) {
    HostBuffer pinned(n, true), pageable(n, false), plainA(n, false), plainB(n, false);
    DeviceBuffer devA(n), devB(n);
    // One untimed round over every case first, so the first case measured does not pay for the
    // first touch of the stream, the staging path or the new buffers.
    for (const Case& c : kCases)
      measure(c, n, 1, s, pinned, pageable, devA, devB, plainA, plainB);
    for (const Case& c : kCases) {
      Measured m = measure(c, n, reps, s, pinned, pageable, devA, devB, plainA, plainB);
      double h20GBs = static_cast<double>(n) / m.h20Seconds / 1e9;
      double memcpyGBs = static_cast<double>(n) / m.memcpySeconds / 1e9;
      double ratio = m.memcpySeconds / m.h20Seconds;
      const char* mem = c.dir == Dir::D2D ? "-" : (c.pinned ? "pinned" : "pageable");
      const char* call = c.async ? "h20MemcpyAsync" : "h20Memcpy";
      t.rows.push_back({c.label, mem, call, format_bytes(n), fmt::format("{:.2f}", h20GBs),
                        fmt::format("{:.2f}", memcpyGBs), fmt::format("{:.2f}x", ratio)});
      t.json.push_back({{"case", c.key},
                        {"call", call},
                        {"bytes", n},
                        {"h20_gb_per_s", h20GBs},
                        {"memcpy_gb_per_s", memcpyGBs},
                        {"ratio", ratio}});
      if (n == headline) {
        std::string what =
            c.dir == Dir::D2D
                ? fmt::format("D2D copy {} vs memcpy", format_bytes(n))
                : fmt::format("{} copy {} {}{} vs memcpy", c.label, mem, format_bytes(n),
                              c.pinned ? "" : fmt::format(", {}", call));
        // The reference figures are for the copies they were measured on.
        const bool referenced = c.pinned || c.dir == Dir::D2D || !c.async;
        report.add_summary({what, fmt::format("{}_ratio", c.key), ratio, "x", 2,
                            fmt::format(">= {}x", c.target), ratio >= c.target,
                            referenced ? "0.93-0.96x" : "-", referenced ? "0.95-0.97x" : "-"});
      }
    }
  }
  H20_BENCH_CHECK(h20StreamDestroy(s));
}

}  // namespace

Suite make_copy_suite() {
  auto cfg = std::make_shared<CopyConfig>();
  return Suite{"copy",
               "H2D/D2H/D2D copy bandwidth, pinned and pageable, against memcpy of the same size",
               true,
               [cfg](CLI::App& sub) {
                 sub.add_option("--sizes", cfg->sizes,
                                "Copy sizes, comma-separated (e.g. 256K,4M,64M); default "
                                "256K,4M,64M,256M (1M with --quick)")
                     ->delimiter(',')
                     ->check(size_validator());
               },
               [cfg](const Options& o, Report& r) { run_copy(*cfg, o, r); }};
}

}  // namespace h20::bench
