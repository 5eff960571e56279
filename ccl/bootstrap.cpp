// bootstrap.cpp - the unique id and the local rendezvous of the ranks (see bootstrap.hpp).
#include "bootstrap.hpp"

#include "error.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

namespace h20::ccl {

namespace {

using Clock = std::chrono::steady_clock;

// The id's bytes: a magic, a version, then the fields below; the rest is zero.
constexpr char kIdMagic[8] = {'H', '2', '0', 'C', 'C', 'L', 'I', 'D'};
constexpr std::uint32_t kIdVersion = 1;
constexpr std::size_t kNameBytes = 48;
struct IdLayout {
  char magic[8];
  std::uint32_t version;
  std::int32_t creatorPid;
  std::uint64_t hostId;
  std::uint8_t secret[16];
  char name[kNameBytes];  // NUL-terminated abstract socket name
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
};
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

// Reads or writes exactly `n` bytes before the deadline; false on EOF, error or timeout.
bool transfer(int fd, void* buf, std::size_t n, bool write, Clock::time_point deadline) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    pollfd pfd{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    const int ready = ::poll(&pfd, 1, msLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
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

void sendReply(int fd, h20Error_t status, const std::string& message,
               const std::vector<std::string>* blobs) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  ReplyHead h{static_cast<std::int32_t>(status), static_cast<std::uint32_t>(message.size())};
  if (!transfer(fd, &h, sizeof h, true, deadline)) return;
  if (!transfer(fd, const_cast<char*>(message.data()), message.size(), true, deadline)) return;
  if (!blobs) return;
  for (const auto& b : *blobs) {
    std::uint32_t len = static_cast<std::uint32_t>(b.size());
    if (!transfer(fd, &len, sizeof len, true, deadline)) return;
    if (!transfer(fd, const_cast<char*>(b.data()), b.size(), true, deadline)) return;
  }
}

// The root: collects one Hello per rank, then answers everyone.
class Root {
 public:
  Root(Fd listener, const std::uint8_t* secret, std::chrono::milliseconds timeout)
      : listener_(std::move(listener)), timeout_(timeout) {
    std::memcpy(secret_, secret, sizeof secret_);
  }

  void run() {
    std::optional<Clock::time_point> deadline;  // set when the first rank arrives
    for (;;) {
      const int wait = deadline ? msLeft(*deadline) : 60 * 1000;
      if (deadline && wait == 0) break;
      // The listener, and the ranks waiting for the others: one that hangs up (its own timeout
      // passed, or its process exited) makes the meeting fail for all.
      std::vector<pollfd> fds{{listener_.fd, POLLIN, 0}};
      std::vector<int> who;
      for (int r = 0; r < nranks_; ++r) {
        if (ranks_[static_cast<std::size_t>(r)].fd.fd < 0) continue;
        fds.push_back({ranks_[static_cast<std::size_t>(r)].fd.fd, POLLIN, 0});
        who.push_back(r);
      }
      const int ready = ::poll(fds.data(), fds.size(), wait);
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        const Arrival& a = ranks_[static_cast<std::size_t>(who[i - 1])];
        ranks_[static_cast<std::size_t>(who[i - 1])].fd.reset();
        --arrived_;
        fail(h20ErrorRemote,
             fmt::format("rank {} (process {}) stopped waiting before every rank had arrived",
                         who[i - 1], a.pid));
      }
      if ((fds[0].revents & POLLIN) == 0) continue;
      Fd c(::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (c.fd < 0) continue;
      if (!deadline) deadline = Clock::now() + timeout_;
      if (!sameUserOrRoot(c.fd)) continue;  // another user: closed without an answer
      admit(std::move(c));
      if (error_ == h20Success && nranks_ > 0 && static_cast<int>(arrived_) == nranks_) {
        std::vector<std::string> table;
        for (auto& r : ranks_)
          table.push_back(std::move(r.blob));
        for (auto& r : ranks_)
          sendReply(r.fd.fd, h20Success, {}, &table);
        return;
      }
    }
    // Timed out: tell the ranks that came which did not.
    if (error_ == h20Success) {
      std::string missing;
      int count = 0;
      for (int r = 0; r < nranks_; ++r) {
        if (ranks_[static_cast<std::size_t>(r)].fd.fd >= 0) continue;
        if (count++ < 8) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", r);
      }
      if (count > 8) missing += ", ...";
      fail(h20ErrorRemote,
           fmt::format("{} of {} ranks arrived within the timeout of {} ms; missing: rank {}",
                       arrived_, nranks_, timeout_.count(), missing));
    }
  }

 private:
  struct Arrival {
    Fd fd;
    std::string blob;
    int pid = 0;
  };

  void fail(h20Error_t code, std::string message) {
    if (error_ == h20Success) {
      error_ = code;
      message_ = std::move(message);
    }
    for (auto& r : ranks_) {
      if (r.fd.fd < 0) continue;
      sendReply(r.fd.fd, error_, message_, nullptr);
      r.fd.reset();
    }
  }

  void admit(Fd c) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    Hello h{};
    if (!transfer(c.fd, &h, sizeof h, false, deadline)) return;
    if (std::memcmp(h.magic, kHelloMagic, sizeof h.magic) != 0 ||
        std::memcmp(h.secret, secret_, sizeof secret_) != 0)
      return sendReply(c.fd, h20ErrorInvalidValue,
                       "the unique id's secret does not match (a damaged or forged id)", nullptr);
    if (h.blobBytes > kMaxBlob) return;
    std::string blob(h.blobBytes, '\0');
    if (!transfer(c.fd, blob.data(), blob.size(), false, deadline)) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    ::getsockopt(c.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    if (error_ != h20Success) return sendReply(c.fd, error_, message_, nullptr);
    if (h.nranks < 1 || h.nranks > H20_CCL_MAX_RANKS || h.rank < 0 || h.rank >= h.nranks)
      return sendReply(c.fd, h20ErrorInvalidValue,
                       fmt::format("rank {} of nranks {} is out of range", h.rank, h.nranks),
                       nullptr);
    if (nranks_ == 0) {
      nranks_ = h.nranks;
      ranks_.resize(static_cast<std::size_t>(nranks_));
      firstPid_ = cred.pid;
    } else if (h.nranks != nranks_) {
      sendReply(c.fd, h20ErrorInvalidValue,
                fmt::format("the ranks disagree about nranks: process {} passed {} but process {} "
                            "passed {}",
                            firstPid_, nranks_, cred.pid, h.nranks),
                nullptr);
      return fail(h20ErrorInvalidValue,
                  fmt::format("the ranks disagree about nranks: process {} passed {} but process "
                              "{} passed {}",
                              firstPid_, nranks_, cred.pid, h.nranks));
    }
    Arrival& slot = ranks_[static_cast<std::size_t>(h.rank)];
    if (slot.fd.fd >= 0) {
      const std::string m = fmt::format("rank {} was claimed twice (by processes {} and {})",
                                        h.rank, slot.pid, cred.pid);
      sendReply(c.fd, h20ErrorInvalidValue, m, nullptr);
      return fail(h20ErrorInvalidValue, m);
    }
    slot.fd = std::move(c);
    slot.blob = std::move(blob);
    slot.pid = cred.pid;
    ++arrived_;
  }

  Fd listener_;
  std::uint8_t secret_[16];
  std::chrono::milliseconds timeout_;
  int nranks_ = 0;
  int firstPid_ = 0;
  std::size_t arrived_ = 0;
  std::vector<Arrival> ranks_;
  h20Error_t error_ = h20Success;
  std::string message_;
};

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
    std::ifstream boot("/proc/sys/kernel/random/boot_id");
    std::getline(boot, text);
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    text += host;
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
  IdInfo info;
  info.socketName = l.name;
  std::memcpy(info.secret, l.secret, sizeof info.secret);
  info.hostId = l.hostId;
  info.creatorPid = l.creatorPid;
  return info;
}

std::vector<std::string> exchange(const char* fn, const IdInfo& id, int nranks, int rank,
                                  const std::string& blob, std::chrono::milliseconds timeout) {
  if (id.hostId != thisHostId())
    fail(h20ErrorNotSupported,
         "{}: the unique id was made on another machine; this library's ranks meet through a "
         "local socket, so every rank must run on the machine that made the id",
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
  Hello h{};
  std::memcpy(h.magic, kHelloMagic, sizeof h.magic);
  std::memcpy(h.secret, id.secret, sizeof h.secret);
  h.nranks = nranks;
  h.rank = rank;
  h.blobBytes = static_cast<std::uint32_t>(blob.size());
  if (!transfer(s.fd, &h, sizeof h, true, deadline) ||
      !transfer(s.fd, const_cast<char*>(blob.data()), blob.size(), true, deadline))
    fail(h20ErrorRemote, "{}: the rendezvous @{} closed the connection", fn, id.socketName);
  ReplyHead r{};
  if (!transfer(s.fd, &r, sizeof r, false, deadline))
    fail(h20ErrorRemote,
         "{}: rank {} of {}: the other ranks did not all arrive within the timeout of {} ms", fn,
         rank, nranks, timeout.count());
  if (r.messageBytes > 4096) fail(h20ErrorRemote, "{}: the rendezvous sent a malformed answer", fn);
  std::string message(r.messageBytes, '\0');
  if (!transfer(s.fd, message.data(), message.size(), false, deadline))
    fail(h20ErrorRemote, "{}: the rendezvous closed the connection", fn);
  if (r.status != h20Success) {
    const int code = r.status;
    const h20Error_t e = code == h20ErrorInvalidValue ? h20ErrorInvalidValue : h20ErrorRemote;
    fail(e, "{}: rank {}: {}", fn, rank, message);
  }
  std::vector<std::string> table(static_cast<std::size_t>(nranks));
  for (auto& b : table) {
    std::uint32_t n = 0;
    if (!transfer(s.fd, &n, sizeof n, false, deadline) || n > kMaxBlob)
      fail(h20ErrorRemote, "{}: the rendezvous sent a malformed table", fn);
    b.resize(n);
    if (!transfer(s.fd, b.data(), n, false, deadline))
      fail(h20ErrorRemote, "{}: the rendezvous closed the connection", fn);
  }
  return table;
}

}  // namespace h20::ccl
