/*
 * tp_kda.c - tensor-parallel KDA prefill over the chips of the box, in one process or in one
 * process per chip.
 *
 * One process (`tp_kda`): the heads of one KDA layer are split across the devices (tensor
 * parallelism): each device runs h20kdaPrefill on its share of the heads, then h20cclAllGather
 * gives every device all heads' outputs. Heads are independent in KDA, so the result must equal
 * the single-device prefill of all heads bit for bit; the sample checks exactly that, for the
 * outputs and the final states, and prints PASS or FAIL with the time of both runs.
 *
 * One process per chip, as inference servers run (`mpirun -np 4 tp_kda`, or `tp_kda --ranks 4`
 * which forks the processes itself on a machine without MPI; the processes then meet through the
 * device daemon, so start h20d and set H20_DRIVER=daemon): rank r owns heads [2r, 2r+2), runs
 * their prefill and its rows of the output projection (o_proj, row-parallel as in Megatron-style
 * tensor parallelism), and h20cclAllReduce sums the partial projections. Every rank checks the
 * sum against the single-chip prefill and projection of all heads (to 1e-4 relative: the sum is
 * taken in another order) and prints PASS or FAIL.
 *
 * Concepts: one stream and one communicator per device, a group call issuing a collective for
 * every rank from one host thread, communicators by rank (h20cclGetUniqueId, handed out with
 * MPI_Bcast or inherited through fork, h20cclCommInitRank), a kernel launch, events for timing,
 * and checking the three libraries' errors.
 */
#include <h20/ccl.h>
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef H20_SAMPLE_MPI
#include <mpi.h>
#endif

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

enum { kMaxDevices = 64, T = 256, K = 64, V = 64, D = 64 /* model width of o_proj */ };

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

static int run_one_process(void) {
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

/* ---- One process per chip ---------------------------------------------------------------- */

/* Inputs of a layer with H heads (the same on every rank: the same seed), and W_o [H*V, D]. */
typedef struct {
  float *q, *k, *v, *g, *beta, *A_log, *dtBias, *w;
} Layer;

static Layer make_layer(int H) {
  Layer l;
  unsigned long long seed = 2027;
  const size_t tk = (size_t)T * H * K, tv = (size_t)T * H * V;
  l.q = malloc(sizeof(float) * tk);
  l.k = malloc(sizeof(float) * tk);
  l.v = malloc(sizeof(float) * tv);
  l.g = malloc(sizeof(float) * tk);
  l.beta = malloc(sizeof(float) * T * H);
  l.A_log = malloc(sizeof(float) * H);
  l.dtBias = malloc(sizeof(float) * H * K);
  l.w = malloc(sizeof(float) * H * V * D);
  for (size_t i = 0; i < tk; ++i)
    l.q[i] = next_value(&seed);
  for (size_t i = 0; i < tk; ++i)
    l.k[i] = next_value(&seed);
  for (size_t i = 0; i < tv; ++i)
    l.v[i] = next_value(&seed);
  for (size_t i = 0; i < tk; ++i)
    l.g[i] = 2.0f * next_value(&seed);
  for (size_t i = 0; i < (size_t)T * H; ++i)
    l.beta[i] = next_value(&seed);
  for (int i = 0; i < H; ++i)
    l.A_log[i] = 0.5f * next_value(&seed);
  for (int i = 0; i < H * K; ++i)
    l.dtBias[i] = 0.1f * next_value(&seed);
  for (size_t i = 0; i < (size_t)H * V * D; ++i)
    l.w[i] = 0.125f * next_value(&seed);
  return l;
}

/* y[t][j] = sum over the `heads` heads of out (a [T, heads, V] array) of out[t][h][v] *
 * w[h*V+v][j], where w points at the rows of those heads. One block per token. */
typedef struct {
  const float* out;
  const float* w;
  float* y;
  int heads;
} ProjectArgs;

static void project_kernel(const h20KernelContext* ctx, const void* argp) {
  const ProjectArgs* a = (const ProjectArgs*)argp;
  const size_t t = ctx->blockIdx.x;
  for (int j = 0; j < D; ++j) {
    float acc = 0.0f;
    for (int h = 0; h < a->heads; ++h)
      for (int v = 0; v < V; ++v)
        acc += a->out[(t * a->heads + h) * V + v] * a->w[((size_t)h * V + v) * D + j];
    a->y[t * D + j] = acc;
  }
}

/* Prefill of heads [h0, h0+hn) and their rows of o_proj on `stream`; returns y [T, D] (device). */
static float* heads_and_projection(const Layer* l, int H, int h0, int hn, h20Stream_t stream) {
  float* sl[5] = {slice_heads(l->q, H, K, h0, hn), slice_heads(l->k, H, K, h0, hn),
                  slice_heads(l->v, H, V, h0, hn), slice_heads(l->g, H, K, h0, hn),
                  slice_heads(l->beta, H, 1, h0, hn)};
  const Inputs in = {sl[0], sl[1], sl[2], sl[3], sl[4], l->A_log + h0, l->dtBias + (size_t)h0 * K,
                     hn};
  float *out = NULL, *state = NULL, *y = NULL;
  prefill(&in, stream, &out, &state);
  float* w = device_copy(l->w + (size_t)h0 * V * D, sizeof(float) * hn * V * D);
  CHECK(h20Malloc((void**)&y, sizeof(float) * T * D));
  ProjectArgs pa = {out, w, y, hn};
  const h20Dim3 grid = {T, 1, 1}, block = {1, 1, 1};
  CHECK(h20LaunchKernel(project_kernel, grid, block, &pa, sizeof pa, 0, stream));
  CHECK(h20StreamSynchronize(stream));
  for (int i = 0; i < 5; ++i)
    free(sl[i]);
  return y;
}

/* Rank `rank` of `n`: its heads, its projection rows, the all-reduce, the check. 0 on success. */
static int run_rank(int rank, int n, h20cclUniqueId id) {
  int ndev = 0;
  CHECK(h20GetDeviceCount(&ndev));
  const int device = rank % ndev, hp = 2, H = hp * n;
  CHECK(h20SetDevice(device));
  h20cclComm_t comm;
  CHECK_CCL(h20cclCommInitRank(&comm, n, id, rank));
  h20Stream_t stream;
  CHECK(h20StreamCreate(&stream));
  const Layer l = make_layer(H);

  h20Event_t start, stop;
  CHECK(h20EventCreate(&start));
  CHECK(h20EventCreate(&stop));
  CHECK(h20EventRecord(start, stream));
  float* y = heads_and_projection(&l, H, rank * hp, hp, stream);
  CHECK_CCL(h20cclAllReduce(y, y, (size_t)T * D, H20_R_32F, h20cclSum, comm, stream));
  CHECK(h20EventRecord(stop, stream));
  CHECK(h20StreamSynchronize(stream));
  h20Error_t async = h20Success;
  CHECK_CCL(h20cclCommGetAsyncError(comm, &async));
  CHECK_CCL(async);
  float ms = 0;
  CHECK(h20EventElapsedTime(&ms, start, stop));

  /* The single-chip reference: every head and all of o_proj on this rank's device. */
  float* yRef = heads_and_projection(&l, H, 0, H, stream);
  float* got = malloc(sizeof(float) * T * D);
  float* ref = malloc(sizeof(float) * T * D);
  CHECK(h20Memcpy(got, y, sizeof(float) * T * D, h20MemcpyDeviceToHost));
  CHECK(h20Memcpy(ref, yRef, sizeof(float) * T * D, h20MemcpyDeviceToHost));
  double worst = 0;
  long bad = 0;
  for (size_t i = 0; i < (size_t)T * D; ++i) {
    const double err = fabs((double)got[i] - ref[i]) / (1.0 + fabs((double)ref[i]));
    if (err > worst) worst = err;
    if (!(err <= 1e-4)) ++bad;
  }
  printf(
      "rank %d of %d (device %d, heads %d-%d): prefill + o_proj + allReduce %.2f ms; "
      "largest relative difference from one chip %.1e%s\n",
      rank, n, device, rank * hp, rank * hp + hp - 1, ms, worst, bad ? " (too large)" : "");
  fflush(stdout);
  CHECK_CCL(h20cclCommDestroy(comm));
  free(got), free(ref);
  return bad ? 1 : 0;
}

int main(int argc, char** argv) {
#ifdef H20_SAMPLE_MPI
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE")) {
    /* Started by mpirun: this process is one rank; rank 0's id reaches the others by MPI_Bcast. */
    int provided = 0, rank = 0, n = 1;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    h20cclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) CHECK_CCL(h20cclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    int failed = run_rank(rank, n, id), any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("%d processes: %s\n", n, any ? "FAIL" : "PASS");
    MPI_Finalize();
    return any ? EXIT_FAILURE : EXIT_SUCCESS;
  }
#endif
  if (argc == 3 && strcmp(argv[1], "--ranks") == 0) {
    /* The fork launcher: the parent only forks (a process must fork before anything in it starts
     * a thread: no runtime, no id). Rank 0 makes the id and hands it to the others through pipes
     * made before the fork, as an application would through MPI_Bcast or a file. */
    const int n = atoi(argv[2]);
    if (n < 1 || n > kMaxDevices) {
      fprintf(stderr, "--ranks %s: 1..%d\n", argv[2], kMaxDevices);
      return 2;
    }
    int pipes[kMaxDevices][2];
    for (int r = 1; r < n; ++r)
      if (pipe(pipes[r]) != 0) {
        perror("pipe");
        return EXIT_FAILURE;
      }
    pid_t pids[kMaxDevices];
    for (int r = 0; r < n; ++r) {
      fflush(stdout);
      pids[r] = fork();
      if (pids[r] < 0) {
        perror("fork");
        return EXIT_FAILURE;
      }
      if (pids[r] != 0) continue;
      h20cclUniqueId id;
      memset(&id, 0, sizeof id);
      if (r == 0) {
        CHECK_CCL(h20cclGetUniqueId(&id));
        for (int q = 1; q < n; ++q)
          if (write(pipes[q][1], &id, sizeof id) != (ssize_t)sizeof id) _exit(EXIT_FAILURE);
      } else if (read(pipes[r][0], &id, sizeof id) != (ssize_t)sizeof id) {
        _exit(EXIT_FAILURE);
      }
      _exit(run_rank(r, n, id));
    }
    int failed = 0;
    for (int r = 0; r < n; ++r) {
      int status = 0;
      waitpid(pids[r], &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    printf("%d processes: %s\n", n, failed ? "FAIL" : "PASS");
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
  }
  if (argc != 1) {
    fprintf(stderr,
            "usage: %s                one process, every chip\n"
            "       %s --ranks N      N processes, one per chip (needs h20d)\n"
            "       mpirun -np N %s   N processes under MPI\n",
            argv[0], argv[0], argv[0]);
    return 2;
  }
  return run_one_process();
}
