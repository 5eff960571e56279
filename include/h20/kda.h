/*
 * kda.h - Kimi Delta Attention (KDA) kernels of the H20 kernel library (libh20kernels).
 *
 * The forward (prefill) pass of KDA, the gated delta-rule linear attention of Kimi Linear, with
 * the semantics of MoonshotAI's FlashKDA `flash_kda.fwd`, and the matching single-token decode
 * step. The library is a client of the runtime's C API: each call checks its arguments, then
 * enqueues kernels on the caller's stream with h20LaunchKernel and returns. Results are ready
 * when the stream's work has completed (h20StreamSynchronize, an event, ...).
 *
 * Semantics, per sequence n and value head h (q/k head h / (HV/H)), for each token t in order:
 *   q^ = q (sum q^2 + 1e-6)^-1/2,  k^ likewise          (L2 norm, eps inside the root)
 *   b  = sigmoid(beta),  alpha = exp(a) per key channel, a from the gate mode below
 *   S <- S Diag(alpha);  S <- S + b (v - S k^) k^T;  o_t = scale * S q^
 * with the state S of shape [V, K] (value-major, as FlashKDA stores it). Sequences start from
 * their initial state (or zero) and restart at every cuSeqlens boundary; the state after the last
 * token is the final state; a zero-length sequence passes its initial state through. Everything
 * is computed in fp32 whatever the input and output types; bf16 results are rounded to nearest
 * even.
 *
 * Conventions for every function below:
 *  - Thread-safety: any function may be called from any host thread concurrently.
 *  - Asynchrony: the functions return once the work is enqueued; they do not wait for the
 *    stream. Tensors must stay allocated and unmodified by other work until the stream reaches
 *    the kernels. The work runs on the stream's device (the current device for NULL and
 *    h20StreamPerThread), whose memory every tensor must be in.
 *  - Errors: invalid arguments return h20ErrorInvalidValue without enqueueing anything; the
 *    message, naming the argument and its value, is available from h20kdaGetLastErrorMessage().
 *    Errors returned by the runtime (a bad stream, a faulted device, out of memory) are passed
 *    through. Problems found only when the kernel reads device data (bad cuSeqlens contents, a
 *    state slot out of range) are reported by the runtime as h20ErrorLaunchFailure at the next
 *    synchronisation, with a message naming the entry; the kernel never accesses memory out of
 *    bounds because of them.
 *
 * C11-clean; compiles as C and C++.
 */
#ifndef H20_KDA_H_
#define H20_KDA_H_

#include <stddef.h>
#include <stdint.h>

#include "h20_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum h20kdaGateMode {
  H20_KDA_GATE_LOWER_BOUND = 0, /* a = lowerBound * sigmoid(exp(A_log[h]) * (g + dtBias[h,:])) */
  H20_KDA_GATE_SOFTPLUS = 1     /* a = -exp(A_log[h]) * softplus(g + dtBias[h,:])             */
} h20kdaGateMode;

/* Which implementation computes the prefill. Results agree to fp32 rounding. */
typedef enum h20kdaAlgorithm {
  H20_KDA_ALGO_DEFAULT = 0,  /* the fastest available: currently CHUNKED                      */
  H20_KDA_ALGO_CHUNKED = 1,  /* chunkwise-parallel form (16-token chunks, WY/UT factors)      */
  H20_KDA_ALGO_RECURRENT = 2 /* fp32 per-token recurrence (the benchmark baseline)            */
} h20kdaAlgorithm;

/* Arguments of h20kdaPrefill. Tensors are dense, row-major, in device memory of the current
 * device; bf16 tensors 2-byte aligned, fp32 tensors 4-byte aligned. */
typedef struct h20kdaPrefillArgs {
  size_t structSize;      /* sizeof(h20kdaPrefillArgs): the struct may grow at its end      */
  int batch;              /* B; must be 1 when cuSeqlens != NULL                            */
  int seqLen;             /* T per batch row; total tokens when cuSeqlens != NULL           */
  int numHeads;           /* H: heads of q and k                                            */
  int numValueHeads;      /* HV: heads of v, g, beta, out; a multiple of H; 0 means H       */
  int headDimK, headDimV; /* K, V: multiples of 16 in [16, 256]; K != V allowed            */
  h20DataType dtype;      /* of q, k, v, g, beta, out: H20_R_16BF or H20_R_32F              */
  const void *q, *k;      /* [B,T,H,K]                                                      */
  const void* v;          /* [B,T,HV,V]                                                     */
  const void* g;          /* [B,T,HV,K]  gate before activation                             */
  const void* beta;       /* [B,T,HV]    logits; sigmoid applied in the kernel              */
  void* out;              /* [B,T,HV,V]; must not overlap any other tensor                  */
  float scale;            /* output scale, usually 1/sqrt(K); finite                        */
  h20kdaGateMode gateMode;
  const float* A_log;       /* [HV]   fp32                                                    */
  const float* dtBias;      /* [HV,K] fp32, or NULL for no bias                               */
  float lowerBound;         /* lower-bound mode only: in [-5, 0)                              */
  const void* initialState; /* [N,HV,V,K] or NULL (zero state)                               */
  void* finalState;         /* [N,HV,V,K] or NULL (not written); may be initialState itself   */
  h20DataType stateDtype;   /* H20_R_32F or H20_R_16BF, for both states                      */
  const int64_t* cuSeqlens; /* [N+1] or NULL: B fixed-length sequences (N = B)               */
  int numSeqs;              /* N when cuSeqlens != NULL (>= 1); ignored otherwise             */
  /* ---- extensions (read only when structSize covers them) ---- */
  h20kdaAlgorithm algorithm; /* H20_KDA_ALGO_DEFAULT when not covered                        */
} h20kdaPrefillArgs;

/* Enqueues the KDA forward pass on `stream`. cuSeqlens contents (cuSeqlens[0] == 0,
 * non-decreasing, cuSeqlens[N] == seqLen) are checked when the kernel runs. Work is spread over
 * (sequence, value head) items, longest sequences first; when there are fewer items than the
 * device's worker threads, each is split along V. Asynchronous; see the conventions above. */
H20_API h20Error_t h20kdaPrefill(const h20kdaPrefillArgs* args, h20Stream_t stream);

/* Arguments of h20kdaDecode: one new token for each of N sequences, whose states live in a pool
 * of numStateSlots slots and are updated in place (what a server runs after prefill). Tensors as
 * for h20kdaPrefill with B = N and T = 1. */
typedef struct h20kdaDecodeArgs {
  size_t structSize;      /* sizeof(h20kdaDecodeArgs): the struct may grow at its end       */
  int numSeqs;            /* N >= 1                                                         */
  int numHeads;           /* H                                                              */
  int numValueHeads;      /* HV: a multiple of H; 0 means H                                 */
  int headDimK, headDimV; /* K, V: multiples of 16 in [16, 256]                             */
  h20DataType dtype;      /* of q, k, v, g, beta, out: H20_R_16BF or H20_R_32F              */
  const void *q, *k;      /* [N,1,H,K]                                                      */
  const void* v;          /* [N,1,HV,V]                                                     */
  const void* g;          /* [N,1,HV,K]                                                     */
  const void* beta;       /* [N,1,HV]                                                       */
  void* out;              /* [N,1,HV,V]; must not overlap any other tensor                  */
  float scale;
  h20kdaGateMode gateMode;
  const float* A_log;        /* [HV]                                                           */
  const float* dtBias;       /* [HV,K] or NULL                                                 */
  float lowerBound;          /* lower-bound mode only: in [-5, 0)                              */
  void* state;               /* [numStateSlots,HV,V,K], read and updated in place              */
  h20DataType stateDtype;    /* H20_R_32F or H20_R_16BF (bf16 rounds the state every step)    */
  const int32_t* stateSlots; /* [N]: slot of sequence n, distinct; or NULL: slot n          */
  int numStateSlots;         /* slots in `state`; 0 means N. Without stateSlots, >= N          */
} h20kdaDecodeArgs;

/* Enqueues one decode step on `stream`: for each sequence n, the recurrence above for its token,
 * starting from state slot stateSlots[n] (or n) and writing the new state back to it. A slot
 * outside [0, numStateSlots) is reported as h20ErrorLaunchFailure at the next synchronisation
 * (that sequence is not computed). Two sequences naming the same slot leave it unspecified.
 * Asynchronous; see the conventions above. */
H20_API h20Error_t h20kdaDecode(const h20kdaDecodeArgs* args, h20Stream_t stream);

/* ---- the operations around KDA in a Kimi-Linear layer ------------------------------------ */

/* Element-wise activations. */
typedef enum h20kdaActivation {
  H20_KDA_ACT_NONE = 0,
  H20_KDA_ACT_SILU = 1,   /* x * sigmoid(x) (swish) */
  H20_KDA_ACT_SIGMOID = 2 /* 1 / (1 + e^-x)         */
} h20kdaActivation;

/* Arguments of h20kdaShortConv: the causal depthwise convolution that Kimi-Linear (and
 * flash-linear-attention's ShortConvolution) applies to q, k and v before KDA:
 *   y[t, d] = act(bias[d] + sum_{j<W} weight[d, j] * x[t - W + 1 + j, d])
 * per sequence, where the inputs before a sequence's first token are its initial state (zeros
 * without one). The state of a sequence is its last W-1 inputs, oldest first, so that a prefill
 * split anywhere, or followed by decode steps (seqLen 1, finalState = initialState), continues
 * exactly where it stopped. (flash-linear-attention keeps a cache [N, D, W]: the same numbers in
 * another order.) Row t of x is at x + t * xStride elements (rows may be wider than D, e.g. a
 * slice of a fused projection); likewise out. */
typedef struct h20kdaShortConvArgs {
  size_t structSize;           /* sizeof(h20kdaShortConvArgs)                                    */
  int batch;                   /* B; must be 1 when cuSeqlens != NULL                            */
  int seqLen;                  /* T per batch row; total tokens when cuSeqlens != NULL           */
  int channels;                /* D: a multiple of 16, at most 65536                             */
  int width;                   /* W: 1 to 16 (Kimi-Linear: 4)                                    */
  h20DataType dtype;           /* of x, weight, bias, out: H20_R_16BF or H20_R_32F               */
  const void* x;               /* [B*T rows, D], rows xStride elements apart                     */
  int64_t xStride;             /* >= D; 0 means D                                                */
  const void* weight;          /* [D, W] (PyTorch's depthwise Conv1d weight [D, 1, W])           */
  const void* bias;            /* [D] or NULL                                                    */
  void* out;                   /* [B*T rows, D]; must not overlap any other tensor               */
  int64_t outStride;           /* >= D; 0 means D                                                */
  h20kdaActivation activation; /* H20_KDA_ACT_NONE or H20_KDA_ACT_SILU                       */
  const void* initialState;    /* [S, W-1, D] or NULL (zeros)                                */
  void* finalState;            /* [S, W-1, D] or NULL (not written); may be initialState     */
  h20DataType stateDtype;      /* H20_R_32F or H20_R_16BF, for both states                   */
  const int64_t* cuSeqlens;    /* [N+1] or NULL: B fixed-length sequences (N = B)            */
  int numSeqs;                 /* N when cuSeqlens != NULL (>= 1); ignored otherwise          */
  const int32_t* stateSlots;   /* [N]: the state slot of sequence n (distinct), as for
                                  h20kdaDecode's pool; or NULL: slot n                        */
  int numStateSlots;           /* S: slots in the states; 0 means N. Without stateSlots, >= N */
} h20kdaShortConvArgs;

/* Enqueues the short convolution on `stream` (fp32 arithmetic; bf16 results rounded to nearest
 * even). cuSeqlens contents are checked when the kernel runs, as for h20kdaPrefill; an invalid
 * cuSeqlens writes nothing. A slot outside [0, numStateSlots) is reported as
 * h20ErrorLaunchFailure at the next synchronisation (that sequence is not computed).
 * Asynchronous; see the conventions at the top. */
H20_API h20Error_t h20kdaShortConv(const h20kdaShortConvArgs* args, h20Stream_t stream);

/* Arguments of h20kdaRmsNorm: RMSNorm per head, optionally gated, as Kimi-Linear's output norm
 * (flash-linear-attention's FusedRMSNormGated with activation "sigmoid"):
 *   y = (x / sqrt(mean(x^2) + eps) * weight + bias) * act(gate)
 * over each group of headDim contiguous elements (a head) of a row; weight and bias [headDim]
 * are shared by the heads. Without a gate it is a plain RMSNorm (numHeads 1 for a whole row). */
typedef struct h20kdaRmsNormArgs {
  size_t structSize;  /* sizeof(h20kdaRmsNormArgs)                                          */
  int64_t rows;       /* tokens, >= 1                                                       */
  int numHeads;       /* H >= 1                                                             */
  int headDim;        /* a multiple of 16, at most 65536                                    */
  h20DataType dtype;  /* of x, gate, weight, bias, out: H20_R_16BF or H20_R_32F             */
  const void* x;      /* [rows, H*headDim], rows xStride elements apart                     */
  int64_t xStride;    /* >= H*headDim; 0 means H*headDim                                    */
  const void* gate;   /* like x, or NULL (no gate)                                          */
  int64_t gateStride; /* >= H*headDim; 0 means H*headDim                                    */
  h20kdaActivation gateActivation; /* of the gate: SIGMOID (Kimi-Linear), SILU or NONE        */
  const void* weight; /* [headDim] or NULL (1)                                              */
  const void* bias;   /* [headDim] or NULL (0)                                              */
  float eps;          /* >= 0, finite; the variance is mean(x^2) + eps, in fp32             */
  void* out;          /* [rows, H*headDim]; may be x itself (same stride), else must not
                         overlap any other tensor                                           */
  int64_t outStride;  /* >= H*headDim; 0 means H*headDim                                    */
} h20kdaRmsNormArgs;

/* Enqueues the norm on `stream` (fp32 arithmetic). Asynchronous; see the conventions above. */
H20_API h20Error_t h20kdaRmsNorm(const h20kdaRmsNormArgs* args, h20Stream_t stream);

/* Arguments of h20kdaLinear: out = x W^T + bias (PyTorch's Linear), the projections of a KDA
 * layer (q/k/v, the low-rank gate pairs, beta, the output projection). bf16 or fp32 with fp32
 * accumulation, on oneDNN's matmul run inside the device's workers, one output tile per block.
 * A library built without oneDNN returns h20ErrorNotSupported. */
typedef struct h20kdaLinearArgs {
  size_t structSize;  /* sizeof(h20kdaLinearArgs)                                            */
  int64_t rows;       /* M >= 1 (tokens)                                                      */
  int inFeatures;     /* K >= 1                                                               */
  int outFeatures;    /* N >= 1                                                               */
  h20DataType dtype;  /* of x, weight, bias, out: H20_R_16BF or H20_R_32F                     */
  const void* x;      /* [M, K], rows xStride elements apart                                  */
  int64_t xStride;    /* >= K; 0 means K                                                      */
  const void* weight; /* [N, K] (PyTorch's Linear weight)                                     */
  const void* bias;   /* [N] or NULL                                                          */
  void* out;          /* [M, N], rows outStride elements apart; must not overlap the others  */
  int64_t outStride;  /* >= N; 0 means N                                                      */
} h20kdaLinearArgs;

/* Enqueues the projection on `stream`. Asynchronous; see the conventions at the top. */
H20_API h20Error_t h20kdaLinear(const h20kdaLinearArgs* args, h20Stream_t stream);

/* The detailed message of the calling thread's most recent failed h20kda* call ("" if none):
 * e.g. "h20kdaPrefill: headDimK 100 is not a multiple of 16 in [16, 256]". Owned by the thread;
 * valid until its next h20kda* call. Never NULL. */
H20_API const char* h20kdaGetLastErrorMessage(void);

/* The SIMD level the kernels run with in this process: "avx512bf16" (AVX-512 with AVX512_BF16,
 * whose KDA prefill takes bf16 data's state products on bf16 dot products), "avx512", "avx2" or
 * "scalar" (the best the CPU supports, or the lower level asked for with the environment variable
 * H20_KDA_ISA). Static string; never NULL. */
H20_API const char* h20kdaGetIsaName(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* H20_KDA_H_ */
