// p2p.cpp - the `p2p` suite: copy bandwidth and latency between every pair of devices, with peer
// access disabled and enabled, in the manner of CUDA's p2pBandwidthLatencyTest.
//
// What is measured, for every ordered pair (src, dst) of the visible devices:
//  - unidirectional bandwidth: h20MemcpyPeerAsync of --size bytes from src to dst;
//  - bidirectional bandwidth: src -> dst and dst -> src at the same time, each on its own
//    destination's stream (measured for src < dst and mirrored: the operation is symmetric);
//  - latency: the round trip of a 4-byte copy as a program sees it (h20MemcpyPeerAsync, then
//    h20StreamSynchronize, on the host's clock); and, as p2pBandwidthLatencyTest defines it, the
//    device-side time per 4-byte copy within a batch of back-to-back copies (summary and JSON).
// Every copy runs on a non-blocking stream of the *destination* device, so with peer access
// enabled the destination reads the source over the link (the runtime copies directly when the
// stream's device has access to the other device, and stages through host memory otherwise).
// "Enabled" means h20DeviceEnablePeerAccess in both directions for every pair that
// h20DeviceCanAccessPeer allows; pairs without a chip-to-chip path stay staged through the host.
// The diagonal is a copy within one device.
//
// Bandwidth and device-side latency are timed as in the CUDA sample: the copies of one sample are
// queued behind a gate (a host function that waits until every copy of the sample is enqueued),
// between two events on the same stream, so the figure is the device-side time of the copies
// without the host's enqueue cost. Each figure is the median of the samples, after an untimed
// warm-up.
//
// The emulated chips keep their memory in host RAM and move it with host memcpy, so the matrices
// show the host's memory bandwidth and the extra pass of staging, not the modelled link speeds;
// the modelled figures (h20DevP2PAttrLinkBandwidthMBps, as `h20-smi topo -m` prints them) are
// printed first, in the same layout, and next to the measured medians in the per-path summary.
#include <fmt/format.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>

#include "bench.hpp"
#include "path_code.hpp"

namespace h20::bench {
namespace {

struct P2pConfig {
  std::string size;  // from --size; empty: the default
  bool noBidirectional = false;
};

constexpr std::size_t kLatencyBytes = 4;

// Holds a stream's later work until open(): lets a whole sample be enqueued before any of it runs.
class Gate {
 public:
  void close_on(h20Stream_t s) {
    {
      std::lock_guard<std::mutex> lock(m_);
      open_ = false;
    }
    H20_BENCH_CHECK(h20LaunchHostFunc(s, &Gate::wait, this));
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(m_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  static void wait(void* self) {
    auto* g = static_cast<Gate*>(self);
    std::unique_lock<std::mutex> lock(g->m_);
    g->cv_.wait(lock, [g] { return g->open_; });
  }
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = true;
};

// Per device: a stream, events for timing, a source and a destination buffer.
struct Box {
  int n = 0;
  std::size_t bytes = 0;
  std::vector<h20Stream_t> streams;
  std::vector<h20Event_t> start, stop, mid;
  std::vector<void*> src, dst;
  Gate gate;
  std::vector<std::vector<int>> canAccess;

  Box(int devices, std::size_t size) : n(devices), bytes(size) {
    const auto un = static_cast<std::size_t>(n);
    streams.assign(un, nullptr);
    start.assign(un, nullptr);
    stop.assign(un, nullptr);
    mid.assign(un, nullptr);
    src.assign(un, nullptr);
    dst.assign(un, nullptr);
    canAccess.assign(un, std::vector<int>(un, 0));
    for (int d = 0; d < n; ++d) {
      const auto ud = static_cast<std::size_t>(d);
      H20_BENCH_CHECK(h20SetDevice(d));
      H20_BENCH_CHECK(h20StreamCreateWithFlags(&streams[ud], h20StreamNonBlocking));
      H20_BENCH_CHECK(h20EventCreate(&start[ud]));
      H20_BENCH_CHECK(h20EventCreate(&stop[ud]));
      H20_BENCH_CHECK(h20EventCreate(&mid[ud]));
      H20_BENCH_CHECK(h20Malloc(&src[ud], bytes));
      H20_BENCH_CHECK(h20Malloc(&dst[ud], bytes));
      // Fault every page in before anything is timed.
      H20_BENCH_CHECK(h20Memset(src[ud], 0x5a, bytes));
      H20_BENCH_CHECK(h20Memset(dst[ud], 0xa5, bytes));
      H20_BENCH_CHECK(h20DeviceSynchronize());
      for (int p = 0; p < n; ++p)
        if (p != d)
          H20_BENCH_CHECK(
              h20DeviceCanAccessPeer(&canAccess[ud][static_cast<std::size_t>(p)], d, p));
    }
  }
  ~Box() {
    // Never leave a stream blocked behind the gate (an exception may have left it closed).
    gate.open();
    for (int d = 0; d < n; ++d) {
      const auto ud = static_cast<std::size_t>(d);
      if (streams[ud]) h20StreamSynchronize(streams[ud]);
      h20SetDevice(d);
      if (src[ud]) h20Free(src[ud]);
      if (dst[ud]) h20Free(dst[ud]);
      for (h20Event_t e : {start[ud], stop[ud], mid[ud]})
        if (e) h20EventDestroy(e);
      if (streams[ud]) h20StreamDestroy(streams[ud]);
    }
  }
  Box(const Box&) = delete;
  Box& operator=(const Box&) = delete;

  // Enables (or disables) peer access both ways for every pair that has a chip-to-chip path.
  void set_peer_access(bool enable) {
    for (int d = 0; d < n; ++d) {
      H20_BENCH_CHECK(h20SetDevice(d));
      for (int p = 0; p < n; ++p) {
        if (!canAccess[static_cast<std::size_t>(d)][static_cast<std::size_t>(p)]) continue;
        if (enable)
          H20_BENCH_CHECK(h20DeviceEnablePeerAccess(p, 0));
        else
          H20_BENCH_CHECK(h20DeviceDisablePeerAccess(p));
      }
    }
  }

  // Seconds from enqueueing a copy of `count` bytes (s -> d) until the host has seen it complete.
  double round_trip(int s, int d, std::size_t count) {
    const auto us = static_cast<std::size_t>(s), ud = static_cast<std::size_t>(d);
    const auto t0 = Clock::now();
    H20_BENCH_CHECK(h20MemcpyPeerAsync(dst[ud], d, src[us], s, count, streams[ud]));
    H20_BENCH_CHECK(h20StreamSynchronize(streams[ud]));
    return seconds_since(t0);
  }

  static double elapsed_seconds(h20Event_t a, h20Event_t b) {
    H20_BENCH_CHECK(h20EventSynchronize(b));
    float ms = 0;
    H20_BENCH_CHECK(h20EventElapsedTime(&ms, a, b));
    return ms * 1e-3;
  }

  // Seconds per copy of `count` bytes from device s to device d, `copies` back to back.
  double one_way(int s, int d, std::size_t count, int copies) {
    const auto us = static_cast<std::size_t>(s), ud = static_cast<std::size_t>(d);
    h20Stream_t st = streams[ud];
    gate.close_on(st);
    H20_BENCH_CHECK(h20EventRecord(start[ud], st));
    for (int k = 0; k < copies; ++k)
      H20_BENCH_CHECK(h20MemcpyPeerAsync(dst[ud], d, src[us], s, count, st));
    H20_BENCH_CHECK(h20EventRecord(stop[ud], st));
    gate.open();
    return elapsed_seconds(start[ud], stop[ud]) / copies;
  }

  // Seconds per pair of simultaneous copies s -> d (on d's stream) and d -> s (on s's stream).
  double two_way(int s, int d, std::size_t count, int copies) {
    const auto us = static_cast<std::size_t>(s), ud = static_cast<std::size_t>(d);
    h20Stream_t a = streams[ud], b = streams[us];
    gate.close_on(a);
    H20_BENCH_CHECK(h20EventRecord(start[ud], a));
    H20_BENCH_CHECK(h20StreamWaitEvent(b, start[ud], 0));
    for (int k = 0; k < copies; ++k) {
      H20_BENCH_CHECK(h20MemcpyPeerAsync(dst[ud], d, src[us], s, count, a));
      H20_BENCH_CHECK(h20MemcpyPeerAsync(dst[us], s, src[ud], d, count, b));
    }
    H20_BENCH_CHECK(h20EventRecord(mid[us], b));
    H20_BENCH_CHECK(h20StreamWaitEvent(a, mid[us], 0));
    H20_BENCH_CHECK(h20EventRecord(stop[ud], a));
    gate.open();
    return elapsed_seconds(start[ud], stop[ud]) / copies;
  }
};

// `reps` samples of `sample`, after `warmup` untimed ones.
template <class F>
std::vector<double> samples_of(int reps, F&& sample, int warmup = 1) {
  for (int w = 0; w < warmup; ++w)
    sample();
  std::vector<double> v;
  for (int r = 0; r < reps; ++r)
    v.push_back(sample());
  return v;
}
// The median of `reps` samples of `sample`, after one untimed warm-up sample.
template <class F>
double median_of(int reps, F&& sample) {
  return median(samples_of(reps, sample));
}

using Matrix = std::vector<std::vector<double>>;  // [src][dst]; < 0: not measured

struct Modelled {
  std::string code;  // as h20-smi topo -m prints it
  int mbps = 0;
};

Modelled modelled_path(int s, int d) {
  if (s == d) return {"X", 0};
  int hops = 0, mbps = 0, kind = 0;
  H20_BENCH_CHECK(h20DeviceGetP2PAttribute(&hops, h20DevP2PAttrHopCount, s, d));
  H20_BENCH_CHECK(h20DeviceGetP2PAttribute(&mbps, h20DevP2PAttrLinkBandwidthMBps, s, d));
  H20_BENCH_CHECK(h20DeviceGetP2PAttribute(&kind, h20DevP2PAttrLinkKind, s, d));
  return {h20::tools::path_code(false, kind, hops), mbps};
}

std::string gb(double v, int decimals) {
  return v < 0 ? std::string("-") : fmt::format("{:.{}f}", v, decimals);
}

// A further figure per cell of a matrix, for the JSON only.
struct Extra {
  std::string key;
  const Matrix* m;
};

// A src x dst matrix as a report table (markdown cells, one JSON object per measured cell).
void add_matrix(Report& report, const std::string& title, const Matrix& m, int decimals,
                const std::string& key, std::vector<std::string> notes = {},
                const std::vector<Extra>& extras = {}) {
  const std::size_t n = m.size();
  std::vector<std::string> cols{"D\\D"};
  std::vector<bool> right{false};
  for (std::size_t d = 0; d < n; ++d) {
    cols.push_back(fmt::format("{}", d));
    right.push_back(true);
  }
  Table& t = report.add_table(title, cols, right);
  for (std::size_t s = 0; s < n; ++s) {
    std::vector<std::string> row{fmt::format("{}", s)};
    for (std::size_t d = 0; d < n; ++d) {
      row.push_back(gb(m[s][d], decimals));
      if (m[s][d] < 0) continue;
      nlohmann::ordered_json cell{{"src", s}, {"dst", d}, {key, m[s][d]}};
      for (const Extra& e : extras)
        cell[e.key] = (*e.m)[s][d];
      t.json.push_back(std::move(cell));
    }
    t.rows.push_back(std::move(row));
  }
  t.notes = std::move(notes);
}

void run_p2p(const P2pConfig& cfg, const Options& o, Report& report) {
  const std::size_t bytes = !cfg.size.empty()
                                ? parse_bytes(cfg.size)
                                : (o.quick ? std::size_t{1} << 20 : std::size_t{64} << 20);
  const int reps = o.reps(5, 2);
  // Each bandwidth sample moves at least 64 MiB (4 MiB with --quick), so that small sizes do not
  // drown in clock resolution; each latency sample is a batch of small copies.
  const std::size_t perSample = o.quick ? std::size_t{4} << 20 : std::size_t{64} << 20;
  const int bwCopies = static_cast<int>(
      std::clamp<std::size_t>(perSample / bytes, std::size_t{1}, std::size_t{256}));
  const int latCopies = o.quick ? 10 : 100;
  const int roundTrips = o.quick ? 20 : 200;

  int n = 0;
  H20_BENCH_CHECK(h20GetDeviceCount(&n));
  Box box(n, bytes);
  const auto un = static_cast<std::size_t>(n);

  std::vector<std::vector<Modelled>> model(un, std::vector<Modelled>(un));
  for (int s = 0; s < n; ++s)
    for (int d = 0; d < n; ++d)
      model[static_cast<std::size_t>(s)][static_cast<std::size_t>(d)] = modelled_path(s, d);

  // [0]: peer access disabled, [1]: enabled. rtt: host round trip (median, p99, mean); lat:
  // device side per copy. rttAll: every round-trip sample of every pair, for the summary.
  Matrix uni[2], bi[2], lat[2], rtt[2], rtt99[2], rttMean[2];
  std::vector<std::vector<std::vector<double>>> rttAll[2];
  for (int enabled = 0; enabled < 2; ++enabled) {
    std::fprintf(stderr, "h20-bench: p2p with peer access %s...\n",
                 enabled ? "enabled" : "disabled");
    if (enabled) box.set_peer_access(true);
    uni[enabled] = bi[enabled] = lat[enabled] = rtt[enabled] = rtt99[enabled] = rttMean[enabled] =
        Matrix(un, std::vector<double>(un, -1.0));
    rttAll[enabled].assign(un, std::vector<std::vector<double>>(un));
    for (int s = 0; s < n; ++s) {
      for (int d = 0; d < n; ++d) {
        const auto us = static_cast<std::size_t>(s), ud = static_cast<std::size_t>(d);
        double t = median_of(reps, [&] { return box.one_way(s, d, bytes, bwCopies); });
        uni[enabled][us][ud] = static_cast<double>(bytes) / t / 1e9;
        t = median_of(reps, [&] { return box.one_way(s, d, kLatencyBytes, latCopies); });
        lat[enabled][us][ud] = t * 1e6;
        std::vector<double> trips = samples_of(
            roundTrips, [&] { return box.round_trip(s, d, kLatencyBytes) * 1e6; }, 5);
        const Spread sp = spread(trips);
        rtt[enabled][us][ud] = median(trips);
        rtt99[enabled][us][ud] = sp.p99;
        rttMean[enabled][us][ud] = sp.mean;
        rttAll[enabled][us][ud] = std::move(trips);
        if (!cfg.noBidirectional && s < d) {
          t = median_of(reps, [&] { return box.two_way(s, d, bytes, bwCopies); });
          bi[enabled][us][ud] = bi[enabled][ud][us] = 2.0 * static_cast<double>(bytes) / t / 1e9;
        }
      }
    }
    if (enabled) box.set_peer_access(false);
  }

  // ---- report: the model first, then the measurements in the same layout, then the comparison.
  const std::string method = fmt::format(
      "{} per copy, h20MemcpyPeerAsync on a stream of the destination device, timed with events "
      "around {} queued behind a gate; median of {} samples after a warm-up.",
      format_bytes(bytes),
      bwCopies == 1 ? std::string("each copy") : fmt::format("{} back-to-back copies", bwCopies),
      reps);
  const std::string emulated =
      "The emulator moves the bytes with host memcpy: these figures are the host's memory "
      "bandwidth and the cost of staging through host memory, not the modelled link speeds "
      "(see the first table and the summary by path).";
  {
    Table& t = report.add_table(
        "P2P paths as modelled (code as h20-smi topo -m prints it, GB/s per direction)",
        [&] {
          std::vector<std::string> c{"D\\D"};
          for (int d = 0; d < n; ++d)
            c.push_back(fmt::format("{}", d));
          return c;
        }(),
        std::vector<bool>(un + 1, true));
    t.rightAligned[0] = false;
    for (std::size_t s = 0; s < un; ++s) {
      std::vector<std::string> row{fmt::format("{}", s)};
      for (std::size_t d = 0; d < un; ++d) {
        const Modelled& m = model[s][d];
        row.push_back(s == d ? m.code : fmt::format("{} {:.4g}", m.code, m.mbps / 1000.0));
        if (s != d)
          t.json.push_back({{"src", s}, {"dst", d}, {"code", m.code}, {"bandwidth_mbps", m.mbps}});
      }
      t.rows.push_back(std::move(row));
    }
    std::string note =
        "From h20DevP2PAttrLinkKind, h20DevP2PAttrHopCount and h20DevP2PAttrLinkBandwidthMBps; "
        "for HOST pairs the bandwidth shown is the model's path through the host. Codes:";
    for (const auto& [code, meaning] : h20::tools::kPathCodeLegend)
      if (std::string(code) != "X")
        note += fmt::format(" {} = {}.", code, h20::tools::legend_text(meaning, " "));
    t.notes.push_back(std::move(note));
  }
  add_matrix(report, "Unidirectional P2P bandwidth, peer access disabled (GB/s)", uni[0], 2,
             "gb_per_s", {method, emulated});
  add_matrix(report, "Unidirectional P2P bandwidth, peer access enabled (GB/s)", uni[1], 2,
             "gb_per_s",
             {"Peer access enabled both ways for every pair h20DeviceCanAccessPeer allows; HOST "
              "pairs stay staged through host memory."});
  if (!cfg.noBidirectional) {
    std::vector<std::string> bidirNote{
        "Both directions at once, each copy on its destination's stream; bandwidth counts the "
        "bytes of both directions. Measured for src < dst and mirrored; the diagonal is not "
        "measured."};
    add_matrix(report, "Bidirectional P2P bandwidth, peer access disabled (GB/s)", bi[0], 2,
               "gb_per_s", bidirNote);
    add_matrix(report, "Bidirectional P2P bandwidth, peer access enabled (GB/s)", bi[1], 2,
               "gb_per_s");
  }
  add_matrix(
      report, "P2P latency, peer access disabled (us)", rtt[0], 1, "round_trip_us",
      {fmt::format("Round trip of a {}-byte copy: h20MemcpyPeerAsync on the destination's stream "
                   "then h20StreamSynchronize, on the host's clock; median of {} after 5 "
                   "untimed (p99 and mean in the JSON; p99 per path in the summary). It is "
                   "dominated by the runtime's hand-off to the engine and back (see `h20-bench "
                   "launch`), the same for every pair. The device-side time per copy "
                   "(p2pBandwidthLatencyTest's latency: events around {} back-to-back copies, "
                   "median of {} batches) is in the summary and the JSON (device_us).",
                   kLatencyBytes, roundTrips, latCopies, reps)},
      {{"round_trip_p99_us", &rtt99[0]},
       {"round_trip_mean_us", &rttMean[0]},
       {"device_us", &lat[0]}});
  add_matrix(report, "P2P latency, peer access enabled (us)", rtt[1], 1, "round_trip_us", {},
             {{"round_trip_p99_us", &rtt99[1]},
              {"round_trip_mean_us", &rttMean[1]},
              {"device_us", &lat[1]}});

  // Per path kind: what the model says against what the emulator measured.
  struct Group {
    int pairs = 0;
    int minMbps = 0, maxMbps = 0;
    std::vector<double> uni[2], lat[2], rtt[2];
    std::vector<double> trips[2];  // every round-trip sample of the group's pairs
  };
  // Ordered L1, L2, ..., HOST: best path first.
  auto order = [](const std::string& a, const std::string& b) {
    auto rank = [](const std::string& c) { return c[0] == 'L' ? std::stoi(c.substr(1)) : 1 << 20; };
    return rank(a) < rank(b);
  };
  std::map<std::string, Group, decltype(order)> groups(order);
  for (std::size_t s = 0; s < un; ++s)
    for (std::size_t d = 0; d < un; ++d) {
      if (s == d) continue;
      const Modelled& m = model[s][d];
      Group& g = groups[m.code];
      g.minMbps = g.pairs ? std::min(g.minMbps, m.mbps) : m.mbps;
      g.maxMbps = g.pairs ? std::max(g.maxMbps, m.mbps) : m.mbps;
      ++g.pairs;
      for (int e = 0; e < 2; ++e) {
        g.uni[e].push_back(uni[e][s][d]);
        g.lat[e].push_back(lat[e][s][d]);
        g.rtt[e].push_back(rtt[e][s][d]);
        g.trips[e].insert(g.trips[e].end(), rttAll[e][s][d].begin(), rttAll[e][s][d].end());
      }
    }
  Table& t = report.add_table(
      "P2P summary by path: modelled vs measured",
      {"path", "pairs", "modelled GB/s", "measured GB/s, access disabled",
       "measured GB/s, access enabled", "enabled / disabled", "round trip us, disabled / enabled",
       "round trip p99 us, disabled / enabled", "device us per copy, disabled / enabled"},
      {false, true, true, true, true, true, true, true, true});
  for (const auto& [code, g] : groups) {
    const double dis = median(g.uni[0]), en = median(g.uni[1]);
    const std::string modelledText =
        g.minMbps == g.maxMbps
            ? fmt::format("{:.4g}", g.minMbps / 1000.0)
            : fmt::format("{:.4g}-{:.4g}", g.minMbps / 1000.0, g.maxMbps / 1000.0);
    t.rows.push_back(
        {code, fmt::format("{}", g.pairs), modelledText, gb(dis, 2), gb(en, 2),
         fmt::format("{:.2f}x", en / dis),
         fmt::format("{:.1f} / {:.1f}", median(g.rtt[0]), median(g.rtt[1])),
         fmt::format("{:.1f} / {:.1f}", percentile(g.trips[0], 99), percentile(g.trips[1], 99)),
         fmt::format("{:.3f} / {:.3f}", median(g.lat[0]), median(g.lat[1]))});
    t.json.push_back({{"path", code},
                      {"pairs", g.pairs},
                      {"modelled_min_mbps", g.minMbps},
                      {"modelled_max_mbps", g.maxMbps},
                      {"disabled_gb_per_s", dis},
                      {"enabled_gb_per_s", en},
                      {"disabled_round_trip_us", median(g.rtt[0])},
                      {"enabled_round_trip_us", median(g.rtt[1])},
                      {"disabled_round_trip_p99_us", percentile(g.trips[0], 99)},
                      {"enabled_round_trip_p99_us", percentile(g.trips[1], 99)},
                      {"disabled_device_us", median(g.lat[0])},
                      {"enabled_device_us", median(g.lat[1])}});
  }
  t.notes.push_back(
      "Medians over the ordered pairs of each path kind (unidirectional); the round trip's p99 "
      "is over every sample of those pairs. With access enabled a "
      "linked pair copies once, source to destination; disabled (and always for HOST pairs) the "
      "emulator copies each chunk twice, through a host bounce buffer. That is the only "
      "difference between the paths the emulator can show: the modelled link speed is not "
      "simulated.");
}

}  // namespace

Suite make_p2p_suite() {
  auto cfg = std::make_shared<P2pConfig>();
  return Suite{"p2p",
               "Peer-to-peer bandwidth and latency matrices over all device pairs, peer access "
               "disabled and enabled (like CUDA's p2pBandwidthLatencyTest)",
               false,
               [cfg](CLI::App& sub) {
                 sub.add_option(
                        "--size", cfg->size,
                        "Bytes per bandwidth copy (e.g. 16M); default 64M (1M with --quick)")
                     ->check(size_validator());
                 sub.add_flag("--no-bidirectional", cfg->noBidirectional,
                              "Skip the bidirectional bandwidth matrices");
               },
               [cfg](const Options& o, Report& r) { run_p2p(*cfg, o, r); }};
}

}  // namespace h20::bench
