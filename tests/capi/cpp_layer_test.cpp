// cpp_layer_test.cpp - the header-only C++ layer include/h20/h20.hpp: h20::Error carries the code
// and the runtime's message and consumes the last error; Stream, Event, DeviceBuffer and
// PinnedBuffer own their resources (released at scope exit), are movable and not copyable, and
// throw on use after a move; DeviceGuard restores the current device; launch() copies its
// argument struct.
#include <h20/h20.hpp>

#include "h20_test.hpp"

#include <atomic>
#include <cstring>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using CppLayer = h20test::CApiTest;

static_assert(!std::is_copy_constructible_v<h20::Stream>);
static_assert(!std::is_copy_assignable_v<h20::Stream>);
static_assert(std::is_nothrow_move_constructible_v<h20::Stream>);
static_assert(std::is_nothrow_move_assignable_v<h20::Stream>);
static_assert(!std::is_copy_constructible_v<h20::Event>);
static_assert(std::is_nothrow_move_constructible_v<h20::Event>);
static_assert(!std::is_copy_constructible_v<h20::DeviceBuffer<float>>);
static_assert(std::is_nothrow_move_constructible_v<h20::DeviceBuffer<float>>);
static_assert(std::is_nothrow_move_assignable_v<h20::DeviceBuffer<float>>);
static_assert(!std::is_copy_constructible_v<h20::PinnedBuffer<int>>);
static_assert(std::is_base_of_v<std::runtime_error, h20::Error>);

TEST_F(CppLayer, CheckThrowsErrorWithCodeAndRuntimeMessage) {
  try {
    h20::check(h20SetDevice(31337), "switching");
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorInvalidDevice, e.code());
    EXPECT_NE(std::string::npos, e.message().find("31337")) << e.message();
    const std::string what = e.what();
    EXPECT_NE(std::string::npos, what.find("switching")) << what;
    EXPECT_NE(std::string::npos, what.find("h20ErrorInvalidDevice")) << what;
  }
  EXPECT_EQ(h20Success, h20PeekAtLastError()) << "check() consumes the error it throws";
}

TEST_F(CppLayer, CheckMacroUsesTheExpressionAsContext) {
  try {
    H20_CHECK(h20GetDevice(nullptr));
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorInvalidValue, e.code());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("h20GetDevice(nullptr)"));
  }
}

TEST_F(CppLayer, CheckOfSuccessDoesNotThrow) {
  EXPECT_NO_THROW(h20::check(h20Success));
  EXPECT_TRUE(h20::checkReady(h20Success));
  EXPECT_FALSE(h20::checkReady(h20ErrorNotReady));
  EXPECT_THROW(h20::checkReady(h20ErrorInvalidValue), h20::Error);
}

TEST_F(CppLayer, ErrorWithoutRuntimeMessageUsesTheDescription) {
  h20GetLastError();
  try {
    h20::check(h20ErrorNotSupported);
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorNotSupported, e.code());
    EXPECT_EQ(std::string(h20GetErrorString(h20ErrorNotSupported)), e.message());
  }
}

TEST_F(CppLayer, DeviceHelpersAndGuard) {
  H20_REQUIRE_DEVICES(2);
  EXPECT_EQ(h20test::DeviceCount(), h20::deviceCount());
  EXPECT_EQ(0, h20::getDevice());
  {
    h20::DeviceGuard guard(1);
    EXPECT_EQ(1, h20::getDevice());
    EXPECT_EQ(h20::deviceProperties(1).totalGlobalMem, h20test::Props(1).totalGlobalMem);
  }
  EXPECT_EQ(0, h20::getDevice());
  EXPECT_THROW(h20::DeviceGuard bad(-1), h20::Error);
  EXPECT_EQ(0, h20::getDevice());
  EXPECT_THROW(h20::setDevice(1 << 20), h20::Error);
}

TEST_F(CppLayer, StreamIsDestroyedAtScopeExit) {
  h20Stream_t raw = nullptr;
  {
    h20::Stream s(h20StreamNonBlocking);
    raw = s.get();
    ASSERT_NE(nullptr, raw);
    EXPECT_EQ(h20StreamNonBlocking, s.flags());
    EXPECT_TRUE(s.query());
    s.synchronize();
  }
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamQuery(raw));
  h20GetLastError();
}

TEST_F(CppLayer, StreamMoveTransfersOwnership) {
  h20::Stream a;
  h20Stream_t raw = a.get();
  h20::Stream b(std::move(a));
  EXPECT_EQ(raw, b.get());
  EXPECT_EQ(nullptr, a.get());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_FALSE(static_cast<bool>(a));
  EXPECT_THROW(a.synchronize(), h20::Error);
  h20::Stream c;
  h20Stream_t rawC = c.get();
  c = std::move(b);
  EXPECT_EQ(raw, c.get());
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamQuery(rawC)) << "overwritten stream leaked";
  h20GetLastError();
  EXPECT_NO_THROW(c.synchronize());
}

TEST_F(CppLayer, StreamPriorityAndBadFlags) {
  int least = 0, greatest = 0;
  H20_ASSERT_OK(h20DeviceGetStreamPriorityRange(&least, &greatest));
  h20::Stream s(h20StreamDefault, greatest);
  EXPECT_EQ(greatest, s.priority());
  try {
    h20::Stream bad(0x40u);
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorInvalidValue, e.code());
  }
}

void Increment(void* p) {
  static_cast<std::atomic<int>*>(p)->fetch_add(1);
}

TEST_F(CppLayer, EventsRecordWaitAndTime) {
  h20::Stream a(h20StreamNonBlocking), b(h20StreamNonBlocking);
  h20::Event start, stop, done(h20EventDisableTiming);
  std::atomic<int> count{0};
  start.record(a);
  a.launchHostFunc(Increment, &count);
  stop.record(a);
  done.record(a);
  b.wait(done);
  b.launchHostFunc(Increment, &count);
  b.synchronize();
  EXPECT_EQ(2, count.load());
  EXPECT_TRUE(stop.query());
  stop.synchronize();
  EXPECT_GE(h20::Event::elapsedMs(start, stop), 0.0f);
  try {
    h20::Event::elapsedMs(start, done);
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorInvalidResourceHandle, e.code());
  }
}

TEST_F(CppLayer, EventIsDestroyedAtScopeExitAndMovable) {
  h20Event_t raw = nullptr;
  {
    h20::Event e;
    raw = e.get();
    h20::Event moved(std::move(e));
    EXPECT_EQ(raw, moved.get());
    EXPECT_THROW(e.record(), h20::Error);  // NOLINT(bugprone-use-after-move)
    moved.record();
    moved.synchronize();
  }
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventQuery(raw));
  h20GetLastError();
}

TEST_F(CppLayer, MovedFromStreamIsRefusedAndReleaseHandsOverOwnership) {
  h20::Stream s;
  h20::Stream t(std::move(s));
  h20::Event e;
  try {
    e.record(s);  // NOLINT(bugprone-use-after-move): the moved-from stream must be refused
    FAIL() << "no exception";
  } catch (const h20::Error& err) {
    EXPECT_EQ(h20ErrorInvalidResourceHandle, err.code());
    EXPECT_NE(std::string(err.what()).find("moved-from h20::Stream"), std::string::npos)
        << err.what();
  }
  e.record(t);
  h20::Event moved(std::move(e));
  EXPECT_THROW(t.wait(e), h20::Error);  // NOLINT(bugprone-use-after-move)
  t.wait(moved);
  // release(): the object owns nothing any more and the handle outlives it.
  h20Stream_t raw = nullptr;
  {
    h20::Stream owner;
    raw = owner.release();
    EXPECT_FALSE(static_cast<bool>(owner));
  }
  H20_EXPECT_OK(h20StreamQuery(raw));
  H20_EXPECT_OK(h20StreamDestroy(raw));
}

TEST_F(CppLayer, DeviceBufferRoundTripsAndFreesAtScopeExit) {
  // This process's memory (h20MemGetInfo would count other processes under the device daemon).
  size_t used0 = 0;
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&used0, 0));
  {
    std::vector<float> host(10000);
    std::iota(host.begin(), host.end(), 0.5f);
    h20::DeviceBuffer<float> buf(host);
    EXPECT_EQ(host.size(), buf.size());
    EXPECT_EQ(host.size() * sizeof(float), buf.bytes());
    EXPECT_EQ(host, buf.toHost());
    h20PointerAttributes attr{};
    H20_ASSERT_OK(h20PointerGetAttributes(&attr, buf.data()));
    EXPECT_EQ(h20MemoryTypeDevice, attr.type);

    h20::DeviceBuffer<float> other(std::move(buf));
    EXPECT_EQ(nullptr, buf.data());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(0u, buf.size());       // NOLINT(bugprone-use-after-move)
    other.memset(0);
    EXPECT_EQ(std::vector<float>(host.size(), 0.0f), other.toHost());
  }
  size_t used1 = 0;
  H20_ASSERT_OK(h20DeviceGetMemoryUsed(&used1, 0));
  EXPECT_EQ(used0, used1) << "DeviceBuffer leaked device memory";
}

TEST_F(CppLayer, DeviceBufferAsyncCopiesOnAStream) {
  h20::Stream s;
  h20::PinnedBuffer<int> in(4096), out(4096);
  for (size_t i = 0; i < in.size(); ++i)
    in[i] = static_cast<int>(i * 5);
  h20::DeviceBuffer<int> d(in.size());
  d.copyFromAsync(in.data(), in.size(), s.get());
  d.copyToAsync(out.data(), out.size(), s.get());
  s.synchronize();
  EXPECT_TRUE(std::equal(in.begin(), in.end(), out.begin()));
}

TEST_F(CppLayer, DeviceBufferTooLargeThrowsMemoryAllocation) {
  try {
    h20::DeviceBuffer<double> huge((size_t{1} << 60) / sizeof(double));
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorMemoryAllocation, e.code());
    EXPECT_FALSE(e.message().empty());
  }
}

TEST_F(CppLayer, PinnedBufferIsPinnedAndFreedAtScopeExit) {
  void* raw = nullptr;
  {
    h20::PinnedBuffer<char> p(1000, h20HostAllocMapped);
    raw = p.data();
    h20PointerAttributes attr{};
    H20_ASSERT_OK(h20PointerGetAttributes(&attr, raw));
    EXPECT_EQ(h20MemoryTypeHost, attr.type);
    EXPECT_EQ(1000u, p.bytes());
  }
  h20PointerAttributes attr{};
  H20_ASSERT_OK(h20PointerGetAttributes(&attr, raw));
  EXPECT_EQ(h20MemoryTypeUnregistered, attr.type) << "PinnedBuffer was not freed";
}

struct ScaleArgs {
  float* data;
  size_t count;
  float factor;
};

void ScaleKernel(const h20KernelContext* ctx, const void* args) {
  const auto a = h20::kernelArgs<ScaleArgs>(args);
  for (size_t i = ctx->blockIdx.x; i < a.count; i += ctx->gridDim.x)
    a.data[i] *= a.factor;
}

TEST_F(CppLayer, LaunchPassesTheArgumentStruct) {
  std::vector<float> host(3000, 2.0f);
  h20::DeviceBuffer<float> d(host);
  h20::Stream s;
  ScaleArgs args;
  std::memset(&args, 0, sizeof args);  // padding too: the runtime scans the argument words
  args.data = d.data();
  args.count = d.size();
  args.factor = 1.5f;
  h20::launch(ScaleKernel, h20::dim3(16), h20::dim3(64), args, s);
  args.factor = 100.0f;  // copied at launch: no effect on the enqueued kernel
  s.synchronize();
  EXPECT_EQ(std::vector<float>(host.size(), 3.0f), d.toHost());
  try {
    h20::launch(ScaleKernel, h20::dim3(0), h20::dim3(1), args, s);
    FAIL() << "no exception";
  } catch (const h20::Error& e) {
    EXPECT_EQ(h20ErrorInvalidValue, e.code());
  }
}

}  // namespace
