/*
 * 07_error_handling - the two kinds of errors and how a program recovers from them.
 *
 *  1. Synchronous misuse (a bad argument) is returned by the call itself and kept as the thread's
 *     last error, with a message naming the argument: h20GetLastError reads and clears it.
 *  2. A fault during execution (here a kernel that reports an out-of-range index) is asynchronous:
 *     the launch itself succeeds, and the fault surfaces at the next synchronisation. It is sticky
 *     for that device only - other devices keep working - until h20DeviceReset, which destroys the
 *     device's streams, events and allocations and makes it usable again.
 *
 * The sample expects exactly this behaviour and prints PASS when it sees it. The runtime logs the
 * errors it reports; run with H20_LOG_LEVEL=off to keep the output to the sample's own lines.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/sample_check.h"

typedef struct GatherArgs {
  const int* table;
  int tableSize;
  int index;
  int* out;
} GatherArgs;

/* A kernel checks its own inputs and reports a fault instead of touching memory it may not. */
static void gather(const h20KernelContext* ctx, const void* argp) {
  const GatherArgs* a = (const GatherArgs*)argp;
  if (a->index < 0 || a->index >= a->tableSize) {
    h20KernelReportFault(ctx, h20ErrorIllegalAddress, "gather: index out of range");
    return;
  }
  *a->out = a->table[a->index];
}

static h20Error_t launch_gather(int* dTable, int index, int* dOut, h20Stream_t stream) {
  GatherArgs args = {dTable, 16, index, dOut};
  h20Dim3 one = {1, 1, 1};
  return h20LaunchKernel(gather, one, one, &args, sizeof args, 0, stream);
}

static int expect(int ok, const char* what) {
  printf("%-64s %s\n", what, ok ? "ok" : "UNEXPECTED");
  return ok ? 0 : 1;
}

int main(void) {
  int failures = 0, count = 0;
  CHECK(h20GetDeviceCount(&count));
  CHECK(h20SetDevice(0));

  /* 1. Synchronous error: returned at once, the device is unaffected. */
  h20Error_t e = h20Malloc(NULL, 16);
  printf("h20Malloc(NULL, 16) -> %s: %s\n", h20GetErrorName(e), h20GetLastErrorMessage());
  failures += expect(e == h20ErrorInvalidValue, "bad argument returns h20ErrorInvalidValue");
  failures += expect(h20GetLastError() == h20ErrorInvalidValue, "h20GetLastError returns it...");
  failures += expect(h20GetLastError() == h20Success, "...and resets it");

  /* 2. Asynchronous fault on device 0. */
  int* dTable = NULL;
  int* dOut = NULL;
  h20Stream_t stream;
  CHECK(h20StreamCreate(&stream));
  CHECK(h20Malloc((void**)&dTable, 16 * sizeof(int)));
  CHECK(h20Malloc((void**)&dOut, sizeof(int)));
  CHECK(h20MemsetAsync(dTable, 0, 16 * sizeof(int), stream));

  e = launch_gather(dTable, 99, dOut, stream);
  failures += expect(e == h20Success, "faulting launch itself succeeds (launch is asynchronous)");
  e = h20StreamSynchronize(stream);
  printf("h20StreamSynchronize -> %s: %s\n", h20GetErrorName(e), h20GetLastErrorMessage());
  failures += expect(e != h20Success, "fault reported at the next synchronisation");
  e = launch_gather(dTable, 3, dOut, stream);
  if (e == h20Success) e = h20StreamSynchronize(stream);
  failures += expect(e != h20Success, "device 0 stays faulted (sticky)");

  if (count > 1) {
    /* Other devices are not poisoned by device 0's fault. */
    int* d1 = NULL;
    CHECK(h20SetDevice(1));
    CHECK(h20Malloc((void**)&d1, 64));
    CHECK(h20Memset(d1, 0, 64));
    failures += expect(h20DeviceSynchronize() == h20Success, "device 1 unaffected");
    CHECK(h20Free(d1));
    CHECK(h20SetDevice(0));
  }

  /* Reset clears the fault; streams and allocations of device 0 are gone and are made again. */
  h20GetLastError();
  CHECK(h20DeviceReset());
  CHECK(h20StreamCreate(&stream));
  CHECK(h20Malloc((void**)&dTable, 16 * sizeof(int)));
  CHECK(h20Malloc((void**)&dOut, sizeof(int)));
  int table[16], out = -1;
  for (int i = 0; i < 16; ++i)
    table[i] = 100 + i;
  CHECK(h20MemcpyAsync(dTable, table, sizeof table, h20MemcpyHostToDevice, stream));
  CHECK(launch_gather(dTable, 3, dOut, stream));
  CHECK(h20MemcpyAsync(&out, dOut, sizeof out, h20MemcpyDeviceToHost, stream));
  e = h20StreamSynchronize(stream);
  failures += expect(e == h20Success && out == 103, "after h20DeviceReset device 0 works again");

  CHECK(h20StreamDestroy(stream));
  CHECK(h20Free(dTable));
  CHECK(h20Free(dOut));

  if (failures) {
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  printf("PASS\n");
  return 0;
}
