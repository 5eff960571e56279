/*
 * h20_runtime.h - the H20 runtime C API.
 *
 * The public surface of libh20rt: devices, memory, streams, events and kernel launch for the H20
 * inference accelerator, with the names and semantics of the CUDA runtime API under the prefix
 * `h20`. Where CUDA documents a behaviour, that behaviour is the specification; where CUDA leaves
 * it undefined, the runtime picks the safe, detectable behaviour documented here.
 *
 * Conventions for every function below:
 *  - Thread-safety: every function may be called from any host thread concurrently.
 *  - Errors: a function returns h20Success or an error code. A synchronous error (bad argument,
 *    bad handle) is also stored as the calling thread's last error (h20GetLastError) together
 *    with a message naming the argument and its value (h20GetLastErrorMessage), and logged at
 *    level warning (H20_LOG_LEVEL=warning shows it). h20ErrorNotReady is a status, not an error,
 *    and is never stored.
 *  - Faults during execution (a kernel reporting failure) are sticky for the device they happened
 *    on: they are reported, with the code the kernel gave (h20ErrorLaunchFailure unless it said
 *    h20ErrorIllegalAddress), by the next synchronisation and by every later call that submits
 *    work to that device, until h20DeviceReset. Other devices are unaffected, except that no
 *    device can use a faulted device's memory: a copy or memset touching it fails with the
 *    fault (and one already enqueued is skipped when it runs).
 *  - Enum parameters out of range (e.g. a h20MemcpyKind of 99): h20ErrorInvalidValue.
 *  - Handles of different kinds never share a value: an event passed as a stream (or the reverse)
 *    is h20ErrorInvalidResourceHandle.
 *  - fork(): in a child forked after the runtime was initialised, every call that needs the
 *    runtime returns h20ErrorInitializationError (as CUDA's do) and exit() works; initialise the
 *    runtime after fork(), or start the child with exec. A child forked before initialisation
 *    gets a runtime of its own.
 *  - Calls made from inside a host function (h20LaunchHostFunc) or a kernel return
 *    h20ErrorNotPermitted, except the error-query functions and h20KernelReportFault.
 *
 * This header is C11-clean and compiles as C and C++. It includes no third-party headers.
 */
#ifndef H20_RUNTIME_H_
#define H20_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define H20_API __declspec(dllimport)
#elif defined(__GNUC__)
#define H20_API __attribute__((visibility("default")))
#else
#define H20_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------------------------- */

#define H20_VERSION_MAJOR 0
#define H20_VERSION_MINOR 1
#define H20_VERSION_PATCH 0
/* Encoded like CUDART_VERSION: 1000 * major + 10 * minor + patch. */
#define H20_RUNTIME_VERSION (1000 * H20_VERSION_MAJOR + 10 * H20_VERSION_MINOR + H20_VERSION_PATCH)

/* ---------------------------------------------------------------------------------------------
 * Errors (values follow cudaError_t where CUDA has the same error)
 * ------------------------------------------------------------------------------------------- */

typedef enum h20Error {
  h20Success = 0,
  h20ErrorInvalidValue = 1,        /* an argument is out of range or NULL                    */
  h20ErrorMemoryAllocation = 2,    /* device or host memory (or the backing budget) exhausted */
  h20ErrorInitializationError = 3, /* the runtime could not initialise (bad configuration)    */
  h20ErrorRuntimeUnloading = 4,    /* called after the runtime has shut down                  */
  h20ErrorDeviceUnavailable = 46,  /* the device exists but cannot be used now                */
  h20ErrorNoDevice = 100,          /* no device is visible                                     */
  h20ErrorInvalidDevice = 101,     /* a device ordinal is out of range                        */
  h20ErrorPeerAccessUnsupported = 217, /* no link between the two devices                        */
  h20ErrorInvalidResourceHandle = 400, /* a stream or event handle is invalid or destroyed       */
  h20ErrorNotReady = 600,              /* asynchronous work has not completed yet (a status)     */
  h20ErrorIllegalAddress = 700, /* a kernel touched memory it may not                       */
  h20ErrorPeerAccessAlreadyEnabled = 704,
  h20ErrorPeerAccessNotEnabled = 705,
  h20ErrorHostMemoryAlreadyRegistered = 712,
  h20ErrorHostMemoryNotRegistered = 713,
  h20ErrorLaunchFailure = 719, /* a kernel reported a fault during execution              */
  h20ErrorNotPermitted = 800,  /* the call is not allowed here (e.g. inside a host function) */
  h20ErrorNotSupported = 801,  /* the operation is not supported by this device or build  */
  h20ErrorRemote = 990,        /* another rank of a libh20ccl communicator failed, exited,
                                  aborted or did not answer in time (NCCL's ncclRemoteError) */
  h20ErrorUnknown = 999
} h20Error;
typedef h20Error h20Error_t;

/* Name of the enumerator ("h20ErrorInvalidValue"); "unrecognized error code" for others. Never
 * NULL; the string is static. */
H20_API const char* h20GetErrorName(h20Error_t error);
/* Fixed description of the code; never NULL; static. */
H20_API const char* h20GetErrorString(h20Error_t error);
/* Returns the calling thread's last error and resets it to h20Success. */
H20_API h20Error_t h20GetLastError(void);
/* Returns the calling thread's last error without resetting it. */
H20_API h20Error_t h20PeekAtLastError(void);
/* H20 extension: the detailed message of the calling thread's most recent error, naming the call,
 * the argument and its value (e.g. "h20Memcpy: count 4096 exceeds the 1024 bytes remaining in
 * allocation 0x... (4096 bytes) at offset 3072"). "" when no error has been recorded. The string
 * is owned by the thread and valid until its next h20 call. Not reset by h20GetLastError. */
H20_API const char* h20GetLastErrorMessage(void);

/* Version of this runtime library (H20_RUNTIME_VERSION when header and library match). */
H20_API h20Error_t h20RuntimeGetVersion(int* runtimeVersion);
/* Version of the driver beneath the runtime (the embedded emulator's version). */
H20_API h20Error_t h20DriverGetVersion(int* driverVersion);

/* Element types of tensors passed to SDK libraries (kernels, collectives). */
typedef enum h20DataType {
  H20_R_32F = 0,  /* IEEE binary32                     */
  H20_R_16BF = 1, /* bfloat16 (upper half of binary32) */
  H20_R_16F = 2   /* IEEE binary16                     */
} h20DataType;

/* ---------------------------------------------------------------------------------------------
 * Devices
 * ------------------------------------------------------------------------------------------- */

typedef struct h20Dim3 {
  unsigned int x, y, z;
} h20Dim3;

typedef struct h20DeviceProp {
  char name[256];                /* "H20 (emulated)"                                          */
  size_t totalGlobalMem;         /* bytes of device memory                                    */
  size_t sharedMemPerBlock;      /* default per-block shared memory limit (bytes)             */
  size_t sharedMemPerBlockOptin; /* largest sharedMemBytes accepted by h20LaunchKernel        */
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int clockRate;       /* kHz                                                        */
  int memoryClockRate; /* kHz                                                        */
  int memoryBusWidth;  /* bits                                                       */
  int major, minor;    /* compute capability of the modelled chip                   */
  int multiProcessorCount;
  int l2CacheSize;      /* bytes                                                      */
  int asyncEngineCount; /* copy engines                                              */
  int concurrentKernels;
  int unifiedAddressing;
  int canMapHostMemory;
  int integrated;
  int pciDomainID, pciBusID, pciDeviceID;
  char pciBusId[32];        /* "0000:18:00.0"                                             */
  int numaNode;             /* host NUMA node the chip is attached to; -1 if unknown    */
  double memoryBandwidth;   /* bytes/s of device memory (H20 extension)                  */
  double peakBf16Flops;     /* dense BF16 FLOP/s (H20 extension)                          */
  double hostLinkBandwidth; /* bytes/s of the host link, per direction (H20 extension)   */
  int streamPriorityLowest; /* as h20DeviceGetStreamPriorityRange                          */
  int streamPriorityHighest;
  int emulated;          /* 1 on the software-emulated device                          */
  int hostWorkerThreads; /* emulator: host threads that run this chip's engines        */
  int computeMode;       /* h20ComputeMode: which processes may use the device         */
  int reserved[31];
} h20DeviceProp;

/* Compute modes (CUDA's values). A process uses a device from its first allocation, interprocess
 * event or import on it until it exits (h20DeviceReset does not end it). Only the device daemon serves several processes: with
 * the embedded emulator every device is h20ComputeModeDefault. */
typedef enum h20ComputeMode {
  h20ComputeModeDefault = 0,         /* any number of processes                                */
  h20ComputeModeProhibited = 2,      /* no process: h20ErrorDeviceUnavailable                   */
  h20ComputeModeExclusiveProcess = 3 /* one process at a time: others h20ErrorDeviceUnavailable */
} h20ComputeMode;

/* Device attributes for h20DeviceGetAttribute (CUDA's values). */
typedef enum h20DeviceAttr {
  h20DevAttrMaxThreadsPerBlock = 1,
  h20DevAttrWarpSize = 10,
  h20DevAttrMultiProcessorCount = 16,
  h20DevAttrComputeMode = 20,
  h20DevAttrConcurrentKernels = 31,
  h20DevAttrPciBusId = 33,
  h20DevAttrPciDeviceId = 34,
  h20DevAttrComputeCapabilityMajor = 75,
  h20DevAttrComputeCapabilityMinor = 76
} h20DeviceAttr;

/* One process using a device (h20DeviceGetProcesses). */
typedef struct h20ProcessInfo {
  int pid;
  int device;        /* runtime ordinal in the calling process */
  size_t usedMemory; /* bytes of the device's memory the process allocated */
  char name[64];     /* the process's name (its /proc comm)                 */
} h20ProcessInfo;

/* Number of visible devices. Returns h20ErrorNoDevice (and *count = 0) when none is visible,
 * h20ErrorInitializationError when the configuration (environment) is invalid. */
H20_API h20Error_t h20GetDeviceCount(int* count);
/* Sets the calling host thread's current device (default 0). Does not create streams. */
H20_API h20Error_t h20SetDevice(int device);
H20_API h20Error_t h20GetDevice(int* device);
H20_API h20Error_t h20GetDeviceProperties(h20DeviceProp* prop, int device);
/* Blocks until all work on every stream of the current device has completed. Reports the
 * device's sticky fault, if any. Releases unused memory of the stream-ordered pool. */
H20_API h20Error_t h20DeviceSynchronize(void);
/* Waits for the current device's pending work, then destroys every allocation, stream and event
 * of that device (their handles become invalid) and clears its fault state. */
H20_API h20Error_t h20DeviceReset(void);
/* Free and total device memory of the current device, in bytes. On the emulated device free is
 * also capped by what is left of the host backing budget (H20_EMU_MEMORY_BUDGET, or h20d's
 * --memory-budget), which all devices share: an allocation on one device can lower the others'
 * free bytes. With the device daemon (H20_DRIVER=daemon) it counts every process's allocations. */
H20_API h20Error_t h20MemGetInfo(size_t* freeBytes, size_t* totalBytes);
/* H20 extension: bytes of `device`'s memory held by this process's live allocations (h20Malloc
 * and the stream-ordered pool's reserve), for monitoring tools: unlike totalBytes - freeBytes it
 * does not count the emulator's backing-budget cap, nor other processes' memory. */
H20_API h20Error_t h20DeviceGetMemoryUsed(size_t* usedBytes, int device);
/* Stream priorities: numerically lower is higher priority, as in CUDA. */
H20_API h20Error_t h20DeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority);
/* The value of one attribute of `device`. An unknown attr: h20ErrorInvalidValue. */
H20_API h20Error_t h20DeviceGetAttribute(int* value, h20DeviceAttr attr, int device);
/* H20 extension (nvidia-smi -c): sets `device`'s compute mode for every process of the device
 * daemon; processes already using the device keep it. With the embedded emulator:
 * h20ErrorNotSupported. A mode that is not an h20ComputeMode: h20ErrorInvalidValue. */
H20_API h20Error_t h20DeviceSetComputeMode(int device, int mode);
/* H20 extension (nvidia-smi's process table): the processes that hold memory on `device`.
 * Writes at most `capacity` entries (infos may be NULL when capacity is 0) and the total number
 * to *count. With the embedded emulator the list is this process, when it holds memory there. */
H20_API h20Error_t h20DeviceGetProcesses(int device, h20ProcessInfo* infos, int capacity,
                                         int* count);

/* ---------------------------------------------------------------------------------------------
 * Multi-chip topology and peer access
 *
 * The chips of the emulated box are joined by the links of its topology (H20_EMU_TOPOLOGY).
 * Peer access is one-directional: after h20DeviceEnablePeerAccess(peer) on device A, kernels of A
 * may use peer's memory. Copies between chips work for every pair whether or not access is
 * enabled (staged through host memory when it is not).
 * ------------------------------------------------------------------------------------------- */

typedef enum h20DeviceP2PAttr {
  h20DevP2PAttrPerformanceRank = 1, /* 0 is the best link; -1 when access is unsupported */
  h20DevP2PAttrAccessSupported = 2,
  h20DevP2PAttrNativeAtomicSupported = 3,
  h20DevP2PAttrLinkBandwidthMBps = 100, /* H20 extension: per direction, MB/s (1e6 bytes/s) */
  h20DevP2PAttrHopCount = 101,          /* H20 extension: links traversed; -1: via the host */
  h20DevP2PAttrLinkKind = 102           /* H20 extension: a h20P2PLinkKind value */
} h20DeviceP2PAttr;

/* What joins two chips (h20DevP2PAttrLinkKind). */
typedef enum h20P2PLinkKind {
  h20P2PLinkHost = 0,   /* no chip-to-chip path: copies are staged through host memory */
  h20P2PLinkDirect = 1, /* chip-to-chip links; more than one hop routes through other chips */
  h20P2PLinkSwitch = 2  /* through the chip switch */
} h20P2PLinkKind;

/* *canAccessPeer = 1 if `device` can access `peerDevice`'s memory (a chip-to-chip path exists);
 * 0 for a device and itself, as in CUDA. */
H20_API h20Error_t h20DeviceCanAccessPeer(int* canAccessPeer, int device, int peerDevice);
H20_API h20Error_t h20DeviceGetP2PAttribute(int* value, h20DeviceP2PAttr attr, int srcDevice,
                                            int dstDevice);
/* Lets the current device access peerDevice's memory. flags must be 0. Errors:
 * h20ErrorInvalidDevice (bad or equal ids), h20ErrorPeerAccessUnsupported (no link),
 * h20ErrorPeerAccessAlreadyEnabled. h20DeviceReset of the current device disables its accesses. */
H20_API h20Error_t h20DeviceEnablePeerAccess(int peerDevice, unsigned int flags);
/* h20ErrorPeerAccessNotEnabled if access was not enabled. */
H20_API h20Error_t h20DeviceDisablePeerAccess(int peerDevice);
/* Host CPUs near `device` (its NUMA node's CPUs). Writes at most `capacity` CPU ids to cpus
 * (which may be NULL when capacity is 0) and the total number to *count. *numaNode receives the
 * device's node (-1 without NUMA support); it may be NULL. */
H20_API h20Error_t h20DeviceGetCpuAffinity(int device, int* cpus, int capacity, int* count,
                                           int* numaNode);

/* ---------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------- */

typedef enum h20MemcpyKind {
  h20MemcpyHostToHost = 0,
  h20MemcpyHostToDevice = 1,
  h20MemcpyDeviceToHost = 2,
  h20MemcpyDeviceToDevice = 3,
  h20MemcpyDefault = 4 /* direction inferred from the pointers (unified addressing)           */
} h20MemcpyKind;

typedef enum h20MemoryType {
  h20MemoryTypeUnregistered = 0, /* ordinary (pageable) host memory unknown to the runtime    */
  h20MemoryTypeHost = 1,         /* pinned host memory (h20MallocHost, h20HostAlloc, registered) */
  h20MemoryTypeDevice = 2,
  h20MemoryTypeManaged = 3 /* reserved                                                   */
} h20MemoryType;

typedef struct h20PointerAttributes {
  h20MemoryType type;
  int device;          /* device of the allocation; for host memory the device current at alloc */
  void* devicePointer; /* address usable by kernels, or NULL                                    */
  void* hostPointer;   /* address usable by the host, or NULL                                   */
} h20PointerAttributes;

/* h20HostAlloc flags */
#define h20HostAllocDefault 0x00u
#define h20HostAllocPortable 0x01u
#define h20HostAllocMapped 0x02u
#define h20HostAllocWriteCombined 0x04u
/* h20HostRegister flags */
#define h20HostRegisterDefault 0x00u
#define h20HostRegisterPortable 0x01u
#define h20HostRegisterMapped 0x02u
#define h20HostRegisterIoMemory 0x04u
#define h20HostRegisterReadOnly 0x08u

/* Allocates `size` bytes of device memory on the current device, aligned to 256 bytes (and
 * reserved in blocks of 256 bytes in-process, of a page with the device daemon).
 * size 0 succeeds with *devPtr = NULL. Fails with h20ErrorMemoryAllocation when the device is
 * full or the emulator's host backing budget is exhausted. */
H20_API h20Error_t h20Malloc(void** devPtr, size_t size);
/* Frees device memory (NULL is a no-op). Waits for the device's pending work first, as
 * cudaFree does. A pointer that is not the start of a live allocation: h20ErrorInvalidValue. */
H20_API h20Error_t h20Free(void* devPtr);
/* Pinned host memory, placed on the current device's NUMA node where the host has NUMA. */
H20_API h20Error_t h20MallocHost(void** ptr, size_t size);
H20_API h20Error_t h20HostAlloc(void** pHost, size_t size, unsigned int flags);
H20_API h20Error_t h20FreeHost(void* ptr);
/* Page-locks an existing host range so it is treated as pinned memory. Overlapping an already
 * registered or pinned range: h20ErrorHostMemoryAlreadyRegistered. A NULL ptr, a size of 0, a
 * range that wraps past the end of the address space or overlaps device memory:
 * h20ErrorInvalidValue. */
H20_API h20Error_t h20HostRegister(void* ptr, size_t size, unsigned int flags);
/* ptr must be the start of a registered range (NULL included): else
 * h20ErrorHostMemoryNotRegistered. */
H20_API h20Error_t h20HostUnregister(void* ptr);
/* Device pointer of mapped pinned memory (identical to the host pointer under unified
 * addressing). flags must be 0. */
H20_API h20Error_t h20HostGetDevicePointer(void** pDevice, void* pHost, unsigned int flags);
/* Base address and size (as requested at allocation) of the live device, pinned or registered
 * allocation containing `ptr`, like the driver API's cuMemGetAddressRange. Either output may be
 * NULL. Pageable or freed memory: h20ErrorInvalidValue. Libraries use it to check that a buffer
 * passed to them is large enough. */
H20_API h20Error_t h20MemGetAddressRange(void** base, size_t* size, const void* ptr);
/* Attributes of the memory `ptr` points into. Pageable host memory (including NULL) is
 * h20MemoryTypeUnregistered with device -2 and both pointers NULL, as in CUDA 11+. A pointer into
 * a device's memory range that is not in a live allocation (freed): h20ErrorInvalidValue. */
H20_API h20Error_t h20PointerGetAttributes(h20PointerAttributes* attributes, const void* ptr);

typedef struct h20Stream_st* h20Stream_t;

/* Copies. Every device-side and pinned range is checked against the live allocation it points
 * into; a range past its end, into freed memory or across two allocations fails with
 * h20ErrorInvalidValue and copies nothing. A copy or memset on a legacy stream (h20Memcpy,
 * h20Memset, or the NULL stream) that touches another device's memory is also an operation of
 * that device's legacy stream, ordered as h20MemcpyPeer is. Host/device synchronisation follows
 * CUDA:
 *  - h20Memcpy: host<->device copies return when the copy is done; device->device copies are
 *    enqueued on the legacy default stream and return at once.
 *  - h20MemcpyAsync: with pinned memory fully asynchronous; from pageable memory the source is
 *    staged before the call returns; to pageable memory the call returns when the copy is done. */
H20_API h20Error_t h20Memcpy(void* dst, const void* src, size_t count, h20MemcpyKind kind);
H20_API h20Error_t h20MemcpyAsync(void* dst, const void* src, size_t count, h20MemcpyKind kind,
                                  h20Stream_t stream);
/* Copies between the memory of two devices. Both ranges are checked against their device's live
 * allocations. As in CUDA, h20MemcpyPeer returns at once but is ordered after all work enqueued
 * so far, and before all work enqueued later, on both devices' legacy streams (and so with their
 * blocking streams); h20MemcpyPeerAsync is ordered on `stream` only. */
H20_API h20Error_t h20MemcpyPeer(void* dst, int dstDevice, const void* src, int srcDevice,
                                 size_t count);
H20_API h20Error_t h20MemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice,
                                      size_t count, h20Stream_t stream);
/* Fills device memory with the byte `value`. h20Memset is asynchronous with respect to the host
 * (legacy default stream), as cudaMemset is for device memory. */
H20_API h20Error_t h20Memset(void* devPtr, int value, size_t count);
H20_API h20Error_t h20MemsetAsync(void* devPtr, int value, size_t count, h20Stream_t stream);

/* Stream-ordered allocation from the device's memory pool. The pointer may be used by work
 * enqueued after this call on `stream` (or ordered after it); memory freed with h20FreeAsync is
 * reused by later h20MallocAsync calls once the free has executed, or at once on the same
 * stream. Unused pool memory is returned at h20DeviceSynchronize. */
H20_API h20Error_t h20MallocAsync(void** devPtr, size_t size, h20Stream_t stream);
H20_API h20Error_t h20FreeAsync(void* devPtr, h20Stream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------------------------- */

/* Stream handles with special meaning (values as in CUDA). NULL is the legacy default stream. */
#define h20StreamLegacy ((h20Stream_t)0x1)
#define h20StreamPerThread ((h20Stream_t)0x2)

#define h20StreamDefault 0x00u
#define h20StreamNonBlocking 0x01u /* does not synchronise with the legacy default stream       */

/* Creates a stream on the current device. Work on a stream runs in order; work on different
 * streams and devices runs concurrently. */
H20_API h20Error_t h20StreamCreate(h20Stream_t* stream);
H20_API h20Error_t h20StreamCreateWithFlags(h20Stream_t* stream, unsigned int flags);
/* Priority outside the device's range is clamped to it, as in CUDA. */
H20_API h20Error_t h20StreamCreateWithPriority(h20Stream_t* stream, unsigned int flags,
                                               int priority);
H20_API h20Error_t h20StreamGetPriority(h20Stream_t stream, int* priority);
H20_API h20Error_t h20StreamGetFlags(h20Stream_t stream, unsigned int* flags);
/* The device the stream belongs to (NULL and h20StreamPerThread: the current device). */
H20_API h20Error_t h20StreamGetDevice(h20Stream_t stream, int* device);
/* Returns at once; work already enqueued still completes. The handle is invalid afterwards.
 * NULL, h20StreamLegacy and h20StreamPerThread cannot be destroyed:
 * h20ErrorInvalidResourceHandle. */
H20_API h20Error_t h20StreamDestroy(h20Stream_t stream);
/* Waits for all work enqueued so far on `stream`. For the legacy stream (NULL, h20StreamLegacy),
 * as every legacy-stream operation is ordered after the device's blocking streams, that includes
 * the work enqueued so far to the device's blocking streams (destroyed ones too). */
H20_API h20Error_t h20StreamSynchronize(h20Stream_t stream);
/* h20Success if all work enqueued so far has completed (for the legacy stream: as
 * h20StreamSynchronize counts it), h20ErrorNotReady otherwise. */
H20_API h20Error_t h20StreamQuery(h20Stream_t stream);

typedef struct h20Event_st* h20Event_t;

/* Makes all later work on `stream` wait until the work captured by the event's most recent
 * h20EventRecord completes. flags must be 0. An event never recorded is a no-op. */
H20_API h20Error_t h20StreamWaitEvent(h20Stream_t stream, h20Event_t event, unsigned int flags);

typedef void (*h20HostFn_t)(void* userData);
/* Enqueues a host function: it runs on an emulator thread after the stream's prior work, and the
 * stream's later work waits for it. It must not call the h20 API (calls return
 * h20ErrorNotPermitted). */
H20_API h20Error_t h20LaunchHostFunc(h20Stream_t stream, h20HostFn_t fn, void* userData);

/* ---------------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------------- */

#define h20EventDefault 0x00u
#define h20EventBlockingSync 0x01u  /* h20EventSynchronize sleeps instead of spinning first     */
#define h20EventDisableTiming 0x02u /* no timestamp: cheaper; h20EventElapsedTime refuses it */
#define h20EventInterprocess 0x04u  /* needs h20EventDisableTiming and the device daemon */

H20_API h20Error_t h20EventCreate(h20Event_t* event);
H20_API h20Error_t h20EventCreateWithFlags(h20Event_t* event, unsigned int flags);
/* Captures the work enqueued so far on `stream`, which must belong to the event's device (NULL
 * and h20StreamPerThread mean the current device's; else h20ErrorInvalidResourceHandle).
 * Re-recording replaces the previous capture. */
H20_API h20Error_t h20EventRecord(h20Event_t event, h20Stream_t stream);
/* h20Success if the captured work has completed (or the event was never recorded),
 * h20ErrorNotReady otherwise. */
H20_API h20Error_t h20EventQuery(h20Event_t event);
H20_API h20Error_t h20EventSynchronize(h20Event_t event);
/* Milliseconds between two completed events (resolution about 1 microsecond). Either event not
 * recorded or created with h20EventDisableTiming: h20ErrorInvalidResourceHandle; either not yet
 * completed: h20ErrorNotReady. */
H20_API h20Error_t h20EventElapsedTime(float* ms, h20Event_t start, h20Event_t end);
/* Returns at once; a pending capture still completes. */
H20_API h20Error_t h20EventDestroy(h20Event_t event);

/* ---------------------------------------------------------------------------------------------
 * Interprocess communication (CUDA's cudaIpc* semantics)
 *
 * Needs the device daemon (H20_DRIVER=daemon, see h20d): with the embedded emulator, which serves
 * one process, these calls return h20ErrorNotSupported. A handle is 64 opaque bytes that carry a
 * 128-bit random capability; send them to another process of the same user by any means (a pipe,
 * a file, MPI). Handles of a daemon that has since restarted are refused.
 * ------------------------------------------------------------------------------------------- */

#define H20_IPC_HANDLE_SIZE 64
typedef struct h20IpcMemHandle_st {
  char reserved[H20_IPC_HANDLE_SIZE];
} h20IpcMemHandle_t;
typedef struct h20IpcEventHandle_st {
  char reserved[H20_IPC_HANDLE_SIZE];
} h20IpcEventHandle_t;

/* h20IpcOpenMemHandle flags */
#define h20IpcMemLazyEnablePeerAccess 0x01u

/* Exports the device allocation that starts at devPtr (an h20Malloc pointer: not an offset into
 * it, not stream-ordered or imported memory; else h20ErrorInvalidValue). The allocation stays
 * importable until its owner frees it; memory already imported stays valid until every importer
 * has closed it, even if the owner frees it or exits. */
H20_API h20Error_t h20IpcGetMemHandle(h20IpcMemHandle_t* handle, void* devPtr);
/* Maps memory exported by another process; *devPtr is valid in this process only. flags must be
 * h20IpcMemLazyEnablePeerAccess: when the memory belongs to a device other than the current one
 * and the two are linked, the current device's peer access to it is enabled as by
 * h20DeviceEnablePeerAccess. Opening a handle that is open in this process already returns the
 * same pointer and adds a reference. A handle exported by this process, a forged or stale one, or
 * one whose owner has freed the memory: h20ErrorInvalidValue. The memory's device must be visible
 * in this process (h20ErrorInvalidDevice otherwise). */
H20_API h20Error_t h20IpcOpenMemHandle(void** devPtr, h20IpcMemHandle_t handle, unsigned int flags);
/* Drops one reference to memory opened with h20IpcOpenMemHandle, waiting first for the pending
 * work of every device (any of them may read it through peer access); the last one unmaps it.
 * Any other pointer: h20ErrorInvalidValue. h20Free refuses imported memory. Thread-safe with
 * concurrent opens and closes of the same handle. */
H20_API h20Error_t h20IpcCloseMemHandle(void* devPtr);
/* Exports an event created with h20EventInterprocess | h20EventDisableTiming (any other event:
 * h20ErrorInvalidResourceHandle). An event opened from another process's handle cannot be
 * exported again (h20ErrorInvalidValue). */
H20_API h20Error_t h20IpcGetEventHandle(h20IpcEventHandle_t* handle, h20Event_t event);
/* Opens another process's interprocess event as an event of this process, on the event's device
 * (which must be visible: h20ErrorInvalidDevice otherwise), with h20EventInterprocess |
 * h20EventDisableTiming. It shares the exporter's state: h20EventRecord in any process makes a
 * new latest record; h20EventQuery, h20EventSynchronize and h20StreamWaitEvent see the latest
 * record, whichever process made it. Records finish in order: a wait for a record is released by
 * that record's completion, never by a later one that finished first. At most 112 records of one
 * event may be pending; a further h20EventRecord waits for the oldest. Destroy it with
 * h20EventDestroy. A forged or stale handle, or a memory handle: h20ErrorInvalidValue. A record
 * fails when its work was skipped on a faulted device, or when the process that made it exits
 * with it pending: waits for it end and report h20ErrorLaunchFailure (a stream that waited on it
 * becomes faulted) instead of waiting forever. */
H20_API h20Error_t h20IpcOpenEventHandle(h20Event_t* event, h20IpcEventHandle_t handle);

/* ---------------------------------------------------------------------------------------------
 * Kernels
 *
 * A kernel on the emulated device is a C function run once per block of the grid, possibly on
 * several host threads at once. Within one block the function does the work of all blockDim
 * threads (vectorised). Blocks of one launch must not depend on each other's progress.
 * ------------------------------------------------------------------------------------------- */

typedef struct h20KernelContext {
  h20Dim3 blockIdx;
  h20Dim3 gridDim;
  h20Dim3 blockDim;
  void* sharedMem; /* this block's shared memory (64-byte aligned), or NULL if none      */
  size_t sharedMemBytes;
  int device;      /* ordinal of the device running the kernel                           */
  int workerIndex; /* index of the host worker thread running this block (0-based)       */
  void* internal;  /* runtime-private; do not touch                                       */
} h20KernelContext;

typedef void (*h20KernelFn)(const h20KernelContext* ctx, const void* args);

/* Largest argsBytes accepted by h20LaunchKernel. */
#define H20_MAX_KERNEL_ARGS_BYTES 4096u

/* Enqueues fn over `grid` blocks on `stream`. `args` (argsBytes bytes, may be NULL when 0) is
 * copied before the call returns, so the caller may reuse it at once; the kernel receives the
 * copy aligned to at least 16 bytes. Every dimension of grid and block must be >= 1,
 * block.x*block.y*block.z <= maxThreadsPerBlock, grid within maxGridSize and
 * sharedMemBytes <= sharedMemPerBlockOptin; otherwise h20ErrorInvalidValue.
 * Every 8-byte-aligned word of `args` that holds an address inside a live allocation of another
 * device requires peer access to that device (h20ErrorPeerAccessNotEnabled otherwise), so a kernel
 * cannot reach a peer it may not use. Padding bytes are inspected too: zero-initialise argument
 * structs. */
H20_API h20Error_t h20LaunchKernel(h20KernelFn fn, h20Dim3 grid, h20Dim3 block, const void* args,
                                   size_t argsBytes, size_t sharedMemBytes, h20Stream_t stream);

/* Called by a kernel to report that it failed (code should be h20ErrorLaunchFailure or
 * h20ErrorIllegalAddress; any other value, h20Success included, is reported as
 * h20ErrorLaunchFailure). The first report of a launch wins; the device becomes faulted and the
 * fault, with `message` and the launch it came from, is returned by the next synchronisation.
 * The kernel should return promptly afterwards. Safe from any block. */
H20_API void h20KernelReportFault(const h20KernelContext* ctx, h20Error_t code,
                                  const char* message);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* H20_RUNTIME_H_ */
