// mpi_ranks.cpp - the rank cases (rank_cases.hpp) with one rank per MPI process, as an
// application uses libh20ccl under MPI: MPI_Init_thread, rank 0 makes the unique id, MPI_Bcast
// hands it out, h20cclCommInitRank. Run by ctest under mpirun (tests/ccl/CMakeLists.txt) with
// H20_CCL_TRANSPORT=mpi, so the ranks talk over MPI although they share a machine.
// Exit status 0 when every rank's every case is right; each rank prints what went wrong.
// --abort and --give-up test failures instead (see failureScenario).
#include "rank_cases.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// The failure scenarios; return 0 when this rank saw what it should.
//  --abort: after one allReduce the last rank aborts its communicator; the others' next allReduce
//    fails with h20ErrorRemote naming it (a notice over MPI), long before the timeout.
//  --give-up: the communicator has one rank more than the job, so the meeting cannot complete;
//    the last rank aborts its non-blocking init after 200 ms; the others' init fails naming it.
int failureScenario(const std::string& which, const h20cclUniqueId& id, int rank, int size) {
  const auto t0 = std::chrono::steady_clock::now();
  const char* timeout = std::getenv("H20_CCL_TIMEOUT_MS");
  const long long timeoutMs = timeout ? std::atoll(timeout) : 300000;
  const std::string last = "rank " + std::to_string(size - 1);
  auto report = [&](bool ok, const std::string& what) {
    const long long ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    // Failing "within the timeout" means here: in well under half of it.
    ok = ok && ms < timeoutMs / 2;
    if (!ok) std::fprintf(stderr, "rank %d: %s after %lld ms\n", rank, what.c_str(), ms);
    return ok ? 0 : 1;
  };
  h20cclComm_t comm = nullptr;
  if (which == "--give-up") {
    if (rank == size - 1) {
      h20cclConfig config = H20_CCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      const h20Error_t rc = h20cclCommInitRankConfig(&comm, size + 1, id, rank, &config);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const h20Error_t ab = h20cclCommAbort(comm);
      return report(rc == h20ErrorNotReady && ab == h20Success,
                    std::string("non-blocking init ") + h20GetErrorName(rc) + ", abort " +
                        h20GetErrorName(ab));
    }
    const h20Error_t rc = h20cclCommInitRank(&comm, size + 1, id, rank);
    const std::string msg = h20cclGetLastErrorMessage();
    return report(rc == h20ErrorRemote && msg.find(last) != std::string::npos,
                  std::string("init returned ") + h20GetErrorName(rc) + ": " + msg);
  }
  if (h20cclCommInitRank(&comm, size, id, rank) != h20Success)
    return report(false, std::string("init: ") + h20cclGetLastErrorMessage());
  h20Stream_t s = nullptr;
  void* buf = nullptr;
  h20StreamCreate(&s);
  h20Malloc(&buf, 1 << 20);
  h20cclAllReduce(buf, buf, (1 << 20) / 4, H20_R_32F, h20cclSum, comm, s);
  if (h20StreamSynchronize(s) != h20Success) return report(false, "the first allReduce failed");
  int bad = 0;
  if (rank == size - 1) {
    bad = report(h20cclCommAbort(comm) == h20Success, "abort failed");
  } else {
    h20cclAllReduce(buf, buf, (1 << 20) / 4, H20_R_32F, h20cclSum, comm, s);
    h20StreamSynchronize(s);
    h20Error_t async = h20Success;
    h20cclCommGetAsyncError(comm, &async);
    const std::string msg = h20cclGetLastErrorMessage();
    bad = report(
        async == h20ErrorRemote && msg.find(last) != std::string::npos,
        std::string("the allReduce after the abort: ") + h20GetErrorName(async) + ": " + msg);
    h20cclCommAbort(comm);
  }
  h20Free(buf);
  h20StreamDestroy(s);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool quick = false;
  int hosts = 1;
  std::string scenario;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--abort") == 0 || std::strcmp(argv[i], "--give-up") == 0)
      scenario = argv[i];
    if (std::strcmp(argv[i], "--hosts") == 0 && i + 1 < argc) hosts = std::atoi(argv[++i]);
  }
  // --hosts H: rank r plays machine r mod H (H20_CCL_HOSTID), so that the ranks of one machine
  // talk over ipc (with the daemon) and the others over MPI, and the ring goes machine by machine.
  if (hosts > 1) setenv("H20_CCL_HOSTID", ("host" + std::to_string(rank % hosts)).c_str(), 1);
  int failed = 0;
  int devices = 0;
  h20GetDeviceCount(&devices);
  h20SetDevice(rank % devices);
  h20cclUniqueId id{};
  if (rank == 0 && h20cclGetUniqueId(&id) != h20Success) {
    std::fprintf(stderr, "rank 0: h20cclGetUniqueId: %s\n", h20cclGetLastErrorMessage());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  h20cclComm_t comm = nullptr;
  if (!scenario.empty()) {
    failed = failureScenario(scenario, id, rank, size);
  } else if (h20cclCommInitRank(&comm, size, id, rank) != h20Success) {
    std::fprintf(stderr, "rank %d: h20cclCommInitRank: %s\n", rank, h20cclGetLastErrorMessage());
    failed = 1;
  } else {
    if (hosts > 1) {
      // The ring visits machine 0's ranks, then machine 1's, ...
      std::vector<int> ring(static_cast<std::size_t>(size)), want;
      int count = 0;
      h20cclCommGetRingOrder(comm, ring.data(), size, &count);
      for (int h = 0; h < hosts; ++h)
        for (int r = h; r < size; r += hosts)
          want.push_back(r);
      if (ring != want) {
        std::fprintf(stderr, "rank %d: the ring is not grouped by machine\n", rank);
        failed = 1;
      }
    }
    std::string message;
    const long wrong = ccltest::RunRankCases(comm, rank, size, quick, true, &message);
    if (wrong != 0) {
      std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
      failed = 1;
    }
    if (h20cclCommDestroy(comm) != h20Success) failed = 1;
  }
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("%d ranks over %s%s%s: %s\n", size,
                std::getenv("H20_CCL_TRANSPORT") ? std::getenv("H20_CCL_TRANSPORT") : "auto",
                scenario.empty() ? "" : ", ", scenario.c_str(),
                anyFailed ? "FAILED" : "every case right");
  MPI_Finalize();
  return anyFailed;
}
