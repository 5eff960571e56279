/* c_callers.c - see c_callers.h. */
#include "c_callers.h"

h20Error_t h20test_MemcpyKind(void* dst, const void* src, size_t count, int kind) {
  return h20Memcpy(dst, src, count, (h20MemcpyKind)kind);
}

h20Error_t h20test_MemcpyAsyncKind(void* dst, const void* src, size_t count, int kind,
                                   h20Stream_t stream) {
  return h20MemcpyAsync(dst, src, count, (h20MemcpyKind)kind, stream);
}

h20Error_t h20test_P2PAttribute(int* value, int attr, int srcDevice, int dstDevice) {
  return h20DeviceGetP2PAttribute(value, (h20DeviceP2PAttr)attr, srcDevice, dstDevice);
}

const char* h20test_ErrorName(int code) {
  return h20GetErrorName((h20Error_t)code);
}

const char* h20test_ErrorString(int code) {
  return h20GetErrorString((h20Error_t)code);
}

void h20test_ReportFault(const h20KernelContext* ctx, int code, const char* message) {
  h20KernelReportFault(ctx, (h20Error_t)code, message);
}

h20Error_t h20test_DeviceAttribute(int* value, int attr, int device) {
  return h20DeviceGetAttribute(value, (h20DeviceAttr)attr, device);
}
