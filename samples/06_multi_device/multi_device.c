/*
 * 06_multi_device - split one job across every visible device from a single host thread.
 *
 * The current device is per host thread: h20SetDevice selects where the following allocations,
 * streams and launches go. The sample gives each device a slice of an array, enqueues copy-in,
 * kernel and copy-out on a stream of that device without waiting, and only then synchronises every
 * stream, so all devices work at once. Prints PASS when the gathered result is right.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/sample_check.h"

#define MAX_DEVICES 64

typedef struct SaxpyArgs {
  float a;
  const float* x;
  float* y;
  size_t n;
} SaxpyArgs;

static void saxpy(const h20KernelContext* ctx, const void* argp) {
  const SaxpyArgs* s = (const SaxpyArgs*)argp;
  size_t begin = (size_t)ctx->blockIdx.x * ctx->blockDim.x;
  size_t end = begin + ctx->blockDim.x;
  if (end > s->n) end = s->n;
  for (size_t i = begin; i < end; ++i)
    s->y[i] = s->a * s->x[i] + s->y[i];
}

int main(void) {
  const size_t n = (size_t)1 << 22;
  int count = 0;
  CHECK(h20GetDeviceCount(&count));
  if (count > MAX_DEVICES) count = MAX_DEVICES;

  float *hX = NULL, *hY = NULL;
  CHECK(h20MallocHost((void**)&hX, n * sizeof(float)));
  CHECK(h20MallocHost((void**)&hY, n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) {
    hX[i] = (float)(i % 100);
    hY[i] = 1.0f;
  }

  h20Stream_t streams[MAX_DEVICES];
  float* dX[MAX_DEVICES];
  float* dY[MAX_DEVICES];
  const size_t slice = (n + (size_t)count - 1) / (size_t)count;
  const unsigned threads = 1024;
  for (int dev = 0; dev < count; ++dev) {
    size_t begin = (size_t)dev * slice;
    size_t len = begin >= n ? 0 : (n - begin < slice ? n - begin : slice);
    CHECK(h20SetDevice(dev));
    CHECK(h20StreamCreateWithFlags(&streams[dev], h20StreamNonBlocking));
    CHECK(h20Malloc((void**)&dX[dev], slice * sizeof(float)));
    CHECK(h20Malloc((void**)&dY[dev], slice * sizeof(float)));
    if (len == 0) continue;
    CHECK(h20MemcpyAsync(dX[dev], hX + begin, len * sizeof(float), h20MemcpyHostToDevice,
                         streams[dev]));
    CHECK(h20MemcpyAsync(dY[dev], hY + begin, len * sizeof(float), h20MemcpyHostToDevice,
                         streams[dev]));
    SaxpyArgs args = {2.0f, dX[dev], dY[dev], len};
    h20Dim3 grid = {(unsigned)((len + threads - 1) / threads), 1, 1};
    h20Dim3 block = {threads, 1, 1};
    CHECK(h20LaunchKernel(saxpy, grid, block, &args, sizeof args, 0, streams[dev]));
    CHECK(h20MemcpyAsync(hY + begin, dY[dev], len * sizeof(float), h20MemcpyDeviceToHost,
                         streams[dev]));
  }
  /* Every device has its work queued; now wait for all of them. */
  for (int dev = 0; dev < count; ++dev)
    CHECK(h20StreamSynchronize(streams[dev]));

  size_t errors = 0;
  for (size_t i = 0; i < n; ++i) {
    float expected = 2.0f * (float)(i % 100) + 1.0f;
    if (hY[i] != expected) {
      if (errors < 5) fprintf(stderr, "y[%zu] = %g, expected %g\n", i, hY[i], expected);
      ++errors;
    }
  }
  printf("saxpy of %zu floats split over %d device(s), %zu per device\n", n, count, slice);

  for (int dev = 0; dev < count; ++dev) {
    CHECK(h20SetDevice(dev));
    CHECK(h20StreamDestroy(streams[dev]));
    CHECK(h20Free(dX[dev]));
    CHECK(h20Free(dY[dev]));
  }
  CHECK(h20FreeHost(hX));
  CHECK(h20FreeHost(hY));

  if (errors) {
    printf("%zu wrong elements\nFAIL\n", errors);
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
