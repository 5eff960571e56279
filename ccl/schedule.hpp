// schedule.hpp - turns one agreed collective into work on the ranks' streams.
#pragma once

#include "clique.hpp"

#include <vector>

namespace h20::ccl {

// Enqueues the collective whose calls (calls[r] is rank r's, all agreeing) are given, with
// `algo`, on the ranks' streams. Throws ccl::Error when the runtime refuses a call (a stream of
// another device, a faulted device, out of memory); the ranks' streams then hold a partial
// collective, whose results are undefined, but nothing that waits forever.
void enqueueCollective(const Clique& clique, const std::vector<Call>& calls, h20cclAlgo algo);

}  // namespace h20::ccl
