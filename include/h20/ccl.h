/*
 * ccl.h - collective communication across chips (libh20ccl): the chips of one process
 * (h20cclCommInitAll, or h20cclCommInitRank from one thread per rank), or one rank per process on
 * one machine or under MPI (h20cclCommInitRank; see "Communicators by rank" in docs/ccl.md).
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
 *    h20ErrorNotPermitted, as the runtime's do. Across processes the ranks check their calls
 *    alone: a bad call enqueues nothing and fails the communicator (its peers' matching work
 *    fails at once with h20ErrorRemote, rather than pairing with this rank's next call), and what
 *    goes wrong while the work runs (another rank exited, aborted, timed
 *    out or disagrees) becomes the communicator's asynchronous error: h20ErrorRemote (or
 *    h20ErrorInvalidValue for a disagreement this rank saw), reported by h20cclCommGetAsyncError
 *    and returned by every later call on the communicator.
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

/* What the ranks of one communicator meet with: made by h20cclGetUniqueId on one rank and handed
 * to the others by the application (MPI_Bcast, a file, fork). Opaque bytes. */
#define H20_CCL_UNIQUE_ID_BYTES 128
typedef struct h20cclUniqueId {
  char internal[H20_CCL_UNIQUE_ID_BYTES];
} h20cclUniqueId;

/* Options of h20cclCommInitRankConfig and h20cclCommSplit. Start from H20_CCL_CONFIG_INITIALIZER
 * and change fields; `size`, `magic` and `version` let the library check that the caller used it.
 *  - blocking: 1 (default) the call returns once the communicator is ready; 0 it returns at once
 *    with h20ErrorNotReady in progress (h20cclCommGetAsyncError reports h20ErrorNotReady until the
 *    ranks have met, then h20Success or the failure; calls on the communicator wait for it).
 *  - timeoutMs: how long a rank waits for the others (meeting at init, data of a collective)
 *    before its operation fails with h20ErrorRemote; 0 means the default (H20_CCL_TIMEOUT_MS, else
 *    300000 ms). A rank that exits or aborts is noticed sooner (see h20ErrorRemote). */
typedef struct h20cclConfig {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int timeoutMs;
} h20cclConfig;
#define H20_CCL_CONFIG_MAGIC 0x48323043u /* "H20C" */
#define H20_CCL_CONFIG_INITIALIZER \
  { sizeof(h20cclConfig), H20_CCL_CONFIG_MAGIC, H20_CCL_VERSION, 1, 0 }

/* h20cclCommSplit's color for ranks that join no new communicator. */
#define H20_CCL_SPLIT_NOCOLOR (-1)

/* Reduction operations. Max and min of NaN operands give an unspecified one of the operands. */
typedef enum h20cclRedOp { h20cclSum = 0, h20cclMax = 1, h20cclMin = 2 } h20cclRedOp;

/* H20 extension: the collectives, for h20cclCommGetAlgorithm. */
typedef enum h20cclFunc {
  h20cclFuncAllReduce = 0,
  h20cclFuncAllGather = 1,
  h20cclFuncReduceScatter = 2,
  h20cclFuncBroadcast = 3,
  h20cclFuncReduce = 4
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
 * where every pair is linked. Across processes only allReduce has a direct form (every rank sends
 * each peer its piece, sums its own, sends the result): auto takes it up to 4 KiB per rank, the
 * two variables apply alike. Read when the communicator is created. */
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
/* Makes a unique id for a new communicator (call it on one rank, usually rank 0). In a process
 * with MPI initialised the id records that, and the ranks meet over MPI; otherwise the calling
 * process listens for the ranks on a local socket until they have met (or the timeout passed), so
 * the ranks must then all run on this machine, and the process that made the id must live until
 * they have. An id is good for one communicator. The root is a thread: a process that forks
 * after this call may only exec in the child (as after any thread starts). */
H20_API h20Error_t h20cclGetUniqueId(h20cclUniqueId* uniqueId);
/* Creates rank `rank` of a communicator of `nranks` ranks on the calling thread's current device,
 * meeting the other ranks through `commId` (collective: every rank calls it, from any processes
 * and threads; blocks until all have). Ranks may be threads of one process (data moves as with
 * h20cclCommInitAll), processes on one machine (through the device daemon: H20_DRIVER=daemon), or
 * processes under MPI; the transport per pair is chosen automatically and H20_CCL_TRANSPORT=ipc|mpi
 * forces one for ranks of different processes (docs/ccl.md). Two ranks may not share a device.
 * Errors: h20ErrorInvalidValue (NULL comm, nranks outside 1..H20_CCL_MAX_RANKS, rank outside
 * 0..nranks-1, an id that is not one, two ranks with the same rank or device, ranks that disagree
 * about nranks), h20ErrorRemote (a rank did not arrive within the timeout, or failed),
 * h20ErrorNotSupported (ranks in several processes and no transport between them). On error
 * *comm is NULL and nothing is left behind. */
H20_API h20Error_t h20cclCommInitRank(h20cclComm_t* comm, int nranks, h20cclUniqueId commId,
                                      int rank);
/* h20cclCommInitRank with options (config NULL: the defaults). With blocking = 0 it returns
 * h20ErrorNotReady and *comm at once; the ranks meet in the background. */
H20_API h20Error_t h20cclCommInitRankConfig(h20cclComm_t* comm, int nranks, h20cclUniqueId commId,
                                            int rank, h20cclConfig* config);
/* Collective over the communicator's ranks: ranks with the same color form a new communicator,
 * ordered by key (then by their rank in comm); color H20_CCL_SPLIT_NOCOLOR joins none (*newcomm
 * NULL). The new communicator inherits comm's options unless config is given. */
H20_API h20Error_t h20cclCommSplit(h20cclComm_t comm, int color, int key, h20cclComm_t* newcomm,
                                   h20cclConfig* config);
/* Waits for the communicator's enqueued work to complete and stops it accepting new work; the
 * handle stays valid for h20cclCommGetAsyncError and h20cclCommDestroy. Returns the
 * communicator's asynchronous error, if any. */
H20_API h20Error_t h20cclCommFinalize(h20cclComm_t comm);
/* Releases the communicator at once without waiting for its work, which fails; the other ranks'
 * operations that need this rank fail with h20ErrorRemote instead of waiting. Buffers the
 * aborted work wrote are undefined. The handle is invalid afterwards. NULL is a no-op. */
H20_API h20Error_t h20cclCommAbort(h20cclComm_t comm);
/* The communicator's asynchronous state into *asyncError: h20Success, h20ErrorNotReady while a
 * non-blocking init is in progress, or the error that made enqueued work fail (h20ErrorRemote
 * when another rank failed, exited, aborted or timed out); the message is in
 * h20cclGetLastErrorMessage(). Once set, the error stays: the communicator can only be aborted
 * or destroyed, and its calls return it. */
H20_API h20Error_t h20cclCommGetAsyncError(h20cclComm_t comm, h20Error_t* asyncError);

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

/* recvbuff[i] on rank `root` = op over all ranks of sendbuff[i]; recvbuff is used on the root
 * only (it may be NULL elsewhere). In place when sendbuff == recvbuff on the root. Types as
 * h20cclAllReduce. */
H20_API h20Error_t h20cclReduce(const void* sendbuff, void* recvbuff, size_t count,
                                h20DataType datatype, h20cclRedOp op, int root, h20cclComm_t comm,
                                h20Stream_t stream);
/* recvbuff[r * count + i] on rank q = sendbuff of rank r [q * count + i]: every rank sends a
 * block of `count` elements to every rank (the MoE token exchange). Not in place (the buffers
 * must not overlap). Any datatype. */
H20_API h20Error_t h20cclAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                                  h20DataType datatype, h20cclComm_t comm, h20Stream_t stream);
/* Point-to-point: rank `peer` receives `count` elements into its recvbuff. A send to peer p and
 * p's receive from this rank match in issue order (the k-th send from a to b with b's k-th
 * receive from a); count and datatype must agree. Sends and receives issued in one group
 * (h20cclGroupStart/End) progress together, so any order of them inside the group completes; a
 * send and receive that depend on each other issued outside a group may wait forever, as in
 * NCCL. peer may be the rank itself (a local copy). */
H20_API h20Error_t h20cclSend(const void* sendbuff, size_t count, h20DataType datatype, int peer,
                              h20cclComm_t comm, h20Stream_t stream);
H20_API h20Error_t h20cclRecv(void* recvbuff, size_t count, h20DataType datatype, int peer,
                              h20cclComm_t comm, h20Stream_t stream);

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
