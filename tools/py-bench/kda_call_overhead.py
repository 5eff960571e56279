"""What a Python call of h20.kda.prefill on h20 arrays costs over the same call from C.

Runs the C program kda_call_overhead (built next to the package: build/tools/py-bench) and then
the same measurement in Python, on the same tiny problem (B=1, T=16, H=1, K=V=16, fp32, so the
call and not the kernel dominates), and prints both and their difference:

  enqueue    CALLS calls back to back on one stream, then one synchronisation: time per call
  roundtrip  one call + stream.synchronize(): the median of CALLS round trips
  (each the median of REPS repetitions)

Python calls pass preallocated out= and final_state= arrays, as the C program passes its
buffers; "enqueue, allocating" is the plain call (new out and final_state arrays each time).

Usage: PYTHONPATH=<the package> python3 tools/py-bench/kda_call_overhead.py \
           [--c-program build/tools/py-bench/kda_call_overhead] [--calls 2000] [--reps 7]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import h20

B, T, H, K, V = 1, 16, 1, 16, 16


def measure(calls, reps):
    z = lambda *shape: h20.zeros(shape)  # noqa: E731
    q, k, v, g, beta, a_log = z(B, T, H, K), z(B, T, H, K), z(B, T, H, V), z(B, T, H, K), \
        z(B, T, H), z(H)
    out, state = z(B, T, H, V), z(B, H, V, K)
    s = h20.Stream()
    prefill = h20.kda.prefill
    h20.synchronize()

    def call():
        prefill(q, k, v, g, beta, a_log, None, 0.25, "lower_bound", -5.0, None, None, s,
                out=out, final_state=state)

    for _ in range(200):
        call()
    s.synchronize()
    enqueue, alloc, roundtrip = [], [], []
    clock = time.perf_counter
    for _ in range(reps):
        t0 = clock()
        for _ in range(calls):
            call()
        enqueue.append((clock() - t0) / calls * 1e6)
        s.synchronize()
        t0 = clock()
        for _ in range(calls):
            prefill(q, k, v, g, beta, a_log, scale=0.25, stream=s)
        alloc.append((clock() - t0) / calls * 1e6)
        s.synchronize()
        one = []
        for _ in range(calls):
            t0 = clock()
            call()
            s.synchronize()
            one.append((clock() - t0) * 1e6)
        roundtrip.append(statistics.median(one))
    return statistics.median(enqueue), statistics.median(alloc), statistics.median(roundtrip)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--c-program", default=os.path.join(
        here, "..", "..", "build", "tools", "py-bench", "kda_call_overhead"))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    opt = parser.parse_args()
    if opt.calls < 1 or opt.reps < 1:
        parser.error("--calls and --reps must be at least 1")

    line = subprocess.run([opt.c_program, str(opt.calls), str(opt.reps)], check=True,
                          capture_output=True, text=True).stdout.strip()
    c = dict(item.split("=") for item in line.split())
    c_enqueue, c_roundtrip = float(c["enqueue_us"]), float(c["roundtrip_us"])
    py_enqueue, py_alloc, py_roundtrip = measure(opt.calls, opt.reps)

    print("h20.kda.prefill vs h20kdaPrefill, B={} T={} H={} K={} V={} fp32, {} calls x {} "
          "repetitions (medians), ISA {}".format(B, T, H, K, V, opt.calls, opt.reps,
                                                 h20.kda.isa()))
    print("| figure | C | Python | Python - C |")
    print("| --- | ---: | ---: | ---: |")
    print("| enqueue, per call | {:.2f} us | {:.2f} us | {:.2f} us |".format(
        c_enqueue, py_enqueue, py_enqueue - c_enqueue))
    print("| enqueue, allocating out and final_state | | {:.2f} us | {:.2f} us |".format(
        py_alloc, py_alloc - c_enqueue))
    print("| call + synchronize round trip | {:.2f} us | {:.2f} us | {:.2f} us |".format(
        c_roundtrip, py_roundtrip, py_roundtrip - c_roundtrip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
