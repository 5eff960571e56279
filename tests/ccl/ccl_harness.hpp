// ccl_harness.hpp - the nccl-tests-style harness of the collective tests: a clique with one stream
// and two buffers per rank, deterministic data written by a kernel on the device, and a kernel
// that counts the wrong output elements (#wrong) against values computed independently of the
// library.
//
// Data (the value of element i of rank r's logical input, v(r, i)):
//  - fp32: small integers, so every sum is exact and the expected result is exact;
//  - bf16 and fp16: multiples of 1/64 with up to 8 significant bits (exact in the type) whose sums
//    need up to 12 bits: the expected value is the exact sum (exact in fp32) rounded once to the
//    type, to nearest even. A library that rounded partial sums on the way would get some
//    elements wrong, so the check is exact for every type: #wrong must be 0.
// Owns no assertions: it reports counts and messages, the tests assert.
#pragma once

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <cstddef>
#include <string>
#include <vector>

namespace ccltest {

enum class Coll { allReduce, allGather, reduceScatter, broadcast };
const char* CollName(Coll c);
const char* TypeName(h20DataType t);
const char* OpName(h20cclRedOp op);
std::size_t ElemSize(h20DataType t);

// One collective to run and check. count is what the C function takes (per rank for allGather
// and reduceScatter).
struct Case {
  Coll coll = Coll::allReduce;
  h20DataType type = H20_R_32F;
  h20cclRedOp op = h20cclSum;
  bool inPlace = false;
  std::size_t count = 0;
  int root = 0;
};
// "allReduce.sum.bf16.1030B.inplace" (bytes of the per-rank buffer named by the size).
std::string CaseName(const Case& c, int ranks);

// The size classes of the sweep: 8 B, 1 KiB plus an odd number of elements, 1 MiB, 64 MiB; the
// count passed for `coll` (odd where it can be, so chunks are uneven).
enum class Size { tiny, odd, mib, big };
std::size_t CountFor(Coll coll, h20DataType type, Size size, int ranks);

// A clique over `devices` (all visible devices when empty) with a non-blocking stream and a send
// and a receive buffer of `bytes` per rank.
class Clique {
 public:
  Clique(std::vector<int> devices, std::size_t bytes);
  ~Clique();
  Clique(const Clique&) = delete;
  Clique& operator=(const Clique&) = delete;

  // Empty when construction succeeded, else what failed.
  const std::string& error() const { return error_; }
  int size() const { return static_cast<int>(devices_.size()); }
  int device(int rank) const { return devices_[static_cast<std::size_t>(rank)]; }
  h20cclComm_t comm(int rank) const { return comms_[static_cast<std::size_t>(rank)]; }
  h20Stream_t stream(int rank) const { return streams_[static_cast<std::size_t>(rank)]; }
  void* send(int rank) const { return send_[static_cast<std::size_t>(rank)]; }
  void* recv(int rank) const { return recv_[static_cast<std::size_t>(rank)]; }
  std::size_t bytes() const { return bytes_; }

  // Fills the inputs, runs the collective for every rank (one group), checks every rank's output.
  // Returns #wrong over all ranks, or -1 when a call failed (*message says which and why).
  long Run(const Case& c, std::string* message);

  // Issues the collective of `c` for every rank in one group (inputs and outputs as Run uses them);
  // returns h20cclGroupEnd's result.
  h20Error_t Issue(const Case& c);
  // Synchronises every rank's stream; the first error.
  h20Error_t SyncAll();

 private:
  std::vector<int> devices_;
  std::size_t bytes_ = 0;
  std::vector<h20cclComm_t> comms_;
  std::vector<h20Stream_t> streams_;
  std::vector<void*> send_, recv_;
  std::vector<long long*> wrong_;  // device counters, one per block of the check kernel
  std::string error_;
};

// Host reference of the data: v(r, i) for `type`, and the expected value of a reduction of all
// ranks' element i rounded to `type` (fp32 result for H20_R_32F). Independent of the library.
float Value(h20DataType type, int rank, std::size_t i);
// Value(type, r, i) == Value(type, r, i + ValuePeriod(type)) for every rank.
std::size_t ValuePeriod(h20DataType type);
float Reduced(h20DataType type, h20cclRedOp op, int ranks, std::size_t i);
// Rounds an fp32 value to bf16, to nearest even, by comparing the two neighbouring bf16 values
// (a different method from the library's bit trick).
float RoundToBf16(float v);

}  // namespace ccltest
