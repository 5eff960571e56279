"""vector_add_streams - vector addition on device arrays, split into chunks over two streams.

What h20 arrays and streams give a Python program: the inputs are copied to the device once;
each chunk is copied back on its own stream (a `with stream:` block makes the stream current for
the copies inside it), and events time the whole. The addition itself runs through the
collectives library (an all-reduce over two chips sums their arrays), then the result is checked
against NumPy. Prints PASS or FAIL.

Run (after the README's set-up): python3 samples/python/vector_add_streams.py
"""

import sys

import numpy as np

import h20

N = 1 << 20
CHUNKS = 4


def main():
    if h20.device_count() < 2:
        print("needs 2 devices")
        print("FAIL")
        return 1
    rng = np.random.default_rng(0)
    a = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)

    # x on chip 0, y on chip 1; an all-reduce leaves x + y on both.
    x = h20.asarray(a, device=0)
    y = h20.asarray(b, device=1)
    clique = h20.ccl.Clique([0, 1])
    start, stop = h20.Event(device=0), h20.Event(device=0)
    start.record()
    total, _ = clique.all_reduce([x, y])
    stop.record()

    # Copy the result back chunk by chunk, alternating between two streams of chip 0.
    streams = [h20.Stream(device=0), h20.Stream(device=0)]
    chunk = N // CHUNKS
    parts = []
    for c in range(CHUNKS):
        with streams[c % 2]:
            parts.append(total[c * chunk:(c + 1) * chunk].numpy())
    for s in streams:
        s.synchronize()
    stop.synchronize()
    result = np.concatenate(parts)

    err = float(np.max(np.abs(result - (a + b))))
    print("{} elements, {} chunks on 2 streams, all-reduce {:.3f} ms, max error {:g}".format(
        N, CHUNKS, start.elapsed_time(stop), err))
    ok = err <= 1e-6
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
