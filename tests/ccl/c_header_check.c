/* c_header_check.c - compiles include/h20/ccl.h as C11 (the header must stay C-clean) and
 * exercises it from C: the api tests call h20cclCHeaderCheck(), and the *Raw wrappers to pass enum
 * arguments that are not enumerators, as only a C caller can. */
#include "c_header_check.h"

#include <stddef.h>

int h20cclCHeaderCheck(void) {
  h20cclComm_t comm = NULL;
  int count = -1;
  h20cclRedOp op = h20cclMax;
  h20cclAlgo algo = h20cclAlgoRing;
  h20cclFunc func = h20cclFuncBroadcast;
  (void)op;
  (void)algo;
  (void)func;
  /* A NULL communicator is refused with h20ErrorInvalidValue. */
  return h20cclCommCount(comm, &count) == h20ErrorInvalidValue && count == -1 ? 1 : 0;
}

/* The *Raw wrappers (c_header_check.h). */
h20Error_t h20cclCAllReduceRaw(const void* send, void* recv, size_t count, int datatype, int op,
                               h20cclComm_t comm, h20Stream_t stream) {
  return h20cclAllReduce(send, recv, count, (h20DataType)datatype, (h20cclRedOp)op, comm, stream);
}

h20Error_t h20cclCAllGatherRaw(const void* send, void* recv, size_t count, int datatype,
                               h20cclComm_t comm, h20Stream_t stream) {
  return h20cclAllGather(send, recv, count, (h20DataType)datatype, comm, stream);
}

h20Error_t h20cclCReduceScatterRaw(const void* send, void* recv, size_t count, int datatype, int op,
                                   h20cclComm_t comm, h20Stream_t stream) {
  return h20cclReduceScatter(send, recv, count, (h20DataType)datatype, (h20cclRedOp)op, comm,
                             stream);
}

h20Error_t h20cclCBroadcastRaw(const void* send, void* recv, size_t count, int datatype, int root,
                               h20cclComm_t comm, h20Stream_t stream) {
  return h20cclBroadcast(send, recv, count, (h20DataType)datatype, root, comm, stream);
}

h20Error_t h20cclCGetAlgorithmRaw(h20cclComm_t comm, int func, size_t count, int datatype,
                                  h20cclAlgo* algo) {
  return h20cclCommGetAlgorithm(comm, (h20cclFunc)func, count, (h20DataType)datatype, algo);
}
