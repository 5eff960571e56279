// clique.cpp - clique creation and the rendezvous of the ranks' calls (see clique.hpp).
#include "clique.hpp"

#include "error.hpp"
#include "kernels.hpp"
#include "schedule.hpp"
#include "util.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace h20::ccl {

AlgoConfig configFromEnvironment() {
  AlgoConfig c;
  if (const char* v = std::getenv("H20_CCL_ALGO"); v && *v) {
    const std::string_view s(v);
    if (s == "auto")
      c.mode = AlgoConfig::Mode::automatic;
    else if (s == "ring")
      c.mode = AlgoConfig::Mode::ring;
    else if (s == "direct")
      c.mode = AlgoConfig::Mode::direct;
    else
      fail(h20ErrorInitializationError,
           "libh20ccl: H20_CCL_ALGO='{}' is not one of auto, ring, direct", s);
  }
  if (const char* v = std::getenv("H20_CCL_DIRECT_MAX_BYTES"); v && *v) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-')
      fail(h20ErrorInitializationError,
           "libh20ccl: H20_CCL_DIRECT_MAX_BYTES='{}' is not a non-negative number of bytes", v);
    c.directMaxBytes = static_cast<std::size_t>(n);
  }
  return c;
}

namespace {

// Enables access from every rank's device to every linked peer; an access enabled before (by the
// application or another clique) is fine.
void enablePeerAccess(const std::vector<int>& devices, const LinkMatrix& links) {
  DeviceGuard guard;
  const int n = static_cast<int>(devices.size());
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) {
      if (a == b || !links.canAccess(a, b)) continue;
      guard.set(devices[static_cast<std::size_t>(a)]);
      const h20Error_t before = h20PeekAtLastError();
      const h20Error_t rc = h20DeviceEnablePeerAccess(devices[static_cast<std::size_t>(b)], 0);
      if (rc == h20ErrorPeerAccessAlreadyEnabled) {
        // Tolerated: do not leave it as the thread's last runtime error.
        if (before == h20Success) h20GetLastError();
        continue;
      }
      check(rc, "h20DeviceEnablePeerAccess");
    }
  }
}

}  // namespace

const char* funcName(Func f) {
  switch (f) {
    case Func::allReduce:
      return "h20cclAllReduce";
    case Func::allGather:
      return "h20cclAllGather";
    case Func::reduceScatter:
      return "h20cclReduceScatter";
    case Func::broadcast:
      return "h20cclBroadcast";
    case Func::reduce:
      return "h20cclReduce";
    case Func::allToAll:
      return "h20cclAllToAll";
    case Func::send:
      return "h20cclSend";
    case Func::recv:
      return "h20cclRecv";
  }
  return "h20ccl?";
}

Clique::Clique(std::vector<int> devices)
    : devices_(std::move(devices)), config_(configFromEnvironment()) {
  const int n = size();
  ranks_.resize(static_cast<std::size_t>(n));
  nextSeq_.assign(static_cast<std::size_t>(n), 0);
  links_ = queryLinks(devices_);
  ring_ = chooseRing(links_);
  try {
    enablePeerAccess(devices_, links_);
    DeviceGuard guard;
    for (int r = 0; r < n; ++r) {
      guard.set(device(r));
      RankState& s = ranks_[static_cast<std::size_t>(r)];
      check(h20EventCreateWithFlags(&s.step, h20EventDisableTiming), "h20EventCreateWithFlags");
      check(h20EventCreateWithFlags(&s.done, h20EventDisableTiming), "h20EventCreateWithFlags");
    }
  } catch (...) {
    for (auto& r : ranks_)
      releaseEvents(r);
    throw;
  }
}

Clique::~Clique() {
  for (auto& r : ranks_)
    releaseEvents(r);
}

void Clique::releaseEvents(RankState& r) {
  if (r.done) h20EventSynchronize(r.done);
  if (r.step) h20EventDestroy(r.step);
  if (r.done) h20EventDestroy(r.done);
  r.step = r.done = nullptr;
}

// The automatic choice follows a simple model of the links (docs/ccl.md has the arithmetic). Per
// rank, both algorithms move about the same number of bytes; direct does it in 2 steps (1 for
// all but allReduce) instead of 2(n-1), so it wins whenever its traffic does not crowd the links:
//  - every pair one hop apart (switch, mesh): direct at every size. Through a switch the bytes per
//    chip are the same; on a mesh direct uses all n-1 links at once, the ring only 2.
//  - some pair several hops apart (the ring preset): direct traffic crosses intermediate chips and
//    shares their links, so for large buffers the ring, which only uses neighbour links, wins:
//    direct up to kDefaultMultiHopDirectMaxBytes per rank, the ring above.
//  - some pair without a link (pairs): only the ring.
h20cclAlgo Clique::algorithm(Func f, std::size_t count, h20DataType type) const {
  const bool directOk = links_.fullyConnected() && size() > 1;
  switch (config_.mode) {
    case AlgoConfig::Mode::ring:
      return h20cclAlgoRing;
    case AlgoConfig::Mode::direct:
      return directOk ? h20cclAlgoDirect : h20cclAlgoRing;
    case AlgoConfig::Mode::automatic:
      break;
  }
  if (!directOk) return h20cclAlgoRing;
  // The per-rank buffer: the larger of send and receive.
  const std::size_t n = static_cast<std::size_t>(size());
  std::size_t bytes = count * elementSize(type);
  if (f == Func::allGather || f == Func::reduceScatter) bytes *= n;
  if (config_.directMaxBytes)
    return bytes <= *config_.directMaxBytes ? h20cclAlgoDirect : h20cclAlgoRing;
  bool singleHop = true;
  for (int a = 0; a < size(); ++a)
    for (int b = 0; b < size(); ++b)
      if (a != b && links_.hop(a, b) > 1) singleHop = false;
  if (singleHop) return h20cclAlgoDirect;
  return bytes <= kDefaultMultiHopDirectMaxBytes ? h20cclAlgoDirect : h20cclAlgoRing;
}

std::vector<std::shared_ptr<Pending>> Clique::contribute(std::vector<Call> calls) {
  std::lock_guard<std::mutex> lock(mu_);
  // After a rank was destroyed, collectives cannot run; sends and receives between live ranks can.
  for (const auto& c : calls) {
    if (broken_.empty()) break;
    if (!isPointToPoint(c.func) || c.root < 0 || c.root >= size() ||
        !ranks_[static_cast<std::size_t>(c.rank)].alive ||
        !ranks_[static_cast<std::size_t>(c.root)].alive)
      fail(h20ErrorInvalidValue, "{}", broken_);
  }
  std::vector<std::shared_ptr<Pending>> joined;
  joined.reserve(calls.size());
  for (auto& c : calls) {
    if (isPointToPoint(c.func)) {
      auto p = std::make_shared<Pending>(0);
      if (c.root < 0 || c.root >= size()) {
        // A peer outside the clique (the call failed its checks): nothing can match it.
        p->rc = h20ErrorInvalidValue;
        p->message = c.poison;
        p->finished = true;
        joined.push_back(std::move(p));
        continue;
      }
      const bool isSend = c.func == Func::send;
      const std::pair<int, int> key =
          isSend ? std::pair{c.rank, c.root} : std::pair{c.root, c.rank};
      (isSend ? sends_ : recvs_)[key].push_back({std::move(c), p});
      joined.push_back(std::move(p));
      continue;
    }
    const std::uint64_t seq = nextSeq_[static_cast<std::size_t>(c.rank)]++;
    auto& p = pending_[seq];
    if (!p) p = std::make_shared<Pending>(size());
    const int rank = c.rank;
    p->calls[static_cast<std::size_t>(rank)] = std::move(c);
    ++p->filled;
    joined.push_back(p);
  }
  launchReady();
  matchPointToPoint();
  return joined;
}

void Clique::matchPointToPoint() {
  bool any = false;
  for (auto& [key, sends] : sends_) {
    auto rit = recvs_.find(key);
    if (rit == recvs_.end()) continue;
    auto& recvs = rit->second;
    while (!sends.empty() && !recvs.empty()) {
      P2p s = std::move(sends.front()), r = std::move(recvs.front());
      sends.pop_front();
      recvs.pop_front();
      any = true;
      std::string bad;
      if (!s.call.poison.empty())
        bad = fmt::format("h20cclSend: rank {}'s send to rank {} failed ({}); nothing was enqueued",
                          key.first, key.second, s.call.poison);
      else if (!r.call.poison.empty())
        bad = fmt::format(
            "h20cclRecv: rank {}'s receive from rank {} failed ({}); nothing was enqueued",
            key.second, key.first, r.call.poison);
      else if (s.call.count != r.call.count || s.call.type != r.call.type)
        bad = fmt::format(
            "the ranks disagree: rank {} sends {} elements of {} to rank {}, which receives {} "
            "elements of {}; nothing was enqueued",
            key.first, s.call.count, typeName(s.call.type), key.second, r.call.count,
            typeName(r.call.type));
      else
        for (const Call* c : {&s.call, &r.call})
          if (c->stream == h20StreamPerThread && c->thread != std::this_thread::get_id())
            bad = fmt::format(
                "{}: rank {} passed h20StreamPerThread, but the send and receive are enqueued by "
                "the thread whose call completed the pair; pass an explicit stream; nothing was "
                "enqueued",
                funcName(c->func), c->rank);
      h20Error_t rc = bad.empty() ? h20Success : h20ErrorInvalidValue;
      if (rc == h20Success) {
        try {
          enqueuePair(s.call, r.call);
        } catch (const Error& e) {
          rc = e.code();
          bad = e.message();
        }
      }
      for (auto* p : {s.done.get(), r.done.get()}) {
        p->rc = rc;
        p->message = bad;
        p->finished = true;
      }
    }
  }
  if (any) cv_.notify_all();
}

void Clique::enqueuePair(const Call& send, const Call& recv) {
  const int from = send.rank, to = recv.rank;
  const std::size_t bytes = send.count * elementSize(send.type);
  if (bytes == 0) return;
  DeviceGuard guard;
  auto checkRank = [&](h20Error_t rc, int r, const char* fn) {
    if (rc != h20Success)
      throw Error(
          rc, fmt::format("{} (rank {}, device {}): {}", r == from ? "h20cclSend" : "h20cclRecv", r,
                          device(r), h20GetLastErrorMessage()[0] ? h20GetLastErrorMessage() : fn));
  };
  // The send buffer is ready where the sender's stream has got to; the receiver pulls the data;
  // the sender's stream goes on once the receiver has read its buffer.
  guard.set(device(from));
  checkRank(h20EventRecord(stepEvent(from), send.stream), from, "h20EventRecord");
  guard.set(device(to));
  checkRank(h20StreamWaitEvent(recv.stream, stepEvent(from), 0), to, "h20StreamWaitEvent");
  if (from == to)
    checkRank(h20MemcpyAsync(recv.recv, send.send, bytes, h20MemcpyDeviceToDevice, recv.stream), to,
              "h20MemcpyAsync");
  else
    checkRank(
        h20MemcpyPeerAsync(recv.recv, device(to), send.send, device(from), bytes, recv.stream), to,
        "h20MemcpyPeerAsync");
  checkRank(h20EventRecord(stepEvent(to), recv.stream), to, "h20EventRecord");
  guard.set(device(from));
  checkRank(h20StreamWaitEvent(send.stream, stepEvent(to), 0), from, "h20StreamWaitEvent");
}

void Clique::wait(const std::shared_ptr<Pending>& p) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return p->finished; });
}

std::string Clique::disagreement(const Pending& p) const {
  const Call& first = *p.calls[0];
  const char* name = funcName(first.func);
  for (int r = 0; r < size(); ++r) {
    const Call& c = *p.calls[static_cast<std::size_t>(r)];
    if (!c.poison.empty())
      return fmt::format("{}: rank {}'s call of this collective failed ({}); nothing was enqueued",
                         funcName(c.func), r, c.poison);
  }
  for (int r = 1; r < size(); ++r) {
    const Call& c = *p.calls[static_cast<std::size_t>(r)];
    if (c.func != first.func)
      return fmt::format(
          "{}: the ranks disagree: rank 0 called {} but rank {} called {}; nothing was enqueued",
          name, name, r, funcName(c.func));
    if (c.count != first.count)
      return fmt::format(
          "{}: the ranks disagree: rank 0 has count {} but rank {} has count {}; nothing was "
          "enqueued",
          name, first.count, r, c.count);
    if (c.type != first.type)
      return fmt::format(
          "{}: the ranks disagree: rank 0 has datatype {} but rank {} has {}; nothing was enqueued",
          name, typeName(first.type), r, typeName(c.type));
    if (isReduction(first.func) && c.op != first.op)
      return fmt::format(
          "{}: the ranks disagree: rank 0 has op {} but rank {} has op {}; nothing was enqueued",
          name, static_cast<int>(first.op), r, static_cast<int>(c.op));
    if (hasRoot(first.func) && c.root != first.root)
      return fmt::format(
          "{}: the ranks disagree: rank 0 has root {} but rank {} has root {}; nothing was "
          "enqueued",
          name, first.root, r, c.root);
  }
  // h20StreamPerThread names the calling thread's stream, which only that thread can reach.
  for (int r = 0; r < size(); ++r) {
    const Call& c = *p.calls[static_cast<std::size_t>(r)];
    if (c.stream == h20StreamPerThread && c.thread != std::this_thread::get_id())
      return fmt::format(
          "{}: rank {} passed h20StreamPerThread, but the collective is enqueued by another "
          "thread (the one whose call completed it); pass an explicit stream when several "
          "threads issue a collective; nothing was enqueued",
          name, r);
  }
  return {};
}

void Clique::launchReady() {
  std::vector<std::shared_ptr<Pending>> batch;
  for (;;) {
    auto it = pending_.find(nextLaunch_);
    if (it == pending_.end() || it->second->filled < size()) break;
    batch.push_back(it->second);
    pending_.erase(it);
    ++nextLaunch_;
  }
  if (batch.empty()) return;
  // The collectives completed together (typically one group's) are all checked before any is
  // enqueued, so a group with one bad collective enqueues nothing.
  std::string bad;
  std::size_t badIndex = 0;
  for (std::size_t i = 0; i < batch.size() && bad.empty(); ++i) {
    bad = disagreement(*batch[i]);
    badIndex = i;
  }
  if (!bad.empty()) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i]->rc = h20ErrorInvalidValue;
      batch[i]->message =
          i == badIndex
              ? bad
              : fmt::format("{}: not enqueued because a collective issued with it failed: {}",
                            funcName(batch[i]->calls[0]->func), bad);
      batch[i]->finished = true;
    }
    cv_.notify_all();
    return;
  }
  std::string failure;
  h20Error_t failureCode = h20Success;
  for (auto& p : batch) {
    const Call& first = *p->calls[0];
    if (failureCode != h20Success) {
      p->rc = failureCode;
      p->message = fmt::format("{}: not enqueued because an earlier collective failed: {}",
                               funcName(first.func), failure);
    } else {
      std::vector<Call> calls;
      calls.reserve(p->calls.size());
      for (auto& c : p->calls)
        calls.push_back(*c);
      try {
        enqueueCollective(*this, calls, algorithm(first.func, first.count, first.type));
      } catch (const Error& e) {
        p->rc = failureCode = e.code();
        p->message = failure = e.message();
      } catch (const std::exception& e) {
        p->rc = failureCode = h20ErrorUnknown;
        p->message = failure = fmt::format("{}: {}", funcName(first.func), e.what());
      }
    }
    p->finished = true;
  }
  cv_.notify_all();
}

void Clique::destroyRank(int rank) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranks_[static_cast<std::size_t>(rank)].alive = false;
    if (broken_.empty())
      broken_ = fmt::format(
          "rank {} (device {}) of this communicator's clique was destroyed; the clique can run no "
          "more collectives",
          rank, device(rank));
    for (auto& [seq, p] : pending_) {
      const char* name = "h20ccl";
      for (const auto& c : p->calls)
        if (c) name = funcName(c->func);
      p->rc = h20ErrorInvalidValue;
      p->message = fmt::format("{}: {}", name, broken_);
      p->finished = true;
    }
    pending_.clear();
    // Sends and receives waiting for the destroyed rank fail; the others still match.
    for (auto* queues : {&sends_, &recvs_})
      for (auto it = queues->begin(); it != queues->end();) {
        if (it->first.first != rank && it->first.second != rank) {
          ++it;
          continue;
        }
        for (auto& op : it->second) {
          op.done->rc = h20ErrorInvalidValue;
          op.done->message = fmt::format("{}: {}", funcName(op.call.func), broken_);
          op.done->finished = true;
        }
        it = queues->erase(it);
      }
    cv_.notify_all();
  }
  releaseEvents(ranks_[static_cast<std::size_t>(rank)]);
}

}  // namespace h20::ccl
