// fault_test.cpp - execution faults: a kernel reports failure with h20KernelReportFault; the launch
// itself succeeds, the next synchronisation returns h20ErrorLaunchFailure with a message naming
// the launch (the kernel) and carrying the kernel's message; the fault is sticky for that device
// (every later synchronisation and work submission on it fails) and does not touch other devices;
// h20DeviceReset clears it and invalidates the device's handles.
#include "c_callers.h"
#include "h20_test.hpp"

#include <cstring>
#include <string>
#include <thread>

namespace {

using h20test::FaultArgs;
using h20test::FaultKernel;
using h20test::MessageNamesPointer;
using KernelFault = h20test::CApiTest;

FaultArgs MakeFault(unsigned block, const char* message, h20Error_t code = h20ErrorLaunchFailure) {
  FaultArgs a{};
  a.faultBlock = block;
  a.code = code;
  std::strncpy(a.message, message, sizeof a.message - 1);
  return a;
}

h20Error_t LaunchFault(const FaultArgs& a, h20Stream_t s, h20Dim3 grid = h20Dim3{8, 1, 1}) {
  return h20LaunchKernel(FaultKernel, grid, h20Dim3{1, 1, 1}, &a, sizeof a, 0, s);
}

TEST_F(KernelFault, SurfacesAtStreamSynchronizeNamingTheLaunch) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  const FaultArgs a = MakeFault(3, "boom-3f9a");
  H20_ASSERT_OK(LaunchFault(a, s));  // the launch itself is fine
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(s));
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_NE(std::string::npos, msg.find("boom-3f9a")) << msg;
  EXPECT_TRUE(MessageNamesPointer(msg, reinterpret_cast<const void*>(&FaultKernel)))
      << "the message should name the kernel of the failed launch: " << msg;
  EXPECT_EQ(h20ErrorLaunchFailure, h20GetLastError());
}

TEST_F(KernelFault, IsReportedByEventSynchronizeAndDeviceSynchronize) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  h20Event_t e = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20EventCreate(&e));
  // The gate holds the faulting kernel back until the event is recorded (recording on a device
  // that has already faulted would itself fail: it submits work).
  h20test::BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  H20_ASSERT_OK(LaunchFault(MakeFault(0, "event-fault"), s));
  H20_ASSERT_OK(h20EventRecord(e, s));
  gate.Open();
  EXPECT_EQ(h20ErrorLaunchFailure, h20EventSynchronize(e));
  EXPECT_EQ(h20ErrorLaunchFailure, h20DeviceSynchronize());
  EXPECT_NE(nullptr, std::strstr(h20GetLastErrorMessage(), "event-fault"))
      << h20GetLastErrorMessage();
}

TEST_F(KernelFault, IsStickyForTheDeviceUntilReset) {
  ResetAfter(0);
  h20Stream_t s = nullptr, other = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20StreamCreate(&other));
  void* d = nullptr;
  H20_ASSERT_OK(h20Malloc(&d, 4096));
  H20_ASSERT_OK(LaunchFault(MakeFault(0, "sticky"), s));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(s));
  // Later synchronisations, on any stream of the device and from any thread, report it again.
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(s));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(other));
  EXPECT_EQ(h20ErrorLaunchFailure, h20DeviceSynchronize());
  h20Error_t fromThread = h20Success;
  std::thread t([&] { fromThread = h20DeviceSynchronize(); });
  t.join();
  EXPECT_EQ(h20ErrorLaunchFailure, fromThread);
  // Calls that submit work to the device fail too.
  char host[64] = {};
  EXPECT_EQ(h20ErrorLaunchFailure, h20test::LaunchAdd(nullptr, 0, 0, other));
  EXPECT_EQ(h20ErrorLaunchFailure,
            h20MemcpyAsync(d, host, sizeof host, h20MemcpyHostToDevice, other));
  EXPECT_EQ(h20ErrorLaunchFailure, h20MemsetAsync(d, 0, 64, other));
  EXPECT_EQ(h20ErrorLaunchFailure, h20Memcpy(d, host, sizeof host, h20MemcpyHostToDevice));
}

TEST_F(KernelFault, DoesNotAffectOtherDevices) {
  H20_REQUIRE_DEVICES(2);
  ResetAfter(0);
  h20Stream_t s0 = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s0));
  H20_ASSERT_OK(LaunchFault(MakeFault(1, "only-device-0"), s0));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(s0));
  h20GetLastError();

  H20_ASSERT_OK(h20SetDevice(1));
  h20Stream_t s1 = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s1));
  constexpr size_t kCount = 256;
  int* d = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)));
  H20_ASSERT_OK(h20MemsetAsync(d, 0, kCount * sizeof(int), s1));
  H20_ASSERT_OK(h20test::LaunchAdd(d, kCount, 9, s1));
  H20_ASSERT_OK(h20StreamSynchronize(s1));
  H20_ASSERT_OK(h20DeviceSynchronize());
  int host[kCount];
  H20_ASSERT_OK(h20Memcpy(host, d, sizeof host, h20MemcpyDeviceToHost));
  for (int v : host)
    ASSERT_EQ(9, v);
  H20_EXPECT_OK(h20Free(d));
  H20_EXPECT_OK(h20StreamDestroy(s1));
  EXPECT_EQ(h20Success, h20PeekAtLastError());

  H20_ASSERT_OK(h20SetDevice(0));
  EXPECT_EQ(h20ErrorLaunchFailure, h20DeviceSynchronize()) << "device 0 is still faulted";
}

TEST_F(KernelFault, DeviceResetClearsItAndInvalidatesHandles) {
  ResetAfter(0);
  h20Stream_t s = nullptr;
  h20Event_t e = nullptr;
  void* d = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  H20_ASSERT_OK(h20EventCreate(&e));
  H20_ASSERT_OK(h20Malloc(&d, 4096));
  H20_ASSERT_OK(LaunchFault(MakeFault(2, "reset-me"), s));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(s));

  H20_ASSERT_OK(h20DeviceReset());
  h20GetLastError();
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20StreamQuery(s));
  EXPECT_EQ(h20ErrorInvalidResourceHandle, h20EventQuery(e));
  EXPECT_EQ(h20ErrorInvalidValue, h20Free(d));
  h20GetLastError();

  // Work runs normally again.
  H20_EXPECT_OK(h20DeviceSynchronize());
  h20Stream_t s2 = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s2));
  constexpr size_t kCount = 128;
  int* p = nullptr;
  H20_ASSERT_OK(h20Malloc(reinterpret_cast<void**>(&p), kCount * sizeof(int)));
  H20_ASSERT_OK(h20MemsetAsync(p, 0, kCount * sizeof(int), s2));
  H20_ASSERT_OK(h20test::LaunchAdd(p, kCount, 4, s2));
  H20_ASSERT_OK(h20StreamSynchronize(s2));
  int host[kCount];
  H20_ASSERT_OK(h20Memcpy(host, p, sizeof host, h20MemcpyDeviceToHost));
  for (int v : host)
    ASSERT_EQ(4, v);
  H20_EXPECT_OK(h20Free(p));
  H20_EXPECT_OK(h20StreamDestroy(s2));
}

TEST_F(KernelFault, FirstReportOfALaunchWins) {
  ResetAfter(0);
  struct Twice {
    static void Fn(const h20KernelContext* ctx, const void*) {
      h20KernelReportFault(ctx, h20ErrorLaunchFailure, "first-report");
      h20KernelReportFault(ctx, h20ErrorLaunchFailure, "second-report");
    }
  };
  H20_ASSERT_OK(
      h20LaunchKernel(Twice::Fn, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, nullptr, 0, 0, nullptr));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(nullptr));
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_NE(std::string::npos, msg.find("first-report")) << msg;
  EXPECT_EQ(std::string::npos, msg.find("second-report")) << msg;
}

TEST_F(KernelFault, IllegalAddressReportIsReportedAsIs) {
  ResetAfter(0);
  H20_ASSERT_OK(LaunchFault(MakeFault(0, "bad-address", h20ErrorIllegalAddress), nullptr));
  EXPECT_EQ(h20ErrorIllegalAddress, h20StreamSynchronize(nullptr));
  EXPECT_NE(std::string::npos, std::string(h20GetLastErrorMessage()).find("bad-address"))
      << h20GetLastErrorMessage();
  EXPECT_EQ(h20ErrorIllegalAddress, h20DeviceSynchronize());
}

// A kernel reporting any code other than h20ErrorIllegalAddress (another error, h20Success, a
// value that is no h20Error_t at all) makes the launch fail with h20ErrorLaunchFailure.
class KernelFaultCode : public h20test::CApiTest, public ::testing::WithParamInterface<int> {};

void ReportIntCodeKernel(const h20KernelContext* ctx, const void* args) {
  int code;
  std::memcpy(&code, args, sizeof code);
  h20test_ReportFault(ctx, code, "odd-code");  // from C, as any int may be passed there
}

TEST_P(KernelFaultCode, IsReportedAsLaunchFailure) {
  ResetAfter(0);
  const int code = GetParam();
  H20_ASSERT_OK(h20LaunchKernel(ReportIntCodeKernel, h20Dim3{1, 1, 1}, h20Dim3{1, 1, 1}, &code,
                                sizeof code, 0, nullptr));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(nullptr));
  EXPECT_NE(std::string::npos, std::string(h20GetLastErrorMessage()).find("odd-code"));
  EXPECT_EQ(h20ErrorLaunchFailure, h20DeviceSynchronize());
  // Sticky with the same code: work submitted afterwards is refused.
  EXPECT_EQ(h20ErrorLaunchFailure, h20LaunchHostFunc(nullptr, h20test::SetFlagHostFn, nullptr));
}

INSTANTIATE_TEST_SUITE_P(Codes, KernelFaultCode,
                         ::testing::Values(12345, -1, 0, 1, 400, 600, 719, 999),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param < 0 ? "Minus" + std::to_string(-info.param)
                                                 : "Code" + std::to_string(info.param);
                         });

TEST_F(KernelFault, ReportWithNullMessageIsSafe) {
  ResetAfter(0);
  struct NullMsg {
    static void Fn(const h20KernelContext* ctx, const void*) {
      h20KernelReportFault(ctx, h20ErrorLaunchFailure, nullptr);
    }
  };
  H20_ASSERT_OK(
      h20LaunchKernel(NullMsg::Fn, h20Dim3{2, 1, 1}, h20Dim3{1, 1, 1}, nullptr, 0, 0, nullptr));
  EXPECT_EQ(h20ErrorLaunchFailure, h20StreamSynchronize(nullptr));
}

}  // namespace
