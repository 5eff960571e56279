/*
 * 08_ipc - two processes share a device buffer and an event through the device daemon.
 *
 * The producer fills a buffer with a kernel and records an interprocess event after it; it sends
 * the buffer's and the event's IPC handles (64 opaque bytes each) to the consumer over a pipe. The
 * consumer opens both, makes its stream wait for the producer's event, copies the buffer back and
 * checks every element. Neither process waits for the other's kernel on the host: the ordering is
 * the consumer's stream waiting on the producer's event, across processes.
 *
 * Needs the device daemon, which serves the same chips to both processes:
 *   h20d &
 *   H20_DRIVER=daemon ./08_ipc
 * (with the embedded device each process has private chips, and IPC calls return
 * h20ErrorNotSupported). The consumer is forked before either process calls the runtime: each
 * process initialises its own. Prints PASS when the consumer saw every element.
 */
#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/sample_check.h"

typedef struct FillArgs {
  float* data;
  size_t n;
} FillArgs;

static void fill(const h20KernelContext* ctx, const void* argp) {
  const FillArgs* a = (const FillArgs*)argp;
  size_t begin = (size_t)ctx->blockIdx.x * ctx->blockDim.x;
  size_t end = begin + ctx->blockDim.x;
  if (end > a->n) end = a->n;
  for (size_t i = begin; i < end; ++i)
    a->data[i] = 0.5f * (float)i;
}

/* What travels over the pipe: both handles. */
typedef struct Handles {
  h20IpcMemHandle_t memory;
  h20IpcEventHandle_t ready;
  size_t n;
} Handles;

static int consumer(int fromProducer) {
  Handles h;
  if (read(fromProducer, &h, sizeof h) != (ssize_t)sizeof h) {
    fprintf(stderr, "consumer: the producer sent no handles\n");
    return EXIT_FAILURE;
  }
  void* shared = NULL;
  h20Event_t ready = NULL;
  h20Stream_t stream = NULL;
  CHECK(h20IpcOpenMemHandle(&shared, h.memory, h20IpcMemLazyEnablePeerAccess));
  CHECK(h20IpcOpenEventHandle(&ready, h.ready));
  CHECK(h20StreamCreate(&stream));

  /* The copy runs after the producer's kernel: the stream waits for the producer's event. */
  float* host = (float*)malloc(h.n * sizeof(float));
  CHECK(h20StreamWaitEvent(stream, ready, 0));
  CHECK(h20MemcpyAsync(host, shared, h.n * sizeof(float), h20MemcpyDeviceToHost, stream));
  CHECK(h20StreamSynchronize(stream));

  size_t wrong = 0;
  for (size_t i = 0; i < h.n; ++i)
    wrong += host[i] != 0.5f * (float)i;
  printf("consumer (pid %d): %zu of %zu elements as the producer wrote them\n", (int)getpid(),
         h.n - wrong, h.n);
  free(host);
  CHECK(h20StreamDestroy(stream));
  CHECK(h20EventDestroy(ready));
  CHECK(h20IpcCloseMemHandle(shared));
  return wrong == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(void) {
  const size_t n = (size_t)1 << 20;
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    perror("pipe");
    return EXIT_FAILURE;
  }
  pid_t child = fork(); /* before any h20 call: each process initialises its own runtime */
  if (child < 0) {
    perror("fork");
    return EXIT_FAILURE;
  }
  if (child == 0) {
    close(pipefd[1]);
    return consumer(pipefd[0]);
  }
  close(pipefd[0]);

  /* Interprocess events keep no time: h20EventDisableTiming goes with h20EventInterprocess. */
  h20Event_t ready = NULL;
  h20Error_t err = h20EventCreateWithFlags(&ready, h20EventInterprocess | h20EventDisableTiming);
  if (err == h20ErrorNotSupported) {
    fprintf(stderr,
            "producer: %s\nThis sample needs the device daemon: start h20d, then run it with "
            "H20_DRIVER=daemon.\n",
            h20GetLastErrorMessage());
    close(pipefd[1]);
    waitpid(child, NULL, 0);
    printf("FAIL\n");
    return EXIT_FAILURE;
  }
  CHECK(err);

  float* data = NULL;
  h20Stream_t stream = NULL;
  CHECK(h20Malloc((void**)&data, n * sizeof(float)));
  CHECK(h20StreamCreate(&stream));
  FillArgs args = {data, n};
  const h20Dim3 grid = {(unsigned)((n + 1023) / 1024), 1, 1}, block = {1024, 1, 1};
  CHECK(h20LaunchKernel(fill, grid, block, &args, sizeof args, 0, stream));
  CHECK(h20EventRecord(ready, stream));

  Handles h;
  h.n = n;
  CHECK(h20IpcGetMemHandle(&h.memory, data));
  CHECK(h20IpcGetEventHandle(&h.ready, ready));
  if (write(pipefd[1], &h, sizeof h) != (ssize_t)sizeof h) {
    perror("write");
    return EXIT_FAILURE;
  }
  close(pipefd[1]);
  printf("producer (pid %d): sent the handles of a %zu-float buffer and its event\n", (int)getpid(),
         n);
  fflush(stdout);

  /* The producer keeps the buffer until the consumer is done with it. */
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(h20StreamDestroy(stream));
  CHECK(h20EventDestroy(ready));
  CHECK(h20Free(data));
  const int ok = WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SUCCESS;
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
