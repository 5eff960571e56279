// linear.cpp - the projections on oneDNN's matmul (see linear.hpp).
#include "linear.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#ifdef H20_KDA_HAVE_DNNL
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace h20::kda {

void referenceLinearF64(const LinearProblem& p, std::vector<double>* out) {
  const std::size_t M = std::size_t(p.rows), N = std::size_t(p.outFeatures),
                    K = std::size_t(p.inFeatures);
  out->assign(M * N, 0.0);
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t n = 0; n < N; ++n) {
      double acc = p.bias != nullptr ? loadElement(p.bias, p.io, n) : 0.0;
      for (std::size_t k = 0; k < K; ++k)
        acc += double(loadElement(p.x, p.io, m * std::size_t(p.xStride) + k)) *
               loadElement(p.weight, p.io, n * K + k);
      (*out)[m * N + n] = acc;
    }
}

#ifndef H20_KDA_HAVE_DNNL

bool linearAvailable() {
  return false;
}
std::string linearUnavailableReason() {
  return "this libh20kernels was built without oneDNN (install libdnnl-dev and rebuild)";
}
std::string runLinearTile(const LinearProblem&, std::int64_t, std::int64_t, int, int) {
  return linearUnavailableReason();
}

#else

namespace {

// A tile's shape and strides, and what the primitive computes.
using TileKey = std::tuple<std::int64_t, int, int, std::int64_t, std::int64_t, int, bool>;

// A primitive and the scratchpad it needs. Primitives are made with a user scratchpad: with the
// library's own (the default) the same primitive may not run on two threads at once.
struct Tile {
  dnnl::matmul prim;
  dnnl::memory::desc scratchpad;
};

struct Primitives {
  std::mutex mu;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::map<TileKey, std::shared_ptr<Tile> > cache;
};

Primitives& primitives() {
  static auto* p = new Primitives;  // outlives every worker thread
  return *p;
}

dnnl::memory::data_type dnnlType(DType t) {
  return t == DType::kF32 ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16;
}

}  // namespace

bool linearAvailable() {
  return true;
}
std::string linearUnavailableReason() {
  return {};
}

std::string runLinearTile(const LinearProblem& p, std::int64_t r0, std::int64_t r1, int c0,
                          int c1) {
  using dnnl::memory;
  try {
    const memory::dim mb = r1 - r0, nb = c1 - c0, K = p.inFeatures;
    const memory::data_type t = dnnlType(p.io);
    // x tile [mb, K] (rows xStride apart), weights [K, nb] read from W [N, K] (column j of the
    // tile is row c0 + j of W), out tile [mb, nb] (rows outStride apart), bias [1, nb].
    const memory::desc src({mb, K}, t, memory::dims{p.xStride, 1});
    const memory::desc wei({K, nb}, t, memory::dims{1, K});
    const memory::desc dst({mb, nb}, t, memory::dims{p.outStride, 1});
    const memory::desc bia({1, nb}, t, memory::dims{nb, 1});
    Primitives& pr = primitives();
    std::shared_ptr<Tile> tile;
    {
      const TileKey key{mb, int(nb), int(K), p.xStride, p.outStride, int(p.io), p.bias != nullptr};
      std::lock_guard<std::mutex> lock(pr.mu);
      auto& slot = pr.cache[key];
      if (!slot) {
        const dnnl::matmul::desc d = p.bias != nullptr ? dnnl::matmul::desc(src, wei, bia, dst)
                                                       : dnnl::matmul::desc(src, wei, dst);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        const dnnl::matmul::primitive_desc pd(d, attr, pr.engine);
        slot = std::make_shared<Tile>(Tile{dnnl::matmul(pd), pd.scratchpad_desc()});
      }
      tile = slot;
    }
    // oneDNN runs its primitives on omp_get_max_threads() threads: one, the calling worker.
    omp_set_num_threads(1);
    thread_local dnnl::stream stream(primitives().engine);
    const std::size_t eb = dtypeBytes(p.io);
    auto* x = static_cast<char*>(const_cast<void*>(p.x)) + std::size_t(r0 * p.xStride) * eb;
    auto* w =
        static_cast<char*>(const_cast<void*>(p.weight)) + std::size_t(c0) * std::size_t(K) * eb;
    auto* o = static_cast<char*>(p.out) + (std::size_t(r0 * p.outStride) + std::size_t(c0)) * eb;
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, memory(src, pr.engine, x)},
                                            {DNNL_ARG_WEIGHTS, memory(wei, pr.engine, w)},
                                            {DNNL_ARG_DST, memory(dst, pr.engine, o)}};
    // This thread's scratchpad, grown to the largest tile it has run.
    thread_local std::vector<char> pad;
    const std::size_t padBytes = tile->scratchpad.get_size();
    if (pad.size() < padBytes) pad.resize(padBytes);
    if (padBytes > 0)
      args.emplace(DNNL_ARG_SCRATCHPAD, memory(tile->scratchpad, pr.engine, pad.data()));
    if (p.bias != nullptr) {
      auto* b = static_cast<char*>(const_cast<void*>(p.bias)) + std::size_t(c0) * eb;
      args.emplace(DNNL_ARG_BIAS, memory(bia, pr.engine, b));
    }
    tile->prim.execute(stream, args);
    stream.wait();
    return {};
  } catch (const dnnl::error& e) {
    return fmt::format("oneDNN: {} (status {})", e.what(), int(e.status));
  } catch (const std::exception& e) {
    return e.what();
  }
}

#endif

}  // namespace h20::kda
