// ccl_sweep.cpp - the CclSweep child scenario and its parent-side check (see ccl_sweep.hpp).
#include "ccl_sweep.hpp"

#include "ccl_harness.hpp"

#include <h20/ccl.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace ccltest {

std::vector<int> DevicesFromEnvironment() {
  std::vector<int> devices;
  const char* v = std::getenv("H20_CCL_TEST_DEVICES");
  if (v && *v) {
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ','))
      devices.push_back(std::stoi(item));
  } else {
    int n = 0;
    h20GetDeviceCount(&n);
    for (int d = 0; d < n; ++d)
      devices.push_back(d);
  }
  return devices;
}

namespace {

std::vector<Case> QuickCases(int ranks) {
  std::vector<Case> cases;
  const Size sizes[] = {Size::tiny, Size::odd, Size::mib};
  const h20cclRedOp ops[] = {h20cclSum, h20cclMax, h20cclMin};
  for (Coll coll : {Coll::allReduce, Coll::allGather, Coll::reduceScatter, Coll::broadcast}) {
    const bool reduces = coll == Coll::allReduce || coll == Coll::reduceScatter;
    for (h20DataType type : {H20_R_32F, H20_R_16BF}) {
      for (int s = 0; s < 3; ++s) {
        for (h20cclRedOp op : ops) {
          if (!reduces && op != h20cclSum) continue;
          for (bool inPlace : {false, true}) {
            Case c;
            c.coll = coll;
            c.type = type;
            c.op = op;
            c.inPlace = inPlace;
            c.count = CountFor(coll, type, sizes[s], ranks);
            c.root = (s * 3 + 1) % ranks;  // roots 1, 4, 7 of 8 ranks
            cases.push_back(c);
          }
        }
      }
    }
  }
  // fp16 reduces like bf16 (fp32 accumulation, one rounding).
  for (bool inPlace : {false, true}) {
    Case c;
    c.type = H20_R_16F;
    c.inPlace = inPlace;
    c.count = CountFor(Coll::allReduce, H20_R_16F, Size::odd, ranks);
    cases.push_back(c);
  }
  return cases;
}

std::vector<Case> BigCases(int ranks) {
  auto make = [&](Coll coll, h20DataType type, bool inPlace, int root) {
    Case c;
    c.coll = coll;
    c.type = type;
    c.inPlace = inPlace;
    c.root = root;
    c.count = CountFor(coll, type, Size::big, ranks);
    return c;
  };
  return {make(Coll::allReduce, H20_R_32F, false, 0), make(Coll::allReduce, H20_R_16BF, true, 0),
          make(Coll::allGather, H20_R_32F, false, 0), make(Coll::reduceScatter, H20_R_32F, true, 0),
          make(Coll::broadcast, H20_R_16BF, false, ranks - 1)};
}

}  // namespace

void ExpectSweepPassed(const h20test::ChildResult& r) {
  ASSERT_EQ(r.exitCode, 0) << r.output;
  const int cases = r.IntValue("cases");
  ASSERT_GT(cases, 0) << r.output;
  int seen = 0;
  for (const auto& [key, value] : r.values) {
    if (key.rfind("case.", 0) != 0) continue;
    ++seen;
    EXPECT_EQ(value, "0") << key << " (#wrong, or the error)\n" << r.output;
  }
  EXPECT_EQ(seen, cases) << r.output;
}

}  // namespace ccltest

H20_CHILD_SCENARIO(CclSweep) {
  using namespace ccltest;
  const std::vector<int> devices = DevicesFromEnvironment();
  const int n = static_cast<int>(devices.size());
  const char* sizes = std::getenv("H20_CCL_TEST_SIZES");
  const bool big = sizes && std::string(sizes) == "big";
  const std::vector<Case> cases = big ? BigCases(n) : QuickCases(n);
  std::size_t bytes = 0;
  for (const Case& c : cases) {
    const bool split = c.coll == Coll::allGather || c.coll == Coll::reduceScatter;
    bytes = std::max(bytes, c.count * ElemSize(c.type) * (split ? static_cast<std::size_t>(n) : 1));
  }
  Clique clique(devices, bytes);
  if (!clique.error().empty()) {
    h20test::Emit("error", clique.error());
    return 1;
  }
  std::printf("# %d ranks, H20_EMU_TOPOLOGY=%s, H20_CCL_ALGO=%s\n", n,
              std::getenv("H20_EMU_TOPOLOGY") ? std::getenv("H20_EMU_TOPOLOGY") : "",
              std::getenv("H20_CCL_ALGO") ? std::getenv("H20_CCL_ALGO") : "");
  for (const Case& c : cases) {
    std::string message;
    const long wrong = clique.Run(c, &message);
    const std::string name = CaseName(c, n);
    std::printf("  %-48s #wrong %s\n", name.c_str(),
                wrong >= 0 ? std::to_string(wrong).c_str() : message.c_str());
    std::fflush(stdout);
    h20test::Emit("case." + name, wrong >= 0 ? std::to_string(wrong) : "error: " + message);
  }
  h20test::Emit("cases", static_cast<long long>(cases.size()));
  return 0;
}
