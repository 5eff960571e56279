/*
 * kimi_linear_layer.c - a whole KDA layer of Kimi-Linear-48B-A3B, prefill, on one chip or
 * tensor-parallel over several, checked against an fp64 host reference of the whole layer.
 *
 * The layer (hidden 2304, 32 heads of 128, short convolutions of width 4, low rank 128; the
 * structure of the model's public modelling code and flash-linear-attention's KDA layer):
 *   q, k, v = silu(conv4(x W_{q,k,v}^T))            h20kdaLinear, h20kdaShortConv
 *   g       = (x W_fa^T) W_fb^T                       gate, low rank: two h20kdaLinear
 *   beta    = x W_b^T                                 logits (the sigmoid is in the kernel)
 *   o       = KDA(q, k, v, g, beta)                   h20kdaPrefill, softplus gate with A_log,
 *                                                     dt_bias; q, k L2-normalised in the kernel
 *   o       = rmsnorm(o) * w * sigmoid((x W_ga^T) W_gb^T)   per head: h20kdaRmsNorm
 *   y       = o W_o^T                                 h20kdaLinear
 * with seeded random bf16 weights and input. With --tp N the 32 heads are split over N chips
 * (Megatron-style): each chip holds its rows of the q/k/v/gate/beta projections and its columns of
 * W_o, computes a partial y, and h20cclAllReduce sums the partials (fp32 accumulation, one
 * rounding to bf16).
 *
 * Check: the output of the first --check tokens of every sequence is compared with the fp64
 * reference of the whole layer on the same bf16 inputs and weights (a sequence's first tokens
 * depend only on themselves, so the reference stays cheap); the relative RMS error must stay
 * within bf16 tolerance (1e-2 for a layer whose every intermediate is rounded to bf16), and so
 * must every token (its largest error at most 0.1 of the reference's RMS; about 0.03 is
 * measured). Prints
 * the time of the layer, tokens/s and the share of each operation (events on chip 0), then PASS
 * or FAIL.
 *
 * Usage: kimi_linear_layer [--tokens T] [--varlen] [--tp N] [--check C] [--runs R]
 */
#include <h20/ccl.h>
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sample_check.h"

#define CHECK_LIB(call, message)                                                        \
  do {                                                                                  \
    h20Error_t e_ = (call);                                                             \
    if (e_ != h20Success) {                                                             \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, h20GetErrorName(e_), (message)()); \
      printf("FAIL\n");                                                                 \
      exit(EXIT_FAILURE);                                                               \
    }                                                                                   \
  } while (0)
#define CHECK_KDA(call) CHECK_LIB(call, h20kdaGetLastErrorMessage)
#define CHECK_CCL(call) CHECK_LIB(call, h20cclGetLastErrorMessage)

enum { HIDDEN = 2304, HEADS = 32, DIM = 128, PROJ = HEADS * DIM, CONV = 4, RANK = 128 };
static const float kEps = 1e-5f;
#define MAX_TP 8

/* ---- bf16 and random numbers ---------------------------------------------------------------- */

static uint16_t toBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static double fromBf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint64_t rngState = 0x6b696d69ull;
static double uniform(void) { /* [-1, 1) */
  rngState = rngState * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rngState >> 11) / (double)(1ull << 52) - 1.0;
}
static uint16_t* randomBf16(size_t n, double scale) {
  uint16_t* p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; ++i)
    p[i] = toBf16((float)(scale * uniform()));
  return p;
}
static float* randomF32(size_t n, double offset, double scale) {
  float* p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; ++i)
    p[i] = (float)(offset + scale * uniform());
  return p;
}

/* ---- the layer's weights (host, bf16 except A_log and dt_bias) ----------------------------- */

typedef struct {
  uint16_t *wq, *wk, *wv; /* [PROJ, HIDDEN] */
  uint16_t *cq, *ck, *cv; /* [PROJ, CONV] */
  uint16_t *wfa, *wga;    /* [RANK, HIDDEN] */
  uint16_t *wfb, *wgb;    /* [PROJ, RANK] */
  uint16_t* wb;           /* [HEADS, HIDDEN] */
  uint16_t* normW;        /* [DIM] */
  uint16_t* wo;           /* [HIDDEN, PROJ] */
  float* aLog;            /* [HEADS] */
  float* dtBias;          /* [PROJ] */
} Weights;

static Weights makeWeights(void) {
  Weights w;
  const double in = 1.0 / sqrt((double)HIDDEN), low = 1.0 / sqrt((double)RANK);
  w.wq = randomBf16((size_t)PROJ * HIDDEN, in);
  w.wk = randomBf16((size_t)PROJ * HIDDEN, in);
  w.wv = randomBf16((size_t)PROJ * HIDDEN, in);
  w.cq = randomBf16((size_t)PROJ * CONV, 0.5);
  w.ck = randomBf16((size_t)PROJ * CONV, 0.5);
  w.cv = randomBf16((size_t)PROJ * CONV, 0.5);
  w.wfa = randomBf16((size_t)RANK * HIDDEN, in);
  w.wga = randomBf16((size_t)RANK * HIDDEN, in);
  w.wfb = randomBf16((size_t)PROJ * RANK, low);
  w.wgb = randomBf16((size_t)PROJ * RANK, low);
  w.wb = randomBf16((size_t)HEADS * HIDDEN, in);
  w.normW = randomBf16(DIM, 1.0);
  w.wo = randomBf16((size_t)HIDDEN * PROJ, 1.0 / sqrt((double)PROJ));
  w.aLog = randomF32(HEADS, 0.0, 0.5);
  w.dtBias = randomF32(PROJ, 0.0, 0.1);
  return w;
}

/* ---- one chip's share ------------------------------------------------------------------------ */

typedef struct {
  int device, heads, proj; /* heads and projection columns of this chip */
  h20Stream_t stream;
  h20Event_t marks[8];
  void *x, *cu;
  void *wq, *wk, *wv, *cq, *ck, *cv, *wfa, *wga, *wfb, *wgb, *wb, *normW, *wo, *aLog, *dtBias;
  void *q, *k, *v, *qc, *kc, *vc, *fa, *g, *beta, *ga, *og, *o, *y;
} Chip;

static void* upload(const void* host, size_t bytes) {
  void* d = NULL;
  CHECK(h20Malloc(&d, bytes));
  CHECK(h20Memcpy(d, host, bytes, h20MemcpyHostToDevice));
  return d;
}
static void* scratch(size_t bytes) {
  void* d = NULL;
  CHECK(h20Malloc(&d, bytes));
  return d;
}

static void freeChip(Chip* c) {
  void* all[] = {c->x,   c->cu,  c->wq, c->wk,    c->wv, c->cq,   c->ck,     c->cv, c->wfa, c->wga,
                 c->wfb, c->wgb, c->wb, c->normW, c->wo, c->aLog, c->dtBias, c->q,  c->k,   c->v,
                 c->qc,  c->kc,  c->vc, c->fa,    c->g,  c->beta, c->ga,     c->og, c->o,   c->y};
  CHECK(h20SetDevice(c->device));
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    if (all[i]) CHECK(h20Free(all[i]));
  for (int i = 0; i < 8; ++i)
    CHECK(h20EventDestroy(c->marks[i]));
  CHECK(h20StreamDestroy(c->stream));
}

static void freeWeights(Weights* w) {
  void* all[] = {w->wq,  w->wk,  w->wv, w->cq,    w->ck, w->cv,   w->wfa,   w->wga,
                 w->wfb, w->wgb, w->wb, w->normW, w->wo, w->aLog, w->dtBias};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    free(all[i]);
}

/* Rows [r0, r0 + n) of a row-major bf16 matrix with `cols` columns. */
static void* uploadRows(const uint16_t* m, size_t r0, size_t n, size_t cols) {
  return upload(m + r0 * cols, n * cols * 2);
}

static void setupChip(Chip* c, const Weights* w, const uint16_t* x, const int64_t* cu, int numSeqs,
                      int tokens, int rank, int tp) {
  const size_t T = (size_t)tokens;
  c->heads = HEADS / tp;
  c->proj = PROJ / tp;
  const size_t h0 = (size_t)rank * c->heads, p0 = (size_t)rank * c->proj, P = (size_t)c->proj;
  CHECK(h20SetDevice(c->device));
  CHECK(h20StreamCreate(&c->stream));
  for (int i = 0; i < 8; ++i)
    CHECK(h20EventCreate(&c->marks[i]));
  c->x = upload(x, T * HIDDEN * 2);
  c->cu = cu ? upload(cu, (size_t)(numSeqs + 1) * 8) : NULL;
  c->wq = uploadRows(w->wq, p0, P, HIDDEN);
  c->wk = uploadRows(w->wk, p0, P, HIDDEN);
  c->wv = uploadRows(w->wv, p0, P, HIDDEN);
  c->cq = uploadRows(w->cq, p0, P, CONV);
  c->ck = uploadRows(w->ck, p0, P, CONV);
  c->cv = uploadRows(w->cv, p0, P, CONV);
  c->wfa = upload(w->wfa, (size_t)RANK * HIDDEN * 2);
  c->wga = upload(w->wga, (size_t)RANK * HIDDEN * 2);
  c->wfb = uploadRows(w->wfb, p0, P, RANK);
  c->wgb = uploadRows(w->wgb, p0, P, RANK);
  c->wb = uploadRows(w->wb, h0, (size_t)c->heads, HIDDEN);
  c->normW = upload(w->normW, DIM * 2);
  /* Columns [p0, p0 + P) of W_o [HIDDEN, PROJ]: this chip's rows of the contraction. */
  uint16_t* woCols = malloc((size_t)HIDDEN * P * 2);
  for (size_t r = 0; r < HIDDEN; ++r)
    memcpy(woCols + r * P, w->wo + r * PROJ + p0, P * 2);
  c->wo = upload(woCols, (size_t)HIDDEN * P * 2);
  free(woCols);
  c->aLog = upload(w->aLog + h0, (size_t)c->heads * 4);
  c->dtBias = upload(w->dtBias + p0, P * 4);
  void** acts[] = {&c->q, &c->k, &c->v, &c->qc, &c->kc, &c->vc, &c->g, &c->og, &c->o};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; ++i)
    *acts[i] = scratch(T * P * 2);
  c->fa = scratch(T * RANK * 2);
  c->ga = scratch(T * RANK * 2);
  c->beta = scratch(T * (size_t)c->heads * 2);
  c->y = scratch(T * HIDDEN * 2);
}

static void linear(const Chip* c, const void* x, const void* w, void* out, int tokens, int in,
                   int outF) {
  h20kdaLinearArgs a;
  memset(&a, 0, sizeof a);
  a.structSize = sizeof a;
  a.rows = tokens;
  a.inFeatures = in;
  a.outFeatures = outF;
  a.dtype = H20_R_16BF;
  a.x = x;
  a.weight = w;
  a.out = out;
  CHECK_KDA(h20kdaLinear(&a, c->stream));
}

static void conv(const Chip* c, const void* x, const void* w, void* out, int tokens, int numSeqs) {
  h20kdaShortConvArgs a;
  memset(&a, 0, sizeof a);
  a.structSize = sizeof a;
  a.batch = 1;
  a.seqLen = tokens;
  a.channels = c->proj;
  a.width = CONV;
  a.dtype = H20_R_16BF;
  a.x = x;
  a.weight = w;
  a.out = out;
  a.activation = H20_KDA_ACT_SILU;
  a.stateDtype = H20_R_32F;
  a.cuSeqlens = c->cu;
  a.numSeqs = c->cu ? numSeqs : 0;
  CHECK_KDA(h20kdaShortConv(&a, c->stream));
}

/* Enqueues chip c's part of the layer; marks[0..6] separate the operations. */
static void enqueueLayer(Chip* c, int tokens, int numSeqs) {
  const int T = tokens, P = c->proj;
  CHECK(h20SetDevice(c->device));
  CHECK(h20EventRecord(c->marks[0], c->stream));
  linear(c, c->x, c->wq, c->q, T, HIDDEN, P);
  linear(c, c->x, c->wk, c->k, T, HIDDEN, P);
  linear(c, c->x, c->wv, c->v, T, HIDDEN, P);
  linear(c, c->x, c->wfa, c->fa, T, HIDDEN, RANK);
  linear(c, c->fa, c->wfb, c->g, T, RANK, P);
  linear(c, c->x, c->wb, c->beta, T, HIDDEN, c->heads);
  linear(c, c->x, c->wga, c->ga, T, HIDDEN, RANK);
  linear(c, c->ga, c->wgb, c->og, T, RANK, P);
  CHECK(h20EventRecord(c->marks[1], c->stream));
  conv(c, c->q, c->cq, c->qc, T, numSeqs);
  conv(c, c->k, c->ck, c->kc, T, numSeqs);
  conv(c, c->v, c->cv, c->vc, T, numSeqs);
  CHECK(h20EventRecord(c->marks[2], c->stream));
  h20kdaPrefillArgs k;
  memset(&k, 0, sizeof k);
  k.structSize = sizeof k;
  k.batch = 1;
  k.seqLen = T;
  k.numHeads = c->heads;
  k.headDimK = k.headDimV = DIM;
  k.dtype = H20_R_16BF;
  k.q = c->qc;
  k.k = c->kc;
  k.v = c->vc;
  k.g = c->g;
  k.beta = c->beta;
  k.out = c->o;
  k.scale = 1.0f / sqrtf((float)DIM);
  k.gateMode = H20_KDA_GATE_SOFTPLUS;
  k.A_log = c->aLog;
  k.dtBias = c->dtBias;
  k.stateDtype = H20_R_32F;
  k.cuSeqlens = c->cu;
  k.numSeqs = c->cu ? numSeqs : 0;
  CHECK_KDA(h20kdaPrefill(&k, c->stream));
  CHECK(h20EventRecord(c->marks[3], c->stream));
  h20kdaRmsNormArgs n;
  memset(&n, 0, sizeof n);
  n.structSize = sizeof n;
  n.rows = T;
  n.numHeads = c->heads;
  n.headDim = DIM;
  n.dtype = H20_R_16BF;
  n.x = c->o;
  n.gate = c->og;
  n.gateActivation = H20_KDA_ACT_SIGMOID;
  n.weight = c->normW;
  n.eps = kEps;
  n.out = c->o; /* in place */
  CHECK_KDA(h20kdaRmsNorm(&n, c->stream));
  CHECK(h20EventRecord(c->marks[4], c->stream));
  linear(c, c->o, c->wo, c->y, T, P, HIDDEN);
  CHECK(h20EventRecord(c->marks[5], c->stream));
}

/* ---- the fp64 reference ---------------------------------------------------------------------- */

static double silu(double x) {
  return x / (1.0 + exp(-x));
}
static double sigmoid(double x) {
  return 1.0 / (1.0 + exp(-x));
}
static double softplus(double x) {
  return x > 20.0 ? x : log1p(exp(x));
}

/* x W^T for one token: out[n] = sum_k x[k] W[n, k]. */
static void refLinear(const double* x, const uint16_t* w, int in, int outF, double* out) {
  for (int n = 0; n < outF; ++n) {
    double acc = 0;
    const uint16_t* row = w + (size_t)n * in;
    for (int k = 0; k < in; ++k)
      acc += x[k] * fromBf16(row[k]);
    out[n] = acc;
  }
}

/* The layer's output for tokens [t0, t0 + len) of one sequence starting at t0, into ref. */
static void referenceLayer(const Weights* w, const uint16_t* x, int64_t t0, int len, double* ref) {
  double* xt = malloc(HIDDEN * sizeof *xt);
  double *qkv[3], *hist[3];
  for (int i = 0; i < 3; ++i) {
    qkv[i] = malloc(PROJ * sizeof(double));
    hist[i] = calloc((size_t)CONV * PROJ, sizeof(double)); /* last CONV raw projections */
  }
  double* low = malloc(RANK * sizeof(double));
  double* g = malloc(PROJ * sizeof(double));
  double* og = malloc(PROJ * sizeof(double));
  double* beta = malloc(HEADS * sizeof(double));
  double* o = malloc(PROJ * sizeof(double));
  double* state = calloc((size_t)HEADS * DIM * DIM, sizeof(double)); /* [h][v][k] */
  const uint16_t* convW[3] = {w->cq, w->ck, w->cv};
  const uint16_t* projW[3] = {w->wq, w->wk, w->wv};
  for (int i = 0; i < len; ++i) {
    for (int c = 0; c < HIDDEN; ++c)
      xt[c] = fromBf16(x[(size_t)(t0 + i) * HIDDEN + c]);
    for (int m = 0; m < 3; ++m) {
      memmove(hist[m], hist[m] + PROJ, (size_t)(CONV - 1) * PROJ * sizeof(double));
      refLinear(xt, projW[m], HIDDEN, PROJ, hist[m] + (size_t)(CONV - 1) * PROJ);
      for (int d = 0; d < PROJ; ++d) {
        double acc = 0;
        for (int j = 0; j < CONV; ++j)
          acc += fromBf16(convW[m][(size_t)d * CONV + j]) * hist[m][(size_t)j * PROJ + d];
        qkv[m][d] = silu(acc);
      }
    }
    refLinear(xt, w->wfa, HIDDEN, RANK, low);
    refLinear(low, w->wfb, RANK, PROJ, g);
    refLinear(xt, w->wga, HIDDEN, RANK, low);
    refLinear(low, w->wgb, RANK, PROJ, og);
    refLinear(xt, w->wb, HIDDEN, HEADS, beta);
    for (int h = 0; h < HEADS; ++h) {
      double *q = qkv[0] + h * DIM, *k = qkv[1] + h * DIM, *v = qkv[2] + h * DIM;
      double qn = 1e-6, kn = 1e-6;
      for (int d = 0; d < DIM; ++d) {
        qn += q[d] * q[d];
        kn += k[d] * k[d];
      }
      qn = 1.0 / sqrt(qn);
      kn = 1.0 / sqrt(kn);
      const double b = sigmoid(beta[h]), rate = exp(w->aLog[h]);
      double* S = state + (size_t)h * DIM * DIM;
      double alpha[DIM];
      for (int d = 0; d < DIM; ++d)
        alpha[d] = exp(-rate * softplus(g[h * DIM + d] + w->dtBias[h * DIM + d]));
      for (int r = 0; r < DIM; ++r) { /* row r of S: value channel r */
        double* row = S + (size_t)r * DIM;
        double sk = 0;
        for (int d = 0; d < DIM; ++d) {
          row[d] *= alpha[d];
          sk += row[d] * k[d] * kn;
        }
        const double delta = b * (v[r] - sk);
        double out = 0;
        for (int d = 0; d < DIM; ++d) {
          row[d] += delta * k[d] * kn;
          out += row[d] * q[d] * qn;
        }
        o[h * DIM + r] = out / sqrt((double)DIM);
      }
      double ss = 0;
      for (int d = 0; d < DIM; ++d)
        ss += o[h * DIM + d] * o[h * DIM + d];
      const double rstd = 1.0 / sqrt(ss / DIM + kEps);
      for (int d = 0; d < DIM; ++d)
        o[h * DIM + d] *= rstd * fromBf16(w->normW[d]) * sigmoid(og[h * DIM + d]);
    }
    refLinear(o, w->wo, PROJ, HIDDEN, ref + (size_t)i * HIDDEN);
  }
  for (int i = 0; i < 3; ++i) {
    free(qkv[i]);
    free(hist[i]);
  }
  free(xt);
  free(low);
  free(g);
  free(og);
  free(beta);
  free(o);
  free(state);
}

/* ---- main -------------------------------------------------------------------------------------
 */

int main(int argc, char** argv) {
  int tokens = 4096, tp = 1, check = 16, runs = 3, varlen = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
      tokens = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--tp") && i + 1 < argc)
      tp = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--check") && i + 1 < argc)
      check = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--varlen"))
      varlen = 1;
    else {
      fprintf(stderr,
              "usage: %s [--tokens T] [--varlen] [--tp N] [--check C] [--runs R]\n"
              "  T tokens (default 4096), split into 4 sequences with --varlen; N chips (1, 2, 4\n"
              "  or 8); the first C tokens of each sequence are checked (default 16)\n",
              argv[0]);
      return 2;
    }
  }
  int devices = 0;
  CHECK(h20GetDeviceCount(&devices));
  if (tp < 1 || tp > MAX_TP || HEADS % tp != 0 || tp > devices || tokens < 4 || runs < 1 ||
      check < 0) {
    fprintf(stderr,
            "bad arguments: --tp must divide 32 and be at most %d (the devices), "
            "--tokens at least 4\n",
            devices < MAX_TP ? devices : MAX_TP);
    return 2;
  }
  /* Sequences: one, or four of unequal lengths (varlen). */
  int64_t cu[5] = {0, tokens, 0, 0, 0};
  int numSeqs = 1;
  if (varlen) {
    numSeqs = 4;
    cu[1] = tokens / 8;
    cu[2] = cu[1] + tokens / 2;
    cu[3] = cu[2] + tokens / 8;
    cu[4] = tokens;
  }
  Weights w = makeWeights();
  uint16_t* x = randomBf16((size_t)tokens * HIDDEN, 1.0);
  printf(
      "Kimi-Linear KDA layer: hidden %d, %d heads of %d, conv %d, rank %d; %d tokens in %d "
      "sequence%s, bf16, on %d chip%s (%s)\n",
      HIDDEN, HEADS, DIM, CONV, RANK, tokens, numSeqs, numSeqs > 1 ? "s" : "", tp,
      tp > 1 ? "s" : "", h20kdaGetIsaName());

  Chip chips[MAX_TP];
  int devs[MAX_TP];
  for (int r = 0; r < tp; ++r) {
    chips[r].device = devs[r] = r;
    setupChip(&chips[r], &w, x, varlen ? cu : NULL, numSeqs, tokens, r, tp);
  }
  h20cclComm_t comms[MAX_TP];
  if (tp > 1) CHECK_CCL(h20cclCommInitAll(comms, tp, devs));

  double best = 1e30, shares[5] = {0};
  for (int run = 0; run < runs; ++run) {
    for (int r = 0; r < tp; ++r)
      enqueueLayer(&chips[r], tokens, numSeqs);
    if (tp > 1) {
      CHECK_CCL(h20cclGroupStart());
      for (int r = 0; r < tp; ++r)
        CHECK_CCL(h20cclAllReduce(chips[r].y, chips[r].y, (size_t)tokens * HIDDEN, H20_R_16BF,
                                  h20cclSum, comms[r], chips[r].stream));
      CHECK_CCL(h20cclGroupEnd());
    }
    for (int r = 0; r < tp; ++r) {
      CHECK(h20SetDevice(chips[r].device));
      CHECK(h20EventRecord(chips[r].marks[6], chips[r].stream));
    }
    for (int r = 0; r < tp; ++r)
      CHECK(h20StreamSynchronize(chips[r].stream));
    float total = 0;
    CHECK(h20EventElapsedTime(&total, chips[0].marks[0], chips[0].marks[6]));
    if (total < best) {
      best = total;
      for (int i = 0; i < 5; ++i) {
        float ms = 0;
        CHECK(h20EventElapsedTime(&ms, chips[0].marks[i], chips[0].marks[i + 1]));
        shares[i] = ms;
      }
    }
  }
  const char* names[5] = {"projections in", "short convolutions", "KDA", "gated RMSNorm", "o_proj"};
  float reduce = 0;
  CHECK(h20EventElapsedTime(&reduce, chips[0].marks[5], chips[0].marks[6]));
  printf("layer: %.1f ms (best of %d), %.0f tokens/s; chip 0:", best, runs, tokens / (best * 1e-3));
  for (int i = 0; i < 5; ++i)
    printf(" %s %.0f %%,", names[i], 100.0 * shares[i] / best);
  printf(" all-reduce %.0f %%\n",
         100.0 * (best - shares[0] - shares[1] - shares[2] - shares[3] - shares[4]) / best);

  /* Check the first `check` tokens of every sequence against the fp64 reference. */
  uint16_t* y = malloc((size_t)tokens * HIDDEN * 2);
  CHECK(h20SetDevice(chips[0].device));
  CHECK(h20Memcpy(y, chips[0].y, (size_t)tokens * HIDDEN * 2, h20MemcpyDeviceToHost));
  /* The whole checked output's relative RMS error, and its worst token: the token's largest
   * error over the reference's RMS (so that one wrong token cannot hide in the average). */
  double err = 0, norm = 0, worst = 0;
  int checked = 0, worstToken = -1;
  double* tokenErr = malloc((size_t)tokens * sizeof *tokenErr);
  for (int s = 0; s < numSeqs; ++s) {
    const int len = (int)(cu[s + 1] - cu[s]) < check ? (int)(cu[s + 1] - cu[s]) : check;
    double* ref = malloc((size_t)(len > 0 ? len : 1) * HIDDEN * sizeof *ref);
    referenceLayer(&w, x, cu[s], len, ref);
    for (int t = 0; t < len; ++t) {
      double e = 0;
      for (size_t i = (size_t)t * HIDDEN; i < (size_t)(t + 1) * HIDDEN; ++i) {
        const double d = fromBf16(y[(size_t)cu[s] * HIDDEN + i]) - ref[i];
        err += d * d;
        norm += ref[i] * ref[i];
        if (!(fabs(d) <= e)) e = fabs(d); /* a NaN sticks */
      }
      tokenErr[checked++] = e;
    }
    free(ref);
  }
  const double refRms = sqrt(norm / (checked > 0 ? (double)checked * HIDDEN : 1.0));
  for (int t = 0; t < checked; ++t)
    if (worstToken < 0 || !(tokenErr[t] / refRms <= worst)) {
      worst = tokenErr[t] / refRms;
      worstToken = t;
    }
  free(tokenErr);
  const double rel = checked ? sqrt(err / (norm > 0 ? norm : 1e-300)) : 0.0;
  const int pass = rel <= 1e-2 && isfinite(rel) && worst <= 0.1 && isfinite(worst);
  printf(
      "checked %d tokens against the fp64 reference: relative RMS error %.2e (limit 1e-2), "
      "worst token %.2e of the RMS (limit 0.1)\n",
      checked, rel, worst);

  if (tp > 1)
    for (int r = 0; r < tp; ++r)
      CHECK_CCL(h20cclCommDestroy(comms[r]));
  for (int r = 0; r < tp; ++r)
    freeChip(&chips[r]);
  freeWeights(&w);
  free(y);
  free(x);
  printf("%s\n", pass ? "PASS" : "FAIL");
  return pass ? EXIT_SUCCESS : EXIT_FAILURE;
}
