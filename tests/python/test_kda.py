"""h20.kda: prefill and decode against the fp64 golden cases and flash-linear-attention's naive
recurrent formula, from h20 arrays, NumPy arrays and PyTorch tensors; argument checks."""

import math

import numpy as np
import pytest
import torch  # Debian python3-torch, which scripts/install-deps.sh installs

import h20
from conftest import BF16_OUT, BF16_STATE, FP32, assert_close


def golden_args(case, convert=lambda x: x):
    args = dict(
        q=convert(case["q"]), k=convert(case["k"]), v=convert(case["v"]), g=convert(case["g"]),
        beta=convert(case["beta"]), A_log=case["A_log"], dt_bias=case["dt_bias"],
        scale=case.meta["scale"], gate=case.gate)
    if case.gate == "lower_bound":
        args["lower_bound"] = case.params["lower_bound"]
    if case["initial_state"] is not None:
        args["initial_state"] = case["initial_state"]
    if case["cu_seqlens"] is not None:
        args["cu_seqlens"] = case["cu_seqlens"]
    return args


def test_golden_fp32_from_numpy(golden):
    out, state = h20.kda.prefill(**golden_args(golden))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert isinstance(state, np.ndarray) and state.shape == golden["final_state"].shape
    assert_close(out, golden["output"], FP32, "out")
    assert_close(state, golden["final_state"], FP32, "final state")


def test_golden_bf16_from_h20_arrays_in_place(golden):
    dev = h20.Device(2)

    def to_device(x, dtype=None):
        return None if x is None else h20.asarray(x, dtype=dtype, device=dev)

    args = golden_args(golden, lambda x: to_device(x, h20.bfloat16))
    for name in ("A_log", "dt_bias", "initial_state", "cu_seqlens"):
        if name in args:
            args[name] = to_device(args[name])
    out, state = h20.kda.prefill(**args)
    assert isinstance(out, h20.Array) and out.dtype == h20.bfloat16 and out.device == dev
    assert state.dtype == h20.float32
    out = h20.asarray(out, dtype=h20.float32).numpy()
    assert_close(out, golden["output"], BF16_OUT, "out")
    assert_close(state.numpy(), golden["final_state"], BF16_STATE, "final state")


def test_golden_bf16_from_torch_returns_torch(golden):
    args = golden_args(golden, lambda x: torch.from_numpy(x).to(torch.bfloat16))
    args["A_log"] = torch.from_numpy(args["A_log"])
    args["dt_bias"] = torch.from_numpy(args["dt_bias"])
    if "initial_state" in args:
        args["initial_state"] = torch.from_numpy(args["initial_state"]).to(torch.bfloat16)
    out, state = h20.kda.prefill(**args)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    assert isinstance(state, torch.Tensor)
    assert state.dtype == (torch.bfloat16 if "initial_state" in args else torch.float32)
    assert_close(out.float().numpy(), golden["output"], BF16_OUT, "out")
    # A bf16 final state (when the initial state was bf16) is rounded once more: twice the bound.
    assert_close(state.float().numpy(), golden["final_state"],
                 (2 * BF16_STATE[0], BF16_STATE[1]), "final state")


# ---- flash-linear-attention's naive recurrent KDA, written out -----------------------------

def naive_recurrent_kda(q, k, v, g, beta, scale, initial_state=None):
    """fla.ops.kda.naive.naive_recurrent_kda: q, k, g [B, T, H, K], v [B, T, H, V], beta
    [B, T, H], g the log-decay, state S [B, H, K, V]; computed in float64."""
    q, k, v, g, beta = (x.to(torch.float64) for x in (q, k, v, g, beta))
    B, T, H, K = q.shape
    V = v.shape[-1]
    q = q * scale
    S = q.new_zeros(B, H, K, V)
    if initial_state is not None:
        S = S + initial_state.to(torch.float64)
    o = torch.zeros_like(v)
    for i in range(T):
        q_i, k_i, v_i, g_i, b_i = q[:, i], k[:, i], v[:, i], g[:, i], beta[:, i]
        S = S * g_i[..., None].exp()
        S = S + torch.einsum("bhk,bhv->bhkv", b_i[..., None] * k_i,
                             v_i - (k_i[..., None] * S).sum(-2))
        o[:, i] = torch.einsum("bhk,bhkv->bhv", q_i, S)
    return o, S


def kda_reference(q, k, v, g, beta, A_log, dt_bias, scale, gate, lower_bound, h0):
    """What h20.kda.prefill computes, through the naive formula: the gate activation, beta's
    sigmoid and the L2 norm of q and k (FlashKDA's in-kernel steps), q/k heads repeated over
    value heads, the state transposed to [V, K] (FlashKDA's layout)."""
    HV = v.shape[2]
    rep = HV // q.shape[2]
    q, k = (x.to(torch.float64).repeat_interleave(rep, dim=2) for x in (q, k))
    q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    z = g.to(torch.float64) + dt_bias.to(torch.float64)
    a = torch.exp(A_log.to(torch.float64))[:, None]
    if gate == "softplus":
        g_act = -a * torch.nn.functional.softplus(z)
    else:
        g_act = lower_bound * torch.sigmoid(a * z)
    s0 = None if h0 is None else h0.to(torch.float64).transpose(-1, -2)
    o, S = naive_recurrent_kda(q, k, v, g_act, torch.sigmoid(beta.to(torch.float64)), scale, s0)
    return o, S.transpose(-1, -2)


@pytest.mark.parametrize("gate", ["lower_bound", "softplus"])
def test_prefill_matches_the_naive_formula(gate):
    gen = torch.Generator().manual_seed(7)
    B, T, H, HV, K, V = 2, 37, 2, 4, 32, 48

    def rnd(*shape, s=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * s

    q, k = rnd(B, T, H, K), rnd(B, T, H, K)
    v, g, beta = rnd(B, T, HV, V), rnd(B, T, HV, K) - 2.0, rnd(B, T, HV)
    A_log, dt_bias, h0 = rnd(HV, s=0.5), rnd(HV, K, s=0.2), rnd(B, HV, V, K, s=0.1)
    scale = 1.0 / math.sqrt(K)
    out, state = h20.kda.prefill(q, k, v, g, beta, A_log, dt_bias, gate=gate, lower_bound=-4.0,
                                 initial_state=h0)
    ref_o, ref_s = kda_reference(q, k, v, g, beta, A_log, dt_bias, scale, gate, -4.0, h0)
    assert_close(out.numpy(), ref_o.numpy(), FP32, "out")
    assert_close(state.numpy(), ref_s.numpy(), FP32, "final state")


def test_decode_continues_a_prefill_in_a_slot_pool():
    gen = torch.Generator().manual_seed(3)
    N, T, H, K, V = 2, 20, 2, 16, 32
    f = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    q, k, v, g, beta = f(N, T + 1, H, K), f(N, T + 1, H, K), f(N, T + 1, H, V), \
        f(N, T + 1, H, K) - 1, f(N, T + 1, H)
    A_log, dt_bias = f(H) * 0.3, f(H, K) * 0.1
    full_out, full_state = h20.kda.prefill(q, k, v, g, beta, A_log, dt_bias)

    dev = h20.Device(1)
    d = lambda x: h20.asarray(x, device=dev)  # noqa: E731
    _, state = h20.kda.prefill(d(q[:, :T]), d(k[:, :T]), d(v[:, :T]), d(g[:, :T]),
                               d(beta[:, :T]), d(A_log), d(dt_bias))
    pool = h20.zeros((4, H, V, K), device=dev)
    slots = np.array([3, 0], dtype=np.int32)
    pool[3].copy_from(state[0].numpy())
    pool[0].copy_from(state[1].numpy())
    last = slice(T, T + 1)
    out = h20.kda.decode(d(q[:, last]), d(k[:, last]), d(v[:, last]), d(g[:, last]),
                         d(beta[:, last]), d(A_log), pool, d(dt_bias),
                         state_slots=d(slots))
    assert out.shape == (N, 1, H, V)
    step = (1e-5, 1e-4)  # a decode step against a prefill one token longer, both fp32
    assert_close(out.numpy()[:, 0], full_out[:, T].numpy(), step, "decode out")
    assert_close(pool[3].numpy(), full_state[0].numpy(), step, "state in slot 3")
    assert_close(pool[0].numpy(), full_state[1].numpy(), step, "state in slot 0")

    # A NumPy state is updated in place, like a device one.
    host_state = np.ascontiguousarray(state.numpy())
    out2 = h20.kda.decode(q[:, last].numpy(), k[:, last].numpy(), v[:, last].numpy(),
                          g[:, last].numpy(), beta[:, last].numpy(), A_log.numpy(), host_state,
                          dt_bias.numpy())
    assert isinstance(out2, np.ndarray)
    assert_close(host_state, full_state.numpy(), step, "NumPy state")


def small_args(dev=None, dtype=h20.float32):
    B, T, H, K, V = 1, 8, 2, 16, 16

    def z(*shape, t=dtype):
        return h20.zeros(shape, t, device=dev)

    return dict(q=z(B, T, H, K), k=z(B, T, H, K), v=z(B, T, H, V), g=z(B, T, H, K),
                beta=z(B, T, H), A_log=z(H, t=h20.float32))


@pytest.mark.parametrize("change,message", [
    (dict(q=h20.zeros((1, 8, 2, 20))), "q: head dimension K = 20"),
    (dict(q=h20.zeros((8, 2, 16))), r"q: expected shape \[B, T, H, K\]"),
    (dict(q=h20.zeros((1, 8, 2, 16), h20.float16)), "q: expected dtype bfloat16 or float32"),
    (dict(k=h20.zeros((1, 8, 2, 16), h20.bfloat16)), "k: expected dtype float32"),
    (dict(v=h20.zeros((1, 7, 2, 16))), "v: expected shape"),
    (dict(v=h20.zeros((1, 8, 3, 16))), "v: HV = 3 value heads is not a multiple of H = 2"),
    (dict(g=h20.zeros((1, 8, 2, 32))), r"g: expected shape \[B, T, HV, K\]"),
    (dict(beta=h20.zeros((1, 8))), r"beta: expected shape \[B, T, HV\]"),
    (dict(A_log=h20.zeros(2, h20.bfloat16)), "A_log: expected dtype float32"),
    (dict(dt_bias=h20.zeros((2, 8))), r"dt_bias: expected shape \[HV, K\]"),
    (dict(initial_state=h20.zeros((2, 2, 16, 16))), r"initial_state: expected shape \[N, HV, V, K\]"),
    (dict(cu_seqlens=h20.zeros(3, h20.int32)), "cu_seqlens: expected dtype int64"),
    (dict(cu_seqlens=np.array([0, 9], np.int64)), "cu_seqlens: ends at 9"),
    (dict(cu_seqlens=np.array([1, 8], np.int64)), "cu_seqlens: must start at 0"),
    (dict(gate="relu"), "gate: expected"),
    (dict(lower_bound=-6.0), "lower_bound"),
    (dict(lower_bound=0.0), "lower_bound"),
    (dict(scale=float("inf")), "scale"),
    (dict(cu_seqlens=np.array([0, 9, 8], np.int64)), "cu_seqlens: decreases at entry 2"),
    (dict(cu_seqlens=np.array([0], np.int64)), r"cu_seqlens: expected shape \[N \+ 1\]"),
    (dict(cu_seqlens=np.array([[0, 8]], np.int64)), r"cu_seqlens: expected shape \[N \+ 1\]"),
    (dict(out=h20.zeros((1, 8, 2, 16), h20.bfloat16)), "out: expected dtype float32"),
    (dict(final_state=h20.zeros((2, 2, 16, 16))), r"final_state: expected shape"),
    (dict(state_dtype=h20.int32), "state_dtype"),
    (dict(algorithm="fast"), "algorithm"),
])
def test_prefill_argument_errors_name_the_argument_before_enqueueing(change, message):
    args = small_args()
    sentinel = h20.asarray(np.full((1, 8, 2, 16), 7.0, np.float32))
    args.update(change)
    if "out" not in change:
        args["out"] = sentinel
    with pytest.raises(ValueError, match=message):
        h20.kda.prefill(**args)
    h20.synchronize()
    np.testing.assert_array_equal(sentinel.numpy(), 7.0)  # nothing ran


def test_mixed_inputs_give_results_of_qs_kind():
    args = small_args(dev=2)
    args["A_log"] = np.zeros(2, np.float32)  # copied to device 2
    args["beta"] = torch.zeros(1, 8, 2)
    out, state = h20.kda.prefill(**args)
    assert isinstance(out, h20.Array) and out.device.index == 2
    assert isinstance(state, h20.Array)
    args["q"] = torch.zeros(1, 8, 2, 16)
    out, state = h20.kda.prefill(**args)
    assert isinstance(out, torch.Tensor) and isinstance(state, torch.Tensor)


def test_prefill_refuses_arrays_on_different_devices_and_a_foreign_stream():
    args = small_args(dev=0)
    args["v"] = h20.zeros((1, 8, 2, 16), device=1)
    with pytest.raises(ValueError, match="v: on device 1, but q is on device 0"):
        h20.kda.prefill(**args)
    args = small_args(dev=0)
    with pytest.raises(ValueError, match="stream: belongs to device 3"):
        h20.kda.prefill(**args, stream=h20.Stream(device=3))
    with pytest.raises(TypeError, match="out: must be an h20.Array"):
        h20.kda.prefill(**small_args(), out=np.zeros((1, 8, 2, 16), np.float32))


def test_prefill_on_a_stream_and_without_final_state():
    s = h20.Stream(device=4)
    args = small_args(dev=4, dtype=h20.bfloat16)
    out, state = h20.kda.prefill(**args, stream=s, output_final_state=False)
    assert state is None and out.device.index == 4
    s.synchronize()
    with s:
        out, state = h20.kda.prefill(**args, state_dtype="bfloat16")
    assert state.dtype == h20.bfloat16
    s.synchronize()
    assert h20.kda.isa() in ("avx512bf16", "avx512", "avx2", "scalar")


def test_prefill_argument_type_errors():
    with pytest.raises(TypeError, match="scale: expected a number"):
        h20.kda.prefill(**small_args(), scale="0.5")
    with pytest.raises(TypeError):
        h20.kda.prefill(**small_args(), lower_bound="x")


def test_decode_argument_errors():
    z = lambda *s: h20.zeros(s)  # noqa: E731
    args = dict(q=z(2, 1, 1, 16), k=z(2, 1, 1, 16), v=z(2, 1, 1, 16), g=z(2, 1, 1, 16),
                beta=z(2, 1, 1), A_log=z(1), state=z(1, 1, 16, 16))
    with pytest.raises(ValueError, match="state: 1 slots for N = 2"):
        h20.kda.decode(**args)
    args["state"] = z(2, 1, 16, 32)
    with pytest.raises(ValueError, match=r"state: expected shape \[slots, HV, V, K\]"):
        h20.kda.decode(**args)
    args["state"] = z(2, 1, 16, 16)
    with pytest.raises(ValueError, match="state_slots: expected dtype int32"):
        h20.kda.decode(**args, state_slots=h20.zeros(2, h20.int64))
    with pytest.raises(ValueError, match=r"q: expected shape \[N, 1, H, K\]"):
        h20.kda.decode(**dict(args, q=z(2, 2, 1, 16)))
