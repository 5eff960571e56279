// mpi_ranks.cpp - the rank cases (rank_cases.hpp) with one rank per MPI process, as an
// application uses libh20ccl under MPI: MPI_Init_thread, rank 0 makes the unique id, MPI_Bcast
// hands it out, h20cclCommInitRank. Run by ctest under mpirun (tests/ccl/CMakeLists.txt) with
// H20_CCL_TRANSPORT=mpi, so the ranks talk over MPI although they share a machine.
// Exit status 0 when every rank's every case is right; each rank prints what went wrong.
#include "rank_cases.hpp"

#include <h20/ccl.h>
#include <h20/h20_runtime.h>

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  bool quick = false;
  int hosts = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
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
  if (h20cclCommInitRank(&comm, size, id, rank) != h20Success) {
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
    std::printf("%d ranks over %s: %s\n", size,
                std::getenv("H20_CCL_TRANSPORT") ? std::getenv("H20_CCL_TRANSPORT") : "auto",
                anyFailed ? "FAILED" : "every case right");
  MPI_Finalize();
  return anyFailed;
}
