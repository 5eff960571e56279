// concurrency_work.hpp - workloads that drive the C API from many host threads at once, shared by
// the quick concurrency tests (concurrency_test.cpp, label unit) and the bounded stress tests
// (stress_test.cpp, label slow) which run the same workloads with more iterations. Each workload
// verifies the values it computed and returns the failures it saw (empty means correct).
#pragma once

#include "h20_test.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace h20test {

// Thread-safe list of failures (the first few are kept with their messages).
class Failures {
 public:
  void Add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    if (list_.size() < 10) list_.push_back(what);
  }
  // Records a failed h20 call with the calling thread's message.
  bool Check(h20Error_t rc, const char* call) {
    if (rc == h20Success) return true;
    Add(std::string(call) + " -> " + h20GetErrorName(rc) + ": " + h20GetLastErrorMessage());
    return false;
  }
  int Count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::string Describe() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s = std::to_string(count_) + " failures";
    for (const auto& f : list_)
      s += "\n  " + f;
    return s;
  }

 private:
  mutable std::mutex mu_;
  int count_ = 0;
  std::vector<std::string> list_;
};

#define H20_WORK_CHECK(f, call) (f).Check((call), #call)

template <class Fn>
void RunThreads(int threads, Fn fn) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(fn, t);
  for (auto& th : pool)
    th.join();
}

// Each thread, on device t % count, with its own stream: allocate, fill, run two kernels, copy
// back, verify and free, `iters` times.
inline void PerThreadPipelines(int threads, int iters, Failures& f) {
  const int devices = std::max(1, DeviceCount());
  RunThreads(threads, [&](int t) {
    if (!H20_WORK_CHECK(f, h20SetDevice(t % devices))) return;
    h20Stream_t s = nullptr;
    const unsigned flags = (t % 2) ? h20StreamNonBlocking : h20StreamDefault;
    if (!H20_WORK_CHECK(f, h20StreamCreateWithFlags(&s, flags))) return;
    std::vector<int> host;
    for (int i = 0; i < iters; ++i) {
      const size_t count = 256 + static_cast<size_t>((i * 977 + t * 131) % 8000);
      int* d = nullptr;
      if (!H20_WORK_CHECK(f, h20Malloc(reinterpret_cast<void**>(&d), count * sizeof(int)))) break;
      host.assign(count, -1);
      H20_WORK_CHECK(f, h20MemsetAsync(d, 0, count * sizeof(int), s));
      H20_WORK_CHECK(f, LaunchAdd(d, count, t + 1, s));
      H20_WORK_CHECK(f, LaunchAdd(d, count, i % 7, s));
      H20_WORK_CHECK(f,
                     h20MemcpyAsync(host.data(), d, count * sizeof(int), h20MemcpyDeviceToHost, s));
      H20_WORK_CHECK(f, h20StreamSynchronize(s));
      const int want = t + 1 + i % 7;
      if (!std::all_of(host.begin(), host.end(), [&](int v) { return v == want; })) {
        f.Add("thread " + std::to_string(t) + " iteration " + std::to_string(i) + ": wrong values");
      }
      H20_WORK_CHECK(f, h20Free(d));
    }
    H20_WORK_CHECK(f, h20StreamDestroy(s));
  });
}

// All threads launch `perThread` increments onto one shared stream and one buffer; the stream
// serialises them, so the result is exact.
inline void SharedStreamLaunches(int threads, int perThread, Failures& f) {
  constexpr size_t kCount = 512;
  h20Stream_t s = nullptr;
  int* d = nullptr;
  if (!H20_WORK_CHECK(f, h20StreamCreate(&s))) return;
  if (!H20_WORK_CHECK(f, h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)))) return;
  H20_WORK_CHECK(f, h20MemsetAsync(d, 0, kCount * sizeof(int), s));
  H20_WORK_CHECK(f, h20StreamSynchronize(s));
  RunThreads(threads, [&](int) {
    for (int i = 0; i < perThread; ++i)
      H20_WORK_CHECK(f, LaunchAdd(d, kCount, 1, s));
  });
  H20_WORK_CHECK(f, h20StreamSynchronize(s));
  std::vector<int> host(kCount, 0);
  H20_WORK_CHECK(f, h20Memcpy(host.data(), d, kCount * sizeof(int), h20MemcpyDeviceToHost));
  const int want = threads * perThread;
  if (!std::all_of(host.begin(), host.end(), [&](int v) { return v == want; })) {
    f.Add("shared stream: got " + std::to_string(host[0]) + ", want " + std::to_string(want));
  }
  H20_WORK_CHECK(f, h20Free(d));
  H20_WORK_CHECK(f, h20StreamDestroy(s));
}

// Threads allocate and free blocks of varying size, each tagged with its owner; a block that
// another thread's allocation overlapped would lose its tag.
inline void AllocFreeChurn(int threads, int iters, Failures& f) {
  RunThreads(threads, [&](int t) {
    struct Block {
      void* p;
      size_t n;
      unsigned char tag;
    };
    std::vector<Block> live;
    std::vector<unsigned char> buf;
    for (int i = 0; i < iters; ++i) {
      const size_t n = 64 + static_cast<size_t>((i * 7919 + t * 104729) % 20000);
      void* p = nullptr;
      if (!H20_WORK_CHECK(f, h20Malloc(&p, n))) return;
      const auto tag = static_cast<unsigned char>(t * 16 + i % 16);
      buf.assign(n, tag);
      H20_WORK_CHECK(f, h20Memcpy(p, buf.data(), n, h20MemcpyHostToDevice));
      live.push_back({p, n, tag});
      if (live.size() > 8 || i == iters - 1) {
        while (!live.empty()) {
          const Block b = live.back();
          live.pop_back();
          buf.assign(b.n, 0);
          H20_WORK_CHECK(f, h20Memcpy(buf.data(), b.p, b.n, h20MemcpyDeviceToHost));
          if (!std::all_of(buf.begin(), buf.end(), [&](unsigned char c) { return c == b.tag; }))
            f.Add("thread " + std::to_string(t) + ": a live block was overwritten");
          H20_WORK_CHECK(f, h20Free(b.p));
        }
      }
    }
  });
}

// Threads create, use and destroy streams and events.
inline void HandleChurn(int threads, int iters, Failures& f) {
  const int devices = std::max(1, DeviceCount());
  RunThreads(threads, [&](int t) {
    if (!H20_WORK_CHECK(f, h20SetDevice((t + 1) % devices))) return;
    std::atomic<int> ran{0};
    for (int i = 0; i < iters; ++i) {
      h20Stream_t s = nullptr;
      h20Event_t e = nullptr;
      if (!H20_WORK_CHECK(f, h20StreamCreateWithPriority(&s, 0, -(i % 3)))) return;
      if (!H20_WORK_CHECK(f, h20EventCreateWithFlags(&e, (i % 2) ? h20EventDisableTiming : 0)))
        return;
      H20_WORK_CHECK(f, h20LaunchHostFunc(s, SetFlagHostFn, &ran));
      H20_WORK_CHECK(f, h20EventRecord(e, s));
      H20_WORK_CHECK(f, h20StreamWaitEvent(nullptr, e, 0));
      if (i % 2 == 0) {
        H20_WORK_CHECK(f, h20EventSynchronize(e));
      }
      H20_WORK_CHECK(f, h20EventDestroy(e));
      H20_WORK_CHECK(f, h20StreamDestroy(s));
    }
    H20_WORK_CHECK(f, h20DeviceSynchronize());
    if (ran.load() != 1 && iters > 0) f.Add("host functions did not run");
  });
}

// Threads provoke distinct errors and check that each sees only its own.
inline void LastErrorsUnderLoad(int threads, int iters, Failures& f) {
  RunThreads(threads, [&](int t) {
    const int bad = -1000 - t;
    const std::string mine = std::to_string(bad);
    for (int i = 0; i < iters; ++i) {
      if (h20SetDevice(bad) != h20ErrorInvalidDevice) f.Add("h20SetDevice did not fail");
      int count = 0;
      if (h20GetDeviceCount(&count) != h20Success) f.Add("h20GetDeviceCount failed");
      if (std::string(h20GetLastErrorMessage()).find(mine) == std::string::npos)
        f.Add("thread " + std::to_string(t) + " saw message '" + h20GetLastErrorMessage() + "'");
      if (h20PeekAtLastError() != h20ErrorInvalidDevice) f.Add("peek lost the error");
      if (h20GetLastError() != h20ErrorInvalidDevice) f.Add("get lost the error");
      if (h20GetLastError() != h20Success) f.Add("get did not reset");
    }
  });
}

// Threads use the legacy default stream of device 0 concurrently, each with its own buffer.
inline void LegacyStreamFromManyThreads(int threads, int iters, Failures& f) {
  RunThreads(threads, [&](int t) {
    constexpr size_t kCount = 1024;
    int* d = nullptr;
    if (!H20_WORK_CHECK(f, h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)))) return;
    H20_WORK_CHECK(f, h20Memset(d, 0, kCount * sizeof(int)));
    std::vector<int> host(kCount);
    for (int i = 0; i < iters; ++i) {
      H20_WORK_CHECK(f, LaunchAdd(d, kCount, 1, nullptr));
      H20_WORK_CHECK(f, h20StreamSynchronize(nullptr));
    }
    H20_WORK_CHECK(f, h20Memcpy(host.data(), d, kCount * sizeof(int), h20MemcpyDeviceToHost));
    if (!std::all_of(host.begin(), host.end(), [&](int v) { return v == iters; }))
      f.Add("thread " + std::to_string(t) + ": legacy-stream increments lost");
    H20_WORK_CHECK(f, h20Free(d));
  });
}

// Producer/consumer across threads and streams: thread 2k records an event after writing a
// buffer, thread 2k+1 makes its stream wait for that event and reads the buffer.
inline void CrossThreadEvents(int pairs, int iters, Failures& f) {
  const int devices = std::max(1, DeviceCount());
  RunThreads(pairs, [&](int t) {
    const int devP = t % devices, devC = (t + 1) % devices;
    constexpr size_t kCount = 256;
    h20Stream_t sp = nullptr, sc = nullptr;
    h20Event_t e = nullptr;
    int* d = nullptr;
    if (!H20_WORK_CHECK(f, h20SetDevice(devP))) return;
    H20_WORK_CHECK(f, h20StreamCreateWithFlags(&sp, h20StreamNonBlocking));
    H20_WORK_CHECK(f, h20EventCreateWithFlags(&e, h20EventDisableTiming));
    H20_WORK_CHECK(f, h20Malloc(reinterpret_cast<void**>(&d), kCount * sizeof(int)));
    H20_WORK_CHECK(f, h20MemsetAsync(d, 0, kCount * sizeof(int), sp));
    H20_WORK_CHECK(f, h20SetDevice(devC));
    H20_WORK_CHECK(f, h20StreamCreateWithFlags(&sc, h20StreamNonBlocking));
    std::vector<int> host(kCount);
    for (int i = 0; i < iters; ++i) {
      std::thread producer([&] {
        h20SetDevice(devP);
        H20_WORK_CHECK(f, LaunchAdd(d, kCount, 1, sp));
        H20_WORK_CHECK(f, h20EventRecord(e, sp));
      });
      producer.join();
      // The consumer (this thread, another device) orders its read after the producer's write.
      H20_WORK_CHECK(f, h20StreamWaitEvent(sc, e, 0));
      H20_WORK_CHECK(
          f, h20MemcpyAsync(host.data(), d, kCount * sizeof(int), h20MemcpyDeviceToHost, sc));
      H20_WORK_CHECK(f, h20StreamSynchronize(sc));
      if (host[0] != i + 1 || host[kCount - 1] != i + 1) {
        f.Add("pair " + std::to_string(t) + " iteration " + std::to_string(i) + ": read " +
              std::to_string(host[0]));
      }
    }
    H20_WORK_CHECK(f, h20StreamDestroy(sc));
    H20_WORK_CHECK(f, h20SetDevice(devP));
    H20_WORK_CHECK(f, h20StreamSynchronize(sp));
    H20_WORK_CHECK(f, h20Free(d));
    H20_WORK_CHECK(f, h20EventDestroy(e));
    H20_WORK_CHECK(f, h20StreamDestroy(sp));
  });
}

}  // namespace h20test
