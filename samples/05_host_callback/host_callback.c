/*
 * 05_host_callback - run host code in stream order with h20LaunchHostFunc.
 *
 * A host function enqueued on a stream runs on a runtime thread after everything before it on the
 * stream, and everything after it waits for it. That makes it the place to hand results to the
 * host side of a pipeline (here: count finished batches and check them) without a blocking
 * synchronise per batch. A host function must not call the h20 API; the sample shows that such a
 * call is refused with h20ErrorNotPermitted instead of deadlocking. Prints PASS when every batch
 * was seen in order with the right data and the nested call was refused.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/sample_check.h"

#define BATCHES 8
#define N 4096

typedef struct ScaleArgs {
  int* data;
  int n;
  int factor;
} ScaleArgs;

static void scale(const h20KernelContext* ctx, const void* argp) {
  const ScaleArgs* a = (const ScaleArgs*)argp;
  for (int i = 0; i < a->n; ++i)
    a->data[i] *= a->factor;
}

/* Shared between the main thread and the host functions. The stream orders every access: the main
 * thread reads it only after h20StreamSynchronize. */
typedef struct Batch {
  int index;
  const int* result; /* pinned host memory the batch's copy-out wrote */
  int* nextExpected;
  int* errors;
  h20Error_t nestedCall;
} Batch;

static void on_batch_done(void* userData) {
  Batch* b = (Batch*)userData;
  if (b->index != *b->nextExpected) ++*b->errors; /* host functions run in stream order */
  ++*b->nextExpected;
  for (int i = 0; i < N; ++i)
    if (b->result[i] != i * (b->index + 2)) {
      ++*b->errors;
      break;
    }
  /* Not allowed here: the runtime refuses instead of deadlocking on its own stream. One try is
   * enough to show it (the runtime logs each refusal). */
  if (b->index == 0) {
    void* p = NULL;
    b->nestedCall = h20Malloc(&p, 16);
  }
}

int main(void) {
  CHECK(h20SetDevice(0));
  h20Stream_t stream;
  CHECK(h20StreamCreate(&stream));

  int* hIn = NULL;
  int* hOut = NULL;
  int* dData = NULL;
  CHECK(h20MallocHost((void**)&hIn, N * sizeof(int)));
  CHECK(h20MallocHost((void**)&hOut, BATCHES * N * sizeof(int)));
  CHECK(h20Malloc((void**)&dData, BATCHES * N * sizeof(int)));
  for (int i = 0; i < N; ++i)
    hIn[i] = i;

  Batch batches[BATCHES];
  int nextExpected = 0, errors = 0;
  for (int b = 0; b < BATCHES; ++b) {
    int* d = dData + (size_t)b * N;
    int* out = hOut + (size_t)b * N;
    CHECK(h20MemcpyAsync(d, hIn, N * sizeof(int), h20MemcpyHostToDevice, stream));
    ScaleArgs args = {d, N, b + 2};
    h20Dim3 one = {1, 1, 1};
    CHECK(h20LaunchKernel(scale, one, one, &args, sizeof args, 0, stream));
    CHECK(h20MemcpyAsync(out, d, N * sizeof(int), h20MemcpyDeviceToHost, stream));
    batches[b] = (Batch){b, out, &nextExpected, &errors, h20Success};
    CHECK(h20LaunchHostFunc(stream, on_batch_done, &batches[b]));
  }
  CHECK(h20StreamSynchronize(stream));

  int refused = batches[0].nestedCall == h20ErrorNotPermitted;
  printf(
      "%d batches completed in order: %s; data errors: %d; h20Malloc inside a host function: "
      "%s\n",
      nextExpected, nextExpected == BATCHES ? "yes" : "no", errors,
      h20GetErrorName(batches[0].nestedCall));

  CHECK(h20Free(dData));
  CHECK(h20FreeHost(hIn));
  CHECK(h20FreeHost(hOut));
  CHECK(h20StreamDestroy(stream));

  if (errors || nextExpected != BATCHES || !refused) {
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
