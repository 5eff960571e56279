/* c_callers.h - calls into the C API with enum arguments given as plain ints, made from C (where
 * any int may be converted to an enum type), so that the C++ tests can pass values outside an
 * enum's range exactly as a C caller would, without undefined behaviour on their side. */
#ifndef H20_TESTS_C_CALLERS_H_
#define H20_TESTS_C_CALLERS_H_

#include <h20/h20_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

h20Error_t h20test_MemcpyKind(void* dst, const void* src, size_t count, int kind);
h20Error_t h20test_MemcpyAsyncKind(void* dst, const void* src, size_t count, int kind,
                                   h20Stream_t stream);
h20Error_t h20test_P2PAttribute(int* value, int attr, int srcDevice, int dstDevice);
h20Error_t h20test_DeviceAttribute(int* value, int attr, int device);
const char* h20test_ErrorName(int code);
const char* h20test_ErrorString(int code);
void h20test_ReportFault(const h20KernelContext* ctx, int code, const char* message);

#ifdef __cplusplus
}
#endif

#endif
