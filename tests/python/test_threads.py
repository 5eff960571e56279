"""The package from several Python threads: blocking calls release the GIL, so threads run
their devices' work concurrently, and each thread keeps its own current device and stream."""

import threading
import time

import numpy as np
import pytest

import h20


def run_threads(target, n):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_threads_keep_their_own_current_device_and_stream():
    def body(i):
        dev = h20.Device(i)
        dev.set_current()
        s = h20.Stream()
        with s:
            for _ in range(50):
                assert h20.current_stream() is s
                assert h20.current_device() == dev
                a = h20.asarray(np.full(1000, i, np.float32))
                assert a.device == dev
                np.testing.assert_array_equal(a.numpy()[:3], [i] * 3)
        assert h20.current_stream() is None

    run_threads(body, 6)


def test_kda_prefill_from_several_threads_agrees_with_one_thread():
    rng = np.random.default_rng(5)
    B, T, H, K = 1, 64, 2, 32
    q, k, v, g = (rng.standard_normal((B, T, H, K)).astype(np.float32) for _ in range(4))
    beta = rng.standard_normal((B, T, H)).astype(np.float32)
    A_log = np.zeros(H, np.float32)
    expected, _ = h20.kda.prefill(q, k, v, g, beta, A_log)
    results = [None] * 4

    def body(i):
        dev = h20.Device(i + 1)
        s = h20.Stream(device=dev)
        d = [h20.asarray(x, device=dev) for x in (q, k, v, g, beta, A_log)]
        for _ in range(5):
            out, _ = h20.kda.prefill(*d, stream=s)
        s.synchronize()
        results[i] = out.numpy()

    run_threads(body, 4)
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_a_waiting_thread_releases_the_gil():
    # One thread waits on a stream held busy by a large copy; the other keeps running Python.
    host = np.ones(1 << 24, np.float32)  # 64 MiB
    dev = h20.Device(3)
    big = h20.empty(host.shape, device=dev)
    s = h20.Stream(device=dev)
    ticks = []
    done = threading.Event()

    def waiter():
        for _ in range(3):
            with s:
                big.copy_from(host)
            s.synchronize()
        done.set()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    t1, t2 = threading.Thread(target=waiter), threading.Thread(target=ticker)
    t2.start()
    t1.start()
    t1.join(120)
    t2.join(120)
    assert len(ticks) >= 3  # the ticker ran while the copies and waits went on


@pytest.mark.parametrize("n", [8])
def test_allocation_and_free_race_from_threads(n):
    def body(i):
        for j in range(100):
            a = h20.zeros(1024 + j, h20.uint8, device=i % h20.device_count())
            b = a[10:20]
            del a
            assert b.numpy().sum() == 0

    run_threads(body, n)
