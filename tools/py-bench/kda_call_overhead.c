/*
 * kda_call_overhead - the C side of the Python overhead measurement (kda_call_overhead.py).
 *
 * Times h20kdaPrefill called from C on a tiny problem (so that the call, not the kernel,
 * dominates), in the two ways the Python script times h20.kda.prefill on h20 arrays:
 *   enqueue    CALLS calls back to back on one stream, then one h20StreamSynchronize; the time
 *              per call (what a caller pays to submit work)
 *   roundtrip  one call + h20StreamSynchronize, the median of CALLS round trips
 * Each is repeated REPS times and the median of the repetitions printed, as
 * "enqueue_us=<x> roundtrip_us=<y>" on one line. Public C API only.
 *
 * Usage: kda_call_overhead [CALLS [REPS]]   (defaults 2000 and 7)
 */
#define _POSIX_C_SOURCE 199309L
#include <h20/h20_runtime.h>
#include <h20/kda.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B = 1, T = 16, H = 1, K = 16, V = 16 };

static void check(h20Error_t err, const char* what) {
  if (err != h20Success) {
    fprintf(stderr, "%s failed: %s (%s | %s)\n", what, h20GetErrorName(err),
            h20GetLastErrorMessage(), h20kdaGetLastErrorMessage());
    exit(1);
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double median(double* v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return v[n / 2];
}

static void* device_zeros(size_t bytes) {
  void* p = NULL;
  check(h20Malloc(&p, bytes), "h20Malloc");
  check(h20Memset(p, 0, bytes), "h20Memset");
  return p;
}

int main(int argc, char** argv) {
  const int calls = argc > 1 ? atoi(argv[1]) : 2000;
  const int reps = argc > 2 ? atoi(argv[2]) : 7;
  if (calls < 1 || reps < 1) {
    fprintf(stderr, "usage: %s [CALLS [REPS]]\n", argv[0]);
    return 2;
  }
  const size_t f = sizeof(float);
  h20kdaPrefillArgs a;
  memset(&a, 0, sizeof(a));
  a.structSize = sizeof(a);
  a.batch = B;
  a.seqLen = T;
  a.numHeads = H;
  a.numValueHeads = H;
  a.headDimK = K;
  a.headDimV = V;
  a.dtype = H20_R_32F;
  a.q = device_zeros(B * T * H * K * f);
  a.k = device_zeros(B * T * H * K * f);
  a.v = device_zeros(B * T * H * V * f);
  a.g = device_zeros(B * T * H * K * f);
  a.beta = device_zeros(B * T * H * f);
  a.out = device_zeros(B * T * H * V * f);
  a.scale = 0.25f;
  a.gateMode = H20_KDA_GATE_LOWER_BOUND;
  a.A_log = device_zeros(H * f);
  a.lowerBound = -5.0f;
  a.finalState = device_zeros(B * H * V * K * f);
  a.stateDtype = H20_R_32F;
  h20Stream_t s;
  check(h20StreamCreate(&s), "h20StreamCreate");
  check(h20DeviceSynchronize(), "h20DeviceSynchronize");

  double* enq = malloc(sizeof(double) * (size_t)reps);
  double* rt = malloc(sizeof(double) * (size_t)reps);
  double* one = malloc(sizeof(double) * (size_t)calls);
  for (int w = 0; w < 200; ++w)
    check(h20kdaPrefill(&a, s), "h20kdaPrefill");  // warm-up
  check(h20StreamSynchronize(s), "h20StreamSynchronize");
  for (int r = 0; r < reps; ++r) {
    double t0 = now_us();
    for (int i = 0; i < calls; ++i)
      check(h20kdaPrefill(&a, s), "h20kdaPrefill");
    const double t1 = now_us();
    check(h20StreamSynchronize(s), "h20StreamSynchronize");
    enq[r] = (t1 - t0) / calls;
    for (int i = 0; i < calls; ++i) {
      t0 = now_us();
      check(h20kdaPrefill(&a, s), "h20kdaPrefill");
      check(h20StreamSynchronize(s), "h20StreamSynchronize");
      one[i] = now_us() - t0;
    }
    rt[r] = median(one, calls);
  }
  printf("enqueue_us=%.3f roundtrip_us=%.3f\n", median(enq, reps), median(rt, reps));
  free(enq);
  free(rt);
  free(one);
  check(h20StreamDestroy(s), "h20StreamDestroy");
  return 0;
}
