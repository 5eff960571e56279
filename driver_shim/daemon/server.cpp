// server.cpp - h20d's state and request handlers (see server.hpp and protocol.hpp).
//
// Only this folder includes Boost.Asio: the event loop (io_context), signals (signal_set) and
// readiness of the listening and connected sockets (posix::stream_descriptor::async_wait). The
// socket calls themselves (accept, recvmsg/sendmsg with SCM_RIGHTS, SO_PEERCRED) are POSIX, which
// Asio does not wrap.
#include "daemon/server.hpp"

#include "daemon/protocol.hpp"
#include "daemon/transport.hpp"
#include "emu/arena.hpp"
#include "emu/host_memory.hpp"
#include "emu/local_driver.hpp"
#include "emu/shared_wait.hpp"
#include "emu/topology.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <optional>
#include <set>
#include <unordered_map>

namespace h20::daemon {

namespace asio = boost::asio;

// Frames handled per wake-up of one session before the loop serves the others.
constexpr int kFramesPerTurn = 32;
// Objects (each holds a descriptor in the daemon) one process may hold.
constexpr std::size_t kMaxObjectsPerSession = 1 << 16;

namespace {

Capability randomCapability() {
  Capability c{};
  std::size_t got = 0;
  while (got < c.size()) {
    const ssize_t n = getrandom(c.data() + got, c.size() - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  return c;
}

std::uint64_t randomU64() {
  const Capability c = randomCapability();
  std::uint64_t v;
  std::memcpy(&v, c.data(), sizeof v);
  return v;
}

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010  // Linux 5.1
#endif

// A shared-memory object of `bytes` whose size no client can change: a truncated object would
// make the daemon and every other process using it die of SIGBUS on access.
Fd sealedMemfd(const char* name, std::size_t bytes, std::string* error) {
  Fd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0 ||
      ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    *error = std::strerror(errno);
    return Fd{};
  }
  return fd;
}

struct CapabilityHash {
  std::size_t operator()(const Capability& c) const {
    std::size_t h;
    std::memcpy(&h, c.data(), sizeof h);
    return h;
  }
};

// Objects named by 64-bit ids: slot index + 1 in the low half, the slot's generation in the high
// half, so that an id of a released object never names its slot's next occupant.
template <class T>
class SlotTable {
 public:
  std::uint64_t add(T value) {
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slot& s = slots_[index];
    s.value = std::move(value);
    return (std::uint64_t{s.generation} << 32) | (index + 1u);
  }
  T* find(std::uint64_t id) {
    const std::uint64_t low = id & 0xffffffffu;
    if (low == 0 || low > slots_.size()) return nullptr;
    Slot& s = slots_[low - 1];
    if (!s.value || s.generation != static_cast<std::uint32_t>(id >> 32)) return nullptr;
    return &*s.value;
  }
  void remove(std::uint64_t id) {
    if (!find(id)) return;
    const auto index = static_cast<std::uint32_t>((id & 0xffffffffu) - 1);
    slots_[index].value.reset();
    ++slots_[index].generation;
    free_.push_back(index);
  }

 private:
  struct Slot {
    std::optional<T> value;
    std::uint32_t generation = 1;
  };
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
};

struct MemObject {
  // An interprocess event: one page holding a driver::SharedEventState, mapped by the daemon too
  // (at `state`) so that it can complete the records of a process that exits.
  bool event = false;
  driver::SharedEventState* state = nullptr;
  int chip = 0;
  std::size_t offset = 0;
  std::size_t size = 0;   // granted (page multiple)
  std::size_t bytes = 0;  // requested by the owner
  std::shared_ptr<Fd> memfd;
  std::uint64_t owner = 0;  // session id; 0 once the owner freed it or left
  int importers = 0;
  std::optional<Capability> capability;
};

struct Error {
  int code;
  std::string message;
};

}  // namespace

struct Server::State {
  explicit State(ServerConfig c) : config(std::move(c)), signals(io, SIGTERM, SIGINT) {}

  struct Session {
    std::uint64_t id = 0;
    std::unique_ptr<asio::posix::stream_descriptor> socket;
    pid_t pid = 0;
    uid_t uid = 0;
    std::string name;
    bool greeted = false;
    std::string refusal;               // not empty: a user this daemon does not serve
    std::vector<std::uint64_t> owned;  // object ids
    std::unordered_map<std::uint64_t, std::uint64_t> imports;  // import id -> object id
    std::uint64_t nextImport = 1;
  };

  ServerConfig config;
  asio::io_context io;
  asio::signal_set signals;
  std::unique_ptr<asio::posix::stream_descriptor> listener;
  asio::steady_timer acceptPause{io};
  std::string socketPath;
  bool socketCreated = false;
  std::uint64_t instance = randomU64();
  driver::Topology topology;
  std::size_t budget = 0;
  std::size_t budgetUsed = 0;
  std::size_t pageSize = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<std::unique_ptr<emu::OffsetAllocator>> chips;
  // Per chip: the compute mode (h20ComputeMode) and the sessions using the chip (from their
  // first allocation, event or import on it until they leave).
  struct ChipUse {
    int mode = h20ComputeModeDefault;
    std::set<std::uint64_t> users;
  };
  std::vector<ChipUse> chipUse;
  Fd statusFd;
  StatusPage* status = nullptr;
  SlotTable<MemObject> objects;
  std::unordered_map<Capability, std::uint64_t, CapabilityHash> capabilities;
  std::map<std::uint64_t, std::unique_ptr<Session>> sessions;
  std::uint64_t nextSession = 1;

  template <class... Args>
  void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
    if (level > config.logLevel || config.logLevel == LogLevel::off) return;
    static const char* names[] = {"", "error", "warning", "info", "debug"};
    const auto now = std::chrono::system_clock::now();
    std::fputs(
        fmt::format("h20d {:%F %T} {}: {}\n",
                    fmt::localtime(std::chrono::system_clock::to_time_t(now)),
                    names[static_cast<int>(level)], fmt::format(f, std::forward<Args>(args)...))
            .c_str(),
        stderr);
  }

  bool start(std::string* error);
  bool prepareFolder(const std::string& dir, std::string* error);
  bool bindSocket(std::string* error);
  void acceptLoop();
  // Accepts every pending connection; false when accepting failed (e.g. out of descriptors).
  bool accept();
  void readLoop(Session& s);
  void closeSession(std::uint64_t id, const std::string& why);
  void handle(Session& s, const Frame& f);
  void reply(Session& s, const FrameHeader& request, const Writer& body, int fd = -1);
  void replyError(Session& s, const FrameHeader& request, const Error& e);
  // Sends a whole reply (status and body); a client that cannot take it is cut off.
  void send(Session& s, const FrameHeader& request, const Writer& payload, int fd);
  void release(std::uint64_t objectId);
  void dropImport(std::uint64_t objectId);
  void shutdown();

  // Handlers: return the reply body, or throw Error.
  Writer hello(Session& s, Reader& r);
  Writer alloc(Session& s, Reader& r, std::shared_ptr<Fd>* fd);
  Writer free(Session& s, Reader& r);
  Writer memInfo(Session& s, Reader& r);
  Writer ipcExport(Session& s, Reader& r);
  Writer ipcOpen(Session& s, Reader& r, std::shared_ptr<Fd>* fd);
  Writer ipcClose(Session& s, Reader& r);
  Writer processes(Session& s, Reader& r);
  Writer eventCreate(Session& s, Reader& r, std::shared_ptr<Fd>* fd);
  // Throws when `s` holds as many objects (allocations, events, imports) as a process may.
  void checkQuota(const Session& s) const {
    if (s.owned.size() + s.imports.size() >= kMaxObjectsPerSession)
      throw Error{h20ErrorMemoryAllocation,
                  fmt::format("this process holds {} allocations, events and imports: h20d's "
                              "limit per process",
                              kMaxObjectsPerSession)};
  }
  Writer computeMode(Session& s, Reader& r);
  Writer raiseFault(Session& s, Reader& r);
  Writer setComputeMode(Session& s, Reader& r);
  // Records that `s` uses `chip`, or throws h20ErrorDeviceUnavailable when its mode forbids it.
  void use(const Session& s, int chip);
  void abandonPendingRecords(const Session& s, std::uint64_t objectId);
  MemObject* ownedObject(Session& s, std::uint64_t id);
  int checkChip(std::int32_t chip) const {
    if (chip < 0 || chip >= topology.chips)
      throw Error{h20ErrorInvalidDevice,
                  fmt::format("chip {} does not exist (h20d serves chips 0..{})", chip,
                              topology.chips - 1)};
    return chip;
  }
};

Server::Server(ServerConfig config) : s_(std::make_unique<State>(std::move(config))) {}
Server::~Server() {
  s_->shutdown();
}

const std::string& Server::socketPath() const {
  return s_->socketPath;
}

bool Server::start(std::string* error) {
  return s_->start(error);
}

void Server::stop() {
  asio::post(s_->io, [s = s_.get()] { s->io.stop(); });
}

void Server::run() {
  s_->signals.async_wait([s = s_.get()](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    s->log(LogLevel::info, "signal {} received: shutting down", sig);
    s->io.stop();
  });
  s_->acceptLoop();
  s_->io.run();
  s_->shutdown();
}

bool Server::State::start(std::string* error) {
  if (config.chips < 1 || config.chips > 64) {
    *error = fmt::format("--devices {} is not in [1, 64]", config.chips);
    return false;
  }
  emu::HostMemory host;
  if (!emu::loadTopology(config.topology, config.chips, host.numaAvailable() ? host.nodeCount() : 0,
                         host.cpusOfNodes(), &topology, error))
    return false;
  budget = config.memoryBudget ? config.memoryBudget : emu::HostMemory::physicalMemory() / 2;
  for (int c = 0; c < config.chips; ++c)
    chips.push_back(std::make_unique<emu::OffsetAllocator>(emu::kChipMemory, pageSize));
  chipUse.resize(static_cast<std::size_t>(config.chips));
  std::string why;
  statusFd = sealedMemfd("h20-status", sizeof(StatusPage), &why);
  void* page = MAP_FAILED;
  if (statusFd)
    page = mmap(nullptr, sizeof(StatusPage), PROT_READ | PROT_WRITE, MAP_SHARED, statusFd.get(), 0);
  if (page == MAP_FAILED) {
    *error = fmt::format("cannot create the chips' status page: {}",
                         why.empty() ? std::strerror(errno) : why);
    return false;
  }
  status = new (page) StatusPage();
  // Clients map it read-only and cannot map it writable (forging faults for everyone).
  if (::fcntl(statusFd.get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0)
    log(LogLevel::warning,
        "cannot seal the status page against writes ({}): a client could "
        "write it",
        std::strerror(errno));
  socketPath = config.socketPath.empty() ? defaultSocketPath() : config.socketPath;
  const auto slash = socketPath.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : socketPath.substr(0, slash);
  if (!prepareFolder(dir.empty() ? "/" : dir, error)) return false;
  return bindSocket(error);
}

bool Server::State::prepareFolder(const std::string& dir, std::string* error) {
  if (::mkdir(dir.c_str(), 0700) == 0) return true;
  if (errno != EEXIST) {
    *error = fmt::format("cannot create the socket folder '{}': {}", dir, std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *error = fmt::format("'{}' exists and is not a folder", dir);
    return false;
  }
  // A shared folder (such as /tmp) may hold the socket only when the caller named it: the
  // default folder must be ours alone, or another user could have placed it.
  if (st.st_uid != geteuid() && config.socketPath.empty()) {
    *error = fmt::format("the socket folder '{}' belongs to uid {}, not to this user ({})", dir,
                         st.st_uid, geteuid());
    return false;
  }
  if (st.st_uid == geteuid() && (st.st_mode & 077) != 0 && config.socketPath.empty() &&
      ::chmod(dir.c_str(), 0700) != 0) {
    *error = fmt::format("cannot make '{}' private (mode 0700): {}", dir, std::strerror(errno));
    return false;
  }
  return true;
}

bool Server::State::bindSocket(std::string* error) {
  sockaddr_un addr{};
  if (socketPath.size() >= sizeof addr.sun_path) {
    *error = fmt::format("socket path '{}' is longer than {} bytes", socketPath,
                         sizeof addr.sun_path - 1);
    return false;
  }
  struct stat st {};
  if (::lstat(socketPath.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = fmt::format("'{}' exists and is not a socket; remove it or choose another --socket",
                           socketPath);
      return false;
    }
    std::string ignored;
    if (connectSocket(socketPath, &ignored)) {
      *error = fmt::format(
          "another h20d is already serving '{}'; stop it first or choose another "
          "--socket",
          socketPath);
      return false;
    }
    log(LogLevel::info, "removing the stale socket '{}' of a daemon that is gone", socketPath);
    ::unlink(socketPath.c_str());
  }
  Fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) {
    *error = fmt::format("socket() failed: {}", std::strerror(errno));
    return false;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
  const mode_t old = ::umask(0177);
  const int rc = ::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) {
    *error = fmt::format("cannot bind '{}': {}", socketPath, std::strerror(errno));
    return false;
  }
  socketCreated = true;
  if (::listen(sock.get(), 128) != 0) {
    *error = fmt::format("cannot listen on '{}': {}", socketPath, std::strerror(errno));
    return false;
  }
  listener = std::make_unique<asio::posix::stream_descriptor>(io, sock.release());
  log(LogLevel::info, "serving {} chips ({} topology, {} bytes of host memory budget) on {}",
      topology.chips, topology.name, budget, socketPath);
  return true;
}

void Server::State::acceptLoop() {
  listener->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         if (accept()) return acceptLoop();
                         // Out of descriptors: the pending connection would wake the loop at
                         // once, forever. Pause accepting; sessions closing free descriptors.
                         acceptPause.expires_after(std::chrono::milliseconds(100));
                         acceptPause.async_wait([this](const boost::system::error_code& e) {
                           if (!e) acceptLoop();
                         });
                       });
}

bool Server::State::accept() {
  for (;;) {
    Fd conn(::accept4(listener->native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      log(LogLevel::warning, "accept failed: {} ({} sessions open)", std::strerror(errno),
          sessions.size());
      return false;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      log(LogLevel::warning, "refused a connection: cannot read its credentials: {}",
          std::strerror(errno));
      continue;
    }
    auto session = std::make_unique<Session>();
    if (cred.uid != geteuid() && cred.uid != 0) {
      // Told why in answer to its first frame (a reply to a frame it has not sent could be lost
      // with the connection), then cut off.
      session->refusal =
          fmt::format("h20d (uid {}) serves only its own user and root; uid {} (pid {}) refused",
                      geteuid(), cred.uid, cred.pid);
      log(LogLevel::warning, "refused a connection: {}", session->refusal);
    }
    session->id = nextSession++;
    session->pid = cred.pid;
    session->uid = cred.uid;
    session->socket = std::make_unique<asio::posix::stream_descriptor>(io, conn.release());
    Session& s = *session;
    sessions.emplace(s.id, std::move(session));
    log(LogLevel::debug, "session {}: connected (pid {}, uid {})", s.id, s.pid, s.uid);
    readLoop(s);
  }
}

void Server::State::readLoop(Session& s) {
  const std::uint64_t id = s.id;
  s.socket->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, id](const boost::system::error_code& ec) {
                         auto it = sessions.find(id);
                         if (ec || it == sessions.end()) return;
                         Session& session = *it->second;
                         // A few frames per wake-up, then back to the loop: a client that never
                         // stops sending cannot keep the others waiting.
                         for (int n = 0; n < kFramesPerTurn; ++n) {
                           Frame frame;
                           std::string error;
                           const RecvStatus st =
                               receiveFrame(session.socket->native_handle(), false, &frame, &error);
                           if (st == RecvStatus::wouldBlock) break;
                           if (st == RecvStatus::closed)
                             return closeSession(id, "closed its connection");
                           if (st == RecvStatus::bad)
                             return closeSession(id, "sent a malformed frame: " + error);
                           handle(session, frame);
                           if (sessions.find(id) == sessions.end()) return;  // handling closed it
                         }
                         readLoop(session);
                       });
}

void Server::State::reply(Session& s, const FrameHeader& request, const Writer& body, int fd) {
  Writer w;
  writeStatus(w, h20Success, "");
  w.put(body.bytes().data(), body.bytes().size());
  send(s, request, w, fd);
}

void Server::State::replyError(Session& s, const FrameHeader& request, const Error& e) {
  Writer w;
  writeStatus(w, e.code, e.message);
  send(s, request, w, -1);
}

void Server::State::send(Session& s, const FrameHeader& request, const Writer& payload, int fd) {
  std::string error;
  if (!sendFrame(s.socket->native_handle(), request.type | kReplyBit, request.tag, payload.bytes(),
                 fd, &error))
    closeSession(s.id, "cannot be answered: " + error);
}

void Server::State::handle(Session& s, const Frame& f) {
  const std::uint16_t type = f.header.type;
  if (!s.refusal.empty()) {
    const std::uint64_t id = s.id;
    const std::string why = s.refusal;
    replyError(s, f.header, Error{h20ErrorDeviceUnavailable, why});
    return closeSession(id, why);
  }
  if (type == 0 || type > kMaxMsgType)
    return closeSession(s.id, fmt::format("sent a frame of unknown type {}", type));
  if (!s.greeted && type != static_cast<std::uint16_t>(MsgType::hello))
    return closeSession(s.id, fmt::format("sent a frame of type {} before HELLO", type));
  Reader r = f.reader();
  std::shared_ptr<Fd> fd;
  try {
    Writer body;
    switch (static_cast<MsgType>(type)) {
      case MsgType::hello:
        body = hello(s, r);
        fd = std::shared_ptr<Fd>(std::shared_ptr<Fd>{}, &statusFd);  // not owned: lives on
        break;
      case MsgType::alloc:
        body = alloc(s, r, &fd);
        break;
      case MsgType::free:
        body = free(s, r);
        break;
      case MsgType::memInfo:
        body = memInfo(s, r);
        break;
      case MsgType::ipcExport:
        body = ipcExport(s, r);
        break;
      case MsgType::ipcOpen:
        body = ipcOpen(s, r, &fd);
        break;
      case MsgType::ipcClose:
        body = ipcClose(s, r);
        break;
      case MsgType::processes:
        body = processes(s, r);
        break;
      case MsgType::eventCreate:
        body = eventCreate(s, r, &fd);
        break;
      case MsgType::computeMode:
        body = computeMode(s, r);
        break;
      case MsgType::setComputeMode:
        body = setComputeMode(s, r);
        break;
      case MsgType::raiseFault:
        body = raiseFault(s, r);
        break;
    }
    reply(s, f.header, body, fd ? fd->get() : -1);
  } catch (const Error& e) {
    // A client that speaks another version, or sends fields that do not parse, is not talking
    // to us: it is cut off after being told why.
    const bool cut = !s.greeted || e.code == h20ErrorUnknown;
    const std::uint64_t id = s.id;
    replyError(s, f.header, e);  // may close the session: `s` is not used after it
    if (cut) closeSession(id, e.message);
  }
}

namespace {
// Every handler reads its whole payload: a short or over-long one is a protocol error.
void requireDone(const Reader& r, const char* what) {
  if (!r.done())
    throw Error{h20ErrorUnknown, fmt::format("malformed {} request ({} bytes left over or missing)",
                                             what, r.left())};
}
}  // namespace

Writer Server::State::hello(Session& s, Reader& r) {
  if (s.greeted) throw Error{h20ErrorUnknown, "HELLO sent twice"};
  const std::uint32_t version = r.u32();
  if (r.ok() && version != kProtocolVersion)
    throw Error{h20ErrorInitializationError,
                fmt::format("protocol version mismatch: the client speaks version {}, h20d speaks "
                            "version {} (use the h20d of the same SDK)",
                            version, kProtocolVersion)};
  r.u32();  // the pid the client claims; SO_PEERCRED's is the one used
  std::string name = r.str();
  requireDone(r, "HELLO");
  name.erase(std::remove_if(name.begin(), name.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20; }),
             name.end());
  s.name = name.substr(0, 64);
  s.greeted = true;
  log(LogLevel::info, "session {}: pid {} ({}) connected", s.id, s.pid, s.name);
  Writer w;
  w.u32(kProtocolVersion);
  w.u64(instance);
  w.u64(s.id);
  w.u32(static_cast<std::uint32_t>(pageSize));
  w.u64(emu::kChipMemory);
  w.str(topology.name);
  w.u32(static_cast<std::uint32_t>(topology.chips));
  for (const auto& l : topology.links) {
    w.u8(static_cast<std::uint8_t>(l.kind));
    w.i32(l.hops);
    w.f64(l.bandwidth);
    w.f64(l.latencyUs);
  }
  for (const auto& a : topology.attachment) {
    w.i32(a.numaNode);
    w.f64(a.hostBandwidth);
    w.f64(a.hostLatencyUs);
    // CPUs as ranges [first, last]: a node's CPUs are mostly contiguous, so 64 chips of a big
    // host still fit in a frame.
    std::vector<std::pair<int, int>> ranges;
    for (int c : a.cpus) {
      if (!ranges.empty() && ranges.back().second + 1 == c)
        ranges.back().second = c;
      else
        ranges.emplace_back(c, c);
    }
    w.u32(static_cast<std::uint32_t>(ranges.size()));
    for (const auto& [first, last] : ranges) {
      w.i32(first);
      w.i32(last);
    }
  }
  return w;
}

Writer Server::State::alloc(Session& s, Reader& r, std::shared_ptr<Fd>* fd) {
  const int chip = r.i32();
  const std::uint64_t bytes = r.u64();
  requireDone(r, "ALLOC");
  checkChip(chip);
  auto& allocator = *chips[static_cast<std::size_t>(chip)];
  if (bytes == 0 || bytes > allocator.capacity())
    throw Error{h20ErrorMemoryAllocation,
                fmt::format("{} bytes requested on chip {}, which has {} bytes of memory", bytes,
                            chip, allocator.capacity())};
  const std::size_t rounded = allocator.rounded(bytes);
  if (rounded > budget - std::min(budget, budgetUsed))
    throw Error{h20ErrorMemoryAllocation,
                fmt::format("h20d host backing budget exhausted: {} bytes requested on chip {}, "
                            "{} of the {}-byte budget in use by all processes (raise h20d "
                            "--memory-budget)",
                            bytes, chip, budgetUsed, budget)};
  checkQuota(s);
  use(s, chip);  // after the checks: a refused request claims no exclusive chip
  std::size_t granted = 0;
  const std::size_t offset = allocator.allocate(bytes, &granted);
  if (offset == emu::OffsetAllocator::kNone)
    throw Error{h20ErrorMemoryAllocation,
                fmt::format("out of device memory on chip {}: {} bytes requested, {} of {} bytes "
                            "free (largest free block {} bytes)",
                            chip, bytes, allocator.capacity() - allocator.used(),
                            allocator.capacity(), allocator.largestFreeBlock())};
  std::string why;
  auto memfd =
      std::make_shared<Fd>(sealedMemfd(fmt::format("h20-chip{}", chip).c_str(), granted, &why));
  if (!*memfd) {
    allocator.free(offset);
    throw Error{h20ErrorMemoryAllocation,
                fmt::format("h20d cannot create a {}-byte shared memory object: {}", granted, why)};
  }
  budgetUsed += granted;
  MemObject o;
  o.chip = chip;
  o.offset = offset;
  o.size = granted;
  o.bytes = bytes;
  o.memfd = memfd;
  o.owner = s.id;
  const std::uint64_t id = objects.add(std::move(o));
  s.owned.push_back(id);
  *fd = memfd;
  log(LogLevel::debug, "session {}: allocated {} bytes on chip {} at offset {:#x}", s.id, bytes,
      chip, offset);
  Writer w;
  w.u64(id);
  w.u64(offset);
  w.u64(granted);
  return w;
}

Writer Server::State::free(Session& s, Reader& r) {
  const std::uint64_t id = r.u64();
  requireDone(r, "FREE");
  ownedObject(s, id);
  s.owned.erase(std::find(s.owned.begin(), s.owned.end(), id));
  release(id);
  return {};
}

namespace {
const char* modeName(int mode) {
  switch (mode) {
    case h20ComputeModeDefault:
      return "DEFAULT";
    case h20ComputeModeProhibited:
      return "PROHIBITED";
    case h20ComputeModeExclusiveProcess:
      return "EXCLUSIVE_PROCESS";
  }
  return "?";
}
}  // namespace

void Server::State::use(const Session& s, int chip) {
  ChipUse& u = chipUse[static_cast<std::size_t>(chip)];
  if (u.users.count(s.id)) return;
  if (u.mode == h20ComputeModeProhibited)
    throw Error{h20ErrorDeviceUnavailable,
                fmt::format("chip {} is in compute mode PROHIBITED: no process may use it "
                            "(h20-smi -i {} -c DEFAULT allows it again)",
                            chip, chip)};
  if (u.mode == h20ComputeModeExclusiveProcess && !u.users.empty()) {
    const Session* holder = nullptr;
    if (auto it = sessions.find(*u.users.begin()); it != sessions.end()) holder = it->second.get();
    throw Error{h20ErrorDeviceUnavailable,
                fmt::format("chip {} is in compute mode EXCLUSIVE_PROCESS and used by pid {} ({})",
                            chip, holder ? holder->pid : 0, holder ? holder->name : "?")};
  }
  u.users.insert(s.id);
}

Writer Server::State::raiseFault(Session& s, Reader& r) {
  const int chip = r.i32();
  const int code = r.i32();
  std::string message = r.str();
  requireDone(r, "RAISE_FAULT");
  if (!config.allowFaultInjection)
    throw Error{h20ErrorNotPermitted,
                "fault injection is off (start h20d with "
                "--allow-fault-injection)"};
  checkChip(chip);
  if (code != h20ErrorLaunchFailure && code != h20ErrorIllegalAddress)
    throw Error{
        h20ErrorInvalidValue,
        fmt::format("fault code {} is not h20ErrorLaunchFailure or h20ErrorIllegalAddress", code)};
  ChipStatus& st = status->chips[chip];
  message = fmt::format("chip {} fault raised through h20d by pid {}: {}", chip, s.pid, message);
  std::snprintf(st.message, sizeof st.message, "%s", message.c_str());
  st.code.store(code, std::memory_order_relaxed);
  st.faults.fetch_add(1, std::memory_order_release);
  log(LogLevel::warning, "{}", message);
  return {};
}

Writer Server::State::computeMode(Session&, Reader& r) {
  const int chip = r.i32();
  requireDone(r, "COMPUTE_MODE");
  checkChip(chip);
  Writer w;
  w.i32(chipUse[static_cast<std::size_t>(chip)].mode);
  return w;
}

Writer Server::State::setComputeMode(Session& s, Reader& r) {
  const int chip = r.i32();
  const int mode = r.i32();
  requireDone(r, "SET_COMPUTE_MODE");
  checkChip(chip);
  if (mode != h20ComputeModeDefault && mode != h20ComputeModeProhibited &&
      mode != h20ComputeModeExclusiveProcess)
    throw Error{h20ErrorInvalidValue,
                fmt::format("compute mode {} is not DEFAULT (0), PROHIBITED (2) or "
                            "EXCLUSIVE_PROCESS (3)",
                            mode)};
  int& current = chipUse[static_cast<std::size_t>(chip)].mode;
  log(LogLevel::info, "session {} (pid {}) set chip {}'s compute mode from {} to {}", s.id, s.pid,
      chip, modeName(current), modeName(mode));
  current = mode;
  return {};
}

MemObject* Server::State::ownedObject(Session& s, std::uint64_t id) {
  MemObject* o = objects.find(id);
  if (!o || o->owner != s.id)
    throw Error{h20ErrorInvalidValue,
                fmt::format("object {:#x} is not a live allocation or event of this process", id)};
  return o;
}

Writer Server::State::eventCreate(Session& s, Reader& r, std::shared_ptr<Fd>* fd) {
  const int chip = r.i32();
  requireDone(r, "EVENT_CREATE");
  checkChip(chip);
  checkQuota(s);
  use(s, chip);
  std::string why;
  auto memfd = std::make_shared<Fd>(sealedMemfd("h20-event", pageSize, &why));
  void* page = MAP_FAILED;
  if (*memfd) page = mmap(nullptr, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd->get(), 0);
  if (page == MAP_FAILED)
    throw Error{h20ErrorMemoryAllocation,
                fmt::format("h20d cannot create an interprocess event: {}",
                            why.empty() ? std::strerror(errno) : why)};
  MemObject o;
  o.event = true;
  o.state = new (page) driver::SharedEventState();
  o.chip = chip;
  o.size = pageSize;
  o.memfd = memfd;
  o.owner = s.id;
  const std::uint64_t id = objects.add(std::move(o));
  s.owned.push_back(id);
  *fd = memfd;
  Writer w;
  w.u64(id);
  return w;
}

// A session that leaves with records of an event still pending (their work will never run)
// would make every waiter in other processes wait forever: the records are finished for them, as
// failed, so that their waits end with an error instead.
void Server::State::abandonPendingRecords(const Session& s, std::uint64_t id) {
  MemObject* o = objects.find(id);
  if (!o || !o->event) return;
  driver::SharedEventState& st = *o->state;
  int abandoned = 0;
  for (auto& slot : st.slots) {
    if (slot.state.load() != driver::SharedEventState::kPending || slot.recorder.load() != s.id)
      continue;
    driver::finishSharedRecord(st, slot.record.load(), true);
    ++abandoned;
  }
  if (abandoned)
    log(LogLevel::warning,
        "session {} (pid {}) exited with {} records of event {:#x} pending: abandoned", s.id, s.pid,
        abandoned, id);
}

// The owner let go of an object: it goes unless another session still imports it.
void Server::State::release(std::uint64_t id) {
  MemObject* o = objects.find(id);
  if (!o) return;
  o->owner = 0;
  if (o->capability) capabilities.erase(*o->capability);
  o->capability.reset();
  if (o->importers > 0) return;
  if (o->event) {
    munmap(o->state, pageSize);
  } else {
    chips[static_cast<std::size_t>(o->chip)]->free(o->offset);
    budgetUsed -= o->size;
  }
  objects.remove(id);
}

void Server::State::dropImport(std::uint64_t id) {
  MemObject* o = objects.find(id);
  if (!o) return;
  --o->importers;
  if (o->importers == 0 && o->owner == 0) release(id);
}

Writer Server::State::memInfo(Session& s, Reader& r) {
  const int chip = r.i32();
  requireDone(r, "MEMINFO");
  checkChip(chip);
  const auto& a = *chips[static_cast<std::size_t>(chip)];
  const std::size_t budgetLeft = budget - std::min(budget, budgetUsed);
  Writer w;
  w.u64(std::min(a.capacity() - a.used(), budgetLeft));
  w.u64(a.capacity());
  return w;
}

Writer Server::State::ipcExport(Session& s, Reader& r) {
  const std::uint64_t id = r.u64();
  requireDone(r, "IPC_EXPORT");
  MemObject* o = ownedObject(s, id);
  if (!o->capability) {
    o->capability = randomCapability();
    capabilities.emplace(*o->capability, id);
  }
  IpcMemHandle h;
  h.magic = o->event ? kEventHandleMagic : kMemHandleMagic;
  h.daemonInstance = instance;
  h.object = id;
  h.chip = o->chip;
  h.ownerPid = static_cast<std::uint32_t>(s.pid);
  h.bytes = o->bytes;
  h.capability = *o->capability;
  Writer w;
  w.put(&h, sizeof h);
  return w;
}

Writer Server::State::ipcOpen(Session& s, Reader& r, std::shared_ptr<Fd>* fd) {
  IpcMemHandle h;
  r.take(&h, sizeof h);
  requireDone(r, "IPC_OPEN");
  if (h.magic != kMemHandleMagic && h.magic != kEventHandleMagic)
    throw Error{h20ErrorInvalidValue, "the bytes are not an IPC handle"};
  if (h.daemonInstance != instance)
    throw Error{h20ErrorInvalidValue,
                "the handle was made by another h20d (the daemon was restarted since it was "
                "exported)"};
  auto c = capabilities.find(h.capability);
  MemObject* o = c == capabilities.end() ? nullptr : objects.find(c->second);
  if (!o || c->second != h.object || o->event != (h.magic == kEventHandleMagic))
    throw Error{h20ErrorInvalidValue,
                fmt::format("the handle names no exported {} (forged, or freed by its owner)",
                            h.magic == kEventHandleMagic ? "event" : "allocation")};
  if (o->owner == s.id)
    throw Error{h20ErrorInvalidValue,
                "the handle was exported by this process: use the allocation's own pointer"};
  checkQuota(s);
  use(s, o->chip);
  ++o->importers;
  const std::uint64_t importId = s.nextImport++;
  s.imports.emplace(importId, c->second);
  *fd = o->memfd;
  Writer w;
  w.u64(importId);
  w.i32(o->chip);
  w.u64(o->offset);
  w.u64(o->size);
  w.u64(o->bytes);
  return w;
}

Writer Server::State::ipcClose(Session& s, Reader& r) {
  const std::uint64_t importId = r.u64();
  requireDone(r, "IPC_CLOSE");
  auto it = s.imports.find(importId);
  if (it == s.imports.end())
    throw Error{h20ErrorInvalidValue,
                fmt::format("import {} is not open in this process", importId)};
  const std::uint64_t id = it->second;
  s.imports.erase(it);
  dropImport(id);
  return {};
}

Writer Server::State::processes(Session&, Reader& r) {
  requireDone(r, "PROCESSES");
  Writer w;
  std::vector<std::tuple<std::uint32_t, std::string, int, std::uint64_t>> rows;
  for (const auto& [id, s] : sessions) {
    if (!s->greeted) continue;
    std::map<int, std::uint64_t> perChip;
    for (std::uint64_t o : s->owned)
      if (const MemObject* m = objects.find(o); m && !m->event) perChip[m->chip] += m->size;
    for (const auto& [chip, bytes] : perChip)
      rows.emplace_back(static_cast<std::uint32_t>(s->pid), s->name, chip, bytes);
  }
  // As many rows as fit in one frame (a row is at most 84 bytes: about 1,500 of them).
  constexpr std::size_t kMaxRows = (kMaxPayload - 64) / (4 + 4 + 64 + 4 + 8);
  if (rows.size() > kMaxRows) rows.resize(kMaxRows);
  w.u32(static_cast<std::uint32_t>(rows.size()));
  for (const auto& [pid, name, chip, bytes] : rows) {
    w.u32(pid);
    w.str(name);
    w.i32(chip);
    w.u64(bytes);
  }
  return w;
}

void Server::State::closeSession(std::uint64_t id, const std::string& why) {
  auto it = sessions.find(id);
  if (it == sessions.end()) return;
  std::unique_ptr<Session> s = std::move(it->second);
  sessions.erase(it);
  std::size_t bytes = 0;
  for (std::uint64_t o : s->owned)
    abandonPendingRecords(*s, o);
  for (const auto& [importId, o] : s->imports)
    abandonPendingRecords(*s, o);
  for (std::uint64_t o : s->owned) {
    if (const MemObject* m = objects.find(o); m && !m->event) bytes += m->size;
    release(o);
  }
  for (const auto& [importId, o] : s->imports)
    dropImport(o);
  for (ChipUse& u : chipUse)
    u.users.erase(s->id);
  log(s->greeted ? LogLevel::info : LogLevel::warning,
      "session {} (pid {}{}{}) {}; released {} allocations ({} bytes) and {} imports", s->id,
      s->pid, s->name.empty() ? "" : ", ", s->name, why, s->owned.size(), bytes, s->imports.size());
  boost::system::error_code ignored;
  s->socket->cancel(ignored);
  s->socket->close(ignored);
}

void Server::State::shutdown() {
  while (!sessions.empty())
    closeSession(sessions.begin()->first, "was disconnected: h20d is shutting down");
  if (status) {
    munmap(status, sizeof(StatusPage));
    status = nullptr;
  }
  if (listener) {
    boost::system::error_code ignored;
    listener->close(ignored);
    listener.reset();
  }
  if (socketCreated) {
    ::unlink(socketPath.c_str());
    socketCreated = false;
  }
}

}  // namespace h20::daemon
