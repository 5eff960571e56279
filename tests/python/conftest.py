"""Shared fixtures of the h20 package's tests (run by CTest against the installed package).

The golden KDA cases live in tests/data/kda-golden (H20_KDA_GOLDEN_DIR overrides the path).
"""

import json
import os

import numpy as np
import pytest

import h20

GOLDEN_DIR = os.environ.get(
    "H20_KDA_GOLDEN_DIR",
    os.path.join(os.path.dirname(__file__), "..", "data", "kda-golden"),
)
GOLDEN_CASES = ["fixed_t300_h2", "varlen_4seq", "softplus_longmem"]


class Golden:
    """One golden case: its parameters and tensors as NumPy arrays."""

    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(GOLDEN_DIR, name)
        with open(os.path.join(self.dir, "meta.json")) as f:
            self.meta = json.load(f)
        self.params = self.meta["params"]

    def __getitem__(self, tensor):
        info = self.meta["tensors"].get(tensor)
        if info is None:
            return None
        data = np.fromfile(os.path.join(self.dir, info["file"]), dtype=info["dtype"])
        return data.reshape(info["shape"])

    @property
    def gate(self):
        return "softplus" if self.params["gate"] == "softplus" else "lower_bound"


@pytest.fixture(params=GOLDEN_CASES)
def golden(request):
    return Golden(request.param)


def rel_rmse(x, ref):
    """RMSE(x - ref) / RMS(ref), flash-linear-attention's accuracy metric."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.sqrt(np.mean((x - ref) ** 2) / np.mean(ref ** 2)))


def worst_row(x, ref):
    """The largest error of any element over RMS(ref): one bad row (a token of one head, a row of
    a state) cannot hide in the RMS of the whole tensor."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(x - ref)) / np.sqrt(np.mean(ref ** 2)))


# Bounds of the C++ kernel tests (tests/kernels/kda_core_test.cpp): relative RMS and worst row.
FP32 = (5e-6, 5e-5)
BF16_OUT = (5e-3, 5e-2)
BF16_STATE = (5e-3, 1e-1)


def assert_close(x, ref, bounds, what):
    rms, row = rel_rmse(x, ref), worst_row(x, ref)
    assert rms <= bounds[0], f"{what}: relative RMS {rms:.3e} > {bounds[0]:.0e}"
    assert row <= bounds[1], f"{what}: worst element {row:.3e} of the RMS > {bounds[1]:.0e}"


@pytest.fixture
def device_count():
    n = h20.device_count()
    assert n >= 1
    return n
