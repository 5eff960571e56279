"""Kimi Delta Attention (libh20kernels, include/h20/kda.h).

prefill(q, k, v, g, beta, A_log, dt_bias=None, scale=None, gate="lower_bound",
        lower_bound=-5.0, initial_state=None, cu_seqlens=None, stream=None, *, out=None,
        final_state=None, output_final_state=True, state_dtype=None, algorithm="default")
    -> (out, final_state)

decode(q, k, v, g, beta, A_log, state, dt_bias=None, scale=None, gate="lower_bound",
       lower_bound=-5.0, state_slots=None, stream=None, *, out=None) -> out

Arguments and shapes are FlashKDA's (docs/python.md). h20 arrays are used in place and the call
returns once the kernels are enqueued; NumPy arrays and PyTorch CPU tensors are copied to the
device and the results copied back (the call then waits for them).
"""

from . import _h20

prefill = _h20.kda.prefill
decode = _h20.kda.decode
isa = _h20.kda.isa

__all__ = ["prefill", "decode", "isa"]
