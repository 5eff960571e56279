// net_mpi.cpp - the MPI transport of net.cpp: pieces as MPI messages on a communicator of the
// library's own (made with MPI_Comm_create_group over the ranks' processes, so that only they take
// part). The application owns MPI: it calls MPI_Init_thread and MPI_Finalize. The connections are
// used from the stream's host function, on an engine thread, so MPI must provide
// MPI_THREAD_MULTIPLE. Built when CMake finds MPI (H20_CCL_HAVE_MPI); otherwise the entry points
// say why the transport is missing.
#include "net_conn.hpp"

#include <fmt/format.h>

#ifdef H20_CCL_HAVE_MPI
#include <mpi.h>
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <thread>

namespace h20::ccl {

#ifndef H20_CCL_HAVE_MPI

bool mpiAvailable() {
  return false;
}
std::string mpiUnavailableReason() {
  return "this libh20ccl was built without MPI (install libopenmpi-dev and rebuild)";
}
int mpiWorldRank() {
  return -1;
}
std::vector<std::unique_ptr<Conn>> connectMpi(const char* fn, const std::vector<int>&, int,
                                              const std::vector<std::string>&, int) {
  fail(h20ErrorNotSupported, "{}: {}", fn, mpiUnavailableReason());
}

#else

namespace {

constexpr std::size_t kPiece = 1024 * 1024;  // net.hpp's kPieceBytes
constexpr int kDepth = 4;                    // pieces in flight per direction
constexpr int kDataTag = 0;
constexpr int kControlTag = 1;  // a failure notice: the reason, at most kReasonBytes
constexpr int kReasonBytes = 256;

const char* levelName(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    default:
      return "MPI_THREAD_MULTIPLE";
  }
}

// The library's MPI communicator, freed when the last connection goes.
struct MpiComm {
  MPI_Comm comm = MPI_COMM_NULL;
  ~MpiComm() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm);
  }
};

class MpiConn : public Conn {
 public:
  MpiConn(std::shared_ptr<MpiComm> comm, int peer) : comm_(std::move(comm)), peer_(peer) {
    for (int i = 0; i < kDepth; ++i) {
      sendBuf_[i].resize(kPiece);
      recvBuf_[i].resize(kPiece);
      sendReq_[i] = MPI_REQUEST_NULL;
      recvReq_[i] = MPI_REQUEST_NULL;
    }
  }
  ~MpiConn() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    cancel();
    // Sends a failed peer will never take: given a moment, then withdrawn (never waited for).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    auto noticeSent = [&] {
      int done = 0;
      MPI_Test(&noticeReq_, &done, MPI_STATUS_IGNORE);
      return done != 0;
    };
    while (!(sendsComplete() && noticeSent()) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    auto withdraw = [](MPI_Request& r) {
      if (r == MPI_REQUEST_NULL) return;
      MPI_Cancel(&r);
      MPI_Request_free(&r);
    };
    for (auto& r : sendReq_)
      withdraw(r);
    withdraw(noticeReq_);
  }
  void cancel() override {
    if (!posted_ || recvDone_[0]) return;
    MPI_Cancel(&recvReq_[0]);
    MPI_Wait(&recvReq_[0], MPI_STATUS_IGNORE);
    posted_ = false;
  }

  bool canSend() override {
    MPI_Request& r = sendReq_[sent_ % kDepth];
    if (r == MPI_REQUEST_NULL) return true;
    int done = 0;
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    return done != 0;
  }
  void* sendSlot() override { return sendBuf_[sent_ % kDepth].data(); }
  void post(const PieceMeta& meta) override { postFrom(sendSlot(), meta); }
  void postFrom(const void* src, const PieceMeta& meta) override {
    const int rc = MPI_Isend(src, static_cast<int>(meta.bytes), MPI_BYTE, peer_, kDataTag,
                             comm_->comm, &sendReq_[sent_ % kDepth]);
    if (rc != MPI_SUCCESS) fail(h20ErrorRemote, "MPI_Isend to rank {} failed ({})", peer_, rc);
    ++sent_;
  }
  bool sendsComplete() override {
    int done = 0;
    MPI_Testall(kDepth, sendReq_.data(), &done, MPI_STATUSES_IGNORE);
    return done != 0;
  }
  // Receives are posted when the piece is asked for, straight into the caller's buffer where it
  // gives one (pieces arrive in order, and the sender's rendezvous waits for the post).
  const void* peek(PieceMeta* meta, void* into, std::size_t intoBytes) override {
    const int i = 0;
    if (!posted_) {
      target_ = into ? into : recvBuf_[i].data();
      const int capacity = static_cast<int>(into ? intoBytes : kPiece);
      const int rc =
          MPI_Irecv(target_, capacity, MPI_BYTE, peer_, kDataTag, comm_->comm, &recvReq_[i]);
      if (rc != MPI_SUCCESS) fail(h20ErrorRemote, "MPI_Irecv from rank {} failed ({})", peer_, rc);
      posted_ = true;
      recvDone_[i] = false;
    }
    if (!recvDone_[i]) {
      int done = 0;
      MPI_Status st{};
      const int rc = MPI_Test(&recvReq_[i], &done, &st);
      if (!done && rc == MPI_SUCCESS) return nullptr;
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      recvDone_[i] = true;
      // A piece larger than the buffer (MPI_ERR_TRUNCATE): the ranks disagree about the size.
      // (MPI_Test returns the request's error; MPI_Status.MPI_ERROR is not set by it.)
      recvBytes_[i] = rc == MPI_SUCCESS ? static_cast<std::uint64_t>(count)
                                        : static_cast<std::uint64_t>(kPiece) + 1;
    }
    meta->bytes = recvBytes_[i];
    meta->func = kMetaUnknown;
    meta->total = 0;
    return target_;
  }
  void release() override {
    posted_ = false;
    ++received_;
  }
  void tellFailed(const std::string& reason) override {
    notice_.assign(reason, 0, kReasonBytes);
    // Never waited for: a peer that is gone does not take it (withdrawn at destruction).
    MPI_Isend(notice_.data(), static_cast<int>(notice_.size()), MPI_BYTE, peer_, kControlTag,
              comm_->comm, &noticeReq_);
  }
  std::string peerFailure() override {
    if (!peerReason_.empty()) return peerReason_;
    int flag = 0;
    MPI_Status st{};
    if (MPI_Iprobe(peer_, kControlTag, comm_->comm, &flag, &st) != MPI_SUCCESS || !flag) return {};
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    std::string reason(static_cast<std::size_t>(std::clamp(count, 0, kReasonBytes)), '\0');
    // A longer notice is truncated (MPI_ERR_TRUNCATE is returned, not raised: MPI_ERRORS_RETURN).
    MPI_Recv(reason.data(), static_cast<int>(reason.size()), MPI_BYTE, peer_, kControlTag,
             comm_->comm, MPI_STATUS_IGNORE);
    peerReason_ = reason.empty() ? "(no reason given)" : reason;
    return peerReason_;
  }

 private:
  std::shared_ptr<MpiComm> comm_;
  int peer_;
  std::array<std::vector<unsigned char>, kDepth> sendBuf_, recvBuf_;
  std::array<MPI_Request, kDepth> sendReq_{}, recvReq_{};
  std::array<bool, kDepth> recvDone_{};
  bool posted_ = false;
  void* target_ = nullptr;
  std::array<std::uint64_t, kDepth> recvBytes_{};
  std::uint64_t sent_ = 0, received_ = 0;
  std::string notice_, peerReason_;
  MPI_Request noticeReq_ = MPI_REQUEST_NULL;
};

}  // namespace

bool mpiAvailable() {
  int init = 0, finalized = 0, level = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&finalized);
  if (!init || finalized) return false;
  MPI_Query_thread(&level);
  return level == MPI_THREAD_MULTIPLE;
}

std::string mpiUnavailableReason() {
  int init = 0, finalized = 0, level = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&finalized);
  if (!init) return "MPI is not initialised in this process (call MPI_Init_thread first)";
  if (finalized) return "MPI was already finalised in this process";
  MPI_Query_thread(&level);
  return fmt::format(
      "MPI provides {}, but libh20ccl calls MPI from a stream's host function and needs "
      "MPI_THREAD_MULTIPLE (MPI_Init_thread with MPI_THREAD_MULTIPLE)",
      levelName(level));
}

int mpiWorldRank() {
  if (!mpiAvailable()) return -1;
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::vector<std::unique_ptr<Conn>> connectMpi(const char* fn, const std::vector<int>& worldRanks,
                                              int rank, const std::vector<std::string>& transport,
                                              int tag) {
  if (!mpiAvailable()) fail(h20ErrorNotSupported, "{}: {}", fn, mpiUnavailableReason());
  for (std::size_t a = 0; a < worldRanks.size(); ++a) {
    if (worldRanks[a] < 0) fail(h20ErrorNotSupported, "{}: rank {} has not initialised MPI", fn, a);
    for (std::size_t b = 0; b < a; ++b)
      if (worldRanks[a] == worldRanks[b])
        fail(h20ErrorNotSupported,
             "{}: ranks {} and {} are threads of one MPI process; the mpi transport needs one "
             "rank per process",
             fn, b, a);
  }
  MPI_Group world = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  MPI_Group_incl(world, static_cast<int>(worldRanks.size()), worldRanks.data(), &group);
  auto comm = std::make_shared<MpiComm>();
  const int rc = MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &comm->comm);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  if (rc != MPI_SUCCESS || comm->comm == MPI_COMM_NULL)
    fail(h20ErrorRemote, "{}: MPI_Comm_create_group failed ({})", fn, rc);
  // Errors (a truncated piece when the ranks disagree) come back as codes, not as an abort.
  MPI_Comm_set_errhandler(comm->comm, MPI_ERRORS_RETURN);
  std::vector<std::unique_ptr<Conn>> conns(worldRanks.size());
  for (std::size_t q = 0; q < worldRanks.size(); ++q)
    if (static_cast<int>(q) != rank && transport[q] == "mpi")
      conns[q] = std::make_unique<MpiConn>(comm, static_cast<int>(q));
  return conns;
}

#endif

}  // namespace h20::ccl
