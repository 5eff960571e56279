// errors_test.cpp - error codes and versions of the C API: h20GetErrorName/h20GetErrorString for
// every code, the thread-local last error (h20GetLastError resets, h20PeekAtLastError does not,
// h20ErrorNotReady is never stored, successful calls keep it), h20GetLastErrorMessage, and
// h20RuntimeGetVersion/h20DriverGetVersion.
#include "c_callers.h"
#include "h20_test.hpp"

#include <climits>
#include <cstring>
#include <set>
#include <string>
#include <thread>

namespace {

using LastError = h20test::CApiTest;
using LastErrorMessage = h20test::CApiTest;

struct CodeName {
  h20Error_t code;
  const char* name;
};

// Every enumerator of h20Error (keep in sync with h20_runtime.h).
constexpr CodeName kCodes[] = {
    {h20Success, "h20Success"},
    {h20ErrorInvalidValue, "h20ErrorInvalidValue"},
    {h20ErrorMemoryAllocation, "h20ErrorMemoryAllocation"},
    {h20ErrorInitializationError, "h20ErrorInitializationError"},
    {h20ErrorRuntimeUnloading, "h20ErrorRuntimeUnloading"},
    {h20ErrorDeviceUnavailable, "h20ErrorDeviceUnavailable"},
    {h20ErrorNoDevice, "h20ErrorNoDevice"},
    {h20ErrorInvalidDevice, "h20ErrorInvalidDevice"},
    {h20ErrorPeerAccessUnsupported, "h20ErrorPeerAccessUnsupported"},
    {h20ErrorInvalidResourceHandle, "h20ErrorInvalidResourceHandle"},
    {h20ErrorNotReady, "h20ErrorNotReady"},
    {h20ErrorIllegalAddress, "h20ErrorIllegalAddress"},
    {h20ErrorPeerAccessAlreadyEnabled, "h20ErrorPeerAccessAlreadyEnabled"},
    {h20ErrorPeerAccessNotEnabled, "h20ErrorPeerAccessNotEnabled"},
    {h20ErrorHostMemoryAlreadyRegistered, "h20ErrorHostMemoryAlreadyRegistered"},
    {h20ErrorHostMemoryNotRegistered, "h20ErrorHostMemoryNotRegistered"},
    {h20ErrorLaunchFailure, "h20ErrorLaunchFailure"},
    {h20ErrorNotPermitted, "h20ErrorNotPermitted"},
    {h20ErrorNotSupported, "h20ErrorNotSupported"},
    {h20ErrorRemote, "h20ErrorRemote"},
    {h20ErrorUnknown, "h20ErrorUnknown"},
};

// Runs `fn` on a new host thread and waits for it.
template <class F>
void OnNewThread(F fn) {
  std::thread t(fn);
  t.join();
}

TEST(ErrorName, MatchesEnumeratorForEveryCode) {
  for (const auto& c : kCodes) {
    const char* name = h20GetErrorName(c.code);
    ASSERT_NE(nullptr, name) << c.name;
    EXPECT_STREQ(c.name, name);
  }
}

// Codes that are not enumerators but lie within the enum's value range (0..1023), so that the
// C++ test itself stays free of undefined behaviour; C callers may pass any int.
constexpr int kUnknownCodes[] = {5, 99, 555, 1000, 1023};

TEST(ErrorName, UnknownCodeIsUnrecognizedErrorCode) {
  for (int code : kUnknownCodes) {
    EXPECT_STREQ("unrecognized error code", h20GetErrorName(static_cast<h20Error_t>(code))) << code;
  }
}

TEST(ErrorString, IsADistinctDescriptionForEveryCode) {
  std::set<std::string> seen;
  for (const auto& c : kCodes) {
    const char* s = h20GetErrorString(c.code);
    ASSERT_NE(nullptr, s) << c.name;
    EXPECT_GT(std::strlen(s), 0u) << c.name;
    EXPECT_STRNE(c.name, s) << "the string should describe the code, not repeat its name";
    EXPECT_TRUE(seen.insert(s).second) << c.name << " shares its description '" << s << "'";
  }
}

TEST(ErrorString, UnknownCodeIsNonEmpty) {
  for (int code : kUnknownCodes) {
    const char* s = h20GetErrorString(static_cast<h20Error_t>(code));
    ASSERT_NE(nullptr, s) << code;
    EXPECT_GT(std::strlen(s), 0u) << code;
  }
}

TEST(ErrorName, CodesOutsideTheEnumsRangeAreUnrecognized) {
  // From C, where any int converts to h20Error_t.
  for (int code : {12345, -1, 1 << 20, INT_MIN, INT_MAX}) {
    EXPECT_STREQ("unrecognized error code", h20test_ErrorName(code)) << code;
    EXPECT_STREQ("unrecognized error code", h20test_ErrorString(code)) << code;
  }
}

TEST(ErrorString, NamesAndStringsAreStatic) {
  // Static strings: the same pointer on every call, usable after further calls.
  EXPECT_EQ(h20GetErrorName(h20ErrorInvalidValue), h20GetErrorName(h20ErrorInvalidValue));
  EXPECT_EQ(h20GetErrorString(h20ErrorNotReady), h20GetErrorString(h20ErrorNotReady));
}

TEST_F(LastError, IsSuccessAndMessageEmptyInFreshThread) {
  OnNewThread([] {
    EXPECT_EQ(h20Success, h20PeekAtLastError());
    EXPECT_EQ(h20Success, h20GetLastError());
    const char* msg = h20GetLastErrorMessage();
    ASSERT_NE(nullptr, msg);
    EXPECT_STREQ("", msg);
  });
}

TEST_F(LastError, GetReturnsErrorAndResetsIt) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(-1));
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
  EXPECT_EQ(h20Success, h20GetLastError());
  EXPECT_EQ(h20Success, h20PeekAtLastError());
}

TEST_F(LastError, PeekDoesNotReset) {
  EXPECT_EQ(h20ErrorInvalidValue, h20GetDevice(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20PeekAtLastError());
  EXPECT_EQ(h20ErrorInvalidValue, h20PeekAtLastError());
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_EQ(h20Success, h20PeekAtLastError());
}

TEST_F(LastError, SurvivesLaterSuccessfulCalls) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(1 << 20));
  int device = -1;
  H20_EXPECT_OK(h20GetDevice(&device));
  int count = 0;
  H20_EXPECT_OK(h20GetDeviceCount(&count));
  EXPECT_EQ(h20ErrorInvalidDevice, h20PeekAtLastError());
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
}

TEST_F(LastError, IsTheMostRecentError) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(-5));
  EXPECT_EQ(h20ErrorInvalidValue, h20Malloc(nullptr, 16));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_EQ(h20Success, h20GetLastError());
}

TEST_F(LastError, IsPerHostThread) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(-1));
  OnNewThread([] {
    EXPECT_EQ(h20Success, h20PeekAtLastError());
    EXPECT_EQ(h20ErrorInvalidValue, h20StreamCreate(nullptr));
    EXPECT_EQ(h20ErrorInvalidValue, h20PeekAtLastError());
  });
  // The other thread's error neither replaced nor cleared this thread's.
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
}

TEST_F(LastError, NeverStoresNotReady) {
  h20Stream_t s = nullptr;
  H20_ASSERT_OK(h20StreamCreate(&s));
  h20test::BusyGate gate;
  H20_ASSERT_OK(gate.Launch(s));
  EXPECT_EQ(h20ErrorNotReady, h20StreamQuery(s));
  EXPECT_EQ(h20Success, h20PeekAtLastError());
  gate.Open();
  H20_EXPECT_OK(h20StreamSynchronize(s));
  EXPECT_FALSE(gate.TimedOut());
  H20_EXPECT_OK(h20StreamDestroy(s));
  EXPECT_EQ(h20Success, h20GetLastError());
}

TEST_F(LastErrorMessage, NamesCallArgumentAndValue) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(12345));
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_NE(std::string::npos, msg.find("h20SetDevice")) << msg;
  EXPECT_NE(std::string::npos, msg.find("12345")) << msg;
}

TEST_F(LastErrorMessage, IsNotResetByGetLastError) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(777));
  EXPECT_EQ(h20ErrorInvalidDevice, h20GetLastError());
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_NE(std::string::npos, msg.find("777")) << msg;
}

TEST_F(LastErrorMessage, IsPerHostThread) {
  EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(4242));
  OnNewThread([] {
    EXPECT_STREQ("", h20GetLastErrorMessage());
    EXPECT_EQ(h20ErrorInvalidDevice, h20SetDevice(9191));
    EXPECT_NE(nullptr, std::strstr(h20GetLastErrorMessage(), "9191"));
  });
  const std::string msg = h20GetLastErrorMessage();
  EXPECT_NE(std::string::npos, msg.find("4242")) << msg;
  EXPECT_EQ(std::string::npos, msg.find("9191")) << msg;
}

TEST(Version, RuntimeVersionMatchesHeader) {
  int v = -1;
  H20_ASSERT_OK(h20RuntimeGetVersion(&v));
  EXPECT_EQ(H20_RUNTIME_VERSION, v);
  EXPECT_EQ(1000 * H20_VERSION_MAJOR + 10 * H20_VERSION_MINOR + H20_VERSION_PATCH, v);
}

TEST(Version, DriverVersionIsPositive) {
  int v = -1;
  H20_ASSERT_OK(h20DriverGetVersion(&v));
  EXPECT_GT(v, 0);
}

TEST(Version, NullOutPointerReturnsInvalidValue) {
  EXPECT_EQ(h20ErrorInvalidValue, h20RuntimeGetVersion(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
  EXPECT_EQ(h20ErrorInvalidValue, h20DriverGetVersion(nullptr));
  EXPECT_EQ(h20ErrorInvalidValue, h20GetLastError());
}

}  // namespace
