/*
 * ccl.h - collective communication across the chips of one process (libh20ccl).
 *
 * Stream-ordered collectives in the spirit of NCCL/HCCL: a clique of communicators is created over
 * a list of devices, one communicator (rank) per device; each collective call names one rank's
 * communicator and a stream of that rank's device, and the collective runs once every rank of the
 * clique has called it. The library is a client of the runtime's C API (h20_runtime.h): data
 * moves with peer copies, reductions run as kernels (h20LaunchKernel) on the ranks' streams, and
 * the ranks are ordered against each other with events.
 *
 * Issuing a collective:
 *  - One host thread for all ranks: bracket the per-rank calls with h20cclGroupStart() and
 *    h20cclGroupEnd(). The calls inside a group only check their arguments; h20cclGroupEnd()
 *    matches them up, checks that the ranks agree, and enqueues everything.
 *  - One host thread per rank: each thread calls the collective for its rank (in a group or not).
 *    A call returns once the collective has been enqueued for every rank, which needs the calls
 *    of all ranks: it waits for the other threads' calls, never for device work.
 *  - A single thread that calls a collective for one rank of a multi-rank clique outside a group
 *    waits for calls that can never come (as in NCCL): use a group.
 * Several collectives on one clique run in the order they were issued (per rank, the k-th call
 * belongs to the k-th collective), whatever streams they use. A collective's work on rank r's
 * stream starts after everything enqueued earlier on that stream and delays everything enqueued
 * later: buffers may be reused by later work on the same stream without synchronisation.
 *
 * Conventions for every function below:
 *  - Asynchrony: the collectives return once their work is enqueued; results are ready when the
 *    streams' work has completed (h20StreamSynchronize, an event, ...).
 *  - Errors: invalid arguments (NULL or unknown communicator, NULL or too small buffers, buffers
 *    that are not device memory of the rank's device, unsupported types or operations, a root out
 *    of range, counts that overflow) return h20ErrorInvalidValue and enqueue nothing. Ranks that
 *    disagree about a collective (kind, count, type, operation, root) make it fail with
 *    h20ErrorInvalidValue for every rank before anything of it is enqueued; so does a call that
 *    failed its own checks (it still counts as its rank's call, keeping the ranks in step). The
 *    message, naming the argument and its value, is returned by h20cclGetLastErrorMessage().
 *    Errors of the runtime (a faulted device, a stream of the wrong device, out of memory) are
 *    passed through with their code; calls from inside a host function or a kernel return
 *    h20ErrorNotPermitted, as the runtime's do.
 *  - Thread-safety: every function may be called from any thread. The communicators of one clique
 *    may be used concurrently by different threads (one thread per rank); a communicator must not
 *    be destroyed while a call on it is in progress.
 *  - Side effects: h20cclCommInitAll enables peer access (h20DeviceEnablePeerAccess) between every
 *    pair of the clique's devices that has a chip-to-chip link, and leaves it enabled. The calls
 *    change the calling thread's current device only while they run (it is restored).
 *
 * C11-clean; compiles as C and C++.
 */
#ifndef H20_CCL_H_
#define H20_CCL_H_

#include <stddef.h>

#include "h20_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define H20_CCL_VERSION_MAJOR 0
#define H20_CCL_VERSION_MINOR 1
#define H20_CCL_VERSION_PATCH 0
/* Encoded as H20_RUNTIME_VERSION is: 1000 * major + 10 * minor + patch. */
#define H20_CCL_VERSION \
  (1000 * H20_CCL_VERSION_MAJOR + 10 * H20_CCL_VERSION_MINOR + H20_CCL_VERSION_PATCH)

/* Largest number of ranks of one clique. */
#define H20_CCL_MAX_RANKS 64

/* A communicator: one rank of a clique. Opaque. */
typedef struct h20cclComm* h20cclComm_t;

/* Reduction operations. Max and min of NaN operands give an unspecified one of the operands. */
typedef enum h20cclRedOp { h20cclSum = 0, h20cclMax = 1, h20cclMin = 2 } h20cclRedOp;

/* H20 extension: the collectives, for h20cclCommGetAlgorithm. */
typedef enum h20cclFunc {
  h20cclFuncAllReduce = 0,
  h20cclFuncAllGather = 1,
  h20cclFuncReduceScatter = 2,
  h20cclFuncBroadcast = 3
} h20cclFunc;

/* H20 extension: how a collective moves its data (see docs/ccl.md).
 *  - Ring: the ranks form a ring that follows the topology's links; each step every rank takes one
 *    chunk from its predecessor (2(n-1) steps for an allReduce). Bandwidth-optimal; works on
 *    every topology (a pair without a link is crossed with copies staged through the host).
 *  - Direct: every rank reads its share from all other ranks at once (2 steps for an allReduce).
 *    Needs peer access between every pair; fewer steps, so it wins for small messages.
 * The choice: H20_CCL_ALGO=ring|direct forces one (direct falls back to ring where some pair has
 * no link). Otherwise (auto): ring where some pair has no link; direct where every pair is one hop
 * apart; where some pair is several hops apart, direct up to 1 MiB per rank and ring above.
 * H20_CCL_DIRECT_MAX_BYTES=<bytes> replaces that rule: direct up to that size on any topology
 * where every pair is linked. Read at h20cclCommInitAll. */
typedef enum h20cclAlgo { h20cclAlgoRing = 0, h20cclAlgoDirect = 1 } h20cclAlgo;

/* Version of this library (H20_CCL_VERSION when header and library match). */
H20_API h20Error_t h20cclGetVersion(int* version);

/* The calling thread's most recent error message of this library ("" when none), naming the
 * call, the argument and its value. Owned by the thread; valid until its next h20ccl call. */
H20_API const char* h20cclGetLastErrorMessage(void);

/* Creates a clique of ndev communicators, comms[i] for devices[i] (rank i); devices NULL means
 * devices 0..ndev-1. Devices must be distinct and valid; 1 <= ndev <= H20_CCL_MAX_RANKS. Chooses
 * the ring order from the topology and enables peer access where possible. Blocking; not a
 * collective of several threads (one call creates every rank). On error nothing is created.
 * Errors: h20ErrorInvalidValue (NULL comms, bad ndev, duplicate devices), h20ErrorInvalidDevice,
 * h20ErrorInitializationError (bad H20_CCL_* environment variable). */
H20_API h20Error_t h20cclCommInitAll(h20cclComm_t* comms, int ndev, const int* devices);
/* Waits for the communicator's enqueued collectives to complete, then releases it. The clique's
 * other communicators stay valid but can no longer run collectives. NULL is a no-op. */
H20_API h20Error_t h20cclCommDestroy(h20cclComm_t comm);
/* Number of ranks of the communicator's clique. */
H20_API h20Error_t h20cclCommCount(h20cclComm_t comm, int* count);
/* Device of the communicator. */
H20_API h20Error_t h20cclCommDevice(h20cclComm_t comm, int* device);
/* Rank of the communicator in its clique (its index in h20cclCommInitAll's array). */
H20_API h20Error_t h20cclCommUserRank(h20cclComm_t comm, int* rank);
/* H20 extension: the clique's ring as ranks in ring order (rank ranks[i] takes data from
 * ranks[i-1]). Writes at most `capacity` ranks and the clique size to *count. */
H20_API h20Error_t h20cclCommGetRingOrder(h20cclComm_t comm, int* ranks, int capacity, int* count);
/* H20 extension: the algorithm the communicator's clique uses for `func` with `count` elements of
 * `datatype` (count as passed to that collective: per rank for allGather/reduceScatter). */
H20_API h20Error_t h20cclCommGetAlgorithm(h20cclComm_t comm, h20cclFunc func, size_t count,
                                          h20DataType datatype, h20cclAlgo* algo);

/* recvbuff[i] = op over all ranks of sendbuff[i], i < count, on every rank. In place when
 * sendbuff == recvbuff. H20_R_32F, H20_R_16BF and H20_R_16F; 16-bit types are accumulated in
 * fp32 and rounded once to the nearest even value. Buffers: device memory of the rank's device,
 * aligned to the element size; otherwise they must not overlap. */
H20_API h20Error_t h20cclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                   h20DataType datatype, h20cclRedOp op, h20cclComm_t comm,
                                   h20Stream_t stream);
/* recvbuff[r * sendcount + i] = sendbuff of rank r [i] on every rank. In place when
 * sendbuff == recvbuff + rank * sendcount elements. Any datatype (moved as bytes). */
H20_API h20Error_t h20cclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                   h20DataType datatype, h20cclComm_t comm, h20Stream_t stream);
/* recvbuff[i] on rank r = op over all ranks of sendbuff[r * recvcount + i]. In place when
 * recvbuff == sendbuff + rank * recvcount elements. Types as h20cclAllReduce. */
H20_API h20Error_t h20cclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                       h20DataType datatype, h20cclRedOp op, h20cclComm_t comm,
                                       h20Stream_t stream);
/* recvbuff[i] = sendbuff of rank `root` [i] on every rank; sendbuff is used on the root only (it
 * may be NULL elsewhere). In place when sendbuff == recvbuff on the root. Any datatype. */
H20_API h20Error_t h20cclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                                   h20DataType datatype, int root, h20cclComm_t comm,
                                   h20Stream_t stream);

/* Groups: collectives called between h20cclGroupStart and the matching h20cclGroupEnd are only
 * checked and recorded; h20cclGroupEnd issues them. Groups nest; only the outermost End issues.
 * h20cclGroupEnd returns the first error of the group's calls or of issuing them. When a call of
 * the group failed its checks, nothing of the group is enqueued; its calls still count as the
 * ranks' calls of their collectives (which fail), so ranks issued by other threads get the error
 * instead of waiting and the clique stays in step. Except when a call had a NULL or unknown
 * communicator: its rank is unknown, so the whole group is dropped. h20cclGroupEnd without a
 * group: h20ErrorInvalidValue. */
H20_API h20Error_t h20cclGroupStart(void);
H20_API h20Error_t h20cclGroupEnd(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* H20_CCL_H_ */
