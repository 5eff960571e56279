/*
 * kda - Kimi Delta Attention on the H20: prefill a batch of prompts, then decode a few tokens.
 *
 * What a serving loop does with the kernel library (libh20kernels, include/h20/kda.h):
 *  1. allocate device tensors and fill them (bf16 activations, fp32 gate parameters and states);
 *  2. run h20kdaPrefill over two prompts of different lengths packed into one varlen batch
 *     (cuSeqlens), on a stream, and copy each prompt's final state into its slot of a state pool;
 *  3. run h20kdaDecode a few times: one new token per sequence, updating its pool slot in place;
 *  4. check every output and the final states against a plain double-precision implementation of
 *     the recurrence written out below, and print the time of each step (events on the stream).
 * Prints PASS if everything agrees to bf16 accuracy, FAIL (and exits non-zero) otherwise.
 */
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sample_check.h"

/* h20kda* calls keep their detailed message apart from the runtime's. */
#define CHECK_KDA(call)                                                         \
  do {                                                                          \
    h20Error_t kda_err_ = (call);                                               \
    if (kda_err_ != h20Success) {                                               \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call, \
              h20GetErrorName(kda_err_), h20kdaGetLastErrorMessage());          \
      printf("FAIL\n");                                                         \
      exit(EXIT_FAILURE);                                                       \
    }                                                                           \
  } while (0)

enum { N = 2, H = 2, HV = 4, K = 64, V = 64, DECODE_STEPS = 3, POOL_SLOTS = 4 };
static const int64_t kPromptLen[N] = {100, 37};
static const int32_t kSlot[N] = {3, 1}; /* pool slot of each sequence */

/* bf16 round to nearest even, and back. */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint64_t rng_state = 42;
static float uniform(float lo, float hi) { /* deterministic, so runs are comparable */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (float)(rng_state >> 40) / 16777216.0f;
}
static void fill_bf16(uint16_t* x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; ++i)
    x[i] = to_bf16(uniform(lo, hi));
}

/* ---- the reference: KDA's per-token recurrence in double precision ------------------------ */

typedef struct Token {                  /* one token of one sequence, as bf16 host arrays */
  const uint16_t *q, *k, *v, *g, *beta; /* [H*K], [H*K], [HV*V], [HV*K], [HV] */
} Token;

/* Advances the states S[HV][V][K] by one token and writes out[HV][V]. */
static void reference_step(double* S, const Token* t, const float* aLog, const float* dtBias,
                           float lowerBound, float scale, double* out) {
  for (int hv = 0; hv < HV; ++hv) {
    const int hq = hv / (HV / H);
    double q[K], k[K], alpha[K], qq = 0, kk = 0;
    for (int c = 0; c < K; ++c) {
      q[c] = from_bf16(t->q[hq * K + c]);
      k[c] = from_bf16(t->k[hq * K + c]);
      qq += q[c] * q[c];
      kk += k[c] * k[c];
    }
    for (int c = 0; c < K; ++c) {
      q[c] /= sqrt(qq + 1e-6);
      k[c] /= sqrt(kk + 1e-6);
      const double z = from_bf16(t->g[hv * K + c]) + dtBias[hv * K + c];
      const double a = lowerBound / (1.0 + exp(-exp(aLog[hv]) * z)); /* lower-bound gate */
      alpha[c] = exp(a);
    }
    const double b = 1.0 / (1.0 + exp(-(double)from_bf16(t->beta[hv])));
    for (int r = 0; r < V; ++r) {
      double* row = S + ((size_t)hv * V + r) * K;
      double sk = 0, o = 0;
      for (int c = 0; c < K; ++c) {
        row[c] *= alpha[c];
        sk += row[c] * k[c];
      }
      const double d = b * (from_bf16(t->v[hv * V + r]) - sk);
      for (int c = 0; c < K; ++c) {
        row[c] += d * k[c];
        o += row[c] * q[c];
      }
      out[hv * V + r] = scale * o;
    }
  }
}

/* Accumulates squared error and squared reference for a relative RMSE. */
typedef struct Error {
  double err, norm;
} Error;
static void accumulate(Error* e, double x, double ref) {
  e->err += (x - ref) * (x - ref);
  e->norm += ref * ref;
}
static double rel_rmse(const Error* e) {
  return sqrt(e->err / (e->norm > 0 ? e->norm : 1));
}

int main(void) {
  const int64_t T = kPromptLen[0] + kPromptLen[1];
  const int64_t cu[N + 1] = {0, kPromptLen[0], kPromptLen[0] + kPromptLen[1]};
  const float scale = 1.0f / sqrtf((float)K), lowerBound = -5.0f;
  const size_t stateElems = (size_t)HV * V * K; /* one sequence's state */

  /* Host data: the prompts, then DECODE_STEPS more tokens per sequence. */
  uint16_t* q = malloc(sizeof(uint16_t) * T * H * K);
  uint16_t* k = malloc(sizeof(uint16_t) * T * H * K);
  uint16_t* v = malloc(sizeof(uint16_t) * T * HV * V);
  uint16_t* g = malloc(sizeof(uint16_t) * T * HV * K);
  uint16_t* beta = malloc(sizeof(uint16_t) * T * HV);
  uint16_t* dq = malloc(sizeof(uint16_t) * DECODE_STEPS * N * H * K);
  uint16_t* dk = malloc(sizeof(uint16_t) * DECODE_STEPS * N * H * K);
  uint16_t* dv = malloc(sizeof(uint16_t) * DECODE_STEPS * N * HV * V);
  uint16_t* dg = malloc(sizeof(uint16_t) * DECODE_STEPS * N * HV * K);
  uint16_t* dbeta = malloc(sizeof(uint16_t) * DECODE_STEPS * N * HV);
  uint16_t* out = malloc(sizeof(uint16_t) * T * HV * V);
  uint16_t* dout = malloc(sizeof(uint16_t) * DECODE_STEPS * N * HV * V);
  float* pool = malloc(sizeof(float) * POOL_SLOTS * stateElems);
  double* S = malloc(sizeof(double) * N * stateElems);
  float aLog[HV], dtBias[HV * K];
  if (!q || !k || !v || !g || !beta || !dq || !dk || !dv || !dg || !dbeta || !out || !dout ||
      !pool || !S) {
    fprintf(stderr, "host allocation failed\n");
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  fill_bf16(q, (size_t)T * H * K, -1, 1);
  fill_bf16(k, (size_t)T * H * K, -1, 1);
  fill_bf16(v, (size_t)T * HV * V, -1, 1);
  fill_bf16(g, (size_t)T * HV * K, -3, 3);
  fill_bf16(beta, (size_t)T * HV, -2, 2);
  fill_bf16(dq, (size_t)DECODE_STEPS * N * H * K, -1, 1);
  fill_bf16(dk, (size_t)DECODE_STEPS * N * H * K, -1, 1);
  fill_bf16(dv, (size_t)DECODE_STEPS * N * HV * V, -1, 1);
  fill_bf16(dg, (size_t)DECODE_STEPS * N * HV * K, -3, 3);
  fill_bf16(dbeta, (size_t)DECODE_STEPS * N * HV, -2, 2);
  for (int h = 0; h < HV; ++h)
    aLog[h] = uniform(-1, 1);
  for (int i = 0; i < HV * K; ++i)
    dtBias[i] = uniform(-0.1f, 0.1f);

  /* Device tensors. */
  CHECK(h20SetDevice(0));
  h20Stream_t stream;
  CHECK(h20StreamCreate(&stream));
  void *d_q, *d_k, *d_v, *d_g, *d_beta, *d_out, *d_aLog, *d_dtBias, *d_cu, *d_slots;
  void *d_prefillState, *d_pool; /* [N] states after the prompts, [POOL_SLOTS] serving pool */
  void *d_tq, *d_tk, *d_tv, *d_tg, *d_tbeta, *d_tout; /* one decode step's tokens */
  CHECK(h20Malloc(&d_q, sizeof(uint16_t) * T * H * K));
  CHECK(h20Malloc(&d_k, sizeof(uint16_t) * T * H * K));
  CHECK(h20Malloc(&d_v, sizeof(uint16_t) * T * HV * V));
  CHECK(h20Malloc(&d_g, sizeof(uint16_t) * T * HV * K));
  CHECK(h20Malloc(&d_beta, sizeof(uint16_t) * T * HV));
  CHECK(h20Malloc(&d_out, sizeof(uint16_t) * T * HV * V));
  CHECK(h20Malloc(&d_aLog, sizeof aLog));
  CHECK(h20Malloc(&d_dtBias, sizeof dtBias));
  CHECK(h20Malloc(&d_prefillState, sizeof(float) * N * stateElems));
  CHECK(h20Malloc(&d_pool, sizeof(float) * POOL_SLOTS * stateElems));
  CHECK(h20Malloc(&d_cu, sizeof cu));
  CHECK(h20Malloc(&d_slots, sizeof kSlot));
  CHECK(h20Malloc(&d_tq, sizeof(uint16_t) * N * H * K));
  CHECK(h20Malloc(&d_tk, sizeof(uint16_t) * N * H * K));
  CHECK(h20Malloc(&d_tv, sizeof(uint16_t) * N * HV * V));
  CHECK(h20Malloc(&d_tg, sizeof(uint16_t) * N * HV * K));
  CHECK(h20Malloc(&d_tbeta, sizeof(uint16_t) * N * HV));
  CHECK(h20Malloc(&d_tout, sizeof(uint16_t) * N * HV * V));
  CHECK(h20MemcpyAsync(d_q, q, sizeof(uint16_t) * T * H * K, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_k, k, sizeof(uint16_t) * T * H * K, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_v, v, sizeof(uint16_t) * T * HV * V, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_g, g, sizeof(uint16_t) * T * HV * K, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_beta, beta, sizeof(uint16_t) * T * HV, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_aLog, aLog, sizeof aLog, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_dtBias, dtBias, sizeof dtBias, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_cu, cu, sizeof cu, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(d_slots, kSlot, sizeof kSlot, h20MemcpyHostToDevice, stream));
  h20Event_t prefillStart, prefillStop, decodeStart, decodeStop;
  CHECK(h20EventCreate(&prefillStart));
  CHECK(h20EventCreate(&prefillStop));
  CHECK(h20EventCreate(&decodeStart));
  CHECK(h20EventCreate(&decodeStop));

  /* 1. Prefill both prompts at once. */
  h20kdaPrefillArgs p;
  memset(&p, 0, sizeof p);
  p.structSize = sizeof p;
  p.batch = 1; /* varlen: one row of T packed tokens */
  p.seqLen = (int)T;
  p.numHeads = H;
  p.numValueHeads = HV;
  p.headDimK = K;
  p.headDimV = V;
  p.dtype = H20_R_16BF;
  p.q = d_q;
  p.k = d_k;
  p.v = d_v;
  p.g = d_g;
  p.beta = d_beta;
  p.out = d_out;
  p.scale = scale;
  p.gateMode = H20_KDA_GATE_LOWER_BOUND;
  p.A_log = (const float*)d_aLog;
  p.dtBias = (const float*)d_dtBias;
  p.lowerBound = lowerBound;
  p.initialState = NULL;         /* zero states */
  p.finalState = d_prefillState; /* [N, HV, V, K] */
  p.stateDtype = H20_R_32F;
  p.cuSeqlens = (const int64_t*)d_cu;
  p.numSeqs = N;
  CHECK(h20EventRecord(prefillStart, stream));
  CHECK_KDA(h20kdaPrefill(&p, stream));
  CHECK(h20EventRecord(prefillStop, stream));
  CHECK(h20MemcpyAsync(out, d_out, sizeof(uint16_t) * T * HV * V, h20MemcpyDeviceToHost, stream));
  /* Each sequence's state moves to its slot of the pool, in stream order after the prefill. */
  for (int n = 0; n < N; ++n) {
    CHECK(h20MemcpyAsync((float*)d_pool + kSlot[n] * stateElems,
                         (const float*)d_prefillState + n * stateElems, sizeof(float) * stateElems,
                         h20MemcpyDeviceToDevice, stream));
  }
  CHECK(h20StreamSynchronize(stream));
  float prefillMs = 0;
  CHECK(h20EventElapsedTime(&prefillMs, prefillStart, prefillStop));

  /* 2. Decode DECODE_STEPS tokens per sequence, states updated in place in the pool. */
  h20kdaDecodeArgs d;
  memset(&d, 0, sizeof d);
  d.structSize = sizeof d;
  d.numSeqs = N;
  d.numHeads = H;
  d.numValueHeads = HV;
  d.headDimK = K;
  d.headDimV = V;
  d.dtype = H20_R_16BF;
  d.q = d_tq;
  d.k = d_tk;
  d.v = d_tv;
  d.g = d_tg;
  d.beta = d_tbeta;
  d.out = d_tout;
  d.scale = scale;
  d.gateMode = H20_KDA_GATE_LOWER_BOUND;
  d.A_log = (const float*)d_aLog;
  d.dtBias = (const float*)d_dtBias;
  d.lowerBound = lowerBound;
  d.state = d_pool;
  d.stateDtype = H20_R_32F;
  d.stateSlots = (const int32_t*)d_slots;
  d.numStateSlots = POOL_SLOTS;
  float decodeMs = 0;
  for (int s = 0; s < DECODE_STEPS; ++s) {
    CHECK(h20MemcpyAsync(d_tq, dq + (size_t)s * N * H * K, sizeof(uint16_t) * N * H * K,
                         h20MemcpyHostToDevice, stream));
    CHECK(h20MemcpyAsync(d_tk, dk + (size_t)s * N * H * K, sizeof(uint16_t) * N * H * K,
                         h20MemcpyHostToDevice, stream));
    CHECK(h20MemcpyAsync(d_tv, dv + (size_t)s * N * HV * V, sizeof(uint16_t) * N * HV * V,
                         h20MemcpyHostToDevice, stream));
    CHECK(h20MemcpyAsync(d_tg, dg + (size_t)s * N * HV * K, sizeof(uint16_t) * N * HV * K,
                         h20MemcpyHostToDevice, stream));
    CHECK(h20MemcpyAsync(d_tbeta, dbeta + (size_t)s * N * HV, sizeof(uint16_t) * N * HV,
                         h20MemcpyHostToDevice, stream));
    CHECK(h20EventRecord(decodeStart, stream));
    CHECK_KDA(h20kdaDecode(&d, stream));
    CHECK(h20EventRecord(decodeStop, stream));
    CHECK(h20MemcpyAsync(dout + (size_t)s * N * HV * V, d_tout, sizeof(uint16_t) * N * HV * V,
                         h20MemcpyDeviceToHost, stream));
    CHECK(h20StreamSynchronize(stream));
    float ms = 0;
    CHECK(h20EventElapsedTime(&ms, decodeStart, decodeStop));
    decodeMs += ms;
  }
  CHECK(h20Memcpy(pool, d_pool, sizeof(float) * POOL_SLOTS * stateElems, h20MemcpyDeviceToHost));

  /* 3. Check against the reference. */
  memset(S, 0, sizeof(double) * N * stateElems);
  Error prefillErr = {0, 0}, decodeErr = {0, 0}, stateErr = {0, 0};
  double ref[HV * V];
  for (int n = 0; n < N; ++n) {
    double* Sn = S + n * stateElems;
    for (int64_t t = cu[n]; t < cu[n + 1]; ++t) {
      const Token tok = {q + t * H * K, k + t * H * K, v + t * HV * V, g + t * HV * K,
                         beta + t * HV};
      reference_step(Sn, &tok, aLog, dtBias, lowerBound, scale, ref);
      for (int i = 0; i < HV * V; ++i)
        accumulate(&prefillErr, from_bf16(out[t * HV * V + i]), ref[i]);
    }
    for (int s = 0; s < DECODE_STEPS; ++s) {
      const size_t at = (size_t)s * N + n;
      const Token tok = {dq + at * H * K, dk + at * H * K, dv + at * HV * V, dg + at * HV * K,
                         dbeta + at * HV};
      reference_step(Sn, &tok, aLog, dtBias, lowerBound, scale, ref);
      for (int i = 0; i < HV * V; ++i)
        accumulate(&decodeErr, from_bf16(dout[at * HV * V + i]), ref[i]);
    }
    for (size_t i = 0; i < stateElems; ++i)
      accumulate(&stateErr, pool[kSlot[n] * stateElems + i], Sn[i]);
  }

  printf("KDA on device 0, kernels: %s\n", h20kdaGetIsaName());
  printf("prefill: %d prompts (%lld + %lld tokens), H=%d, HV=%d, K=V=%d, bf16: %.3f ms\n", N,
         (long long)kPromptLen[0], (long long)kPromptLen[1], H, HV, K, prefillMs);
  printf("decode: %d steps x %d sequences: %.3f ms per step\n", DECODE_STEPS, N,
         decodeMs / DECODE_STEPS);
  printf("relative RMSE vs fp64 reference: prefill %.2e, decode %.2e, final states %.2e\n",
         rel_rmse(&prefillErr), rel_rmse(&decodeErr), rel_rmse(&stateErr));
  const int ok =
      rel_rmse(&prefillErr) < 5e-3 && rel_rmse(&decodeErr) < 5e-3 && rel_rmse(&stateErr) < 5e-3;

  CHECK(h20EventDestroy(prefillStart));
  CHECK(h20EventDestroy(prefillStop));
  CHECK(h20EventDestroy(decodeStart));
  CHECK(h20EventDestroy(decodeStop));
  CHECK(h20StreamDestroy(stream));
  void* device[] = {d_q,     d_k,  d_v,  d_g,  d_beta, d_out,   d_aLog,         d_dtBias, d_cu,
                    d_slots, d_tq, d_tk, d_tv, d_tg,   d_tbeta, d_prefillState, d_pool,   d_tout};
  for (size_t i = 0; i < sizeof device / sizeof device[0]; ++i)
    CHECK(h20Free(device[i]));
  void* host[] = {q, k, v, g, beta, dq, dk, dv, dg, dbeta, out, dout, pool, S};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; ++i)
    free(host[i]);
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
