/*
 * 01_device_query - enumerate the H20 devices and print their properties.
 *
 * The first thing a program does with the runtime: ask how many devices are visible
 * (H20_VISIBLE_DEVICES and H20_EMU_DEVICES shape the answer) and what each one is. It touches no
 * memory and launches nothing. Prints PASS when every query succeeded.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>

#include "../common/sample_check.h"

static void print_version(const char* what, int v) {
  /* Versions are encoded like CUDART_VERSION: 1000 * major + 10 * minor + patch. */
  printf("%-22s %d.%d.%d (%d)\n", what, v / 1000, (v % 1000) / 10, v % 10, v);
}

int main(void) {
  int runtimeVersion = 0, driverVersion = 0, count = 0;
  CHECK(h20RuntimeGetVersion(&runtimeVersion));
  CHECK(h20DriverGetVersion(&driverVersion));
  print_version("Runtime version:", runtimeVersion);
  print_version("Driver version:", driverVersion);
  if (runtimeVersion != H20_RUNTIME_VERSION)
    printf("note: header version %d differs from the library's %d\n", H20_RUNTIME_VERSION,
           runtimeVersion);

  CHECK(h20GetDeviceCount(&count));
  printf("Devices:               %d\n", count);

  for (int dev = 0; dev < count; ++dev) {
    h20DeviceProp p;
    size_t freeBytes = 0, totalBytes = 0;
    int leastPriority = 0, greatestPriority = 0;
    CHECK(h20GetDeviceProperties(&p, dev));
    /* h20MemGetInfo and the priority range ask about the *current* device. */
    CHECK(h20SetDevice(dev));
    CHECK(h20MemGetInfo(&freeBytes, &totalBytes));
    CHECK(h20DeviceGetStreamPriorityRange(&leastPriority, &greatestPriority));

    printf("\nDevice %d: \"%s\"%s\n", dev, p.name, p.emulated ? " (software emulated)" : "");
    printf("  Compute capability:            %d.%d\n", p.major, p.minor);
    printf("  Multiprocessors:               %d\n", p.multiProcessorCount);
    printf("  Global memory:                 %.1f GiB (%.1f GiB free)\n",
           (double)p.totalGlobalMem / (1u << 30), (double)freeBytes / (1u << 30));
    printf("  Memory bandwidth:              %.2f TB/s\n", p.memoryBandwidth / 1e12);
    printf("  Peak BF16 (dense):             %.1f TFLOP/s\n", p.peakBf16Flops / 1e12);
    printf("  L2 cache:                      %.1f MB\n", p.l2CacheSize / 1e6);
    printf("  Host link bandwidth:           %.1f GB/s per direction\n", p.hostLinkBandwidth / 1e9);
    printf("  Shared memory per block:       %zu KiB (opt-in up to %zu KiB)\n",
           p.sharedMemPerBlock / 1024, p.sharedMemPerBlockOptin / 1024);
    printf("  Max threads per block:         %d (dims %d x %d x %d)\n", p.maxThreadsPerBlock,
           p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2]);
    printf("  Max grid size:                 %d x %d x %d\n", p.maxGridSize[0], p.maxGridSize[1],
           p.maxGridSize[2]);
    printf("  Copy engines:                  %d\n", p.asyncEngineCount);
    printf("  Concurrent kernels:            %s\n", p.concurrentKernels ? "yes" : "no");
    printf("  Unified addressing:            %s\n", p.unifiedAddressing ? "yes" : "no");
    printf("  Stream priorities:             %d (lowest) .. %d (highest)\n", leastPriority,
           greatestPriority);
    printf("  PCI bus id:                    %s\n", p.pciBusId);
    printf("  Host NUMA node:                %d\n", p.numaNode);
    if (p.emulated) printf("  Emulator worker threads:       %d\n", p.hostWorkerThreads);
  }

  printf("\nPASS\n");
  return 0;
}
