/*
 * c_api_smoke.c - the C API used from strict C11: proves that h20_runtime.h is usable from C
 * (types, macros, function pointers, extern "C" linkage) by running a small program over it:
 * device query, allocation, copies, a stream with a kernel and a host function, events with
 * elapsed time, and error reporting. Exits 0 when every check holds, 1 otherwise (naming the
 * first failed check on stderr).
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <string.h>

#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      fprintf(stderr, "%s:%d: check failed: %s (last message: %s)\n", __FILE__, __LINE__, #cond, \
              h20GetLastErrorMessage());                                                         \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

#define OK(call) CHECK((call) == h20Success)

typedef struct ScaleArgs {
  float* data;
  size_t count;
  float factor;
} ScaleArgs;

static void scale_kernel(const h20KernelContext* ctx, const void* args) {
  ScaleArgs a;
  size_t i;
  memcpy(&a, args, sizeof a);
  for (i = ctx->blockIdx.x; i < a.count; i += ctx->gridDim.x)
    a.data[i] *= a.factor;
}

static void count_host_fn(void* user) {
  ++*(int*)user;
}

int main(void) {
  enum { N = 4096 };
  static float host[N];
  int count = 0, device = -1, version = 0, calls = 0;
  size_t i;
  h20DeviceProp prop;
  float* dev = NULL;
  h20Stream_t stream = NULL;
  h20Event_t start = NULL, stop = NULL;
  float ms = -1.0f;
  ScaleArgs args;
  h20Dim3 grid = {8, 1, 1}, block = {128, 1, 1};

  OK(h20GetDeviceCount(&count));
  CHECK(count >= 1);
  OK(h20SetDevice(count - 1));
  OK(h20GetDevice(&device));
  CHECK(device == count - 1);
  OK(h20GetDeviceProperties(&prop, device));
  CHECK(strstr(prop.name, "H20") != NULL);
  OK(h20RuntimeGetVersion(&version));
  CHECK(version == H20_RUNTIME_VERSION);

  for (i = 0; i < N; ++i)
    host[i] = (float)i;
  OK(h20Malloc((void**)&dev, sizeof host));
  OK(h20StreamCreateWithFlags(&stream, h20StreamNonBlocking));
  OK(h20EventCreate(&start));
  OK(h20EventCreate(&stop));
  OK(h20EventRecord(start, stream));
  OK(h20MemcpyAsync(dev, host, sizeof host, h20MemcpyHostToDevice, stream));
  memset(&args, 0, sizeof args); /* padding too: the runtime scans the argument words */
  args.data = dev;
  args.count = N;
  args.factor = 2.0f;
  OK(h20LaunchKernel(scale_kernel, grid, block, &args, sizeof args, 0, stream));
  OK(h20LaunchHostFunc(stream, count_host_fn, &calls));
  OK(h20EventRecord(stop, stream));
  OK(h20MemcpyAsync(host, dev, sizeof host, h20MemcpyDeviceToHost, stream));
  OK(h20StreamSynchronize(stream));
  for (i = 0; i < N; ++i)
    CHECK(host[i] == 2.0f * (float)i);
  CHECK(calls == 1);
  OK(h20EventElapsedTime(&ms, start, stop));
  CHECK(ms >= 0.0f);

  /* Errors from C: code, last error, name. */
  CHECK(h20SetDevice(-1) == h20ErrorInvalidDevice);
  CHECK(h20GetLastError() == h20ErrorInvalidDevice);
  CHECK(h20GetLastError() == h20Success);
  CHECK(strcmp(h20GetErrorName(h20ErrorInvalidDevice), "h20ErrorInvalidDevice") == 0);

  OK(h20EventDestroy(start));
  OK(h20EventDestroy(stop));
  OK(h20StreamDestroy(stream));
  OK(h20Free(dev));
  printf("c_api_smoke: ok on device %d (%s)\n", device, prop.name);
  return 0;
}
