/*
 * 02_vector_add - the whole life of a computation: allocate, copy in, launch, copy out, verify.
 *
 * c = a + b over n floats. The kernel is a plain C function that the runtime runs once per block;
 * each call does the work of the block's blockDim.x "threads" in a loop the compiler can vectorise.
 * The launch goes on a stream created by the sample, and two events recorded around it measure the
 * kernel's time on the device. Prints PASS if every element is right, FAIL (and exits non-zero)
 * otherwise.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/sample_check.h"

/* Kernel arguments travel by value: the runtime copies this struct at launch. */
typedef struct VecAddArgs {
  const float* a;
  const float* b;
  float* c;
  size_t n;
} VecAddArgs;

static void vec_add(const h20KernelContext* ctx, const void* argp) {
  const VecAddArgs* args = (const VecAddArgs*)argp;
  size_t begin = (size_t)ctx->blockIdx.x * ctx->blockDim.x;
  size_t end = begin + ctx->blockDim.x;
  if (end > args->n) end = args->n; /* the last block may be partial */
  for (size_t i = begin; i < end; ++i)
    args->c[i] = args->a[i] + args->b[i];
}

int main(void) {
  const size_t n = (size_t)1 << 22;
  const size_t bytes = n * sizeof(float);
  const unsigned threadsPerBlock = 1024;

  float* hA = (float*)malloc(bytes);
  float* hB = (float*)malloc(bytes);
  float* hC = (float*)malloc(bytes);
  if (!hA || !hB || !hC) {
    fprintf(stderr, "host allocation of 3 x %zu bytes failed\n", bytes);
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  for (size_t i = 0; i < n; ++i) {
    hA[i] = (float)(i % 1000);
    hB[i] = 0.5f * (float)(i % 77);
  }

  CHECK(h20SetDevice(0));
  float *dA = NULL, *dB = NULL, *dC = NULL;
  CHECK(h20Malloc((void**)&dA, bytes));
  CHECK(h20Malloc((void**)&dB, bytes));
  CHECK(h20Malloc((void**)&dC, bytes));

  h20Stream_t stream;
  h20Event_t start, stop;
  CHECK(h20StreamCreate(&stream));
  CHECK(h20EventCreate(&start));
  CHECK(h20EventCreate(&stop));

  /* Pageable source: the async copy stages it before returning, so hA/hB may be reused at once. */
  CHECK(h20MemcpyAsync(dA, hA, bytes, h20MemcpyHostToDevice, stream));
  CHECK(h20MemcpyAsync(dB, hB, bytes, h20MemcpyHostToDevice, stream));

  VecAddArgs args = {dA, dB, dC, n};
  h20Dim3 grid = {(unsigned)((n + threadsPerBlock - 1) / threadsPerBlock), 1, 1};
  h20Dim3 block = {threadsPerBlock, 1, 1};
  CHECK(h20EventRecord(start, stream));
  CHECK(h20LaunchKernel(vec_add, grid, block, &args, sizeof args, 0, stream));
  CHECK(h20EventRecord(stop, stream));

  /* To pageable memory the async copy returns only when done; the synchronise makes the ordering
   * explicit and reports any fault of the kernel. */
  CHECK(h20MemcpyAsync(hC, dC, bytes, h20MemcpyDeviceToHost, stream));
  CHECK(h20StreamSynchronize(stream));

  float ms = 0.0f;
  CHECK(h20EventElapsedTime(&ms, start, stop));

  size_t errors = 0;
  for (size_t i = 0; i < n; ++i) {
    float expected = hA[i] + hB[i];
    if (hC[i] != expected) {
      if (errors < 5) fprintf(stderr, "c[%zu] = %g, expected %g\n", i, hC[i], expected);
      ++errors;
    }
  }
  printf("vector add of %zu floats: %u blocks of %u, kernel %.3f ms (%.2f GB/s)\n", n, grid.x,
         block.x, ms, ms > 0 ? 3.0 * (double)bytes / (ms * 1e-3) / 1e9 : 0.0);

  CHECK(h20EventDestroy(start));
  CHECK(h20EventDestroy(stop));
  CHECK(h20StreamDestroy(stream));
  CHECK(h20Free(dA));
  CHECK(h20Free(dB));
  CHECK(h20Free(dC));
  free(hA);
  free(hB);
  free(hC);

  if (errors) {
    printf("%zu of %zu elements wrong\nFAIL\n", errors, n);
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
