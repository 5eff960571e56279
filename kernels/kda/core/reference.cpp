// reference.cpp - the fp64 per-token KDA recurrence, the oracle of the tests.
//
// Owns nothing but arithmetic: it follows the semantics of include/h20/kda.h literally, one token
// at a time, in double precision, with no blocking, SIMD or reordering, so that it can be read
// against the specification (and against FlashKDA's torch reference, whose conventions it
// shares: L2 norm with eps inside the root, sigmoid(beta), state [V, K]).
#include <cmath>
#include <vector>

#include "kda_core.hpp"

namespace h20::kda {

void referenceF64(const Problem& p, const std::vector<std::int64_t>& cuSeqlens,
                  std::vector<double>* out, std::vector<double>* finalState) {
  const int H = p.numHeads, HV = p.numValueHeads, K = p.headDimK, V = p.headDimV;
  const int N = static_cast<int>(cuSeqlens.size()) - 1;
  const std::int64_t T = cuSeqlens.back();
  out->assign(std::size_t(T) * HV * V, 0.0);
  finalState->assign(std::size_t(N) * HV * V * K, 0.0);
  std::vector<double> S(std::size_t(V) * K), q(K), k(K), alpha(K);
  for (int n = 0; n < N; ++n) {
    for (int hv = 0; hv < HV; ++hv) {
      const int hq = hv / (HV / H);
      const std::size_t sBase = (std::size_t(n) * HV + hv) * V * K;
      for (std::size_t i = 0; i < S.size(); ++i) {
        S[i] =
            p.initialState != nullptr ? loadElement(p.initialState, p.stateType, sBase + i) : 0.0;
      }
      const double expALog = std::exp(double(p.aLog[hv]));
      for (std::int64_t t = cuSeqlens[n]; t < cuSeqlens[n + 1]; ++t) {
        const std::size_t qk = (std::size_t(t) * H + hq) * K;
        const std::size_t tv = std::size_t(t) * HV + hv;
        double qq = 0, kk = 0;
        for (int c = 0; c < K; ++c) {
          q[c] = loadElement(p.q, p.io, qk + c);
          k[c] = loadElement(p.k, p.io, qk + c);
          qq += q[c] * q[c];
          kk += k[c] * k[c];
        }
        const double qs = 1.0 / std::sqrt(qq + 1e-6), ks = 1.0 / std::sqrt(kk + 1e-6);
        for (int c = 0; c < K; ++c) {
          q[c] *= qs;
          k[c] *= ks;
          double z = loadElement(p.g, p.io, tv * K + c);
          if (p.dtBias != nullptr) z += p.dtBias[std::size_t(hv) * K + c];
          double a;
          if (p.gate == Gate::kLowerBound) {
            a = double(p.lowerBound) / (1.0 + std::exp(-expALog * z));
          } else {
            const double softplus = z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
            a = -expALog * softplus;
          }
          alpha[c] = std::exp(a);
        }
        const double b = 1.0 / (1.0 + std::exp(-double(loadElement(p.beta, p.io, tv))));
        for (int r = 0; r < V; ++r) {
          double* row = &S[std::size_t(r) * K];
          double sk = 0;
          for (int c = 0; c < K; ++c) {
            row[c] *= alpha[c];
            sk += row[c] * k[c];
          }
          const double d = b * (loadElement(p.v, p.io, tv * V + r) - sk);
          double o = 0;
          for (int c = 0; c < K; ++c) {
            row[c] += d * k[c];
            o += row[c] * q[c];
          }
          (*out)[tv * V + r] = double(p.scale) * o;
        }
      }
      for (std::size_t i = 0; i < S.size(); ++i)
        (*finalState)[sBase + i] = S[i];
    }
  }
}

}  // namespace h20::kda
