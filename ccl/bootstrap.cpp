// bootstrap.cpp - the unique id and the local rendezvous of the ranks (see bootstrap.hpp).
#include "bootstrap.hpp"

#include "error.hpp"
#include "net_conn.hpp"

#ifdef H20_CCL_HAVE_MPI
#include <mpi.h>
#endif

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace h20::ccl {

namespace {

using Clock = std::chrono::steady_clock;

// The id's bytes: a magic, a version, then the fields below; the rest is zero.
constexpr char kIdMagic[8] = {'H', '2', '0', 'C', 'C', 'L', 'I', 'D'};
constexpr std::uint32_t kIdVersion = 2;
constexpr std::size_t kNameBytes = 48;
struct IdLayout {
  char magic[8];
  std::uint32_t version;
  std::int32_t creatorPid;
  std::uint64_t hostId;
  std::uint8_t secret[16];
  char name[kNameBytes];  // NUL-terminated abstract socket name (ids made without MPI)
  std::int32_t mpi;       // 1: the ranks meet over MPI_COMM_WORLD
  std::int32_t mpiRoot;   // the creator's rank in MPI_COMM_WORLD
  std::int32_t mpiTag;    // hellos use this tag, answers the next one
};
static_assert(sizeof(IdLayout) <= H20_CCL_UNIQUE_ID_BYTES);

constexpr char kHelloMagic[8] = {'H', '2', '0', 'C', 'C', 'L', 'B', '1'};
constexpr std::uint32_t kMaxBlob = 64 * 1024;
struct Hello {
  char magic[8];
  std::uint8_t secret[16];
  std::int32_t nranks;
  std::int32_t rank;
  std::uint32_t blobBytes;
  std::int32_t pid;
};
// Hello.nranks of a rank that stopped waiting (MPI: the socket root sees the hang-up instead).
constexpr std::int32_t kLeaving = -1;
constexpr const char* kCancelled =
    "init was given up: the communicator was destroyed or aborted before every rank arrived";
struct ReplyHead {
  std::int32_t status;  // h20Error_t
  std::uint32_t messageBytes;
};

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

sockaddr_un abstractAddress(const std::string& name, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  a.sun_path[0] = '\0';
  std::memcpy(a.sun_path + 1, name.data(), std::min(name.size(), sizeof a.sun_path - 2));
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

int msLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1000 * 1000));
}

// Reads or writes exactly `n` bytes before the deadline; false on EOF, error, timeout or once
// `cancel` (when given) is true.
bool transfer(int fd, void* buf, std::size_t n, bool write, Clock::time_point deadline,
              const std::atomic<bool>* cancel = nullptr) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    if (cancel && cancel->load(std::memory_order_acquire)) return false;
    pollfd pfd{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    const int wait = msLeft(deadline);
    const int ready = ::poll(&pfd, 1, cancel ? std::min(wait, 20) : wait);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 && cancel && wait > 20) continue;  // look at `cancel` again
    if (ready <= 0) return false;
    const ssize_t got = write ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

bool sameUserOrRoot(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == ::getuid() || cred.uid == 0;
}

std::string replyBytes(h20Error_t status, const std::string& message,
                       const std::vector<std::string>* table);

void sendReply(int fd, h20Error_t status, const std::string& message,
               const std::vector<std::string>* table) {
  const std::string bytes = replyBytes(status, message, table);
  transfer(fd, const_cast<char*>(bytes.data()), bytes.size(), true,
           Clock::now() + std::chrono::seconds(5));
}

// What both roots share: the ranks that arrived, the checks of their hellos, the answers. A root
// collects one hello per rank, then answers everyone with the table; a fatal error (a rank
// claimed twice, ranks that disagree about nranks, the timeout) is the answer to every rank that
// came and to every later one.
class Meeting {
 public:
  explicit Meeting(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  virtual ~Meeting() = default;

 protected:
  // How an answer reaches one arrival (`who`: its socket or MPI rank), and letting it go.
  virtual void answer(long long who, h20Error_t status, const std::string& message,
                      const std::vector<std::string>* table) = 0;
  virtual void drop(long long /*who*/) {}

  // Checks and records one hello; true once every rank has arrived (and got the table).
  bool admit(const Hello& h, std::string blob, long long who, int pid) {
    if (!deadline_) deadline_ = Clock::now() + timeout_;
    if (error_ != h20Success) {
      answer(who, error_, message_, nullptr);
      drop(who);
      return false;
    }
    if (h.nranks < 1 || h.nranks > H20_CCL_MAX_RANKS || h.rank < 0 || h.rank >= h.nranks) {
      answer(who, h20ErrorInvalidValue,
             fmt::format("rank {} of nranks {} is out of range", h.rank, h.nranks), nullptr);
      drop(who);
      return false;
    }
    if (nranks_ == 0) {
      nranks_ = h.nranks;
      ranks_.resize(static_cast<std::size_t>(nranks_));
      firstPid_ = pid;
    } else if (h.nranks != nranks_) {
      const std::string m = fmt::format(
          "the ranks disagree about nranks: process {} passed {} but process {} passed {}",
          firstPid_, nranks_, pid, h.nranks);
      answer(who, h20ErrorInvalidValue, m, nullptr);
      drop(who);
      failAll(h20ErrorInvalidValue, m);
      return false;
    }
    Arrival& slot = ranks_[static_cast<std::size_t>(h.rank)];
    if (slot.here) {
      const std::string m =
          fmt::format("rank {} was claimed twice (by processes {} and {})", h.rank, slot.pid, pid);
      answer(who, h20ErrorInvalidValue, m, nullptr);
      drop(who);
      failAll(h20ErrorInvalidValue, m);
      return false;
    }
    slot = Arrival{true, who, std::move(blob), pid};
    if (++arrived_ < static_cast<std::size_t>(nranks_)) return false;
    std::vector<std::string> table;
    for (auto& r : ranks_)
      table.push_back(std::move(r.blob));
    for (auto& r : ranks_) {
      answer(r.who, h20Success, {}, &table);
      drop(r.who);
    }
    return true;
  }

  // A rank that arrived stopped waiting (its own timeout, or its process exited).
  void left(int rank) {
    Arrival& a = ranks_[static_cast<std::size_t>(rank)];
    drop(a.who);
    a.here = false;
    --arrived_;
    failAll(h20ErrorRemote,
            fmt::format("rank {} (process {}) stopped waiting before every rank had arrived", rank,
                        a.pid));
  }

  void failAll(h20Error_t code, std::string message) {
    if (error_ == h20Success) {
      error_ = code;
      message_ = std::move(message);
    }
    for (auto& r : ranks_) {
      if (!r.here) continue;
      answer(r.who, error_, message_, nullptr);
      drop(r.who);
      r.here = false;
    }
  }

  // The deadline passed: tell the ranks that came which did not.
  void timedOut() {
    if (error_ != h20Success) return;
    std::string missing;
    int count = 0;
    for (int r = 0; r < nranks_; ++r) {
      if (ranks_[static_cast<std::size_t>(r)].here) continue;
      if (count++ < 8) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", r);
    }
    if (count > 8) missing += ", ...";
    failAll(h20ErrorRemote,
            fmt::format("{} of {} ranks arrived within the timeout of {} ms; missing: rank {}",
                        arrived_, nranks_, timeout_.count(), missing));
  }

  struct Arrival {
    bool here = false;
    long long who = -1;
    std::string blob;
    int pid = 0;
  };
  std::chrono::milliseconds timeout_;
  std::optional<Clock::time_point> deadline_;  // set when the first rank arrives
  int nranks_ = 0;
  int firstPid_ = 0;
  std::size_t arrived_ = 0;
  std::vector<Arrival> ranks_;
  h20Error_t error_ = h20Success;
  std::string message_;
};

// The root of an id made without MPI: a thread on an abstract unix socket.
class Root : public Meeting {
 public:
  Root(Fd listener, const std::uint8_t* secret, std::chrono::milliseconds timeout)
      : Meeting(timeout), listener_(std::move(listener)) {
    std::memcpy(secret_, secret, sizeof secret_);
  }

  void run() {
    for (;;) {
      const int wait = deadline_ ? msLeft(*deadline_) : 60 * 1000;
      if (deadline_ && wait == 0) break;
      // The listener, and the ranks waiting for the others: one that hangs up (its own timeout
      // passed, or its process exited) makes the meeting fail for all.
      std::vector<pollfd> fds{{listener_.fd, POLLIN, 0}};
      std::vector<int> who;
      for (int r = 0; r < nranks_; ++r) {
        const Arrival& a = ranks_[static_cast<std::size_t>(r)];
        if (!a.here) continue;
        fds.push_back({static_cast<int>(a.who), POLLIN, 0});
        who.push_back(r);
      }
      const int ready = ::poll(fds.data(), fds.size(), wait);
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
      for (std::size_t i = 1; i < fds.size(); ++i)
        if (fds[i].revents != 0) left(who[i - 1]);
      if ((fds[0].revents & POLLIN) == 0) continue;
      Fd c(::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (c.fd < 0) continue;
      if (!sameUserOrRoot(c.fd)) continue;  // another user: closed without an answer
      const auto readDeadline = Clock::now() + std::chrono::seconds(5);
      Hello h{};
      if (!transfer(c.fd, &h, sizeof h, false, readDeadline)) continue;
      if (std::memcmp(h.magic, kHelloMagic, sizeof h.magic) != 0 ||
          std::memcmp(h.secret, secret_, sizeof secret_) != 0) {
        sendReply(c.fd, h20ErrorInvalidValue,
                  "the unique id's secret does not match (a damaged or forged id)", nullptr);
        continue;
      }
      if (h.blobBytes > kMaxBlob) continue;
      std::string blob(h.blobBytes, '\0');
      if (!transfer(c.fd, blob.data(), blob.size(), false, readDeadline)) continue;
      ucred cred{};
      socklen_t len = sizeof cred;
      ::getsockopt(c.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
      const int fd = c.fd;
      open_[fd] = std::move(c);
      if (admit(h, std::move(blob), fd, cred.pid)) return;
    }
    timedOut();
  }

 private:
  void answer(long long who, h20Error_t status, const std::string& message,
              const std::vector<std::string>* table) override {
    sendReply(static_cast<int>(who), status, message, table);
  }
  void drop(long long who) override { open_.erase(static_cast<int>(who)); }

  Fd listener_;
  std::uint8_t secret_[16];
  std::map<int, Fd> open_;
};

// What a rank sends the root.
Hello hello(const IdInfo& id, int nranks, int rank, const std::string& blob) {
  Hello h{};
  std::memcpy(h.magic, kHelloMagic, sizeof h.magic);
  std::memcpy(h.secret, id.secret, sizeof h.secret);
  h.nranks = nranks;
  h.rank = rank;
  h.blobBytes = static_cast<std::uint32_t>(blob.size());
  h.pid = static_cast<std::int32_t>(::getpid());
  return h;
}

// The answer to a rank as one buffer: the head, the message, the table (length-prefixed blobs).
std::string replyBytes(h20Error_t status, const std::string& message,
                       const std::vector<std::string>* table) {
  ReplyHead h{static_cast<std::int32_t>(status), static_cast<std::uint32_t>(message.size())};
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out += message;
  if (table)
    for (const auto& b : *table) {
      const std::uint32_t len = static_cast<std::uint32_t>(b.size());
      out.append(reinterpret_cast<const char*>(&len), sizeof len);
      out += b;
    }
  return out;
}

// Reads an answer (from a socket or a buffer) through `read(dst, n)`; returns the table.
template <class Read>
std::vector<std::string> readReply(const char* fn, int nranks, int rank, Read read) {
  ReplyHead r{};
  if (!read(&r, sizeof r)) fail(h20ErrorRemote, "{}: the rendezvous closed the connection", fn);
  if (r.messageBytes > 4096) fail(h20ErrorRemote, "{}: the rendezvous sent a malformed answer", fn);
  std::string message(r.messageBytes, '\0');
  if (!read(message.data(), message.size()))
    fail(h20ErrorRemote, "{}: the rendezvous closed the connection", fn);
  if (r.status != h20Success) {
    const h20Error_t e = r.status == h20ErrorInvalidValue ? h20ErrorInvalidValue : h20ErrorRemote;
    fail(e, "{}: rank {}: {}", fn, rank, message);
  }
  std::vector<std::string> table(static_cast<std::size_t>(nranks));
  for (auto& b : table) {
    std::uint32_t n = 0;
    if (!read(&n, sizeof n) || n > kMaxBlob)
      fail(h20ErrorRemote, "{}: the rendezvous sent a malformed table", fn);
    b.resize(n);
    if (!read(b.data(), n)) fail(h20ErrorRemote, "{}: the rendezvous sent a malformed table", fn);
  }
  return table;
}

#ifdef H20_CCL_HAVE_MPI

// The root of an id made under MPI: a thread in the creator's process that receives the hellos
// on MPI_COMM_WORLD (MPI_THREAD_MULTIPLE) and answers each rank there. Stopped at MPI_Finalize
// (an attribute of MPI_COMM_SELF, whose deletion MPI_Finalize runs first).
class MpiRoot : public Meeting {
 public:
  MpiRoot(const std::uint8_t* secret, int tag, std::chrono::milliseconds timeout)
      : Meeting(timeout), tag_(tag) {
    std::memcpy(secret_, secret, sizeof secret_);
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  int tag() const { return tag_; }

  void run() {
    while (!stop.load()) {
      if (deadline_ && Clock::now() >= *deadline_) return timedOut();
      int flag = 0;
      MPI_Status st{};
      MPI_Iprobe(MPI_ANY_SOURCE, tag_, MPI_COMM_WORLD, &flag, &st);
      if (!flag) {
        // Quick once ranks arrive; gentle while the id waits for its first rank.
        std::this_thread::sleep_for(std::chrono::microseconds(deadline_ ? 200 : 2000));
        continue;
      }
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      std::string msg(static_cast<std::size_t>(std::max(count, 0)), '\0');
      MPI_Recv(msg.data(), count, MPI_BYTE, st.MPI_SOURCE, tag_, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      Hello h{};
      if (msg.size() < sizeof h) continue;
      std::memcpy(&h, msg.data(), sizeof h);
      if (std::memcmp(h.magic, kHelloMagic, sizeof h.magic) != 0 ||
          std::memcmp(h.secret, secret_, sizeof secret_) != 0 ||
          msg.size() != sizeof h + h.blobBytes) {
        answer(st.MPI_SOURCE, h20ErrorInvalidValue,
               "the unique id's secret does not match (a damaged or forged id)", nullptr);
        continue;
      }
      if (h.nranks == kLeaving) {
        // Only the process that brought the rank can take it back; nothing is answered.
        if (h.rank >= 0 && h.rank < nranks_ && ranks_[static_cast<std::size_t>(h.rank)].here &&
            ranks_[static_cast<std::size_t>(h.rank)].who == st.MPI_SOURCE)
          left(h.rank);
        continue;
      }
      if (admit(h, msg.substr(sizeof h), st.MPI_SOURCE, h.pid)) return;
    }
  }

 private:
  void answer(long long who, h20Error_t status, const std::string& message,
              const std::vector<std::string>* table) override {
    const std::string bytes = replyBytes(status, message, table);
    MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, static_cast<int>(who),
             tag_ + 1, MPI_COMM_WORLD);
  }

  std::uint8_t secret_[16];
  int tag_;
};

struct MpiRoots {
  std::mutex mu;
  std::vector<std::pair<std::shared_ptr<MpiRoot>, std::thread>> roots;
  bool hooked = false;
};
// Never destroyed: the threads are joined at MPI_Finalize, or left to the process's exit.
MpiRoots& mpiRoots() {
  static auto* r = new MpiRoots;
  return *r;
}

int stopMpiRoots(MPI_Comm, int, void*, void*) {
  auto& r = mpiRoots();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [root, thread] : r.roots) {
    root->stop = true;
    if (thread.joinable()) thread.join();
  }
  r.roots.clear();
  r.hooked = false;
  return MPI_SUCCESS;
}

// Starts a root on `tag`, or on the next free even tag when a live root of this process has it;
// returns the tag.
int startMpiRoot(const std::uint8_t* secret, int tag, std::chrono::milliseconds timeout) {
  auto& r = mpiRoots();
  std::lock_guard<std::mutex> lock(r.mu);
  for (bool taken = true; taken;) {
    taken = false;
    for (auto& [root, thread] : r.roots)
      taken = taken || (root->tag() == tag && !root->finished.load());
    if (taken) tag = tag + 2 > 32766 ? 16384 : tag + 2;
  }
  if (!r.hooked) {
    int key = MPI_KEYVAL_INVALID;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, stopMpiRoots, &key, nullptr);
    MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr);
    r.hooked = true;
  }
  auto root = std::make_shared<MpiRoot>(secret, tag, timeout);
  r.roots.emplace_back(root, std::thread([root] {
                         root->run();
                         root->finished = true;
                       }));
  return tag;
}

// Tells the root that this rank, whose hello it took, stopped waiting (no answer comes).
void sayGoodbye(const IdInfo& id, int nranks, int rank) {
  Hello h = hello(id, nranks, rank, {});
  h.nranks = kLeaving;
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Isend(&h, sizeof h, MPI_BYTE, id.mpiRoot, id.mpiTag, MPI_COMM_WORLD, &req);
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  for (int done = 0; !done;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    if (Clock::now() >= deadline) {
      MPI_Cancel(&req);
      MPI_Request_free(&req);
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

std::vector<std::string> exchangeMpi(const char* fn, const IdInfo& id, int nranks, int rank,
                                     const std::string& blob, std::chrono::milliseconds timeout,
                                     const std::atomic<bool>& cancel) {
  if (!mpiAvailable())
    fail(h20ErrorNotSupported, "{}: the unique id was made under MPI, but {}", fn,
         mpiUnavailableReason());
  const auto deadline = Clock::now() + timeout;
  Hello h = hello(id, nranks, rank, blob);
  std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
  msg += blob;
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Isend(msg.data(), static_cast<int>(msg.size()), MPI_BYTE, id.mpiRoot, id.mpiTag,
            MPI_COMM_WORLD, &req);
  for (int done = 0;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    if (cancel.load() || Clock::now() >= deadline) {
      MPI_Cancel(&req);
      MPI_Status cst{};
      MPI_Wait(&req, &cst);
      int wasCancelled = 0;
      MPI_Test_cancelled(&cst, &wasCancelled);
      if (!wasCancelled) sayGoodbye(id, nranks, rank);  // the root has the hello
      if (cancel.load()) fail(h20ErrorRemote, "{}: rank {}: {}", fn, rank, kCancelled);
      fail(h20ErrorRemote,
           "{}: rank {} of {}: the id's root (MPI rank {}) did not take the hello "
           "within the timeout of {} ms",
           fn, rank, nranks, id.mpiRoot, timeout.count());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  MPI_Status st{};
  for (int flag = 0;;) {
    MPI_Iprobe(id.mpiRoot, id.mpiTag + 1, MPI_COMM_WORLD, &flag, &st);
    if (flag) break;
    if (cancel.load()) {
      sayGoodbye(id, nranks, rank);
      fail(h20ErrorRemote, "{}: rank {}: {}", fn, rank, kCancelled);
    }
    if (Clock::now() >= deadline) {
      sayGoodbye(id, nranks, rank);
      fail(h20ErrorRemote,
           "{}: rank {} of {}: the other ranks did not all arrive within the timeout of {} ms", fn,
           rank, nranks, timeout.count());
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  std::string reply(static_cast<std::size_t>(std::max(count, 0)), '\0');
  MPI_Recv(reply.data(), count, MPI_BYTE, id.mpiRoot, id.mpiTag + 1, MPI_COMM_WORLD,
           MPI_STATUS_IGNORE);
  std::size_t at = 0;
  return readReply(fn, nranks, rank, [&](void* dst, std::size_t n) {
    if (reply.size() - at < n) return false;
    std::memcpy(dst, reply.data() + at, n);
    at += n;
    return true;
  });
}

#endif

std::string hex(const std::uint8_t* p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i)
    s += fmt::format("{:02x}", p[i]);
  return s;
}

}  // namespace

std::uint64_t thisHostId() {
  static const std::uint64_t id = [] {
    std::string text;
    if (const char* v = std::getenv("H20_CCL_HOSTID"); v && *v) {
      // As NCCL_HOSTID: the machine's identity as the ranks see it (tests make several machines
      // of one this way; containers that share a boot id can tell themselves apart).
      text = std::string("hostid:") + v;
    } else {
      std::ifstream boot("/proc/sys/kernel/random/boot_id");
      std::getline(boot, text);
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      text += host;
    }
    // FNV-1a: stable across processes (std::hash need not be).
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : text)
      h = (h ^ ch) * 1099511628211ull;
    return h;
  }();
  return id;
}

h20cclUniqueId makeUniqueId(std::chrono::milliseconds timeout) {
  IdLayout l{};
  std::memcpy(l.magic, kIdMagic, sizeof l.magic);
  l.version = kIdVersion;
  l.creatorPid = static_cast<std::int32_t>(::getpid());
  l.hostId = thisHostId();
  std::uint8_t nonce[8];
  if (::getrandom(l.secret, sizeof l.secret, 0) != static_cast<ssize_t>(sizeof l.secret) ||
      ::getrandom(nonce, sizeof nonce, 0) != static_cast<ssize_t>(sizeof nonce))
    fail(h20ErrorUnknown, "h20cclGetUniqueId: getrandom failed: {}", std::strerror(errno));
  const std::string name = fmt::format("h20ccl-{}-{}", l.creatorPid, hex(nonce, sizeof nonce));
  std::memcpy(l.name, name.c_str(), name.size() + 1);
#ifdef H20_CCL_HAVE_MPI
  if (mpiAvailable()) {
    // Under MPI the ranks may be on other machines: they meet over MPI_COMM_WORLD, on a pair of
    // tags of their own (even, in 16384..32766, below the smallest MPI_TAG_UB MPI allows).
    l.mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &l.mpiRoot);
    std::uint16_t t = 0;
    std::memcpy(&t, nonce, sizeof t);
    l.mpiTag = startMpiRoot(l.secret, 16384 + static_cast<int>(t % 8191) * 2, timeout);
    h20cclUniqueId id{};
    std::memcpy(id.internal, &l, sizeof l);
    return id;
  }
#endif

  Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.fd < 0) fail(h20ErrorUnknown, "h20cclGetUniqueId: socket: {}", std::strerror(errno));
  socklen_t len = 0;
  const sockaddr_un addr = abstractAddress(name, &len);
  if (::bind(listener.fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
      ::listen(listener.fd, H20_CCL_MAX_RANKS) != 0)
    fail(h20ErrorUnknown, "h20cclGetUniqueId: cannot listen on @{}: {}", name,
         std::strerror(errno));
  auto root = std::make_shared<Root>(std::move(listener), l.secret, timeout);
  std::thread([root] { root->run(); }).detach();

  h20cclUniqueId id{};
  std::memcpy(id.internal, &l, sizeof l);
  return id;
}

IdInfo decodeId(const char* fn, const h20cclUniqueId& id) {
  IdLayout l{};
  std::memcpy(&l, id.internal, sizeof l);
  if (std::memcmp(l.magic, kIdMagic, sizeof l.magic) != 0)
    fail(h20ErrorInvalidValue,
         "{}: commId is not a unique id made by h20cclGetUniqueId (bad magic)", fn);
  if (l.version != kIdVersion)
    fail(h20ErrorInvalidValue, "{}: commId has version {}, this library reads version {}", fn,
         l.version, kIdVersion);
  if (std::memchr(l.name, '\0', sizeof l.name) == nullptr || l.name[0] == '\0')
    fail(h20ErrorInvalidValue, "{}: commId is damaged (no rendezvous name)", fn);
  for (std::size_t i = sizeof l; i < sizeof id.internal; ++i)
    if (id.internal[i] != 0)
      fail(h20ErrorInvalidValue, "{}: commId is damaged (unused bytes are not zero)", fn);
  if (l.mpi != 0 && (l.mpi != 1 || l.mpiRoot < 0 || l.mpiTag < 16384 || l.mpiTag > 32766))
    fail(h20ErrorInvalidValue, "{}: commId is damaged (MPI root {}, tag {})", fn, l.mpiRoot,
         l.mpiTag);
  IdInfo info;
  info.mpi = l.mpi == 1;
  info.mpiRoot = l.mpiRoot;
  info.mpiTag = l.mpiTag;
  info.socketName = l.name;
  std::memcpy(info.secret, l.secret, sizeof info.secret);
  info.hostId = l.hostId;
  info.creatorPid = l.creatorPid;
  return info;
}

std::vector<std::string> exchange(const char* fn, const IdInfo& id, int nranks, int rank,
                                  const std::string& blob, std::chrono::milliseconds timeout,
                                  const std::atomic<bool>& cancel) {
  if (id.mpi) {
#ifdef H20_CCL_HAVE_MPI
    return exchangeMpi(fn, id, nranks, rank, blob, timeout, cancel);
#else
    fail(h20ErrorNotSupported, "{}: the unique id was made under MPI, but {}", fn,
         mpiUnavailableReason());
#endif
  }
  if (id.hostId != thisHostId())
    fail(h20ErrorNotSupported,
         "{}: the unique id was made on another machine without MPI; such an id's ranks meet "
         "through a local socket, so they must all run on the machine that made it (make the id "
         "after MPI_Init_thread for ranks on several machines)",
         fn);
  const auto deadline = Clock::now() + timeout;
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd < 0) fail(h20ErrorUnknown, "{}: socket: {}", fn, std::strerror(errno));
  socklen_t len = 0;
  const sockaddr_un addr = abstractAddress(id.socketName, &len);
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0)
    fail(h20ErrorRemote,
         "{}: cannot reach the unique id's rendezvous (@{}, made by process {}): {}; the id was "
         "already used, timed out, or its process exited",
         fn, id.socketName, id.creatorPid, std::strerror(errno));
  if (!sameUserOrRoot(s.fd))
    fail(h20ErrorRemote, "{}: the rendezvous @{} belongs to another user", fn, id.socketName);
  Hello h = hello(id, nranks, rank, blob);
  auto cancelled = [&] {
    // Hanging up tells the root, which tells the ranks that came.
    if (cancel.load()) fail(h20ErrorRemote, "{}: rank {}: {}", fn, rank, kCancelled);
  };
  if (!transfer(s.fd, &h, sizeof h, true, deadline, &cancel) ||
      !transfer(s.fd, const_cast<char*>(blob.data()), blob.size(), true, deadline, &cancel)) {
    cancelled();
    fail(h20ErrorRemote, "{}: the rendezvous @{} closed the connection", fn, id.socketName);
  }
  // Nothing arrives before every rank has: the first read waits for the others.
  return readReply(fn, nranks, rank, [&](void* dst, std::size_t n) {
    if (transfer(s.fd, dst, n, false, deadline, &cancel)) return true;
    cancelled();
    return false;
  });
}

}  // namespace h20::ccl
