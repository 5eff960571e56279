"""kda_prefill_torch - KDA prefill from PyTorch CPU tensors, checked against PyTorch.

A variable-length batch of three prompts (bf16 activations, fp32 gate parameters, fp32 states)
goes through h20.kda.prefill twice: once straight from the torch tensors (they are copied to the
device and the results come back as torch tensors), once from h20 arrays made with
h20.from_dlpack (the way to keep data on the device between calls). Both are compared with KDA's
per-token recurrence written in PyTorch (float64). Prints PASS or FAIL.

Run (after the README's set-up): python3 samples/python/kda_prefill_torch.py
"""

import math
import sys

import torch

import h20

H, HV, K, V = 2, 4, 64, 64
LENGTHS = [50, 17, 93]


def reference(q, k, v, g, beta, A_log, dt_bias, scale, lower_bound, cu):
    """KDA per sequence and value head: L2-normalised q and k, the lower-bound gate,
    S <- S diag(exp(a)); S <- S + sigmoid(beta) (v - S k) k^T; o = scale S q."""
    q, k, v, g, beta = (x.double()[0] for x in (q, k, v, g, beta))
    rep = HV // H
    q = q.repeat_interleave(rep, 1)
    k = k.repeat_interleave(rep, 1)
    q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    alpha = torch.exp(lower_bound * torch.sigmoid(A_log.double().exp()[:, None]
                                                  * (g + dt_bias.double())))
    b = torch.sigmoid(beta)
    out = torch.zeros(q.shape[0], HV, V, dtype=torch.float64)
    states = []
    for n in range(len(cu) - 1):
        S = torch.zeros(HV, V, K, dtype=torch.float64)
        for t in range(cu[n], cu[n + 1]):
            S = S * alpha[t][:, None, :]
            S = S + b[t][:, None, None] * (v[t] - (S @ k[t][..., None])[..., 0])[..., None] \
                * k[t][:, None, :]
            out[t] = scale * (S @ q[t][..., None])[..., 0]
        states.append(S)
    return out, torch.stack(states)


def rel_rmse(x, ref):
    x, ref = x.double(), ref.double()
    return float(torch.sqrt(((x - ref) ** 2).mean() / (ref ** 2).mean()))


def main():
    torch.manual_seed(0)
    T = sum(LENGTHS)
    cu = [0]
    for n in LENGTHS:
        cu.append(cu[-1] + n)
    q = torch.randn(1, T, H, K).bfloat16()
    k = torch.randn(1, T, H, K).bfloat16()
    v = torch.randn(1, T, HV, V).bfloat16()
    g = torch.randn(1, T, HV, K).bfloat16()
    beta = torch.randn(1, T, HV).bfloat16()
    A_log = torch.randn(HV) * 0.5
    dt_bias = torch.randn(HV, K) * 0.1
    cu_seqlens = torch.tensor(cu, dtype=torch.int64)
    scale = 1 / math.sqrt(K)

    # 1. Straight from torch tensors: copies in, torch tensors out.
    out, state = h20.kda.prefill(q, k, v, g, beta, A_log, dt_bias, scale=scale,
                                 lower_bound=-5.0, cu_seqlens=cu_seqlens)
    # 2. From device arrays on chip 1, on a stream, timed with events.
    dev = h20.Device(1)
    args = [h20.from_dlpack(x, device=dev) for x in (q, k, v, g, beta, A_log, dt_bias)]
    stream = h20.Stream(device=dev)
    start, stop = h20.Event(device=dev), h20.Event(device=dev)
    start.record(stream)
    out_dev, state_dev = h20.kda.prefill(*args, scale=scale,
                                         cu_seqlens=h20.from_dlpack(cu_seqlens, device=dev),
                                         stream=stream)
    stop.record(stream)
    stop.synchronize()

    ref_out, ref_state = reference(q, k, v, g, beta, A_log, dt_bias, scale, -5.0, cu)
    errors = {
        "out (torch in/out)": rel_rmse(out[0].float(), ref_out),
        "final state (torch in/out)": rel_rmse(state, ref_state),
        "out (h20 arrays)": rel_rmse(h20.to_torch(out_dev)[0].float(), ref_out),
        "final state (h20 arrays)": rel_rmse(h20.to_torch(state_dev), ref_state),
    }
    print("KDA prefill, {} sequences ({} tokens), H={} HV={} K={} V={}, bf16; {:.3f} ms on "
          "device 1".format(len(LENGTHS), T, H, HV, K, V, start.elapsed_time(stop)))
    for name, e in errors.items():
        print("  rel. RMS error of {:28} {:.2e}".format(name, e))
    ok = isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and \
        all(e < 5e-3 for e in errors.values())
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
