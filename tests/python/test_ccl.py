"""h20.ccl: collectives over the chips of the process on h20 arrays."""

import gc
import threading

import numpy as np
import pytest

import h20


@pytest.fixture(scope="module")
def clique():
    return h20.ccl.Clique([0, 1, 2, 3])


def per_rank(values, dtype=h20.float32):
    return [h20.asarray(v, dtype=dtype, device=r) for r, v in enumerate(values)]


def test_clique_ranks_and_devices(clique):
    assert len(clique) == 4
    assert [d.index for d in clique.devices] == [0, 1, 2, 3]
    assert clique[2].rank == 2 and clique[2].size == 4 and clique[2].device.index == 2
    assert clique[-1].rank == 3
    with pytest.raises(IndexError):
        clique[4]
    assert h20.ccl.version() > 0


@pytest.mark.parametrize("op,expect", [("sum", 10.0), ("max", 4.0), ("min", 1.0)])
def test_all_reduce(clique, op, expect):
    arrays = per_rank([np.full((3, 5), r + 1, np.float32) for r in range(4)])
    out = clique.all_reduce(arrays, op=op)
    for r, o in enumerate(out):
        assert o.device.index == r and o.shape == (3, 5)
        np.testing.assert_array_equal(o.numpy(), expect)
    clique.all_reduce(arrays, out=arrays)  # in place
    np.testing.assert_array_equal(arrays[3].numpy(), 10.0)


def test_all_reduce_bfloat16(clique):
    arrays = per_rank([np.full(64, 0.5 * (r + 1), np.float32) for r in range(4)], h20.bfloat16)
    out = clique.all_reduce(arrays)
    np.testing.assert_array_equal(h20.asarray(out[1], dtype=h20.float32).numpy(), 5.0)


def test_all_gather_and_reduce_scatter(clique):
    arrays = per_rank([np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * r for r in range(4)])
    gathered = clique.all_gather(arrays)
    expect = np.concatenate([a.numpy() for a in arrays])
    for g in gathered:
        assert g.shape == (8, 3)
        np.testing.assert_array_equal(g.numpy(), expect)
    scattered = clique.reduce_scatter(gathered)
    for r, s in enumerate(scattered):
        assert s.shape == (2, 3)
        np.testing.assert_array_equal(s.numpy(), 4 * expect[2 * r:2 * r + 2])


def test_all_gather_moves_any_type(clique):
    arrays = per_rank([np.array([r, -r], np.int64) for r in range(4)], h20.int64)
    out = clique.all_gather(arrays)
    np.testing.assert_array_equal(out[2].numpy(), [0, 0, 1, -1, 2, -2, 3, -3])


def test_broadcast_in_place_on_streams(clique):
    arrays = per_rank([np.full(100, r, np.float32) for r in range(4)])
    streams = [h20.Stream(device=r) for r in range(4)]
    result = clique.broadcast(arrays, root=2, streams=streams)
    assert result[0] is arrays[0]
    for s in streams:
        s.synchronize()
    for a in arrays:
        np.testing.assert_array_equal(a.numpy(), 2.0)


def test_one_thread_per_rank(clique):
    arrays = per_rank([np.full(32, r, np.float32) for r in range(4)])
    results = [None] * 4

    def rank(r):
        results[r] = clique[r].all_reduce(arrays[r])

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in range(4):
        np.testing.assert_array_equal(results[r].numpy(), 6.0)


def test_collective_argument_errors(clique):
    arrays = per_rank([np.ones(8, np.float32)] * 4)
    with pytest.raises(ValueError, match="4 ranks"):
        clique.all_reduce(arrays[:3])
    with pytest.raises(ValueError, match=r"arrays\[1\]: on device 0"):
        clique.all_reduce([arrays[0], arrays[0], arrays[2], arrays[3]])
    with pytest.raises(ValueError, match="op"):
        clique.all_reduce(arrays, op="prod")
    with pytest.raises(ValueError, match="reductions take"):
        clique.all_reduce(per_rank([np.ones(4, np.int32)] * 4, h20.int32))
    with pytest.raises(ValueError, match="multiple of the 4 ranks"):
        clique.reduce_scatter(per_rank([np.ones(6, np.float32)] * 4))
    with pytest.raises(ValueError, match="root"):
        clique.broadcast(arrays, root=4)
    with pytest.raises(ValueError, match="appears twice"):
        h20.ccl.Clique([1, 1])
    with pytest.raises(h20.InvalidDeviceError):
        h20.ccl.Clique([0, 9])


def test_device_reset_is_refused_while_a_clique_or_an_array_uses_the_device():
    dev = h20.Device(6)
    c = h20.ccl.Clique([6, 7])
    with pytest.raises(ValueError, match="still use"):
        dev.reset()
    del c
    gc.collect()
    dev.reset()  # nothing of this module uses device 6 any more
    a = h20.zeros(4, device=dev)
    with pytest.raises(ValueError, match="1 h20 arrays"):
        dev.reset()  # a clique that came and went does not hide the array
    np.testing.assert_array_equal(a.numpy(), np.zeros(4))
