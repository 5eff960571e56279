// kda_test_util.hpp - host-side problem builders, metrics and golden-case loading for the KDA
// tests.
//
// Owns the random problem generator (deterministic per seed), the table-of-shapes description
// shared by the core and the C API tests, the accuracy metric of the issue (relative RMSE against
// the fp64 reference) and the reader of tests/data/kda-golden. It knows nothing about the
// runtime: the API tests copy these host buffers to the device themselves.
#ifndef H20_TESTS_KERNELS_KDA_TEST_UTIL_HPP_
#define H20_TESTS_KERNELS_KDA_TEST_UTIL_HPP_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kda_core.hpp"

namespace h20::kda::test {

// One row of the table of shapes.
struct Case {
  std::string name;
  // Fixed length: batch rows of seqLen tokens. Varlen (seqLens non-empty): one row, these lengths.
  int batch = 1;
  int seqLen = 0;
  std::vector<std::int64_t> seqLens;
  int H = 1, HV = 1, K = 64, V = 64;
  Gate gate = Gate::kLowerBound;
  float lowerBound = -5.0f;
  float gShift = 0.0f;  // added to the gate pre-activation (-6: long memory)
  float gStd = 1.0f;
  bool initialState = true;
  bool finalState = true;
  DType io = DType::kBF16;
  DType state = DType::kF32;
  bool dtBias = true;

  bool varlen() const { return !seqLens.empty(); }
  int numSeqs() const { return varlen() ? static_cast<int>(seqLens.size()) : batch; }
  std::int64_t totalTokens() const {
    if (!varlen()) return std::int64_t(batch) * seqLen;
    std::int64_t t = 0;
    for (auto l : seqLens)
      t += l;
    return t;
  }
  std::vector<std::int64_t> cuSeqlens() const {
    std::vector<std::int64_t> cu{0};
    for (int n = 0; n < numSeqs(); ++n)
      cu.push_back(cu.back() + (varlen() ? seqLens[n] : seqLen));
    return cu;
  }
};

// How GoogleTest prints a Case (after "GetParam() = " in listings and failures): its name and
// shape, never the bytes of the struct (which hold heap pointers and change every run).
inline void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (";
  if (c.varlen()) {
    *os << "varlen {";  // no brackets: CMake's test discovery drops names holding them
    for (std::size_t i = 0; i < c.seqLens.size(); ++i)
      *os << (i > 0 ? ", " : "") << c.seqLens[i];
    *os << "}";
  } else {
    *os << "B=" << c.batch << " T=" << c.seqLen;
  }
  *os << " H=" << c.H << " HV=" << c.HV << " K=" << c.K << " V=" << c.V << " "
      << (c.io == DType::kF32 ? "fp32" : "bf16") << " "
      << (c.gate == Gate::kSoftplus ? "softplus" : "lower-bound") << ")";
}

// A parameter value as a GoogleTest name: characters outside [A-Za-z0-9_] become '_'.
inline std::string testNameOf(const std::string& s) {
  std::string r = s;
  for (char& ch : r) {
    const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '_';
    if (!ok) ch = '_';
  }
  return r.empty() ? std::string("_") : r;
}

// A problem's host buffers, typed by the case's dtypes, plus a Problem pointing into them.
struct HostProblem {
  Case c;
  std::vector<std::uint8_t> q, k, v, g, beta, out, initial, final;
  std::vector<float> aLog, dtBias;
  std::vector<std::int64_t> cu;
  Problem p;

  void bind() {
    p.numHeads = c.H;
    p.numValueHeads = c.HV;
    p.headDimK = c.K;
    p.headDimV = c.V;
    p.io = c.io;
    p.stateType = c.state;
    p.gate = c.gate;
    p.lowerBound = c.lowerBound;
    p.scale = 1.0f / std::sqrt(float(c.K));
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.g = g.data();
    p.beta = beta.data();
    p.out = out.data();
    p.aLog = aLog.data();
    p.dtBias = c.dtBias ? dtBias.data() : nullptr;
    p.initialState = c.initialState ? initial.data() : nullptr;
    p.finalState = c.finalState ? final.data() : nullptr;
  }
};

inline void fillTensor(std::vector<std::uint8_t>* buf, DType t, std::size_t n, std::mt19937_64& rng,
                       float mean, float stddev) {
  std::normal_distribution<float> dist(mean, stddev);
  buf->assign(n * dtypeBytes(t), 0);
  for (std::size_t i = 0; i < n; ++i) {
    // Values representable in bf16, so that fp32 and bf16 runs mean the same inputs.
    storeElement(buf->data(), t, i, bf16ToFloat(floatToBf16(dist(rng))));
  }
}

inline HostProblem makeProblem(const Case& c, std::uint64_t seed) {
  HostProblem hp;
  hp.c = c;
  std::mt19937_64 rng(seed);
  const std::size_t T = std::size_t(c.totalTokens());
  const std::size_t N = std::size_t(c.numSeqs());
  fillTensor(&hp.q, c.io, T * c.H * c.K, rng, 0.0f, 1.0f);
  fillTensor(&hp.k, c.io, T * c.H * c.K, rng, 0.0f, 1.0f);
  fillTensor(&hp.v, c.io, T * c.HV * c.V, rng, 0.0f, 1.0f);
  fillTensor(&hp.g, c.io, T * c.HV * c.K, rng, c.gShift, c.gStd);
  fillTensor(&hp.beta, c.io, T * c.HV, rng, 0.0f, 1.0f);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  hp.aLog.resize(c.HV);
  for (auto& a : hp.aLog)
    a = 0.5f * unit(rng);
  hp.dtBias.resize(std::size_t(c.HV) * c.K);
  for (auto& b : hp.dtBias)
    b = 0.1f * unit(rng);
  fillTensor(&hp.initial, c.state, N * c.HV * c.V * c.K, rng, 0.0f, 0.1f);
  hp.final.assign(N * c.HV * c.V * c.K * dtypeBytes(c.state), 0xff);  // NaN-filled sentinel
  hp.out.assign(T * c.HV * c.V * dtypeBytes(c.io), 0xff);
  hp.cu = c.cuSeqlens();
  hp.bind();
  return hp;
}

inline std::vector<double> toDouble(const std::vector<std::uint8_t>& buf, DType t) {
  std::vector<double> r(buf.size() / dtypeBytes(t));
  for (std::size_t i = 0; i < r.size(); ++i)
    r[i] = loadElement(buf.data(), t, i);
  return r;
}
inline std::vector<double> toDouble(const std::vector<float>& buf) {
  return std::vector<double>(buf.begin(), buf.end());
}

struct Accuracy {
  double relRmse = 0;  // RMSE(x - ref) / RMS(ref)
  bool allFinite = true;
};

inline Accuracy compare(const std::vector<double>& x, const std::vector<double>& ref) {
  Accuracy a;
  if (x.size() != ref.size()) {
    a.relRmse = INFINITY;
    return a;
  }
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) a.allFinite = false;
    err += (x[i] - ref[i]) * (x[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  a.relRmse = x.empty() ? 0.0 : std::sqrt(err / std::max(norm, 1e-300));
  return a;
}

// Per-row accuracy: one value per row of `rowLength` elements (a token of one value head), the
// row's largest absolute error divided by the RMS of the whole reference tensor. A whole-tensor
// RMS averages a few bad rows away; this keeps each row visible, and the common scale keeps rows
// whose reference is near zero from reporting huge relative errors.
inline std::vector<double> rowErrors(const std::vector<double>& x, const std::vector<double>& ref,
                                     std::size_t rowLength) {
  if (x.size() != ref.size() || rowLength == 0 || ref.size() % rowLength != 0) return {INFINITY};
  double norm = 0;
  for (double r : ref)
    norm += r * r;
  const double rms = std::sqrt(norm / std::max<std::size_t>(ref.size(), 1));
  std::vector<double> errors(ref.size() / rowLength, 0.0);
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs(x[i] - ref[i]);
    double& row = errors[i / rowLength];
    if (std::isnan(e) || e > row) row = e;  // a NaN sticks: nothing compares above it
  }
  for (double& e : errors)
    e /= std::max(rms, 1e-300);
  return errors;
}

// The acceptance thresholds.
inline double tolerance(DType io) {
  return io == DType::kBF16 ? 5e-3 : 1e-4;
}

// ---- the table of shapes (issue 3): fixed and varlen, T in {1..1024}, H in {1, 2, 4}, GVA,
// zero-length and sub-chunk sequences, both gates incl. long memory, lower bounds -5 and -1,
// with and without states, bf16 and fp32, head dims 16..256 and K != V ----------------------

inline Case fixedCase(std::string name, int batch, int T, int H, int HV, int K, int V, DType io) {
  Case c;
  c.name = std::move(name);
  c.batch = batch;
  c.seqLen = T;
  c.H = H;
  c.HV = HV;
  c.K = K;
  c.V = V;
  c.io = io;
  return c;
}

inline Case varlenCase(std::string name, std::vector<std::int64_t> lens, int H, int HV, int K,
                       int V, DType io) {
  Case c = fixedCase(std::move(name), 1, 0, H, HV, K, V, io);
  c.seqLens = std::move(lens);
  return c;
}

inline std::vector<Case> shapeTable() {
  const DType bf = DType::kBF16, f32 = DType::kF32;
  std::vector<Case> t;
  t.push_back(fixedCase("FixedT1", 1, 1, 1, 1, 64, 64, bf));
  {
    Case c = fixedCase("FixedT15Batch2LowerBound1", 2, 15, 2, 2, 64, 64, f32);
    c.lowerBound = -1.0f;
    t.push_back(c);
  }
  {
    Case c = fixedCase("FixedT16H4Softplus", 1, 16, 4, 4, 64, 64, bf);
    c.gate = Gate::kSoftplus;
    t.push_back(c);
  }
  t.push_back(fixedCase("FixedT17Gva", 1, 17, 2, 4, 64, 64, f32));
  {
    Case c = fixedCase("FixedT37NoInitialState", 3, 37, 1, 2, 128, 128, bf);
    c.initialState = false;
    t.push_back(c);
  }
  {
    Case c = fixedCase("FixedT97NoFinalState", 1, 97, 2, 2, 64, 64, f32);
    c.finalState = false;
    t.push_back(c);
  }
  {
    Case c = fixedCase("FixedT300K128Bf16State", 1, 300, 2, 2, 128, 128, bf);
    c.state = bf;
    t.push_back(c);
  }
  {
    Case c = fixedCase("FixedT1024GvaLongMemory", 1, 1024, 1, 2, 64, 64, f32);
    c.gShift = -6.0f;
    t.push_back(c);
  }
  {
    Case c = fixedCase("FixedT1024H4SoftplusLongMemory", 1, 1024, 4, 4, 64, 64, bf);
    c.gate = Gate::kSoftplus;
    c.gShift = -6.0f;
    t.push_back(c);
  }
  t.push_back(fixedCase("FixedT1024H2K128", 1, 1024, 2, 2, 128, 128, bf));
  t.push_back(fixedCase("KSmallerThanV", 1, 97, 2, 2, 64, 128, f32));
  t.push_back(fixedCase("KLargerThanV", 1, 50, 1, 1, 128, 32, bf));
  t.push_back(fixedCase("HeadDim16", 2, 40, 2, 2, 16, 16, f32));
  t.push_back(fixedCase("HeadDim256", 1, 40, 1, 1, 256, 256, f32));
  {
    Case c = fixedCase("HeadDims48x80Softplus", 1, 45, 1, 2, 48, 80, bf);
    c.gate = Gate::kSoftplus;
    t.push_back(c);
  }
  {
    // Decay far beyond e^-80 per chunk: the pairwise-exponent path.
    Case c = fixedCase("SoftplusStrongDecay", 1, 70, 1, 1, 64, 64, f32);
    c.gate = Gate::kSoftplus;
    c.gShift = 8.0f;
    t.push_back(c);
  }
  {
    Case c = fixedCase("NoDtBias", 1, 33, 1, 1, 64, 64, f32);
    c.dtBias = false;
    c.lowerBound = -1.0f;
    t.push_back(c);
  }
  t.push_back(varlenCase("VarlenZeroLengthAndShort", {0, 5, 16, 0, 33, 1}, 2, 4, 64, 64, bf));
  {
    Case c = varlenCase("VarlenSoftplusLongMemory", {300, 17, 97}, 1, 2, 128, 128, f32);
    c.gate = Gate::kSoftplus;
    c.gShift = -6.0f;
    t.push_back(c);
  }
  t.push_back(varlenCase("VarlenEmptySequencesPassStateThrough", {0, 0, 37, 0}, 1, 1, 64, 64, f32));
  {
    Case c = varlenCase("VarlenBf16State", {15, 16, 17}, 1, 1, 64, 64, bf);
    c.state = bf;
    c.lowerBound = -1.0f;
    t.push_back(c);
  }
  return t;
}

// ---- golden cases (tests/data/kda-golden, see its README) -------------------------------------

struct GoldenCase {
  Case c;
  HostProblem hp;                        // inputs (fp32 or bf16 as asked), outputs zeroed
  std::vector<double> refOut, refState;  // FlashKDA's fp64 results (stored as fp32)
};

inline std::vector<std::uint8_t> readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline std::vector<float> readF32(const std::string& path) {
  const auto bytes = readFile(path);
  std::vector<float> r(bytes.size() / 4);
  std::memcpy(r.data(), bytes.data(), r.size() * 4);
  return r;
}

inline std::vector<std::uint8_t> retype(const std::vector<float>& src, DType t) {
  std::vector<std::uint8_t> r(src.size() * dtypeBytes(t));
  for (std::size_t i = 0; i < src.size(); ++i)
    storeElement(r.data(), t, i, src[i]);
  return r;
}

inline GoldenCase loadGolden(const std::string& dir, DType io) {
  const auto meta = nlohmann::json::parse(readFile(dir + "/meta.json"));
  const auto& prm = meta.at("params");
  GoldenCase gc;
  Case& c = gc.c;
  c.name = dir;
  c.batch = prm.at("B").get<int>();
  c.seqLen = prm.at("T").get<int>();
  c.H = c.HV = prm.at("H").get<int>();
  c.K = prm.at("K").get<int>();
  c.V = prm.at("V").get<int>();
  c.io = io;
  c.state = DType::kF32;
  c.gate = prm.at("gate").get<std::string>() == "softplus" ? Gate::kSoftplus : Gate::kLowerBound;
  if (!prm.at("lower_bound").is_null()) c.lowerBound = prm.at("lower_bound").get<float>();
  c.initialState = prm.at("init_state").get<bool>();
  c.finalState = true;
  if (!prm.at("cu_seqlens").is_null()) {
    const auto cu = prm.at("cu_seqlens").get<std::vector<std::int64_t>>();
    for (std::size_t i = 1; i < cu.size(); ++i)
      c.seqLens.push_back(cu[i] - cu[i - 1]);
  }
  HostProblem& hp = gc.hp;
  hp.c = c;
  hp.q = retype(readF32(dir + "/q.bin"), io);
  hp.k = retype(readF32(dir + "/k.bin"), io);
  hp.v = retype(readF32(dir + "/v.bin"), io);
  hp.g = retype(readF32(dir + "/g.bin"), io);
  hp.beta = retype(readF32(dir + "/beta.bin"), io);
  hp.aLog = readF32(dir + "/A_log.bin");
  hp.dtBias = readF32(dir + "/dt_bias.bin");
  if (c.initialState) hp.initial = retype(readF32(dir + "/initial_state.bin"), DType::kF32);
  gc.refOut = toDouble(readF32(dir + "/output.bin"));
  gc.refState = toDouble(readF32(dir + "/final_state.bin"));
  hp.out.assign(gc.refOut.size() * dtypeBytes(io), 0);
  hp.final.assign(gc.refState.size() * 4, 0);
  hp.cu = c.cuSeqlens();
  hp.bind();
  hp.p.scale = meta.at("scale").get<float>();
  return gc;
}

}  // namespace h20::kda::test

#endif  // H20_TESTS_KERNELS_KDA_TEST_UTIL_HPP_
