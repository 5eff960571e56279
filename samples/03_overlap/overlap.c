/*
 * 03_overlap - overlap host<->device copies with computation using two streams and pinned memory.
 *
 * The input is split into chunks; each chunk is copied in, transformed by a kernel and copied
 * back. Issued on one stream, the three steps of every chunk run one after the other. Issued
 * alternately on two streams, chunk k+1's copy-in can run while chunk k's kernel runs. This only
 * works with pinned (page-locked) host memory: an async copy from pageable memory is staged
 * synchronously by the calling thread, and one to pageable memory blocks it.
 *
 * The sample prints both times and their ratio; the ratio depends on the host (copies and kernels
 * of the emulated device share the same CPU cores), so only the results are checked. Prints PASS
 * when both runs computed the right values.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under strict C11 */

#include <h20/h20_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/sample_check.h"

#define NUM_STREAMS 2
#define NUM_CHUNKS 8
#define ITERATIONS 24 /* polynomial steps per element: makes the kernel cost comparable to a copy \
                       */

typedef struct TransformArgs {
  const float* in;
  float* out;
  size_t n;
} TransformArgs;

/* The same arithmetic on host and device, so the check can recompute it. */
static float transform(float x) {
  float y = x;
  for (int k = 0; k < ITERATIONS; ++k)
    y = 0.5f * y + 0.25f * x + 0.125f;
  return y;
}

static void transform_kernel(const h20KernelContext* ctx, const void* argp) {
  const TransformArgs* args = (const TransformArgs*)argp;
  size_t begin = (size_t)ctx->blockIdx.x * ctx->blockDim.x;
  size_t end = begin + ctx->blockDim.x;
  if (end > args->n) end = args->n;
  for (size_t i = begin; i < end; ++i)
    args->out[i] = transform(args->in[i]);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs the pipeline with `streamsUsed` streams and returns the wall time in milliseconds. */
static double run(h20Stream_t* streams, int streamsUsed, const float* hIn, float* hOut, float* dIn,
                  float* dOut, size_t n) {
  const size_t chunk = n / NUM_CHUNKS;
  const unsigned threads = 1024;
  double t0 = now_ms();
  for (int c = 0; c < NUM_CHUNKS; ++c) {
    h20Stream_t s = streams[c % streamsUsed];
    size_t off = (size_t)c * chunk;
    CHECK(h20MemcpyAsync(dIn + off, hIn + off, chunk * sizeof(float), h20MemcpyHostToDevice, s));
    TransformArgs args = {dIn + off, dOut + off, chunk};
    h20Dim3 grid = {(unsigned)((chunk + threads - 1) / threads), 1, 1};
    h20Dim3 block = {threads, 1, 1};
    CHECK(h20LaunchKernel(transform_kernel, grid, block, &args, sizeof args, 0, s));
    CHECK(h20MemcpyAsync(hOut + off, dOut + off, chunk * sizeof(float), h20MemcpyDeviceToHost, s));
  }
  for (int i = 0; i < streamsUsed; ++i)
    CHECK(h20StreamSynchronize(streams[i]));
  return now_ms() - t0;
}

static size_t count_errors(const float* in, const float* out, size_t n) {
  size_t errors = 0;
  for (size_t i = 0; i < n; ++i) {
    float expected = transform(in[i]);
    if (fabsf(out[i] - expected) > 1e-5f * fabsf(expected) + 1e-6f) {
      if (errors < 5) fprintf(stderr, "out[%zu] = %g, expected %g\n", i, out[i], expected);
      ++errors;
    }
  }
  return errors;
}

int main(void) {
  const size_t n = (size_t)1 << 23; /* 32 MiB of floats, divisible by NUM_CHUNKS */
  const size_t bytes = n * sizeof(float);

  CHECK(h20SetDevice(0));
  float *hIn = NULL, *hOut = NULL, *dIn = NULL, *dOut = NULL;
  CHECK(h20MallocHost((void**)&hIn, bytes)); /* pinned: async copies really are asynchronous */
  CHECK(h20MallocHost((void**)&hOut, bytes));
  CHECK(h20Malloc((void**)&dIn, bytes));
  CHECK(h20Malloc((void**)&dOut, bytes));
  for (size_t i = 0; i < n; ++i)
    hIn[i] = (float)(i % 4096) / 64.0f;

  h20Stream_t streams[NUM_STREAMS];
  for (int i = 0; i < NUM_STREAMS; ++i)
    CHECK(h20StreamCreateWithFlags(&streams[i], h20StreamNonBlocking));

  /* Warm-up: first touches of device and host pages are not what we want to time. */
  run(streams, NUM_STREAMS, hIn, hOut, dIn, dOut, n);

  memset(hOut, 0, bytes);
  double serialMs = run(streams, 1, hIn, hOut, dIn, dOut, n);
  size_t errors = count_errors(hIn, hOut, n);

  memset(hOut, 0, bytes);
  double overlappedMs = run(streams, NUM_STREAMS, hIn, hOut, dIn, dOut, n);
  errors += count_errors(hIn, hOut, n);

  printf("%d chunks of %zu KiB: one stream %.2f ms, %d streams %.2f ms (%.2fx)\n", NUM_CHUNKS,
         bytes / NUM_CHUNKS / 1024, serialMs, NUM_STREAMS, overlappedMs,
         overlappedMs > 0 ? serialMs / overlappedMs : 0.0);

  for (int i = 0; i < NUM_STREAMS; ++i)
    CHECK(h20StreamDestroy(streams[i]));
  CHECK(h20Free(dIn));
  CHECK(h20Free(dOut));
  CHECK(h20FreeHost(hIn));
  CHECK(h20FreeHost(hOut));

  if (errors) {
    printf("%zu wrong elements\nFAIL\n", errors);
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
