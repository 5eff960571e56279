/* c_header_check.c - compiles include/h20/ccl.h as C11 (the header must stay C-clean) and
 * exercises it from C: the api tests call h20cclCHeaderCheck(). */
#include <h20/ccl.h>

#include <stddef.h>

int h20cclCHeaderCheck(void);

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
