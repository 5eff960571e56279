// kda_api_test.cpp - the KDA C API (include/h20/kda.h) through the runtime: results against the
// fp64 reference and the golden cases, decode continuing a prefill, argument checks with their
// messages, device-side cuSeqlens / slot faults reported at synchronisation, and concurrent use.
#include <gtest/gtest.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "h20/h20_runtime.h"
#include "h20/kda.h"
#include "kda_test_util.hpp"

namespace h20::kda::test {
namespace {

#define ASSERT_H20(expr)                                                          \
  do {                                                                            \
    const h20Error_t err_ = (expr);                                               \
    ASSERT_EQ(err_, h20Success) << #expr << ": " << h20GetErrorName(err_) << ": " \
                                << h20GetLastErrorMessage() << " / "              \
                                << h20kdaGetLastErrorMessage();                   \
  } while (0)

// Device memory owned by a test.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) {
    if (bytes > 0 && h20Malloc(&ptr_, bytes) != h20Success) ptr_ = nullptr;
    bytes_ = bytes;
  }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    if (ptr_ != nullptr) h20Memcpy(ptr_, host.data(), bytes_, h20MemcpyHostToDevice);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() { reset(); }
  void reset() {
    if (ptr_ != nullptr) h20Free(ptr_);
    ptr_ = nullptr;
  }
  template <typename T>
  void download(std::vector<T>* host) const {
    host->resize(bytes_ / sizeof(T));
    h20Memcpy(host->data(), ptr_, bytes_, h20MemcpyDeviceToHost);
  }
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

h20DataType toH20(DType t) {
  return t == DType::kF32 ? H20_R_32F : H20_R_16BF;
}

// A HostProblem uploaded to the device, with the h20kdaPrefillArgs describing it.
struct DeviceProblem {
  DeviceBuffer q, k, v, g, beta, out, aLog, dtBias, initial, final, cu;
  h20kdaPrefillArgs args{};

  explicit DeviceProblem(const HostProblem& hp)
      : q(hp.q),
        k(hp.k),
        v(hp.v),
        g(hp.g),
        beta(hp.beta),
        out(hp.out),
        aLog(hp.aLog),
        dtBias(hp.dtBias),
        initial(hp.initial),
        final(hp.final),
        cu(hp.cu) {
    const Case& c = hp.c;
    args.structSize = sizeof(args);
    args.batch = c.varlen() ? 1 : c.batch;
    args.seqLen = static_cast<int>(c.varlen() ? c.totalTokens() : c.seqLen);
    args.numHeads = c.H;
    args.numValueHeads = c.HV;
    args.headDimK = c.K;
    args.headDimV = c.V;
    args.dtype = toH20(c.io);
    args.q = q.get();
    args.k = k.get();
    args.v = v.get();
    args.g = g.get();
    args.beta = beta.get();
    args.out = out.get();
    args.scale = hp.p.scale;
    args.gateMode = c.gate == Gate::kSoftplus ? H20_KDA_GATE_SOFTPLUS : H20_KDA_GATE_LOWER_BOUND;
    args.A_log = aLog.as<float>();
    args.dtBias = c.dtBias ? dtBias.as<float>() : nullptr;
    args.lowerBound = c.lowerBound;
    args.initialState = c.initialState ? initial.get() : nullptr;
    args.finalState = c.finalState ? final.get() : nullptr;
    args.stateDtype = toH20(c.state);
    args.cuSeqlens = c.varlen() ? cu.as<std::int64_t>() : nullptr;
    args.numSeqs = c.varlen() ? c.numSeqs() : 0;
    args.algorithm = H20_KDA_ALGO_DEFAULT;
  }
};

// Stores an arbitrary int in an enum field, as C code may (a C++ cast to an out-of-range value
// would itself be undefined).
template <typename Enum>
void setRawEnum(Enum* field, int value) {
  static_assert(sizeof(Enum) == sizeof(int));
  std::memcpy(field, &value, sizeof value);
}

class KdaApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_H20(h20SetDevice(0));
    ASSERT_H20(h20StreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) h20StreamDestroy(stream_);
  }
  // After a device-side fault: the device stays faulted until reset, which also destroys every
  // allocation and stream of the device.
  void resetDevice() {
    stream_ = nullptr;
    EXPECT_EQ(h20DeviceReset(), h20Success);
  }

  // Runs the prefill of hp on the device and copies out/finalState back into hp.
  void runPrefill(HostProblem& hp, h20kdaAlgorithm algo) {
    DeviceProblem dp(hp);
    dp.args.algorithm = algo;
    ASSERT_H20(h20kdaPrefill(&dp.args, stream_));
    ASSERT_H20(h20StreamSynchronize(stream_));
    dp.out.download(&hp.out);
    if (hp.c.finalState) dp.final.download(&hp.final);
  }

  h20Stream_t stream_ = nullptr;
};

// ---- results --------------------------------------------------------------------------------

class KdaApiShapes : public KdaApi, public ::testing::WithParamInterface<Case> {};

TEST_P(KdaApiShapes, PrefillMatchesFp64Reference) {
  HostProblem hp = makeProblem(GetParam(), 4321);
  std::vector<double> refOut, refState;
  referenceF64(hp.p, hp.cu, &refOut, &refState);
  for (h20kdaAlgorithm algo : {H20_KDA_ALGO_DEFAULT, H20_KDA_ALGO_RECURRENT}) {
    SCOPED_TRACE(algo == H20_KDA_ALGO_DEFAULT ? "default" : "recurrent");
    runPrefill(hp, algo);
    const Accuracy out = compare(toDouble(hp.out, hp.c.io), refOut);
    EXPECT_TRUE(out.allFinite);
    EXPECT_LE(out.relRmse, tolerance(hp.c.io)) << "output";
    if (hp.c.finalState) {
      const Accuracy st = compare(toDouble(hp.final, hp.c.state), refState);
      EXPECT_TRUE(st.allFinite);
      EXPECT_LE(st.relRmse, tolerance(hp.c.io)) << "final state";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, KdaApiShapes, ::testing::ValuesIn(shapeTable()),
                         [](const auto& info) { return info.param.name; });

class KdaApiGolden : public KdaApi, public ::testing::WithParamInterface<std::string> {};

TEST_P(KdaApiGolden, PrefillMatchesFlashKdaReference) {
  const std::string dir = std::string(H20_KDA_GOLDEN_DIR) + "/" + GetParam();
  for (DType io : {DType::kBF16, DType::kF32}) {
    SCOPED_TRACE(io == DType::kBF16 ? "bf16" : "fp32");
    GoldenCase gc = loadGolden(dir, io);
    runPrefill(gc.hp, H20_KDA_ALGO_DEFAULT);
    const Accuracy out = compare(toDouble(gc.hp.out, io), gc.refOut);
    const Accuracy st = compare(toDouble(gc.hp.final, DType::kF32), gc.refState);
    EXPECT_TRUE(out.allFinite && st.allFinite);
    EXPECT_LE(out.relRmse, tolerance(io));
    EXPECT_LE(st.relRmse, tolerance(io));
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, KdaApiGolden,
                         ::testing::Values("fixed_t300_h2", "varlen_4seq", "softplus_longmem"),
                         [](const auto& info) { return testNameOf(info.param); });

TEST_F(KdaApi, PrefillAcceptsStructWithoutExtensions) {
  HostProblem hp = makeProblem(fixedCase("x", 1, 20, 1, 1, 64, 64, DType::kF32), 3);
  std::vector<double> refOut, refState;
  referenceF64(hp.p, hp.cu, &refOut, &refState);
  DeviceProblem dp(hp);
  dp.args.structSize = offsetof(h20kdaPrefillArgs, numSeqs) + sizeof(int);
  setRawEnum(&dp.args.algorithm, 77);  // beyond structSize: never read
  ASSERT_H20(h20kdaPrefill(&dp.args, stream_));
  ASSERT_H20(h20StreamSynchronize(stream_));
  dp.out.download(&hp.out);
  EXPECT_LE(compare(toDouble(hp.out, DType::kF32), refOut).relRmse, 1e-4);
}

TEST_F(KdaApi, PrefillInPlaceStateMatchesSeparateBuffers) {
  Case c = varlenCase("inplace", {40, 0, 17}, 1, 2, 64, 64, DType::kF32);
  HostProblem hp = makeProblem(c, 8);
  std::vector<double> refOut, refState;
  referenceF64(hp.p, hp.cu, &refOut, &refState);
  DeviceProblem dp(hp);
  dp.args.finalState = dp.initial.get();
  ASSERT_H20(h20kdaPrefill(&dp.args, stream_));
  ASSERT_H20(h20StreamSynchronize(stream_));
  std::vector<std::uint8_t> state;
  dp.initial.download(&state);
  EXPECT_LE(compare(toDouble(state, DType::kF32), refState).relRmse, 1e-4);
}

TEST_F(KdaApi, ConcurrentPrefillsOnTwoStreamsMatchReference) {
  HostProblem a = makeProblem(varlenCase("a", {100, 3, 60}, 2, 2, 64, 64, DType::kBF16), 1);
  HostProblem b = makeProblem(fixedCase("b", 2, 70, 1, 2, 64, 128, DType::kF32), 2);
  std::vector<double> refA, refStateA, refB, refStateB;
  referenceF64(a.p, a.cu, &refA, &refStateA);
  referenceF64(b.p, b.cu, &refB, &refStateB);
  h20Stream_t other = nullptr;
  ASSERT_H20(h20StreamCreate(&other));
  DeviceProblem da(a), db(b);
  std::thread t([&] { EXPECT_EQ(h20kdaPrefill(&db.args, other), h20Success); });
  ASSERT_H20(h20kdaPrefill(&da.args, stream_));
  t.join();
  ASSERT_H20(h20StreamSynchronize(stream_));
  ASSERT_H20(h20StreamSynchronize(other));
  ASSERT_H20(h20StreamDestroy(other));
  da.out.download(&a.out);
  db.out.download(&b.out);
  EXPECT_LE(compare(toDouble(a.out, DType::kBF16), refA).relRmse, 5e-3);
  EXPECT_LE(compare(toDouble(b.out, DType::kF32), refB).relRmse, 1e-4);
}

TEST_F(KdaApi, IsaNameIsASupportedLevel) {
  const std::string isa = h20kdaGetIsaName();
  EXPECT_TRUE(parseIsa(isa).has_value()) << isa;
  if (const char* env = std::getenv("H20_KDA_ISA"); env != nullptr && parseIsa(env)) {
    if (isaSupported(*parseIsa(env))) {
      EXPECT_EQ(isa, env);
    }
  }
}

// ---- decode ---------------------------------------------------------------------------------

// Prefill of T tokens == prefill of T-1 tokens, then one decode step from the pool slots.
TEST_F(KdaApi, DecodeAfterPrefillMatchesPrefillOfOneMoreToken) {
  for (DType io : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(io == DType::kF32 ? "fp32" : "bf16");
    const int N = 3, T = 30, H = 1, HV = 2, K = 64, V = 128;
    Case full = fixedCase("full", N, T, H, HV, K, V, io);
    full.gate = Gate::kSoftplus;
    HostProblem hpFull = makeProblem(full, 17);
    runPrefill(hpFull, H20_KDA_ALGO_DEFAULT);

    // The same tokens without the last one of each sequence: a varlen prefill over tokens
    // [n*T, n*T + T-1), whose final states go to pool slots {4, 0, 2} of 5.
    Case part = full;
    part.batch = 1;
    part.seqLen = 0;
    std::vector<std::int64_t> cu{0};
    HostProblem hpPart = hpFull;
    const std::size_t eb = dtypeBytes(io);
    auto dropLast = [&](const std::vector<std::uint8_t>& src, std::size_t perToken,
                        std::vector<std::uint8_t>* kept, std::vector<std::uint8_t>* last) {
      kept->clear();
      last->clear();
      for (int n = 0; n < N; ++n) {
        const auto* seq = src.data() + std::size_t(n) * T * perToken;
        kept->insert(kept->end(), seq, seq + (T - 1) * perToken);
        last->insert(last->end(), seq + (T - 1) * perToken, seq + T * perToken);
      }
    };
    std::vector<std::uint8_t> q1, k1, v1, g1, b1;
    dropLast(hpFull.q, H * K * eb, &hpPart.q, &q1);
    dropLast(hpFull.k, H * K * eb, &hpPart.k, &k1);
    dropLast(hpFull.v, HV * V * eb, &hpPart.v, &v1);
    dropLast(hpFull.g, HV * K * eb, &hpPart.g, &g1);
    dropLast(hpFull.beta, HV * eb, &hpPart.beta, &b1);
    part.seqLens.assign(N, T - 1);
    hpPart.c = part;
    hpPart.cu = part.cuSeqlens();
    hpPart.out.assign(std::size_t(N) * (T - 1) * HV * V * eb, 0);
    hpPart.bind();
    DeviceProblem dp(hpPart);
    const std::vector<std::int32_t> slots{4, 0, 2};
    const std::size_t stateBytes = std::size_t(HV) * V * K * 4;
    DeviceBuffer pool(5 * stateBytes);
    DeviceBuffer partState(N * stateBytes);
    dp.args.finalState = partState.get();
    ASSERT_H20(h20kdaPrefill(&dp.args, stream_));
    for (int n = 0; n < N; ++n) {
      ASSERT_H20(h20MemcpyAsync(static_cast<char*>(pool.get()) + slots[n] * stateBytes,
                                static_cast<char*>(partState.get()) + n * stateBytes, stateBytes,
                                h20MemcpyDeviceToDevice, stream_));
    }
    DeviceBuffer dq(q1), dk(k1), dv(v1), dg(g1), db(b1), dslots(slots);
    DeviceBuffer dout(std::size_t(N) * HV * V * eb);
    h20kdaDecodeArgs d{};
    d.structSize = sizeof(d);
    d.numSeqs = N;
    d.numHeads = H;
    d.numValueHeads = HV;
    d.headDimK = K;
    d.headDimV = V;
    d.dtype = toH20(io);
    d.q = dq.get();
    d.k = dk.get();
    d.v = dv.get();
    d.g = dg.get();
    d.beta = db.get();
    d.out = dout.get();
    d.scale = hpFull.p.scale;
    d.gateMode = H20_KDA_GATE_SOFTPLUS;
    d.A_log = dp.aLog.as<float>();
    d.dtBias = dp.dtBias.as<float>();
    d.state = pool.get();
    d.stateDtype = H20_R_32F;
    d.stateSlots = dslots.as<std::int32_t>();
    d.numStateSlots = 5;
    ASSERT_H20(h20kdaDecode(&d, stream_));
    ASSERT_H20(h20StreamSynchronize(stream_));

    std::vector<std::uint8_t> outStep, poolHost;
    dout.download(&outStep);
    pool.download(&poolHost);
    for (int n = 0; n < N; ++n) {
      const std::size_t row = HV * V * eb;
      const std::size_t fullOff = (std::size_t(n) * T + T - 1) * row;
      std::vector<std::uint8_t> a(outStep.begin() + n * row, outStep.begin() + (n + 1) * row);
      std::vector<std::uint8_t> b(hpFull.out.begin() + fullOff, hpFull.out.begin() + fullOff + row);
      EXPECT_LE(compare(toDouble(a, io), toDouble(b, io)).relRmse, io == DType::kF32 ? 1e-5 : 8e-3)
          << "sequence " << n;
      std::vector<std::uint8_t> sa(poolHost.begin() + slots[n] * stateBytes,
                                   poolHost.begin() + (slots[n] + 1) * stateBytes);
      std::vector<std::uint8_t> sb(hpFull.final.begin() + n * stateBytes,
                                   hpFull.final.begin() + (n + 1) * stateBytes);
      // With bf16 inputs the prefill's state products may take bf16 operands (AVX512_BF16),
      // the decode step's never do: the two states then agree to bf16 precision.
      EXPECT_LE(compare(toDouble(sa, DType::kF32), toDouble(sb, DType::kF32)).relRmse,
                io == DType::kF32 ? 1e-5 : 5e-3)
          << "state of sequence " << n;
    }
  }
}

// ---- device-side faults ---------------------------------------------------------------------

struct BadCu {
  const char* name;
  std::vector<std::int64_t> cu;
  const char* expected;
};

void PrintTo(const BadCu& b, std::ostream* os) {
  *os << b.name << " (cuSeqlens {";
  for (std::size_t i = 0; i < b.cu.size(); ++i)
    *os << (i > 0 ? ", " : "") << b.cu[i];
  *os << "})";
}

class KdaApiBadCuSeqlens : public KdaApi, public ::testing::WithParamInterface<BadCu> {};

TEST_P(KdaApiBadCuSeqlens, PrefillReportsLaunchFailureAtSynchronize) {
  Case c = varlenCase("bad", {5, 5, 10}, 1, 1, 64, 64, DType::kF32);
  HostProblem hp = makeProblem(c, 1);
  {
    DeviceProblem dp(hp);
    EXPECT_EQ(h20Memcpy(dp.cu.get(), GetParam().cu.data(), 4 * sizeof(std::int64_t),
                        h20MemcpyHostToDevice),
              h20Success);
    // The check runs in a first, planning kernel, which may fault before h20kdaPrefill has
    // enqueued the main kernel; the faulted device then refuses that launch, so the fault can
    // also surface from h20kdaPrefill itself (as any later call on a faulted device reports it).
    const h20Error_t enqueued = h20kdaPrefill(&dp.args, stream_);
    std::string message = h20kdaGetLastErrorMessage();
    if (enqueued == h20Success) {
      EXPECT_EQ(h20StreamSynchronize(stream_), h20ErrorLaunchFailure);
      message = h20GetLastErrorMessage();
    } else {
      EXPECT_EQ(enqueued, h20ErrorLaunchFailure);
      EXPECT_EQ(h20StreamSynchronize(stream_), h20ErrorLaunchFailure);
    }
    EXPECT_NE(message.find(GetParam().expected), std::string::npos) << message;
  }
  resetDevice();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KdaApiBadCuSeqlens,
    ::testing::Values(
        BadCu{"FirstNotZero", {1, 5, 10, 20}, "cuSeqlens[0] is 1; it must be 0"},
        BadCu{"Decreasing", {0, 8, 4, 20}, "cuSeqlens[2] = 4 is less than cuSeqlens[1] = 8"},
        BadCu{"LastBelowSeqLen", {0, 5, 10, 19}, "seqLen = 20"},
        BadCu{"LastFarBeyondSeqLen", {0, 5, 10, 1000000}, "cuSeqlens[3]"}),
    [](const auto& info) { return std::string(info.param.name); });

// Zeroed fp32 device buffers and valid decode arguments for N = 2 sequences of one head,
// K = V = 64, with `slots` state slots.
struct SmallDecode {
  static constexpr int N = 2, K = 64, V = 64;
  DeviceBuffer q{N * K * 4}, k{N * K * 4}, v{N * V * 4}, g{N * K * 4}, beta{N * 4}, out{N * V * 4},
      aLog{4}, state;
  h20kdaDecodeArgs args{};

  explicit SmallDecode(int slots) : state(std::size_t(slots) * V * K * 4) {
    for (DeviceBuffer* b : {&q, &k, &v, &g, &beta, &out, &aLog, &state})
      EXPECT_EQ(h20Memset(b->get(), 0, b->bytes()), h20Success);
    args.structSize = sizeof(args);
    args.numSeqs = N;
    args.numHeads = 1;
    args.headDimK = K;
    args.headDimV = V;
    args.dtype = H20_R_32F;
    args.q = q.get();
    args.k = k.get();
    args.v = v.get();
    args.g = g.get();
    args.beta = beta.get();
    args.out = out.get();
    args.scale = 0.125f;
    args.gateMode = H20_KDA_GATE_SOFTPLUS;
    args.A_log = aLog.as<float>();
    args.state = state.get();
    args.stateDtype = H20_R_32F;
  }
};

TEST_F(KdaApi, DecodeReportsSlotOutOfRangeAtSynchronize) {
  {
    SmallDecode d(3);
    const std::vector<std::int32_t> slots{0, 7};
    DeviceBuffer dslots(slots);
    d.args.gateMode = H20_KDA_GATE_LOWER_BOUND;
    d.args.lowerBound = -5.0f;
    d.args.stateSlots = dslots.as<std::int32_t>();
    d.args.numStateSlots = 3;
    ASSERT_H20(h20kdaDecode(&d.args, stream_));
    EXPECT_EQ(h20StreamSynchronize(stream_), h20ErrorLaunchFailure);
    EXPECT_NE(std::string(h20GetLastErrorMessage()).find("stateSlots[1] = 7 is outside [0, 3)"),
              std::string::npos)
        << h20GetLastErrorMessage();
  }
  resetDevice();
}

// ---- argument checks ------------------------------------------------------------------------

struct BadArg {
  const char* name;
  void (*mutate)(h20kdaPrefillArgs* a, void* hostScratch, void* smallDevice);
  const char* expected;
};

void PrintTo(const BadArg& b, std::ostream* os) {
  *os << b.name << " (expects \"" << b.expected << "\")";
}

// A valid bf16 varlen problem (N = 2, H = 2, HV = 4, K = V = 64) to break one field at a time.
class KdaApiBadArgs : public KdaApi, public ::testing::WithParamInterface<BadArg> {};

TEST_P(KdaApiBadArgs, PrefillReturnsInvalidValueNamingTheArgument) {
  Case c = varlenCase("valid", {10, 7}, 2, 4, 64, 64, DType::kBF16);
  HostProblem hp = makeProblem(c, 1);
  DeviceProblem dp(hp);
  DeviceBuffer small(64);
  std::vector<std::uint8_t> host(1 << 20);
  h20kdaPrefillArgs args = dp.args;
  GetParam().mutate(&args, host.data(), small.get());
  EXPECT_EQ(h20kdaPrefill(&args, stream_), h20ErrorInvalidValue);
  const std::string msg = h20kdaGetLastErrorMessage();
  EXPECT_EQ(msg.rfind("h20kdaPrefill: ", 0), 0u) << msg;
  EXPECT_NE(msg.find(GetParam().expected), std::string::npos) << msg;
  // Unchanged, the same arguments are accepted.
  ASSERT_H20(h20kdaPrefill(&dp.args, stream_));
  ASSERT_H20(h20StreamSynchronize(stream_));
}

#define BAD(label, body, msg)                                               \
  BadArg {                                                                  \
    label, [](h20kdaPrefillArgs* a, void* host, void* small) { body; }, msg \
  }

INSTANTIATE_TEST_SUITE_P(
    Table, KdaApiBadArgs,
    ::testing::Values(
        BAD("StructSizeZero", a->structSize = 0, "args->structSize 0 is outside"),
        BAD("StructSizeTooLarge", a->structSize = sizeof(*a) + 8, "structSize"),
        BAD("BatchNotOneWithCuSeqlens", a->batch = 2, "batch 2 must be 1 when cuSeqlens"),
        BAD("BatchZero", a->batch = 0, "batch 0 must be positive"),
        BAD("SeqLenNegative", a->seqLen = -3, "seqLen -3 must be positive"),
        BAD("NumHeadsZero", a->numHeads = 0, "numHeads 0 must be positive"),
        BAD("NumValueHeadsNegative", a->numValueHeads = -1, "numValueHeads -1 is negative"),
        BAD("NumValueHeadsNotMultiple", a->numValueHeads = 3,
            "numValueHeads 3 is not a multiple of numHeads 2"),
        BAD("HeadDimKNotMultipleOf16", a->headDimK = 100, "headDimK 100 is not a multiple of 16"),
        BAD("HeadDimVTooLarge", a->headDimV = 512, "headDimV 512"),
        BAD("HeadDimKZero", a->headDimK = 0, "headDimK 0"),
        BAD("DtypeFp16", a->dtype = H20_R_16F, "dtype 2 (H20_R_16F) is not supported"),
        BAD("DtypeOutOfRange", setRawEnum(&a->dtype, 99), "dtype 99 (unknown) is not supported"),
        BAD("DtypeNegative", setRawEnum(&a->dtype, -1), "dtype -1 (unknown)"),
        BAD("StateDtypeUnknown", setRawEnum(&a->stateDtype, 9), "stateDtype 9 (unknown)"),
        BAD("StateDtypeMinInt", setRawEnum(&a->stateDtype, INT_MIN), "stateDtype -2147483648"),
        BAD("GateModeUnknown", setRawEnum(&a->gateMode, 4), "gateMode 4"),
        BAD("GateModeJustPastSoftplus", setRawEnum(&a->gateMode, 2), "gateMode 2 is not"),
        BAD("GateModeNegative", setRawEnum(&a->gateMode, -1), "gateMode -1 is not"),
        BAD("LowerBoundZero", a->lowerBound = 0.0f, "lowerBound 0 is outside [-5, 0)"),
        BAD("LowerBoundBelowMinus5", a->lowerBound = -5.5f, "lowerBound -5.5"),
        BAD("LowerBoundNaN", a->lowerBound = NAN, "lowerBound nan"),
        BAD("ScaleInfinite", a->scale = INFINITY, "scale inf is not finite"),
        BAD("NumSeqsZero", a->numSeqs = 0, "numSeqs 0 must be positive"),
        BAD("AlgorithmUnknown", setRawEnum(&a->algorithm, 9), "algorithm 9"),
        BAD("AlgorithmJustPastRecurrent", setRawEnum(&a->algorithm, 3), "algorithm 3 is not"),
        BAD("AlgorithmNegative", setRawEnum(&a->algorithm, -1), "algorithm -1 is not"),
        BAD("QNull", a->q = nullptr, "q is NULL"), BAD("KNull", a->k = nullptr, "k is NULL"),
        BAD("VNull", a->v = nullptr, "v is NULL"), BAD("GNull", a->g = nullptr, "g is NULL"),
        BAD("BetaNull", a->beta = nullptr, "beta is NULL"),
        BAD("OutNull", a->out = nullptr, "out is NULL"),
        BAD("ALogNull", a->A_log = nullptr, "A_log is NULL"),
        BAD("QOnPageableHost", a->q = host, "is pageable host memory, not device memory"),
        BAD("DtBiasOnPageableHost", a->dtBias = static_cast<const float*>(host), "dtBias (0x"),
        BAD("VAllocationTooSmall", a->v = small,
            "must hold 8704 bytes ([B,T,HV,V] = [1, 17, 4, 64] H20_R_16BF)"),
        BAD("InitialStateTooSmall", a->initialState = small, "initialState (0x"),
        BAD("CuSeqlensTooSmall",
            (a->initialState = nullptr, a->finalState = nullptr, a->numSeqs = 9), "cuSeqlens (0x"),
        BAD("SeqLenBeyondAllocations", a->seqLen = 1000000, "q (0x"),
        BAD("QMisaligned", a->q = static_cast<const char*>(a->q) + 1,
            "is not aligned to its 2-byte elements"),
        BAD("OutOverlapsV", a->out = const_cast<void*>(a->v), "bytes) overlaps v ("),
        BAD("OutOverlapsInitialState", a->out = const_cast<void*>(a->initialState),
            "overlaps initialState")),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(KdaApi, PrefillRejectsNullArgs) {
  EXPECT_EQ(h20kdaPrefill(nullptr, stream_), h20ErrorInvalidValue);
  EXPECT_STREQ(h20kdaGetLastErrorMessage(), "h20kdaPrefill: args is NULL");
  EXPECT_EQ(h20kdaDecode(nullptr, stream_), h20ErrorInvalidValue);
  EXPECT_STREQ(h20kdaGetLastErrorMessage(), "h20kdaDecode: args is NULL");
}

TEST_F(KdaApi, PrefillMessagesGiveSizesOfShortAllocations) {
  Case c = fixedCase("x", 1, 20, 1, 1, 64, 64, DType::kF32);
  HostProblem hp = makeProblem(c, 1);
  DeviceProblem dp(hp);
  DeviceBuffer small(1000);
  dp.args.v = small.get();
  EXPECT_EQ(h20kdaPrefill(&dp.args, stream_), h20ErrorInvalidValue);
  const std::string msg = h20kdaGetLastErrorMessage();
  EXPECT_NE(msg.find("v ("), std::string::npos) << msg;
  EXPECT_NE(msg.find("must hold 5120 bytes ([B,T,HV,V] = [1, 20, 1, 64] H20_R_32F), but only "
                     "1000 bytes remain in its allocation"),
            std::string::npos)
      << msg;
}

TEST_F(KdaApi, PrefillRejectsTensorsRunningIntoTheNextAllocation) {
  Case c = fixedCase("x", 1, 20, 1, 1, 64, 64, DType::kF32);
  HostProblem hp = makeProblem(c, 1);
  DeviceProblem dp(hp);
  // out needs 5120 bytes; from offset 256 of a 5120-byte allocation it runs 256 bytes into
  // whatever follows, live or not.
  DeviceBuffer first(5120), second(1 << 20);
  dp.args.out = static_cast<char*>(first.get()) + 256;
  EXPECT_EQ(h20kdaPrefill(&dp.args, stream_), h20ErrorInvalidValue);
  const std::string msg = h20kdaGetLastErrorMessage();
  EXPECT_NE(msg.find("out ("), std::string::npos) << msg;
  EXPECT_NE(msg.find("but only 4864 bytes remain in its allocation"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5120 bytes) at offset 256"), std::string::npos) << msg;
}

TEST_F(KdaApi, DecodeRejectsBadArguments) {
  SmallDecode d(SmallDecode::N);
  DeviceBuffer small(64);
  const h20kdaDecodeArgs valid = d.args;
  ASSERT_H20(h20kdaDecode(&valid, stream_));
  ASSERT_H20(h20StreamSynchronize(stream_));

  struct Mut {
    void (*mutate)(h20kdaDecodeArgs*, void*);
    const char* expected;
  };
  const Mut cases[] = {
      {[](h20kdaDecodeArgs* a, void*) { a->structSize = 8; }, "structSize 8"},
      {[](h20kdaDecodeArgs* a, void*) { a->numSeqs = 0; }, "numSeqs 0 must be positive"},
      {[](h20kdaDecodeArgs* a, void*) { a->headDimV = 24; }, "headDimV 24"},
      {[](h20kdaDecodeArgs* a, void*) { a->state = nullptr; }, "state is NULL"},
      {[](h20kdaDecodeArgs* a, void* s) { a->state = s; }, "state (0x"},
      {[](h20kdaDecodeArgs* a, void*) { a->numStateSlots = 1; },
       "numStateSlots 1 is less than numSeqs 2 without stateSlots"},
      {[](h20kdaDecodeArgs* a, void*) { a->numStateSlots = -2; }, "numStateSlots -2"},
      {[](h20kdaDecodeArgs* a, void*) { a->stateDtype = H20_R_16F; }, "stateDtype 2"},
      {[](h20kdaDecodeArgs* a, void*) { setRawEnum(&a->stateDtype, 99); }, "stateDtype 99"},
      {[](h20kdaDecodeArgs* a, void*) { setRawEnum(&a->dtype, 99); }, "dtype 99 (unknown)"},
      {[](h20kdaDecodeArgs* a, void*) { setRawEnum(&a->dtype, -5); }, "dtype -5 (unknown)"},
      {[](h20kdaDecodeArgs* a, void*) { setRawEnum(&a->gateMode, 2); }, "gateMode 2 is not"},
      {[](h20kdaDecodeArgs* a, void*) { setRawEnum(&a->gateMode, -1); }, "gateMode -1 is not"},
      {[](h20kdaDecodeArgs* a, void*) { a->out = a->state; }, "overlaps"},
  };
  for (const Mut& m : cases) {
    h20kdaDecodeArgs a = valid;
    m.mutate(&a, small.get());
    EXPECT_EQ(h20kdaDecode(&a, stream_), h20ErrorInvalidValue) << m.expected;
    const std::string msg = h20kdaGetLastErrorMessage();
    EXPECT_EQ(msg.rfind("h20kdaDecode: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(m.expected), std::string::npos) << msg;
  }
}

TEST_F(KdaApi, PrefillRunsOnTheStreamsDeviceWhateverTheCurrentDevice) {
  int n = 0;
  ASSERT_H20(h20GetDeviceCount(&n));
  if (n < 2) GTEST_SKIP() << "needs two devices";
  ASSERT_H20(h20SetDevice(1));
  HostProblem hp = makeProblem(fixedCase("dev1", 1, 37, 1, 2, 64, 64, DType::kF32), 5);
  std::vector<double> refOut, refState;
  referenceF64(hp.p, hp.cu, &refOut, &refState);
  DeviceProblem dp(hp);  // device 1's memory
  h20Stream_t s1 = nullptr;
  ASSERT_H20(h20StreamCreate(&s1));
  ASSERT_H20(h20SetDevice(0));
  ASSERT_H20(h20kdaPrefill(&dp.args, s1));  // current device 0, stream and tensors on device 1
  ASSERT_H20(h20StreamSynchronize(s1));
  dp.out.download(&hp.out);
  EXPECT_LE(compare(toDouble(hp.out, DType::kF32), refOut).relRmse, 1e-4);
  // Tensors of device 1 with a stream of device 0 are refused.
  EXPECT_EQ(h20kdaPrefill(&dp.args, stream_), h20ErrorInvalidValue);
  ASSERT_H20(h20StreamDestroy(s1));
}

}  // namespace
}  // namespace h20::kda::test
