// h20_test.cpp - implementation of the shared test helpers (see h20_test.hpp): bounded polling,
// the busy-kernel gate, small kernels and host functions, message checks and the C API fixture.
#include "h20_test.hpp"

#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <thread>

namespace h20test {

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(100us);
  }
  return true;
}

bool BecomesTrueWithin(const std::function<bool()>& pred, std::chrono::milliseconds window) {
  return WaitUntil(pred, window);
}

bool DaemonBackend() {
  const char* d = std::getenv("H20_DRIVER");
  return d && std::string(d) == "daemon";
}

std::size_t AllocationGranule() {
  return DaemonBackend() ? static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) : 256;
}

std::size_t UsedBytes(int device) {
  size_t used = 0;
  return h20DeviceGetMemoryUsed(&used, device) == h20Success ? used : 0;
}

int DeviceCount() {
  int count = 0;
  if (h20GetDeviceCount(&count) != h20Success) {
    h20GetLastError();
    return 0;
  }
  return count;
}

h20DeviceProp Props(int device) {
  h20DeviceProp prop;
  std::memset(&prop, 0, sizeof prop);
  const h20Error_t rc = h20GetDeviceProperties(&prop, device);
  EXPECT_EQ(h20Success, rc) << "h20GetDeviceProperties(" << device
                            << "): " << h20GetLastErrorMessage();
  return prop;
}

int WorkerThreads() {
  h20DeviceProp prop;
  std::memset(&prop, 0, sizeof prop);
  if (h20GetDeviceProperties(&prop, 0) != h20Success) {
    h20GetLastError();
    return 0;
  }
  return prop.hostWorkerThreads;
}

bool MessageNamesPointer(const std::string& message, const void* ptr) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx",
                static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(ptr)));
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower.find(hex) != std::string::npos;
}

// ---- BusyGate --------------------------------------------------------------------------------

struct BusyGate::State {
  std::atomic<int> release{0};
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> timedOut{0};
  std::atomic<std::int64_t> finishSeq{0};
  std::atomic<std::int64_t>* stamp = nullptr;
  std::chrono::milliseconds bound{};
};

namespace {

void BusyKernel(const h20KernelContext* /*ctx*/, const void* args) {
  BusyGate::State* st = nullptr;
  std::memcpy(&st, args, sizeof st);
  st->started.store(1, std::memory_order_release);
  const auto deadline = std::chrono::steady_clock::now() + st->bound;
  while (st->release.load(std::memory_order_acquire) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      st->timedOut.store(1, std::memory_order_release);
      break;
    }
    // Sleep rather than spin: the CI machines have two cores shared with the runtime's workers.
    std::this_thread::sleep_for(50us);
  }
  if (st->stamp != nullptr) st->finishSeq.store(st->stamp->fetch_add(1) + 1);
  st->finished.store(1, std::memory_order_release);
}

}  // namespace

BusyGate::BusyGate(std::chrono::milliseconds bound) : state_(new State) {
  state_->bound = bound;
}

BusyGate::~BusyGate() {
  Open();
  // The kernel reads state_ until it finishes: free it only then. If it never ran to completion
  // within the bound (a broken runtime), leak it rather than risk a use-after-free.
  if (!launched_ || WaitFinished()) delete state_;
}

h20Error_t BusyGate::Launch(h20Stream_t stream) {
  State* st = state_;
  const h20Error_t rc =
      h20LaunchKernel(&BusyKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &st, sizeof st, 0, stream);
  if (rc == h20Success) launched_ = true;
  return rc;
}

void BusyGate::Open() {
  state_->release.store(1, std::memory_order_release);
}
bool BusyGate::Started() const {
  return state_->started.load(std::memory_order_acquire) != 0;
}
bool BusyGate::Finished() const {
  return state_->finished.load(std::memory_order_acquire) != 0;
}
bool BusyGate::TimedOut() const {
  return state_->timedOut.load(std::memory_order_acquire) != 0;
}
bool BusyGate::WaitStarted() const {
  return WaitUntil([this] { return Started(); });
}
bool BusyGate::WaitFinished() const {
  return WaitUntil([this] { return Finished(); });
}
std::int64_t BusyGate::FinishSeq() const {
  return state_->finishSeq.load();
}
void BusyGate::StampWith(std::atomic<std::int64_t>* counter) {
  state_->stamp = counter;
}

// ---- small kernels and host functions ----------------------------------------------------------

void OpenGateHostFn(void* gate) {
  static_cast<BusyGate*>(gate)->Open();
}

void StampHostFn(void* seqSlot) {
  auto* slot = static_cast<SeqSlot*>(seqSlot);
  slot->value.store(slot->seq->Next());
}

void SetFlagHostFn(void* flag) {
  static_cast<std::atomic<int>*>(flag)->store(1);
}

void AddKernel(const h20KernelContext* ctx, const void* args) {
  AddArgs a;
  std::memcpy(&a, args, sizeof a);
  const std::size_t blocks = ctx->gridDim.x;
  const std::size_t per = (a.count + blocks - 1) / blocks;
  const std::size_t begin = std::min(a.count, per * ctx->blockIdx.x);
  const std::size_t end = std::min(a.count, begin + per);
  for (std::size_t i = begin; i < end; ++i)
    a.data[i] += a.delta;
}

h20Error_t LaunchAdd(int* data, std::size_t count, int delta, h20Stream_t stream) {
  // Zero the whole struct, padding included: h20LaunchKernel inspects every 8-byte word of the
  // arguments for addresses of other devices' memory, and stale stack bytes in the padding can
  // look like one.
  AddArgs a;
  std::memset(&a, 0, sizeof a);
  a.data = data;
  a.count = count;
  a.delta = delta;
  return h20LaunchKernel(&AddKernel, h20Dim3{4, 1, 1}, h20Dim3{64, 1, 1}, &a, sizeof a, 0, stream);
}

void FaultKernel(const h20KernelContext* ctx, const void* args) {
  FaultArgs a;
  std::memcpy(&a, args, sizeof a);
  const unsigned linear =
      ctx->blockIdx.x + ctx->gridDim.x * (ctx->blockIdx.y + ctx->gridDim.y * ctx->blockIdx.z);
  if (linear == a.faultBlock) h20KernelReportFault(ctx, a.code, a.message);
}

// ---- fixture
// -------------------------------------------------------------------------------------

void CApiTest::SetUp() {
  ASSERT_EQ(h20Success, h20SetDevice(0)) << h20GetLastErrorMessage();
  h20GetLastError();
}

void CApiTest::TearDown() {
  const int count = DeviceCount();
  for (int d = 0; d < count && d < 32; ++d) {
    if ((resetMask_ & (1u << d)) == 0) continue;
    EXPECT_EQ(h20Success, h20SetDevice(d));
    EXPECT_EQ(h20Success, h20DeviceReset())
        << "reset of device " << d << ": " << h20GetLastErrorMessage();
  }
  h20SetDevice(0);
  h20GetLastError();
}

}  // namespace h20test
