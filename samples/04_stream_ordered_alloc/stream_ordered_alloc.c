/*
 * 04_stream_ordered_alloc - temporary device buffers with h20MallocAsync / h20FreeAsync.
 *
 * A loop that needs a scratch buffer per step allocates and frees it in stream order: the
 * allocation is usable by work enqueued after it on the stream, and the free happens when the work
 * before it has run, without blocking the host. The device's pool hands the same memory to the
 * next h20MallocAsync on the stream, so the loop does not pay for an allocation per step. The
 * sample prints how many steps reused the previous step's memory and checks every step's result.
 * Prints PASS when all results are right.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/sample_check.h"

#define STEPS 16

typedef struct StepArgs {
  float* scratch; /* n floats, zeroed by h20MemsetAsync before the kernel runs */
  size_t n;
  float value;
  double* sum; /* one double in device memory per step */
} StepArgs;

/* One block: fill the scratch buffer, then sum it. Deliberately simple; the point is the memory. */
static void fill_and_sum(const h20KernelContext* ctx, const void* argp) {
  const StepArgs* a = (const StepArgs*)argp;
  double s = 0.0;
  for (size_t i = 0; i < a->n; ++i)
    a->scratch[i] += a->value;
  for (size_t i = 0; i < a->n; ++i)
    s += a->scratch[i];
  *a->sum = s;
}

int main(void) {
  const size_t n = (size_t)1 << 16;
  CHECK(h20SetDevice(0));

  h20Stream_t stream;
  CHECK(h20StreamCreate(&stream));
  double* dSums = NULL;
  CHECK(h20Malloc((void**)&dSums, STEPS * sizeof(double)));

  void* previous = NULL;
  int reused = 0;
  for (int step = 0; step < STEPS; ++step) {
    float* scratch = NULL;
    CHECK(h20MallocAsync((void**)&scratch, n * sizeof(float), stream));
    if (scratch == previous) ++reused;
    previous = scratch;

    CHECK(h20MemsetAsync(scratch, 0, n * sizeof(float), stream));
    StepArgs args = {scratch, n, (float)(step + 1), dSums + step};
    h20Dim3 one = {1, 1, 1};
    CHECK(h20LaunchKernel(fill_and_sum, one, one, &args, sizeof args, 0, stream));
    /* Returns at once; the memory goes back to the pool after the kernel above has run. */
    CHECK(h20FreeAsync(scratch, stream));
  }

  double sums[STEPS];
  CHECK(h20MemcpyAsync(sums, dSums, sizeof sums, h20MemcpyDeviceToHost, stream));
  CHECK(h20StreamSynchronize(stream));

  int errors = 0;
  for (int step = 0; step < STEPS; ++step) {
    double expected = (double)n * (step + 1);
    if (sums[step] != expected) {
      fprintf(stderr, "step %d: sum %.1f, expected %.1f\n", step, sums[step], expected);
      ++errors;
    }
  }
  printf(
      "%d steps with a %zu KiB scratch buffer each; %d of %d reused the previous step's memory\n",
      STEPS, n * sizeof(float) / 1024, reused, STEPS - 1);

  CHECK(h20Free(dSums));
  CHECK(h20StreamDestroy(stream));
  /* Returns the pool's unused memory to the device. */
  CHECK(h20DeviceSynchronize());

  if (errors) {
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
