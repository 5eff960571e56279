"""The package from several Python threads: blocking calls release the GIL, so threads run
their devices' work concurrently, and each thread keeps its own current device and stream."""

import sys
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


def test_a_blocking_call_lets_other_threads_run():
    # With a switch interval far longer than the test, a thread waiting for the GIL gets it only
    # when the holder lets go. The main thread runs no Python that lets go between reading the
    # counter and calling copy_from, so any progress of the counter across the call happened
    # while the call waited (an upload and its synchronisation) with the GIL released.
    host = np.ones(1 << 22, np.float32)  # 16 MiB
    big = h20.empty(host.shape, device=3)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0.0001)  # lets go of the GIL, so the main thread gets it back

    progressed = False
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    spinner = threading.Thread(target=spin)
    try:
        spinner.start()
        for _ in range(50):
            before = counter[0]
            big.copy_from(host)
            if counter[0] != before:
                progressed = True
                break
    finally:
        stop.set()
        sys.setswitchinterval(old)
        spinner.join(60)
    assert progressed


@pytest.mark.parametrize("n", [8])
def test_allocation_and_free_race_from_threads(n):
    def body(i):
        for j in range(100):
            a = h20.zeros(1024 + j, h20.uint8, device=i % h20.device_count())
            b = a[10:20]
            del a
            assert b.numpy().sum() == 0

    run_threads(body, n)
