/*
 * tp_kda.c - tensor-parallel KDA prefill over every chip of the box.
 *
 * The heads of one KDA layer are split across the devices (tensor parallelism): each device runs
 * h20kdaPrefill on its share of the heads, then h20cclAllGather gives every device all heads'
 * outputs. Heads are independent in KDA, so the result must equal the single-device prefill of
 * all heads bit for bit; the sample checks exactly that, for the outputs and the final states,
 * and prints PASS or FAIL with the time of both runs.
 *
 * Concepts: one stream and one communicator per device, a group call issuing a collective for
 * every rank from one host thread, events for timing, and checking the three libraries' errors.
 */
#include <h20/ccl.h>
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sample_check.h"

#define CHECK_KDA(call)                                                   \
  do {                                                                    \
    h20Error_t e_ = (call);                                               \
    if (e_ != h20Success) {                                               \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, h20GetErrorName(e_), \
              h20kdaGetLastErrorMessage());                               \
      printf("FAIL\n");                                                   \
      exit(EXIT_FAILURE);                                                 \
    }                                                                     \
  } while (0)
#define CHECK_CCL(call)                                                   \
  do {                                                                    \
    h20Error_t e_ = (call);                                               \
    if (e_ != h20Success) {                                               \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, h20GetErrorName(e_), \
              h20cclGetLastErrorMessage());                               \
      printf("FAIL\n");                                                   \
      exit(EXIT_FAILURE);                                                 \
    }                                                                     \
  } while (0)

enum { kMaxDevices = 64, T = 256, K = 64, V = 64 };

/* Deterministic inputs in [-1, 1). */
static float next_value(unsigned long long* s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void* device_copy(const void* host, size_t bytes) {
  void* d = NULL;
  CHECK(h20Malloc(&d, bytes));
  CHECK(h20Memcpy(d, host, bytes, h20MemcpyHostToDevice));
  return d;
}

/* Heads [h0, h0+hn) of a [T, H, inner] array, as a contiguous [T, hn, inner] array. */
static float* slice_heads(const float* full, int H, int inner, int h0, int hn) {
  float* out = malloc(sizeof(float) * T * hn * inner);
  for (int t = 0; t < T; ++t)
    memcpy(out + (size_t)t * hn * inner, full + ((size_t)t * H + h0) * inner,
           sizeof(float) * hn * inner);
  return out;
}

typedef struct {
  const float *q, *k, *v, *g, *beta, *A_log, *dtBias;
  int heads;
} Inputs;

/* Prefill of `in` on the current device and `stream`; returns device pointers of out/state. */
static void prefill(const Inputs* in, h20Stream_t stream, float** out, float** state) {
  const int Hn = in->heads;
  h20kdaPrefillArgs a;
  memset(&a, 0, sizeof a);
  a.structSize = sizeof a;
  a.batch = 1;
  a.seqLen = T;
  a.numHeads = Hn;
  a.numValueHeads = Hn;
  a.headDimK = K;
  a.headDimV = V;
  a.dtype = H20_R_32F;
  a.q = device_copy(in->q, sizeof(float) * T * Hn * K);
  a.k = device_copy(in->k, sizeof(float) * T * Hn * K);
  a.v = device_copy(in->v, sizeof(float) * T * Hn * V);
  a.g = device_copy(in->g, sizeof(float) * T * Hn * K);
  a.beta = device_copy(in->beta, sizeof(float) * T * Hn);
  a.A_log = device_copy(in->A_log, sizeof(float) * Hn);
  a.dtBias = device_copy(in->dtBias, sizeof(float) * Hn * K);
  a.scale = 1.0f / sqrtf((float)K);
  a.gateMode = H20_KDA_GATE_LOWER_BOUND;
  a.lowerBound = -5.0f;
  a.stateDtype = H20_R_32F;
  CHECK(h20Malloc((void**)out, sizeof(float) * T * Hn * V));
  CHECK(h20Malloc((void**)state, sizeof(float) * Hn * V * K));
  a.out = *out;
  a.finalState = *state;
  CHECK_KDA(h20kdaPrefill(&a, stream));
}

int main(void) {
  int ndev = 0;
  CHECK(h20GetDeviceCount(&ndev));
  if (ndev > kMaxDevices) ndev = kMaxDevices;
  const int H = 2 * ndev; /* two heads per device */
  const int hp = H / ndev;

  /* Inputs of the whole layer, on the host. */
  unsigned long long seed = 2026;
  float* q = malloc(sizeof(float) * T * H * K);
  float* k = malloc(sizeof(float) * T * H * K);
  float* v = malloc(sizeof(float) * T * H * V);
  float* g = malloc(sizeof(float) * T * H * K);
  float* beta = malloc(sizeof(float) * T * H);
  float* A_log = malloc(sizeof(float) * H);
  float* dtBias = malloc(sizeof(float) * H * K);
  for (size_t i = 0; i < (size_t)T * H * K; ++i)
    q[i] = next_value(&seed);
  for (size_t i = 0; i < (size_t)T * H * K; ++i)
    k[i] = next_value(&seed);
  for (size_t i = 0; i < (size_t)T * H * V; ++i)
    v[i] = next_value(&seed);
  for (size_t i = 0; i < (size_t)T * H * K; ++i)
    g[i] = 2.0f * next_value(&seed);
  for (size_t i = 0; i < (size_t)T * H; ++i)
    beta[i] = next_value(&seed);
  for (int i = 0; i < H; ++i)
    A_log[i] = 0.5f * next_value(&seed);
  for (int i = 0; i < H * K; ++i)
    dtBias[i] = 0.1f * next_value(&seed);

  /* 1. Single device: all heads on device 0. */
  CHECK(h20SetDevice(0));
  h20Stream_t s0;
  h20Event_t start0, stop0;
  CHECK(h20StreamCreate(&s0));
  CHECK(h20EventCreate(&start0));
  CHECK(h20EventCreate(&stop0));
  const Inputs all = {q, k, v, g, beta, A_log, dtBias, H};
  float *outAll, *stateAll;
  CHECK(h20EventRecord(start0, s0));
  prefill(&all, s0, &outAll, &stateAll);
  CHECK(h20EventRecord(stop0, s0));
  CHECK(h20StreamSynchronize(s0));
  float msSingle = 0;
  CHECK(h20EventElapsedTime(&msSingle, start0, stop0));

  /* 2. Tensor parallel: device d owns heads [d*hp, (d+1)*hp). */
  h20cclComm_t comms[kMaxDevices];
  CHECK_CCL(h20cclCommInitAll(comms, ndev, NULL));
  h20Stream_t streams[kMaxDevices];
  h20Event_t starts[kMaxDevices], stops[kMaxDevices];
  float *outs[kMaxDevices], *states[kMaxDevices], *gathered[kMaxDevices];
  float* slices[kMaxDevices][7];
  for (int d = 0; d < ndev; ++d) {
    CHECK(h20SetDevice(d));
    CHECK(h20StreamCreate(&streams[d]));
    CHECK(h20EventCreate(&starts[d]));
    CHECK(h20EventCreate(&stops[d]));
    CHECK(h20Malloc((void**)&gathered[d], sizeof(float) * T * H * V));
    const int h0 = d * hp;
    slices[d][0] = slice_heads(q, H, K, h0, hp);
    slices[d][1] = slice_heads(k, H, K, h0, hp);
    slices[d][2] = slice_heads(v, H, V, h0, hp);
    slices[d][3] = slice_heads(g, H, K, h0, hp);
    slices[d][4] = slice_heads(beta, H, 1, h0, hp);
    slices[d][5] = A_log + h0;
    slices[d][6] = dtBias + (size_t)h0 * K;
  }
  for (int d = 0; d < ndev; ++d) {
    CHECK(h20SetDevice(d));
    const Inputs mine = {slices[d][0], slices[d][1], slices[d][2], slices[d][3],
                         slices[d][4], slices[d][5], slices[d][6], hp};
    CHECK(h20EventRecord(starts[d], streams[d]));
    prefill(&mine, streams[d], &outs[d], &states[d]);
  }
  /* Every device's [T, hp, V] output, gathered rank by rank on every device. */
  CHECK_CCL(h20cclGroupStart());
  for (int d = 0; d < ndev; ++d)
    CHECK_CCL(
        h20cclAllGather(outs[d], gathered[d], (size_t)T * hp * V, H20_R_32F, comms[d], streams[d]));
  CHECK_CCL(h20cclGroupEnd());
  float msTp = 0;
  for (int d = 0; d < ndev; ++d) {
    CHECK(h20SetDevice(d));
    CHECK(h20EventRecord(stops[d], streams[d]));
    CHECK(h20StreamSynchronize(streams[d]));
    float ms = 0;
    CHECK(h20EventElapsedTime(&ms, starts[d], stops[d]));
    if (ms > msTp) msTp = ms;
  }

  /* 3. Compare: every device's gathered output, reordered to [T, H, V], and the final states. */
  float* ref = malloc(sizeof(float) * T * H * V);
  float* got = malloc(sizeof(float) * T * H * V);
  float* refState = malloc(sizeof(float) * H * V * K);
  float* gotState = malloc(sizeof(float) * hp * V * K);
  CHECK(h20Memcpy(ref, outAll, sizeof(float) * T * H * V, h20MemcpyDeviceToHost));
  CHECK(h20Memcpy(refState, stateAll, sizeof(float) * H * V * K, h20MemcpyDeviceToHost));
  long long mismatches = 0;
  for (int d = 0; d < ndev; ++d) {
    CHECK(h20Memcpy(got, gathered[d], sizeof(float) * T * H * V, h20MemcpyDeviceToHost));
    for (int r = 0; r < ndev; ++r)
      for (int t = 0; t < T; ++t)
        if (memcmp(got + ((size_t)r * T + t) * hp * V, ref + ((size_t)t * H + r * hp) * V,
                   sizeof(float) * hp * V) != 0)
          ++mismatches;
    CHECK(h20Memcpy(gotState, states[d], sizeof(float) * hp * V * K, h20MemcpyDeviceToHost));
    if (memcmp(gotState, refState + (size_t)d * hp * V * K, sizeof(float) * hp * V * K) != 0)
      ++mismatches;
  }

  printf(
      "KDA prefill, T=%d, H=%d, K=V=%d, fp32: one device %.2f ms; %d devices (%d heads each) "
      "+ allGather %.2f ms\n",
      T, H, K, msSingle, ndev, hp, msTp);
  printf("(all emulated chips share this host's cores, so the split shows no speed-up here)\n");
  printf("tensor-parallel result %s the single-device result (%lld mismatching rows)\n",
         mismatches == 0 ? "equals" : "DIFFERS FROM", mismatches);

  for (int d = 0; d < ndev; ++d) {
    CHECK_CCL(h20cclCommDestroy(comms[d]));
    for (int i = 0; i < 5; ++i)
      free(slices[d][i]);
  }
  free(q), free(k), free(v), free(g), free(beta), free(A_log), free(dtBias);
  free(ref), free(got), free(refState), free(gotState);
  printf("%s\n", mismatches == 0 ? "PASS" : "FAIL");
  return mismatches == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
