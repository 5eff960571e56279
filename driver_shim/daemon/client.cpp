// client.cpp - the device daemon's client: a LocalDriver whose device memory is made by h20d.
//
// Each chip's address range is reserved in this process (PROT_NONE, nothing backed). An
// allocation is a shared-memory object the daemon creates and sends over the socket; the client
// maps it at the chip's base plus the offset the daemon chose. Offsets are unique on a chip
// across all processes, so memory imported from another process lands at the same offset of this
// process's range, and pointer ranges, attributes and peer rules work as with the embedded
// emulator. Execution (queues, kernels, copies) stays in this process.
//
// Requests are synchronous, one at a time (mu_). When the daemon is gone, every call that needs it
// returns h20ErrorDeviceUnavailable; memory already mapped stays usable until it is freed.
#include "daemon/protocol.hpp"
#include "daemon/transport.hpp"
#include "driver.hpp"
#include "emu/local_driver.hpp"

#include <fmt/format.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <unordered_map>

namespace h20::driver {

namespace {

using daemon::Fd;
using daemon::Frame;
using daemon::MsgType;
using daemon::Reader;
using daemon::Writer;

// How long a request waits for the daemon's answer before the daemon counts as unavailable.
constexpr int kReplyTimeoutSeconds = 30;
// Most host CPUs a chip's attachment may list.
constexpr int kMaxCpus = 1 << 16;

class DaemonClient final : public emu::LocalDriver {
 public:
  explicit DaemonClient(const DaemonConfig& config)
      : path_(config.socketPath.empty() ? daemon::defaultSocketPath() : config.socketPath) {
    status_ = connect(config.workerThreads);
  }
  ~DaemonClient() override {
    stop();
    if (chipStatus_)
      munmap(const_cast<daemon::StatusPage*>(chipStatus_), sizeof(daemon::StatusPage));
    for (std::size_t c = 0; c < bases_.size(); ++c)
      if (bases_[c]) munmap(bases_[c], chipBytes_);
  }

  Status init() const { return status_; }
  std::string name() const override { return "h20-daemon"; }

  Status allocate(int chip, std::size_t bytes, void** out) override {
    Writer w;
    w.i32(chip);
    w.u64(bytes);
    Frame reply;
    Status s = call(MsgType::alloc, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    const std::uint64_t object = r.u64(), offset = r.u64(), size = r.u64();
    if (!r.done() || !reply.fd || !fits(offset, size) || size < bytes)
      return lost("answered an allocation with a malformed reply");
    void* p = map(chip, offset, size, reply.fd.get());
    if (!p) {
      const int err = errno;
      release(MsgType::free, object);
      return {h20ErrorMemoryAllocation, fmt::format("cannot map {} bytes of chip {}'s memory: {}",
                                                    size, chip, std::strerror(err))};
    }
    {
      std::lock_guard<std::mutex> lock(mapMu_);
      maps_.emplace(reinterpret_cast<std::uintptr_t>(p), Mapping{chip, object, size, 0, 0});
    }
    used_[static_cast<std::size_t>(chip)].fetch_add(size);
    *out = p;
    return {};
  }

  Status free(int chip, void* ptr) override {
    Mapping m;
    {
      std::lock_guard<std::mutex> lock(mapMu_);
      auto it = maps_.find(reinterpret_cast<std::uintptr_t>(ptr));
      if (it == maps_.end() || it->second.chip != chip || it->second.importId != 0)
        return {h20ErrorInvalidValue,
                fmt::format("{} is not the start of a live allocation on chip {}", ptr, chip)};
      m = it->second;
      maps_.erase(it);
    }
    // Unmapped before the daemon may hand the offset to anyone else.
    unmap(ptr, m.size);
    used_[static_cast<std::size_t>(chip)].fetch_sub(m.size);
    // A daemon that is gone has released everything already: the free is complete either way.
    release(MsgType::free, m.object);
    return {};
  }

  Status memInfo(int chip, std::size_t* freeBytes, std::size_t* totalBytes) const override {
    Writer w;
    w.i32(chip);
    Frame reply;
    Status s = call(MsgType::memInfo, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    *freeBytes = r.u64();
    *totalBytes = r.u64();
    if (!r.done()) return lostConst("answered a memory query with a malformed reply");
    return {};
  }

  std::size_t memUsed(int chip) const override {
    return used_[static_cast<std::size_t>(chip)].load();
  }

  AddressRange addressRange(int chip) const override {
    const auto b = reinterpret_cast<std::uintptr_t>(bases_[static_cast<std::size_t>(chip)]);
    return {b, b + chipBytes_};
  }

  Status exportMemory(int chip, void* ptr, IpcHandleBytes* out) override {
    std::uint64_t object;
    {
      std::lock_guard<std::mutex> lock(mapMu_);
      auto it = maps_.find(reinterpret_cast<std::uintptr_t>(ptr));
      if (it == maps_.end() || it->second.importId != 0)
        return {h20ErrorInvalidValue,
                fmt::format("{} is not the start of an allocation of this process", ptr)};
      object = it->second.object;
    }
    return exportObject(object, out);
  }

  Status importMemory(const IpcHandleBytes& handle, ImportedMemory* out) override {
    daemon::IpcMemHandle h;
    std::memcpy(&h, handle.data(), sizeof h);
    if (h.magic != daemon::kMemHandleMagic)
      return {h20ErrorInvalidValue,
              h.magic == daemon::kEventHandleMagic
                  ? "the handle is an event handle (open it with h20IpcOpenEventHandle)"
                  : "the bytes are not an IPC memory handle"};
    {
      // Open in this process already: one more reference to the same mapping.
      std::lock_guard<std::mutex> lock(mapMu_);
      if (auto open = imports_.find(h.object); open != imports_.end()) {
        Mapping& m = maps_.at(open->second);
        if (m.capability == h.capability) {
          ++m.refs;
          *out = ImportedMemory{m.chip, reinterpret_cast<void*>(open->second), m.bytes, false};
          return {};
        }
      }
    }
    Opened o;
    Status s = open(handle, &o);
    if (!s.ok()) return s;
    if (!fits(o.offset, o.size) || o.bytes > o.size)
      return lost("answered an IPC memory open with a malformed reply");
    void* p = map(o.chip, o.offset, o.size, o.fd.get());
    if (!p) {
      const int err = errno;
      release(MsgType::ipcClose, o.importId);
      return {h20ErrorMemoryAllocation, fmt::format("cannot map {} bytes of imported memory: {}",
                                                    o.size, std::strerror(err))};
    }
    {
      std::lock_guard<std::mutex> lock(mapMu_);
      Mapping m{o.chip, h.object, o.size, o.importId, 1};
      m.bytes = o.bytes;
      m.capability = h.capability;
      maps_.emplace(reinterpret_cast<std::uintptr_t>(p), m);
      imports_.emplace(h.object, reinterpret_cast<std::uintptr_t>(p));
    }
    *out = ImportedMemory{o.chip, p, o.bytes, true};
    return {};
  }

  Status closeImport(void* ptr, bool* lastReference) override {
    Mapping m;
    {
      std::lock_guard<std::mutex> lock(mapMu_);
      auto it = maps_.find(reinterpret_cast<std::uintptr_t>(ptr));
      if (it == maps_.end() || it->second.importId == 0)
        return {h20ErrorInvalidValue,
                fmt::format("{} is not memory opened with h20IpcOpenMemHandle", ptr)};
      *lastReference = --it->second.refs == 0;
      if (!*lastReference) return {};
      m = it->second;
      imports_.erase(m.object);
      maps_.erase(it);
    }
    unmap(ptr, m.size);
    release(MsgType::ipcClose, m.importId);
    return {};
  }

  Status processes(std::vector<ProcessUse>* out) const override {
    Frame reply;
    Status s = call(MsgType::processes, Writer{}, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    out->clear();
    const std::uint32_t n = r.u32();
    for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
      ProcessUse u;
      u.pid = static_cast<int>(r.u32());
      u.name = r.str();
      u.chip = r.i32();
      u.bytes = r.u64();
      out->push_back(std::move(u));
    }
    if (!r.done()) return lostConst("answered a process list with a malformed reply");
    return {};
  }

  Status computeMode(int chip, int* mode) const override {
    Writer w;
    w.i32(chip);
    Frame reply;
    Status s = call(MsgType::computeMode, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    *mode = r.i32();
    if (!r.done()) return lostConst("answered a compute mode query with a malformed reply");
    return {};
  }

  Status setComputeMode(int chip, int mode) override {
    Writer w;
    w.i32(chip);
    w.i32(mode);
    Frame reply;
    return call(MsgType::setComputeMode, w, &reply);
  }

  // Faults: this process's own (LocalDriver), or a chip-level one raised through the daemon since
  // this process connected or last reset the chip.
  bool faulted(int chip) const override { return LocalDriver::faulted(chip) || chipFaulted(chip); }
  std::optional<Fault> fault(int chip) const override {
    if (auto own = LocalDriver::fault(chip)) return own;
    if (!chipFaulted(chip)) return std::nullopt;
    const daemon::ChipStatus& st = chipStatus_->chips[chip];
    char message[sizeof st.message];
    std::memcpy(message, st.message, sizeof message);
    message[sizeof message - 1] = '\0';
    const int code = st.code.load(std::memory_order_relaxed);
    return Fault{code == h20ErrorIllegalAddress ? h20ErrorIllegalAddress : h20ErrorLaunchFailure,
                 message};
  }
  void resetChip(int chip) override {
    LocalDriver::resetChip(chip);
    seenFaults_[chip].store(chipStatus_->chips[chip].faults.load(std::memory_order_acquire));
  }

  Status createSharedEvent(int chip, std::shared_ptr<SharedEvent>* out) override {
    Writer w;
    w.i32(chip);
    Frame reply;
    Status s = call(MsgType::eventCreate, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    const std::uint64_t object = r.u64();
    if (!r.done() || !reply.fd) return lost("answered an event creation with a malformed reply");
    return mapEvent(reply.fd.get(), MsgType::free, object, out);
  }

  Status exportEvent(const SharedEvent& event, IpcHandleBytes* out) override {
    const auto* e = dynamic_cast<const Event*>(&event);
    if (!e || e->releaseType != MsgType::free)
      return {h20ErrorInvalidValue,
              "only an event created by this process can be exported (this one was imported)"};
    return exportObject(e->id, out);
  }

  Status importEvent(const IpcHandleBytes& handle, std::shared_ptr<SharedEvent>* out,
                     int* chip) override {
    daemon::IpcMemHandle h;
    std::memcpy(&h, handle.data(), sizeof h);
    if (h.magic != daemon::kEventHandleMagic)
      return {h20ErrorInvalidValue,
              h.magic == daemon::kMemHandleMagic
                  ? "the handle is a memory handle (open it with h20IpcOpenMemHandle)"
                  : "the bytes are not an IPC event handle"};
    Opened o;
    Status s = open(handle, &o);
    if (!s.ok()) return s;
    *chip = o.chip;
    return mapEvent(o.fd.get(), MsgType::ipcClose, o.importId, out);
  }

 private:
  // IPC_EXPORT of one of this process's objects (memory or event).
  Status exportObject(std::uint64_t object, IpcHandleBytes* out) {
    Writer w;
    w.u64(object);
    Frame reply;
    Status s = call(MsgType::ipcExport, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    r.take(out->data(), out->size());
    if (!r.done()) return lost("answered an export with a malformed reply");
    return {};
  }

  // IPC_OPEN of another process's object: what the daemon answered, checked, with the object's
  // descriptor (offset, size and bytes are the memory's, a page and 0 for an event).
  struct Opened {
    std::uint64_t importId = 0;
    int chip = 0;
    std::uint64_t offset = 0, size = 0, bytes = 0;
    Fd fd;
  };
  Status open(const IpcHandleBytes& handle, Opened* out) {
    Writer w;
    w.put(handle.data(), handle.size());
    Frame reply;
    Status s = call(MsgType::ipcOpen, w, &reply);
    if (!s.ok()) return s;
    Reader r = bodyOf(reply);
    out->importId = r.u64();
    out->chip = r.i32();
    out->offset = r.u64();
    out->size = r.u64();
    out->bytes = r.u64();
    if (!r.done() || !reply.fd || out->chip < 0 || out->chip >= chipCount())
      return lost("answered an IPC open with a malformed reply");
    out->fd = std::move(reply.fd);
    return {};
  }

  bool chipFaulted(int chip) const {
    return chipStatus_->chips[chip].faults.load(std::memory_order_acquire) >
           seenFaults_[chip].load(std::memory_order_relaxed);
  }

  // An interprocess event mapped from the daemon's page; released (destroyed or closed) with the
  // last reference.
  struct Event final : SharedEvent {
    Event(DaemonClient& c, void* p, MsgType t, std::uint64_t i)
        : client(c), page(p), releaseType(t), id(i) {}
    ~Event() override {
      munmap(page, client.pageSize_);
      client.release(releaseType, id);
    }
    SharedEventState& state() const override { return *static_cast<SharedEventState*>(page); }
    DaemonClient& client;
    void* page;
    MsgType releaseType;  // free: this process's own event; ipcClose: an imported one
    std::uint64_t id;
  };

  Status mapEvent(int fd, MsgType releaseType, std::uint64_t id,
                  std::shared_ptr<SharedEvent>* out) {
    void* p = holds(fd, pageSize_)
                  ? mmap(nullptr, pageSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    if (p == MAP_FAILED) {
      const int err = errno;
      release(releaseType, id);
      return {h20ErrorMemoryAllocation,
              fmt::format("cannot map an interprocess event: {}", std::strerror(err))};
    }
    auto e = std::make_shared<Event>(*this, p, releaseType, id);
    e->recorderId = session_;
    *out = std::move(e);
    return {};
  }

  struct Mapping {
    int chip = 0;
    std::uint64_t object = 0;
    std::size_t size = 0;
    std::uint64_t importId = 0;  // 0: this process's own allocation
    int refs = 0;                // opens of an import
    std::size_t bytes = 0;
    daemon::Capability capability{};
  };

  Status connect(int workerThreads) {
    std::string error;
    sock_ = daemon::connectSocket(path_, &error);
    if (!sock_)
      return {h20ErrorInitializationError,
              fmt::format("H20_DRIVER=daemon: no device daemon at '{}' ({}). Start it with "
                          "`h20d --socket {}` (or unset H20_DAEMON_SOCKET for the default "
                          "socket), or use the embedded device with H20_DRIVER=emu",
                          path_, error, path_)};
    timeval tv{kReplyTimeoutSeconds, 0};
    setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(sock_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Writer w;
    w.u32(daemon::kProtocolVersion);
    w.u32(static_cast<std::uint32_t>(getpid()));
    w.str(emu::processName());
    Frame reply;
    Status s = call(MsgType::hello, w, &reply);
    if (!s.ok()) return {h20ErrorInitializationError, s.message};
    if (!reply.fd)
      return {h20ErrorInitializationError,
              fmt::format("h20d at '{}' sent no status page with its HELLO", path_)};
    void* statusPage =
        holds(reply.fd.get(), sizeof(daemon::StatusPage))
            ? mmap(nullptr, sizeof(daemon::StatusPage), PROT_READ, MAP_SHARED, reply.fd.get(), 0)
            : MAP_FAILED;
    if (statusPage == MAP_FAILED)
      return {h20ErrorInitializationError,
              fmt::format("cannot map h20d's status page: {}", std::strerror(errno))};
    chipStatus_ = static_cast<const daemon::StatusPage*>(statusPage);
    Reader r = bodyOf(reply);
    r.u32();  // the daemon's version (equal: it refuses others)
    r.u64();  // its instance
    session_ = r.u64();
    const std::uint32_t page = r.u32();
    chipBytes_ = r.u64();
    Topology t;
    t.name = r.str();
    t.chips = static_cast<int>(r.u32());
    if (!r.ok() || t.chips < 1 || t.chips > 64 || page == 0 || page % 4096 != 0 ||
        chipBytes_ == 0 || chipBytes_ % page != 0 || chipBytes_ > (std::size_t{1} << 44))
      return {h20ErrorInitializationError,
              fmt::format("h20d at '{}' sent a malformed HELLO", path_)};
    for (int i = 0; i < t.chips * t.chips; ++i) {
      PeerLink l;
      const std::uint8_t kind = r.u8();
      l.kind = static_cast<LinkKind>(kind <= 3 ? kind : 3);
      l.hops = r.i32();
      l.bandwidth = r.f64();
      l.latencyUs = r.f64();
      t.links.push_back(l);
    }
    for (int c = 0; c < t.chips; ++c) {
      ChipAttachment a;
      a.numaNode = r.i32();
      a.hostBandwidth = r.f64();
      a.hostLatencyUs = r.f64();
      const std::uint32_t ranges = r.u32();
      for (std::uint32_t i = 0; i < ranges && r.ok(); ++i) {
        const int first = r.i32(), last = r.i32();
        if (first < 0 || last < first || last - first >= kMaxCpus ||
            a.cpus.size() + static_cast<std::size_t>(last - first) >= kMaxCpus)
          return {h20ErrorInitializationError,
                  fmt::format("h20d at '{}' sent a malformed CPU list", path_)};
        for (int c = first; c <= last; ++c)
          a.cpus.push_back(c);
      }
      t.attachment.push_back(std::move(a));
    }
    if (!r.done())
      return {h20ErrorInitializationError,
              fmt::format("h20d at '{}' sent a malformed topology", path_)};
    for (int c = 0; c < t.chips; ++c) {
      void* p =
          mmap(nullptr, chipBytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED)
        return {h20ErrorInitializationError,
                fmt::format("cannot reserve address space for chip {}", c)};
      bases_.push_back(static_cast<char*>(p));
    }
    pageSize_ = page;
    seenFaults_ = std::make_unique<std::atomic<std::uint64_t>[]>(static_cast<std::size_t>(t.chips));
    for (int c = 0; c < t.chips; ++c)
      seenFaults_[c].store(chipStatus_->chips[c].faults.load(std::memory_order_acquire));
    used_ = std::make_unique<std::atomic<std::size_t>[]>(static_cast<std::size_t>(t.chips));
    start(std::move(t), workerThreads);
    return {};
  }

  // One request and its reply. The reply's status is returned; its body is read with bodyOf.
  Status call(MsgType type, const Writer& request, Frame* reply) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!sock_) return gone_;
    const std::uint32_t tag = ++tag_;
    std::string error;
    if (!daemon::sendFrame(sock_.get(), static_cast<std::uint16_t>(type), tag, request.bytes(), -1,
                           &error))
      return lostLocked(error);
    const daemon::RecvStatus st = daemon::receiveFrame(sock_.get(), true, reply, &error);
    if (st == daemon::RecvStatus::closed) return lostLocked("it closed the connection");
    if (st != daemon::RecvStatus::frame)
      return lostLocked(error.empty() ? fmt::format("no answer within {} s", kReplyTimeoutSeconds)
                                      : error);
    if (reply->header.type != (static_cast<std::uint16_t>(type) | daemon::kReplyBit) ||
        reply->header.tag != tag)
      return lostLocked("it answered another request");
    Reader r = reply->reader();
    const std::int32_t code = r.i32();
    std::string message = r.str();
    if (!r.ok()) return lostLocked("it sent a reply without a status");
    reply->payload.erase(reply->payload.begin(),
                         reply->payload.end() - static_cast<std::ptrdiff_t>(r.left()));
    if (code != h20Success) return {static_cast<h20Error_t>(code), std::move(message)};
    return {};
  }

  // The reply's body (call() has taken the status off).
  static Reader bodyOf(const Frame& reply) { return reply.reader(); }

  // The connection is unusable: every later call fails with the same status.
  Status lostLocked(const std::string& why) const {
    sock_.reset();
    gone_ = {h20ErrorDeviceUnavailable,
             fmt::format("the device daemon at '{}' is unavailable ({}); memory already mapped "
                         "stays readable until freed; restart h20d and this process",
                         path_, why)};
    return gone_;
  }
  Status lost(const std::string& why) { return lostConst(why); }
  Status lostConst(const std::string& why) const {
    std::lock_guard<std::mutex> lock(mu_);
    return lostLocked(fmt::format("it {}", why));
  }

  // Tells the daemon to let go of an object or import; nothing to report when it is gone.
  void release(MsgType type, std::uint64_t id) {
    Writer w;
    w.u64(id);
    Frame reply;
    call(type, w, &reply);
  }

  bool fits(std::uint64_t offset, std::uint64_t size) const {
    return size > 0 && offset < chipBytes_ && size <= chipBytes_ - offset;
  }

  // True when the object behind `fd` has at least `bytes` (a shorter one would fault on access).
  static bool holds(int fd, std::uint64_t bytes) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && st.st_size >= 0 &&
           static_cast<std::uint64_t>(st.st_size) >= bytes;
  }

  void* map(int chip, std::uint64_t offset, std::uint64_t size, int fd) {
    if (!holds(fd, size)) {
      errno = EINVAL;
      return nullptr;
    }
    void* want = bases_[static_cast<std::size_t>(chip)] + offset;
    void* p = mmap(want, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    return p == MAP_FAILED ? nullptr : p;
  }

  // Puts the reservation back over [ptr, ptr + size).
  static void unmap(void* ptr, std::size_t size) {
    mmap(ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  }

  std::size_t chipMemory(int) const override { return chipBytes_; }

  std::string path_;
  Status status_;
  mutable std::mutex mu_;  // one request at a time; guards sock_, tag_, gone_
  mutable Fd sock_;
  mutable std::uint32_t tag_ = 0;
  mutable Status gone_;
  std::size_t chipBytes_ = 0;
  std::size_t pageSize_ = 4096;
  std::uint64_t session_ = 0;
  const daemon::StatusPage* chipStatus_ = nullptr;
  std::unique_ptr<std::atomic<std::uint64_t>[]> seenFaults_;
  std::vector<char*> bases_;
  std::unique_ptr<std::atomic<std::size_t>[]> used_;
  std::mutex mapMu_;                                           // guards maps_ and imports_
  std::unordered_map<std::uintptr_t, Mapping> maps_;           // by address
  std::unordered_map<std::uint64_t, std::uintptr_t> imports_;  // open imports: object -> address
};

}  // namespace

std::unique_ptr<Driver> createDaemonClient(const DaemonConfig& config, Status* status) {
  auto client = std::make_unique<DaemonClient>(config);
  Status s = client->init();
  if (status) *status = s;
  if (!s.ok()) return nullptr;
  return client;
}

}  // namespace h20::driver
