// ccl_sweep.hpp - the sweep child scenario (CclSweep) shared by the quick and the slow sweep tests.
//
// The child builds a clique (devices from H20_CCL_TEST_DEVICES, "5,2,7", or all), runs the cases
// of H20_CCL_TEST_SIZES (quick: every collective x type x op x placement at 8 B, 1 KiB + odd and
// 1 MiB; big: one case per collective at 64 MiB), prints an nccl-tests-like row per case and emits
// `case.<name>` = #wrong (or "error: ...") and `cases` = the number of cases.
#pragma once

#include "child_process.hpp"

#include <vector>

namespace ccltest {

// H20_CCL_TEST_DEVICES as a list, or all visible devices when unset.
std::vector<int> DevicesFromEnvironment();

// Asserts that a CclSweep child ran every case and that each had #wrong == 0.
void ExpectSweepPassed(const h20test::ChildResult& r);

}  // namespace ccltest
