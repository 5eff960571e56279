/* c_header_check.h - what c_header_check.c offers the C++ api tests: a check that ccl.h works
 * from C, and the entry points called the way a C caller may, with enum arguments given as any int
 * (C converts them to the enum type as they are; C++ may not hold such values in an enum). The
 * api tests pass values outside the enumerations and expect h20ErrorInvalidValue. */
#ifndef H20_TESTS_CCL_C_HEADER_CHECK_H_
#define H20_TESTS_CCL_C_HEADER_CHECK_H_

#include <h20/ccl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if ccl.h's types and a NULL-communicator call behave from C as documented. */
int h20cclCHeaderCheck(void);

h20Error_t h20cclCAllReduceRaw(const void* send, void* recv, size_t count, int datatype, int op,
                               h20cclComm_t comm, h20Stream_t stream);
h20Error_t h20cclCAllGatherRaw(const void* send, void* recv, size_t count, int datatype,
                               h20cclComm_t comm, h20Stream_t stream);
h20Error_t h20cclCReduceScatterRaw(const void* send, void* recv, size_t count, int datatype, int op,
                                   h20cclComm_t comm, h20Stream_t stream);
h20Error_t h20cclCBroadcastRaw(const void* send, void* recv, size_t count, int datatype, int root,
                               h20cclComm_t comm, h20Stream_t stream);
h20Error_t h20cclCGetAlgorithmRaw(h20cclComm_t comm, int func, size_t count, int datatype,
                                  h20cclAlgo* algo);

#ifdef __cplusplus
}
#endif

#endif
