// api.cpp - the C API of libh20ccl (include/h20/ccl.h): the only extern "C" code of the library.
//
// Owns: the registry of live communicators (so a stale or foreign handle is an error, not a
// crash), the per-call argument checks, the calling thread's group and its last error message.
// Matching calls into collectives belongs to clique.cpp, moving data to schedule.cpp.
#include "bootstrap.hpp"
#include "clique.hpp"
#include "error.hpp"
#include "kernels.hpp"
#include "net.hpp"

#include <h20/ccl.h>
#include <h20_base/enum_value.hpp>

#include "util.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

using h20::base::rawEnum;
using h20::ccl::AsyncState;
using h20::ccl::Call;
using h20::ccl::Clique;
using h20::ccl::CommOptions;
using h20::ccl::Error;
using h20::ccl::fail;
using h20::ccl::Func;
using h20::ccl::NetComm;
using h20::ccl::Pending;

// One rank of a communicator: what an h20cclComm_t points to. Its ranks are threads of this
// process (a clique: the calls meet in clique.cpp and one thread enqueues every rank's work) or
// live in several processes (net: each rank enqueues its own part). A communicator made with
// blocking = 0 becomes ready in the background; until then its calls wait.
struct h20cclComm {
  std::shared_ptr<Clique> clique;
  std::shared_ptr<NetComm> net;
  int rank = 0;
  int nranks = 1;
  int device = 0;
  CommOptions options;
  std::shared_ptr<AsyncState> async = std::make_shared<AsyncState>();

  std::mutex mu;
  std::condition_variable cv;
  bool ready = true;
  bool finalized = false;
  std::thread initThread;

  int size() const { return nranks; }
  // Waits for a non-blocking init; throws its failure.
  void waitReady() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return ready; });
    lock.unlock();
    if (!clique && !net) throw Error(async->code(), async->message());
  }
  ~h20cclComm() {
    if (initThread.joinable()) initThread.join();
  }
};

namespace {

thread_local std::string tlsLastError;

// The live communicators. Lookups hand out shared ownership, so a communicator destroyed by one
// thread stays valid for a call already running on another.
class Registry {
 public:
  void add(const std::shared_ptr<h20cclComm>& c) {
    std::lock_guard<std::mutex> lock(mu_);
    live_[c.get()] = c;
  }
  std::shared_ptr<h20cclComm> find(h20cclComm_t handle) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(handle);
    return it == live_.end() ? nullptr : it->second;
  }
  std::shared_ptr<h20cclComm> remove(h20cclComm_t handle) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(handle);
    if (it == live_.end()) return nullptr;
    auto c = std::move(it->second);
    live_.erase(it);
    return c;
  }

 private:
  std::mutex mu_;
  std::unordered_map<h20cclComm*, std::shared_ptr<h20cclComm>> live_;
};

// Never destroyed: communicators the application did not destroy would otherwise be released
// during static destruction at exit, calling into a runtime that may already be gone.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

// The calling thread's open group: the calls recorded since the outermost h20cclGroupStart.
struct GroupCall {
  std::shared_ptr<h20cclComm> comm;
  Call call;
};
struct GroupState {
  int depth = 0;
  std::vector<GroupCall> calls;
  h20Error_t error = h20Success;  // first error of the group's calls
  std::string message;
  // A call whose communicator was invalid: its rank is unknown, so the group's other calls
  // cannot be matched as poisoned placeholders either (see h20cclGroupEnd).
  bool unattributed = false;
};
thread_local GroupState tlsGroup;

void noteGroupError(h20Error_t code, const std::string& message) {
  if (tlsGroup.depth > 0 && tlsGroup.error == h20Success) {
    tlsGroup.error = code;
    tlsGroup.message = message;
  }
}

template <class F>
h20Error_t guarded(const char* fn, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    tlsLastError = e.message();
    noteGroupError(e.code(), e.message());
    return e.code();
  } catch (const std::bad_alloc&) {
    tlsLastError = fmt::format("{}: out of host memory", fn);
    noteGroupError(h20ErrorMemoryAllocation, tlsLastError);
    return h20ErrorMemoryAllocation;
  } catch (const std::exception& e) {
    tlsLastError = fmt::format("{}: {}", fn, e.what());
    noteGroupError(h20ErrorUnknown, tlsLastError);
    return h20ErrorUnknown;
  } catch (...) {
    tlsLastError = fmt::format("{}: unknown exception", fn);
    noteGroupError(h20ErrorUnknown, tlsLastError);
    return h20ErrorUnknown;
  }
}

std::shared_ptr<h20cclComm> lookup(const char* fn, h20cclComm_t handle) {
  if (!handle) fail(h20ErrorInvalidValue, "{}: comm is NULL", fn);
  auto c = registry().find(handle);
  if (!c)
    fail(h20ErrorInvalidValue,
         "{}: comm {} is not a live communicator (destroyed, or never created)", fn,
         fmt::ptr(handle));
  return c;
}

template <class T>
void requireOut(const char* fn, T* out, const char* name) {
  if (!out) fail(h20ErrorInvalidValue, "{}: {} is NULL", fn, name);
}

bool validType(int t) {
  return t == H20_R_32F || t == H20_R_16BF || t == H20_R_16F;
}
bool validOp(int op) {
  return op == h20cclSum || op == h20cclMax || op == h20cclMin;
}

// An entry point's enum arguments before their checks, read as ints with rawEnum (a C caller may
// pass any int; loading it as the enum type is undefined): converted only after the range checks.
struct RawArgs {
  int type = 0;
  int op = 0;
};

// bytes = count * elementSize * factor, or an error naming the count when it overflows.
std::size_t byteSize(const char* fn, const char* countName, std::size_t count, h20DataType type,
                     std::size_t factor) {
  const std::size_t es = h20::ccl::elementSize(type);
  if (count > std::numeric_limits<std::size_t>::max() / es / factor)
    fail(h20ErrorInvalidValue, "{}: {} {} of {} overflows the address space", fn, countName, count,
         h20::ccl::typeName(type));
  return count * es * factor;
}

// A buffer passed by rank `rank` (on `device`) must be device memory of that device, aligned to
// the element size, with at least `bytes` left in its allocation.
void checkBuffer(const char* fn, const char* name, const void* ptr, std::size_t bytes,
                 h20DataType type, int rank, int device) {
  if (!ptr)
    fail(h20ErrorInvalidValue, "{}: {} is NULL (rank {}, {} bytes needed)", fn, name, rank, bytes);
  const std::size_t es = h20::ccl::elementSize(type);
  if (reinterpret_cast<std::uintptr_t>(ptr) % es != 0)
    fail(h20ErrorInvalidValue, "{}: {} {} is not aligned to the {}-byte elements of {}", fn, name,
         ptr, es, h20::ccl::typeName(type));
  // The runtime's answers pass through with its code: h20ErrorInvalidValue for a pointer into
  // no live allocation, but whatever else it says (h20ErrorNotPermitted in a host function) too.
  const std::string what = fmt::format("{}: {} {}", fn, name, ptr);
  h20PointerAttributes attr{};
  h20::ccl::check(h20PointerGetAttributes(&attr, ptr), what.c_str());
  if (attr.type != h20MemoryTypeDevice)
    fail(h20ErrorInvalidValue,
         "{}: {} {} is {} memory, but collectives need device memory of the rank's device ({})", fn,
         name, ptr, attr.type == h20MemoryTypeHost ? "pinned host" : "pageable host", device);
  if (attr.device != device)
    fail(h20ErrorInvalidValue,
         "{}: {} {} is memory of device {}, but the communicator is rank {} on device {}", fn, name,
         ptr, attr.device, rank, device);
  void* base = nullptr;
  std::size_t size = 0;
  h20::ccl::check(h20MemGetAddressRange(&base, &size, ptr), what.c_str());
  const std::size_t offset =
      static_cast<std::size_t>(static_cast<const char*>(ptr) - static_cast<const char*>(base));
  const std::size_t left = size - offset;
  if (left < bytes)
    fail(h20ErrorInvalidValue,
         "{}: {} {} has {} bytes left in its allocation ({} bytes at {}, offset {}) but the call "
         "needs {}",
         fn, name, ptr, left, size, base, offset, bytes);
}

bool overlap(const void* a, std::size_t an, const void* b, std::size_t bn) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return pa < pb + bn && pb < pa + an;
}

// The runtime refuses calls from a host function or a kernel (h20ErrorNotPermitted); so does
// every entry point here that would enqueue work, wait for other ranks or release a rank. Asking
// the runtime first passes its refusal through before anything else is tried.
void requireCallableHere(const char* fn) {
  int current = 0;
  h20::ccl::check(h20GetDevice(&current), fn);
}

// Checks one rank's call on its own; returns the problem, if any, with its code:
// h20ErrorInvalidValue for a bad argument, the runtime's own code where a runtime call failed.
// On success the enums of `raw` are stored into `c`.
std::optional<Error> problemOf(const char* fn, const h20cclComm& comm, const RawArgs& raw,
                               Call& c) {
  try {
    requireCallableHere(fn);
    const int n = comm.size();
    const int device = comm.device;
    if (!validType(raw.type))
      fail(h20ErrorInvalidValue, "{}: datatype {} is not H20_R_32F, H20_R_16BF or H20_R_16F", fn,
           raw.type);
    c.type = static_cast<h20DataType>(raw.type);
    if (isReduction(c.func)) {
      if (!validOp(raw.op))
        fail(h20ErrorInvalidValue, "{}: op {} is not h20cclSum, h20cclMax or h20cclMin", fn,
             raw.op);
      c.op = static_cast<h20cclRedOp>(raw.op);
    }
    if (h20::ccl::hasRoot(c.func) && (c.root < 0 || c.root >= n))
      fail(h20ErrorInvalidValue, "{}: root {} is not a rank of the communicator (0..{})", fn,
           c.root, n - 1);
    if (h20::ccl::isPointToPoint(c.func) && (c.root < 0 || c.root >= n))
      fail(h20ErrorInvalidValue, "{}: peer {} is not a rank of the communicator (0..{})", fn,
           c.root, n - 1);
    const std::size_t n_ = static_cast<std::size_t>(n);
    std::size_t sendBytes = 0, recvBytes = 0;
    bool inPlace = c.send == c.recv;
    const bool isRoot = comm.rank == c.root;
    switch (c.func) {
      case Func::allReduce:
        sendBytes = recvBytes = byteSize(fn, "count", c.count, c.type, 1);
        break;
      case Func::allGather:
        sendBytes = byteSize(fn, "sendcount", c.count, c.type, 1);
        recvBytes = byteSize(fn, "sendcount", c.count, c.type, n_);
        inPlace = c.recv && static_cast<const char*>(c.send) ==
                                static_cast<const char*>(c.recv) +
                                    static_cast<std::size_t>(comm.rank) * sendBytes;
        break;
      case Func::reduceScatter:
        recvBytes = byteSize(fn, "recvcount", c.count, c.type, 1);
        sendBytes = byteSize(fn, "recvcount", c.count, c.type, n_);
        inPlace = c.send && static_cast<const char*>(c.recv) ==
                                static_cast<const char*>(c.send) +
                                    static_cast<std::size_t>(comm.rank) * recvBytes;
        break;
      case Func::broadcast:
        recvBytes = byteSize(fn, "count", c.count, c.type, 1);
        sendBytes = isRoot ? recvBytes : 0;
        break;
      case Func::reduce:
        sendBytes = byteSize(fn, "count", c.count, c.type, 1);
        recvBytes = isRoot ? sendBytes : 0;
        break;
      case Func::allToAll:
        sendBytes = recvBytes = byteSize(fn, "count", c.count, c.type, n_);
        inPlace = false;
        break;
      case Func::send:
        sendBytes = byteSize(fn, "count", c.count, c.type, 1);
        inPlace = false;
        break;
      case Func::recv:
        recvBytes = byteSize(fn, "count", c.count, c.type, 1);
        inPlace = false;
        break;
    }
    c.inPlace = inPlace;
    if (c.count == 0) return std::nullopt;  // nothing moves: buffers are not used
    if (sendBytes) checkBuffer(fn, "sendbuff", c.send, sendBytes, c.type, comm.rank, device);
    if (recvBytes) checkBuffer(fn, "recvbuff", c.recv, recvBytes, c.type, comm.rank, device);
    if (sendBytes && recvBytes && !inPlace && overlap(c.send, sendBytes, c.recv, recvBytes))
      fail(h20ErrorInvalidValue,
           "{}: sendbuff {} ({} bytes) and recvbuff {} ({} bytes) overlap but the call is not in "
           "place (see h20/ccl.h for the in-place layout of {})",
           fn, c.send, sendBytes, static_cast<const void*>(c.recv), recvBytes, fn);
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

// A communicator that can take work: its init has finished, it is not finalized, and no
// asynchronous error stopped it.
void usable(const char* fn, h20cclComm& comm) {
  comm.waitReady();
  if (const h20Error_t e = comm.async->code(); e != h20Success)
    fail(e, "{}: the communicator failed earlier: {}", fn, comm.async->message());
  std::lock_guard<std::mutex> lock(comm.mu);
  if (comm.finalized)
    fail(h20ErrorInvalidValue, "{}: the communicator was finalized (h20cclCommFinalize)", fn);
}

// One integer property of a live communicator into *out.
template <class Get>
h20Error_t commAttribute(const char* fn, h20cclComm_t handle, int* out, const char* outName,
                         Get get) {
  return guarded(fn, [&] {
    auto c = lookup(fn, handle);
    requireOut(fn, out, outName);
    *out = get(*c);
    return h20Success;
  });
}

// The buffers, count, stream and (broadcast) root of one rank's call.
struct CallArgs {
  const void* send;
  void* recv;
  std::size_t count;
  h20Stream_t stream;
  int root = 0;
};

// Issues one rank's call: recorded in the thread's group, or contributed and waited for.
h20Error_t issue(const char* fn, Func func, h20cclComm_t handle, const RawArgs& raw,
                 const CallArgs& args) {
  return guarded(fn, [&]() -> h20Error_t {
    Call call;
    call.func = func;
    call.send = args.send;
    call.recv = args.recv;
    call.count = args.count;
    call.stream = args.stream;
    call.root = args.root;
    std::shared_ptr<h20cclComm> comm;
    try {
      comm = lookup(fn, handle);
    } catch (const Error&) {
      if (tlsGroup.depth > 0) tlsGroup.unattributed = true;
      throw;
    }
    call.rank = comm->rank;
    call.thread = std::this_thread::get_id();
    try {
      usable(fn, *comm);
    } catch (const Error&) {
      if (tlsGroup.depth > 0) tlsGroup.unattributed = true;
      throw;
    }
    // A failed call still takes its rank's place in the collective, so the ranks stay in step;
    // this rank gets the problem's own code, the others h20ErrorInvalidValue naming it.
    const std::optional<Error> problem = problemOf(fn, *comm, raw, call);
    if (problem) call.poison = problem->message();
    if (comm->net) {
      // Each rank enqueues its own part. A bad call enqueues nothing and fails the communicator:
      // the peers would otherwise match their next call with this rank's next one; they get
      // h20ErrorRemote at once instead.
      if (tlsGroup.depth > 0) {
        tlsGroup.calls.push_back({comm, std::move(call)});
        if (problem) throw *problem;
        return h20Success;
      }
      if (problem) {
        comm->net->failRank(problem->code(), problem->message());
        throw *problem;
      }
      comm->net->enqueue({call}, call.stream);
      return h20Success;
    }
    if (tlsGroup.depth > 0) {
      tlsGroup.calls.push_back({comm, std::move(call)});
      if (problem) throw *problem;
      return h20Success;
    }
    if (problem) {
      // The other ranks' calls of this collective fail with it instead of waiting for this one.
      try {
        comm->clique->contribute({std::move(call)});
      } catch (const Error&) {
      }
      throw *problem;
    }
    auto joined = comm->clique->contribute({std::move(call)});
    comm->clique->wait(joined[0]);
    if (joined[0]->rc != h20Success) throw Error(joined[0]->rc, joined[0]->message);
    return h20Success;
  });
}

// Releases a communicator taken out of the registry: Destroy waits for its work, Abort makes
// the work fail at once (and tells the other ranks) first.
void release(h20cclComm& c, bool abort) {
  // An init still running gives up (and the ranks waiting for this one learn it).
  c.async->cancel();
  if (c.initThread.joinable()) c.initThread.join();
  if (c.net) {
    if (abort) c.net->abort(fmt::format("rank {} called h20cclCommAbort", c.rank));
    c.net->drain();
    c.net.reset();
  }
  if (c.clique) c.clique->destroyRank(c.rank);
  c.clique.reset();
}

// h20cclCommDestroy and h20cclCommAbort: NULL is a no-op; otherwise the handle leaves the
// registry and its communicator is released.
h20Error_t removeAndRelease(const char* fn, h20cclComm_t comm, bool abort) {
  return guarded(fn, [&] {
    if (!comm) return h20Success;
    requireCallableHere(fn);
    auto c = registry().remove(comm);
    if (!c)
      fail(h20ErrorInvalidValue,
           "{}: comm {} is not a live communicator (destroyed, or never created)", fn,
           fmt::ptr(comm));
    release(*c, abort);
    return h20Success;
  });
}

// Options from the environment (H20_CCL_TIMEOUT_MS, H20_CCL_TRANSPORT) and the config.
CommOptions optionsFor(const char* fn, const h20cclConfig* config, const CommOptions* inherit) {
  CommOptions o = inherit ? *inherit : CommOptions{};
  if (!inherit) {
    if (const char* v = std::getenv("H20_CCL_TIMEOUT_MS"); v && *v) {
      char* end = nullptr;
      errno = 0;
      const long long ms = std::strtoll(v, &end, 10);
      if (errno != 0 || end == v || *end != '\0' || ms <= 0 || ms > 24LL * 3600 * 1000)
        fail(h20ErrorInitializationError,
             "{}: H20_CCL_TIMEOUT_MS='{}' is not a number of milliseconds in 1..86400000", fn, v);
      o.timeout = std::chrono::milliseconds(ms);
    }
    if (const char* v = std::getenv("H20_CCL_TRANSPORT"); v && *v) {
      const std::string t(v);
      if (t == "auto")
        o.transport = h20::ccl::TransportChoice::automatic;
      else if (t == "ipc")
        o.transport = h20::ccl::TransportChoice::ipc;
      else if (t == "mpi")
        o.transport = h20::ccl::TransportChoice::mpi;
      else
        fail(h20ErrorInitializationError, "{}: H20_CCL_TRANSPORT='{}' is not one of auto, ipc, mpi",
             fn, t);
    }
  }
  if (config) {
    if (config->magic != H20_CCL_CONFIG_MAGIC || config->size != sizeof(h20cclConfig))
      fail(h20ErrorInvalidValue,
           "{}: config was not initialised with H20_CCL_CONFIG_INITIALIZER (size {}, magic {:#x})",
           fn, config->size, config->magic);
    if (config->blocking != 0 && config->blocking != 1)
      fail(h20ErrorInvalidValue, "{}: config->blocking is {}, not 0 or 1", fn, config->blocking);
    if (config->timeoutMs < 0)
      fail(h20ErrorInvalidValue, "{}: config->timeoutMs is {}, not >= 0", fn, config->timeoutMs);
    o.blocking = config->blocking == 1;
    if (config->timeoutMs > 0) o.timeout = std::chrono::milliseconds(config->timeoutMs);
  }
  return o;
}

// The clique of the ranks of one id that all turned out to be threads of this process: the first
// of them to get here creates it, the others join it.
std::shared_ptr<Clique> localClique(const std::string& key, const std::vector<int>& devices) {
  static std::mutex mu;
  static auto* cliques = new std::map<std::string, std::weak_ptr<Clique>>;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = cliques->begin(); it != cliques->end();)
    it = it->second.expired() ? cliques->erase(it) : std::next(it);
  auto& slot = (*cliques)[key];
  if (auto c = slot.lock()) return c;
  auto c = std::make_shared<Clique>(devices);
  slot = c;
  return c;
}

// The work of h20cclCommInitRank (on the caller's thread, or in the background): meets the other
// ranks and sets up the communicator.
void initRank(const char* fn, h20cclComm& c, const h20::ccl::IdInfo& id) {
  auto net = NetComm::create(fn, id, c.nranks, c.rank, c.device, c.options, c.async);
  if (net->allInThisProcess() && c.options.transport == h20::ccl::TransportChoice::automatic) {
    // Threads of one process: the calls meet in a clique, as with h20cclCommInitAll.
    c.clique = localClique(id.socketName, net->devices());
    return;
  }
  c.net = std::move(net);
}

h20Error_t commInitRank(const char* fn, h20cclComm_t* out, int nranks, const h20cclUniqueId& commId,
                        int rank, const h20cclConfig* config, const CommOptions* inherit) {
  requireOut(fn, out, "comm");
  *out = nullptr;
  requireCallableHere(fn);
  if (nranks < 1 || nranks > H20_CCL_MAX_RANKS)
    fail(h20ErrorInvalidValue, "{}: nranks {} is outside 1..{} (H20_CCL_MAX_RANKS)", fn, nranks,
         H20_CCL_MAX_RANKS);
  if (rank < 0 || rank >= nranks)
    fail(h20ErrorInvalidValue, "{}: rank {} is outside 0..{}", fn, rank, nranks - 1);
  const h20::ccl::IdInfo id = h20::ccl::decodeId(fn, commId);
  auto c = std::make_shared<h20cclComm>();
  c->rank = rank;
  c->nranks = nranks;
  c->options = optionsFor(fn, config, inherit);
  h20::ccl::check(h20GetDevice(&c->device), fn);
  if (c->options.blocking) {
    initRank(fn, *c, id);
    registry().add(c);
    *out = c.get();
    return h20Success;
  }
  c->ready = false;
  h20cclComm* raw = c.get();
  c->initThread = std::thread([raw, id, fn] {
    h20SetDevice(raw->device);
    try {
      initRank(fn, *raw, id);
    } catch (const Error& e) {
      raw->async->fail(e.code(), e.message());
    } catch (const std::exception& e) {
      raw->async->fail(h20ErrorUnknown, fmt::format("{}: {}", fn, e.what()));
    }
    std::lock_guard<std::mutex> lock(raw->mu);
    raw->ready = true;
    raw->cv.notify_all();
  });
  registry().add(c);
  *out = c.get();
  return h20ErrorNotReady;
}

// A small all-gather of host bytes over a communicator (h20cclCommSplit): `mine` from every rank,
// by rank. Collective; runs on a stream of its own and waits for it.
std::vector<std::string> allGatherHost(const char* fn, h20cclComm& c, const std::string& mine) {
  h20::ccl::DeviceGuard guard(c.device);
  const std::size_t bytes = (mine.size() + 1) / 2 * 2;  // moved as 16-bit elements
  const std::size_t n = static_cast<std::size_t>(c.size());
  h20Stream_t stream = nullptr;
  h20::ccl::check(h20StreamCreate(&stream), fn);
  void* buf = nullptr;
  std::vector<char> host(bytes * (n + 1), 0);
  std::memcpy(host.data(), mine.data(), mine.size());
  h20Error_t rc = h20Malloc(&buf, bytes * (n + 1));
  if (rc == h20Success) rc = h20Memcpy(buf, host.data(), bytes, h20MemcpyHostToDevice);
  std::string message;
  if (rc == h20Success) {
    rc = h20cclAllGather(buf, static_cast<char*>(buf) + bytes, bytes / 2, H20_R_16BF, &c, stream);
    if (rc != h20Success) message = h20cclGetLastErrorMessage();
  }
  if (rc == h20Success) rc = h20StreamSynchronize(stream);
  if (rc == h20Success && c.async->code() != h20Success) {
    rc = c.async->code();
    message = c.async->message();
  }
  if (rc == h20Success)
    rc = h20Memcpy(host.data(), static_cast<char*>(buf) + bytes, bytes * n, h20MemcpyDeviceToHost);
  if (message.empty() && rc != h20Success) message = h20GetLastErrorMessage();
  if (buf) h20Free(buf);
  h20StreamDestroy(stream);
  if (rc != h20Success) fail(rc, "{}: exchanging colors and keys failed: {}", fn, message);
  std::vector<std::string> out;
  for (std::size_t r = 0; r < n; ++r)
    out.emplace_back(host.data() + r * bytes, mine.size());
  return out;
}
}  // namespace

extern "C" {

H20_API h20Error_t h20cclGetVersion(int* version) {
  return guarded("h20cclGetVersion", [&] {
    requireOut("h20cclGetVersion", version, "version");
    *version = H20_CCL_VERSION;
    return h20Success;
  });
}

H20_API const char* h20cclGetLastErrorMessage(void) {
  return tlsLastError.c_str();
}

H20_API h20Error_t h20cclCommInitAll(h20cclComm_t* comms, int ndev, const int* devices) {
  constexpr const char* fn = "h20cclCommInitAll";
  return guarded(fn, [&] {
    requireOut(fn, comms, "comms");
    if (ndev < 1 || ndev > H20_CCL_MAX_RANKS)
      fail(h20ErrorInvalidValue, "{}: ndev {} is outside 1..{} (H20_CCL_MAX_RANKS)", fn, ndev,
           H20_CCL_MAX_RANKS);
    for (int i = 0; i < ndev; ++i)
      comms[i] = nullptr;
    int visible = 0;
    h20::ccl::check(h20GetDeviceCount(&visible), fn);
    std::vector<int> devs;
    for (int i = 0; i < ndev; ++i) {
      const int d = devices ? devices[i] : i;
      if (d < 0 || d >= visible)
        fail(h20ErrorInvalidDevice, "{}: {} is {}, but the visible devices are 0..{}", fn,
             devices ? fmt::format("devices[{}]", i) : fmt::format("rank {}'s device", i), d,
             visible - 1);
      for (int j = 0; j < i; ++j)
        if (devs[static_cast<std::size_t>(j)] == d)
          fail(h20ErrorInvalidValue, "{}: devices[{}] and devices[{}] are both device {}", fn, j, i,
               d);
      devs.push_back(d);
    }
    auto clique = std::make_shared<Clique>(std::move(devs));
    std::vector<std::shared_ptr<h20cclComm>> made;
    for (int r = 0; r < ndev; ++r) {
      auto c = std::make_shared<h20cclComm>();
      c->clique = clique;
      c->rank = r;
      c->nranks = ndev;
      c->device = clique->device(r);
      made.push_back(std::move(c));
    }
    for (int r = 0; r < ndev; ++r) {
      registry().add(made[static_cast<std::size_t>(r)]);
      comms[r] = made[static_cast<std::size_t>(r)].get();
    }
    return h20Success;
  });
}

H20_API h20Error_t h20cclCommDestroy(h20cclComm_t comm) {
  return removeAndRelease("h20cclCommDestroy", comm, false);
}

H20_API h20Error_t h20cclCommCount(h20cclComm_t comm, int* count) {
  return commAttribute("h20cclCommCount", comm, count, "count",
                       [](const h20cclComm& c) { return c.size(); });
}

H20_API h20Error_t h20cclCommDevice(h20cclComm_t comm, int* device) {
  return commAttribute("h20cclCommDevice", comm, device, "device",
                       [](const h20cclComm& c) { return c.device; });
}

H20_API h20Error_t h20cclCommUserRank(h20cclComm_t comm, int* rank) {
  return commAttribute("h20cclCommUserRank", comm, rank, "rank",
                       [](const h20cclComm& c) { return c.rank; });
}

H20_API h20Error_t h20cclCommGetRingOrder(h20cclComm_t comm, int* ranks, int capacity, int* count) {
  constexpr const char* fn = "h20cclCommGetRingOrder";
  return guarded(fn, [&] {
    auto c = lookup(fn, comm);
    requireOut(fn, count, "count");
    if (capacity < 0 || (capacity > 0 && !ranks))
      fail(h20ErrorInvalidValue, "{}: ranks {} with capacity {}", fn, fmt::ptr(ranks), capacity);
    c->waitReady();
    std::vector<int> ring;
    if (c->clique) {
      ring = c->clique->ring();
    } else {
      ring = c->net->ring();  // across processes: grouped by machine
    }
    for (int i = 0; i < capacity && i < static_cast<int>(ring.size()); ++i)
      ranks[i] = ring[static_cast<std::size_t>(i)];
    *count = static_cast<int>(ring.size());
    return h20Success;
  });
}

H20_API h20Error_t h20cclCommGetAlgorithm(h20cclComm_t comm, h20cclFunc func, size_t count,
                                          h20DataType datatype, h20cclAlgo* algo) {
  constexpr const char* fn = "h20cclCommGetAlgorithm";
  return guarded(fn, [&] {
    auto c = lookup(fn, comm);
    requireOut(fn, algo, "algo");
    const int f = rawEnum(func), t = rawEnum(datatype);
    if (f < h20cclFuncAllReduce || f > h20cclFuncReduce)
      fail(h20ErrorInvalidValue, "{}: func {} is not a h20cclFunc", fn, f);
    if (!validType(t))
      fail(h20ErrorInvalidValue, "{}: datatype {} is not H20_R_32F, H20_R_16BF or H20_R_16F", fn,
           t);
    static constexpr Func kFuncs[] = {Func::allReduce, Func::allGather, Func::reduceScatter,
                                      Func::broadcast, Func::reduce};
    c->waitReady();
    *algo = c->clique ? c->clique->algorithm(kFuncs[f], count, static_cast<h20DataType>(t))
                      : c->net->algorithm(kFuncs[f], count, static_cast<h20DataType>(t));
    return h20Success;
  });
}

H20_API h20Error_t h20cclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                   h20DataType datatype, h20cclRedOp op, h20cclComm_t comm,
                                   h20Stream_t stream) {
  return issue("h20cclAllReduce", Func::allReduce, comm, RawArgs{rawEnum(datatype), rawEnum(op)},
               {sendbuff, recvbuff, count, stream});
}

H20_API h20Error_t h20cclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                   h20DataType datatype, h20cclComm_t comm, h20Stream_t stream) {
  return issue("h20cclAllGather", Func::allGather, comm, RawArgs{rawEnum(datatype), 0},
               {sendbuff, recvbuff, sendcount, stream});
}

H20_API h20Error_t h20cclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                       h20DataType datatype, h20cclRedOp op, h20cclComm_t comm,
                                       h20Stream_t stream) {
  return issue("h20cclReduceScatter", Func::reduceScatter, comm,
               RawArgs{rawEnum(datatype), rawEnum(op)}, {sendbuff, recvbuff, recvcount, stream});
}

H20_API h20Error_t h20cclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                                   h20DataType datatype, int root, h20cclComm_t comm,
                                   h20Stream_t stream) {
  return issue("h20cclBroadcast", Func::broadcast, comm, RawArgs{rawEnum(datatype), 0},
               {sendbuff, recvbuff, count, stream, root});
}

H20_API h20Error_t h20cclGroupStart(void) {
  return guarded("h20cclGroupStart", [&] {
    ++tlsGroup.depth;
    return h20Success;
  });
}

H20_API h20Error_t h20cclGroupEnd(void) {
  constexpr const char* fn = "h20cclGroupEnd";
  return guarded(fn, [&] {
    if (tlsGroup.depth == 0)
      fail(h20ErrorInvalidValue, "{}: no group is open (h20cclGroupStart was not called)", fn);
    if (--tlsGroup.depth > 0) return h20Success;
    GroupState group = std::move(tlsGroup);
    tlsGroup = GroupState{};

    // Communicators across processes: each rank's calls of the group become one piece of work
    // on its stream (the first call's stream), so that they progress together.
    std::vector<std::pair<std::shared_ptr<h20cclComm>, std::vector<Call>>> byNet;
    for (auto& gc : group.calls) {
      if (!gc.comm->net) continue;
      auto it = std::find_if(byNet.begin(), byNet.end(),
                             [&](const auto& e) { return e.first == gc.comm; });
      if (it == byNet.end()) {
        byNet.emplace_back(gc.comm, std::vector<Call>{});
        it = byNet.end() - 1;
      }
      it->second.push_back(gc.call);
    }
    for (auto& [comm, calls] : byNet) {
      for (const Call& c : calls)
        if (c.stream != calls[0].stream && group.error == h20Success) {
          group.error = h20ErrorInvalidValue;
          group.message = fmt::format(
              "{}: the group's calls for rank {} use different streams ({} and {}); across "
              "processes a rank's calls of one group run on one stream",
              fn, comm->rank, fmt::ptr(calls[0].stream), fmt::ptr(c.stream));
        }
    }
    // A failed group fails these communicators (see issue()); the clique calls below are
    // contributed as failed calls before the error is returned.
    for (auto& [comm, calls] : byNet) {
      if (group.error != h20Success)
        comm->net->failRank(group.error, group.message);
      else
        comm->net->enqueue(calls, calls[0].stream);
    }
    group.calls.erase(std::remove_if(group.calls.begin(), group.calls.end(),
                                     [](const GroupCall& gc) { return gc.comm->net != nullptr; }),
                      group.calls.end());

    // The group's calls per clique, in call order.
    std::vector<std::pair<std::shared_ptr<Clique>, std::vector<Call>>> byClique;
    for (auto& gc : group.calls) {
      auto it = std::find_if(byClique.begin(), byClique.end(),
                             [&](const auto& e) { return e.first == gc.comm->clique; });
      if (it == byClique.end()) {
        byClique.emplace_back(gc.comm->clique, std::vector<Call>{});
        it = byClique.end() - 1;
      }
      if (group.error != h20Success && gc.call.poison.empty())
        gc.call.poison = fmt::format("another call of the same group failed: {}", group.message);
      it->second.push_back(std::move(gc.call));
    }
    if (group.error != h20Success) {
      // Nothing of the group is enqueued. Its calls still take their places in the ranks'
      // sequences, as failed calls, so that ranks issued by other threads fail too instead of
      // waiting, and a clique issued entirely by this group stays in step. Not when a call had
      // no valid communicator: its rank would be missing, and every later collective of the
      // clique would be matched with the wrong calls.
      if (group.unattributed) throw Error(group.error, group.message);
      for (auto& [clique, calls] : byClique) {
        try {
          clique->contribute(std::move(calls));
        } catch (const Error&) {
        }
      }
      throw Error(group.error, group.message);
    }
    h20Error_t error = h20Success;
    std::string message;
    std::vector<std::pair<std::shared_ptr<Clique>, std::shared_ptr<Pending>>> joined;
    for (auto& [clique, calls] : byClique) {
      try {
        for (auto& p : clique->contribute(std::move(calls)))
          joined.emplace_back(clique, p);
      } catch (const Error& e) {
        if (error == h20Success) {
          error = e.code();
          message = e.message();
        }
      }
    }
    for (auto& [clique, p] : joined) {
      clique->wait(p);
      if (p->rc != h20Success && error == h20Success) {
        error = p->rc;
        message = p->message;
      }
    }
    if (error != h20Success) throw Error(error, message);
    return h20Success;
  });
}

H20_API h20Error_t h20cclGetUniqueId(h20cclUniqueId* uniqueId) {
  constexpr const char* fn = "h20cclGetUniqueId";
  return guarded(fn, [&] {
    requireOut(fn, uniqueId, "uniqueId");
    const CommOptions o = optionsFor(fn, nullptr, nullptr);
    *uniqueId = h20::ccl::makeUniqueId(o.timeout);
    return h20Success;
  });
}

H20_API h20Error_t h20cclCommInitRank(h20cclComm_t* comm, int nranks, h20cclUniqueId commId,
                                      int rank) {
  constexpr const char* fn = "h20cclCommInitRank";
  return guarded(fn,
                 [&] { return commInitRank(fn, comm, nranks, commId, rank, nullptr, nullptr); });
}

H20_API h20Error_t h20cclCommInitRankConfig(h20cclComm_t* comm, int nranks, h20cclUniqueId commId,
                                            int rank, h20cclConfig* config) {
  constexpr const char* fn = "h20cclCommInitRankConfig";
  return guarded(fn, [&] { return commInitRank(fn, comm, nranks, commId, rank, config, nullptr); });
}

H20_API h20Error_t h20cclCommSplit(h20cclComm_t comm, int color, int key, h20cclComm_t* newcomm,
                                   h20cclConfig* config) {
  constexpr const char* fn = "h20cclCommSplit";
  return guarded(fn, [&] {
    requireOut(fn, newcomm, "newcomm");
    *newcomm = nullptr;
    auto c = lookup(fn, comm);
    if (color < 0 && color != H20_CCL_SPLIT_NOCOLOR)
      fail(h20ErrorInvalidValue, "{}: color {} is negative (only H20_CCL_SPLIT_NOCOLOR may be)", fn,
           color);
    if (tlsGroup.depth > 0)
      fail(h20ErrorInvalidValue,
           "{}: not inside a group: call it from one thread per rank, outside h20cclGroupStart",
           fn);
    usable(fn, *c);
    // Round 1: every rank's color and key. The new ranks are ordered by key, then parent rank.
    std::int32_t ck[2] = {color, key};
    const auto colors =
        allGatherHost(fn, *c, std::string(reinterpret_cast<const char*>(ck), sizeof ck));
    std::vector<std::pair<std::int32_t, int>> members;  // (key, parent rank)
    for (int r = 0; r < c->size(); ++r) {
      std::int32_t v[2];
      std::memcpy(v, colors[static_cast<std::size_t>(r)].data(), sizeof v);
      if (v[0] == color && color != H20_CCL_SPLIT_NOCOLOR) members.emplace_back(v[1], r);
    }
    std::sort(members.begin(), members.end());
    // Round 2: the first member of each color makes the new communicator's id.
    const bool leader = !members.empty() && members[0].second == c->rank;
    h20cclUniqueId id{};
    if (leader) id = h20::ccl::makeUniqueId(c->options.timeout);
    const auto ids = allGatherHost(fn, *c, std::string(id.internal, sizeof id.internal));
    if (color == H20_CCL_SPLIT_NOCOLOR) return h20Success;
    std::memcpy(id.internal, ids[static_cast<std::size_t>(members[0].second)].data(),
                sizeof id.internal);
    int newRank = 0;
    while (members[static_cast<std::size_t>(newRank)].second != c->rank)
      ++newRank;
    h20::ccl::DeviceGuard guard(c->device);
    return commInitRank(fn, newcomm, static_cast<int>(members.size()), id, newRank, config,
                        &c->options);
  });
}

H20_API h20Error_t h20cclCommFinalize(h20cclComm_t comm) {
  constexpr const char* fn = "h20cclCommFinalize";
  return guarded(fn, [&] {
    auto c = lookup(fn, comm);
    requireCallableHere(fn);
    c->waitReady();
    if (c->net) c->net->drain();
    if (c->clique) h20EventSynchronize(c->clique->doneEvent(c->rank));
    {
      std::lock_guard<std::mutex> lock(c->mu);
      c->finalized = true;
    }
    if (const h20Error_t e = c->async->code(); e != h20Success)
      fail(e, "{}: {}", fn, c->async->message());
    return h20Success;
  });
}

H20_API h20Error_t h20cclCommAbort(h20cclComm_t comm) {
  return removeAndRelease("h20cclCommAbort", comm, true);
}

H20_API h20Error_t h20cclCommGetAsyncError(h20cclComm_t comm, h20Error_t* asyncError) {
  constexpr const char* fn = "h20cclCommGetAsyncError";
  return guarded(fn, [&] {
    auto c = lookup(fn, comm);
    requireOut(fn, asyncError, "asyncError");
    {
      std::lock_guard<std::mutex> lock(c->mu);
      if (!c->ready) {
        *asyncError = h20ErrorNotReady;
        return h20Success;
      }
    }
    *asyncError = c->async->code();
    if (*asyncError != h20Success) tlsLastError = c->async->message();
    return h20Success;
  });
}

H20_API h20Error_t h20cclReduce(const void* sendbuff, void* recvbuff, size_t count,
                                h20DataType datatype, h20cclRedOp op, int root, h20cclComm_t comm,
                                h20Stream_t stream) {
  return issue("h20cclReduce", Func::reduce, comm, RawArgs{rawEnum(datatype), rawEnum(op)},
               {sendbuff, recvbuff, count, stream, root});
}

H20_API h20Error_t h20cclAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                                  h20DataType datatype, h20cclComm_t comm, h20Stream_t stream) {
  return issue("h20cclAllToAll", Func::allToAll, comm, RawArgs{rawEnum(datatype), 0},
               {sendbuff, recvbuff, count, stream});
}

H20_API h20Error_t h20cclSend(const void* sendbuff, size_t count, h20DataType datatype, int peer,
                              h20cclComm_t comm, h20Stream_t stream) {
  return issue("h20cclSend", Func::send, comm, RawArgs{rawEnum(datatype), 0},
               {sendbuff, nullptr, count, stream, peer});
}

H20_API h20Error_t h20cclRecv(void* recvbuff, size_t count, h20DataType datatype, int peer,
                              h20cclComm_t comm, h20Stream_t stream) {
  return issue("h20cclRecv", Func::recv, comm, RawArgs{rawEnum(datatype), 0},
               {nullptr, recvbuff, count, stream, peer});
}

}  // extern "C"
