#!/usr/bin/env python3
"""torch_layer.py - the Kimi-Linear KDA layer written with PyTorch CPU operations, timed.

The comparison point of `h20-kda-bench layer` (tools/kda-bench/README.md): the same layer
(hidden 2304, 32 heads of 128, short convolutions of width 4, low rank 128) over T tokens, bf16
weights and activations for the projections and convolutions as the SDK runs them, and KDA in
the chunked form of flash-linear-attention's naive PyTorch reference (chunks of 64 tokens, the
intra-chunk decay as a [C, C, K] tensor, the UT transform by forward substitution, fp32), since
flash-linear-attention's fast kernels are Triton (GPU only).

Needs PyTorch (Debian: python3-torch; not installed by the setup script, as only this comparison
uses it). Prints the median time per operation and per layer, and tokens/s.

    python3 tools/kda-bench/torch_layer.py --tokens 4096 --threads 2 --runs 3
    python3 tools/kda-bench/torch_layer.py --check   # chunked KDA against the recurrence
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

HIDDEN, HEADS, DIM, CONV, RANK = 2304, 32, 128, 4, 128
PROJ = HEADS * DIM


def kda_recurrent(q, k, v, g, beta, scale):
    """Token by token: S <- S diag(e^g); S <- S + b (v - S k) k^T; o = scale S q. [T, H, D]."""
    T, H, K = q.shape
    S = torch.zeros(H, v.shape[-1], K, dtype=torch.float32)
    out = torch.empty(T, H, v.shape[-1])
    for t in range(T):
        S = S * g[t].exp()[:, None, :]
        delta = beta[t][:, None] * (v[t] - torch.einsum("hvk,hk->hv", S, k[t]))
        S = S + delta[:, :, None] * k[t][:, None, :]
        out[t] = scale * torch.einsum("hvk,hk->hv", S, q[t])
    return out


def kda_chunked(q, k, v, g, beta, scale, chunk=64):
    """The chunkwise form over [T, H, D] inputs (T a multiple of `chunk`), fp32."""
    T, H, K = q.shape
    V = v.shape[-1]
    n = T // chunk
    # [H, n, C, D]
    q, k, v, g = (x.reshape(n, chunk, H, -1).permute(2, 0, 1, 3) for x in (q, k, v, g))
    beta = beta.reshape(n, chunk, H).permute(2, 0, 1)
    gc = g.cumsum(-2)
    mask = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool), -1)
    # Pairwise decay e^{G_i - G_j} for j <= i, per channel: [H, n, C, C, K].
    diff = (gc[..., :, None, :] - gc[..., None, :, :]).masked_fill(
        ~torch.tril(torch.ones(chunk, chunk, dtype=torch.bool))[..., None], float("-inf"))
    decay = diff.exp()
    A = torch.einsum("hnik,hnjk,hnijk->hnij", k, k, decay).masked_fill(~mask, 0)
    A = A * beta[..., None]
    # T = (I + A)^-1 by forward substitution, applied to beta*k*e^G and beta*v.
    eye = torch.eye(chunk)
    Tm = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False)
    w = Tm @ (beta[..., None] * k * gc.exp())
    u = Tm @ (beta[..., None] * v)
    Aqk = torch.einsum("hnik,hnjk,hnijk->hnij", q, k, decay)
    S = torch.zeros(H, K, V)
    out = torch.empty(H, n, chunk, V)
    for c in range(n):
        vn = u[:, c] - w[:, c] @ S
        out[:, c] = (q[:, c] * gc[:, c].exp()) @ S + Aqk[:, c] @ vn
        last = gc[:, c, -1]
        S = S * last.exp()[:, :, None] + (k[:, c] * (last[:, None, :] - gc[:, c]).exp()).transpose(
            -1, -2) @ vn
    return scale * out.permute(1, 2, 0, 3).reshape(T, H, V)


class Layer:
    def __init__(self, seed=0):
        gen = torch.Generator().manual_seed(seed)

        def w(*shape, scale):
            return ((torch.rand(*shape, generator=gen) * 2 - 1) * scale).to(torch.bfloat16)

        s = HIDDEN ** -0.5
        self.wq, self.wk, self.wv = (w(PROJ, HIDDEN, scale=s) for _ in range(3))
        self.conv = [w(PROJ, 1, CONV, scale=0.5) for _ in range(3)]
        self.wfa, self.wga = w(RANK, HIDDEN, scale=s), w(RANK, HIDDEN, scale=s)
        self.wfb, self.wgb = w(PROJ, RANK, scale=RANK ** -0.5), w(PROJ, RANK, scale=RANK ** -0.5)
        self.wb = w(HEADS, HIDDEN, scale=s)
        self.norm = w(DIM, scale=1.0)
        self.wo = w(HIDDEN, PROJ, scale=PROJ ** -0.5)
        self.a_log = torch.rand(HEADS, generator=gen) - 0.5
        self.dt_bias = (torch.rand(PROJ, generator=gen) - 0.5) * 0.2

    def forward(self, x, times):
        """x [T, HIDDEN] bf16; `times[name]` accumulates seconds per operation."""
        T = x.shape[0]

        def timed(name, fn):
            t0 = time.perf_counter()
            r = fn()
            times[name] = times.get(name, 0.0) + time.perf_counter() - t0
            return r

        qkv = [timed("projections", lambda w=w: F.linear(x, w)) for w in (self.wq, self.wk, self.wv)]
        g = timed("projections", lambda: F.linear(F.linear(x, self.wfa), self.wfb))
        og = timed("projections", lambda: F.linear(F.linear(x, self.wga), self.wgb))
        beta = timed("projections", lambda: F.linear(x, self.wb))
        qkv = [timed("short convolutions", lambda t=t, c=c: F.silu(
            F.conv1d(t.t()[None], c, padding=CONV - 1, groups=PROJ)[0, :, :T].t()))
            for t, c in zip(qkv, self.conv)]

        def kda():
            q, k, v = (t.float().reshape(T, HEADS, DIM) for t in qkv)
            q = F.normalize(q, dim=-1, eps=1e-6)
            k = F.normalize(k, dim=-1, eps=1e-6)
            gate = -self.a_log.exp()[:, None] * F.softplus(
                g.float().reshape(T, HEADS, DIM) + self.dt_bias.reshape(HEADS, DIM))
            return kda_chunked(q, k, v, gate, beta.float().sigmoid(), DIM ** -0.5)

        o = timed("KDA", kda)

        def norm():
            r = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5)
            return (r * self.norm.float() * og.float().reshape(T, HEADS, DIM).sigmoid()).to(
                torch.bfloat16).reshape(T, PROJ)

        o = timed("gated RMSNorm", norm)
        return timed("o_proj", lambda: F.linear(o, self.wo))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="chunked KDA against the recurrence")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        gen = torch.Generator().manual_seed(1)
        T, H, D = 128, 2, 32
        q, k, v = (torch.randn(T, H, D, generator=gen) for _ in range(3))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        g = -torch.rand(T, H, D, generator=gen)
        beta = torch.rand(T, H, generator=gen)
        a = kda_chunked(q, k, v, g, beta, 0.2, chunk=64)
        b = kda_recurrent(q, k, v, g, beta, 0.2)
        rel = ((a - b).norm() / b.norm()).item()
        print(f"chunked vs recurrent: relative error {rel:.2e}")
        return 0 if rel < 1e-4 else 1
    layer = Layer()
    x = ((torch.rand(args.tokens, HIDDEN) * 2 - 1)).to(torch.bfloat16)
    totals, per_op = [], []
    with torch.inference_mode():
        layer.forward(x[:256], {})  # warm-up
        for _ in range(args.runs):
            times = {}
            t0 = time.perf_counter()
            layer.forward(x, times)
            totals.append(time.perf_counter() - t0)
            per_op.append(times)
    total = statistics.median(totals)
    print(f"PyTorch {torch.__version__} CPU, {args.threads} threads: Kimi-Linear KDA layer, "
          f"T = {args.tokens}, median of {args.runs}")
    for name in per_op[0]:
        t = statistics.median(r[name] for r in per_op)
        print(f"  {name:20s} {t * 1e3:9.1f} ms  {100 * t / total:5.1f} %")
    print(f"  {'layer':20s} {total * 1e3:9.1f} ms  {args.tokens / total:.0f} tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
