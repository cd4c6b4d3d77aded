"""The three matrix products of a layer, alone: rnnfast's kernels against torch's matmul.

    python benchmarks/products.py [--rows N] [--inner F] [--outer O] [--rounds R] [--threads N]

At the defaults, (1600 x 256) x (256 x 1024) is an LSTM (T=100, B=16, H=256) input projection,
and dW = dy^T x and dx = dy W are its two backward products. rnnfast's run through
`rnnfast._core.linear_forward` / `linear_backward`, the same micro-kernel and team split as the
recurrent layers. The products are first checked against float64 NumPy (exit 1 when they differ
by more than 1e-5 of the largest value). Each line: GFLOP/s of the fastest of 21 calls, median
over the rounds, with the share of the FMA peak that rnnfast measures. The two libraries alternate
within each round, each block of calls after a pause (--pause: torch's idle threads spin for a
while after its last call and would take the cores from rnnfast's). torch is optional; without it
only rnnfast's column is printed.
"""
import argparse
import statistics
import time

import numpy as np

import rnnfast


def fastest(fn, calls=21):
    fn()
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--rows", type=int, default=1600)
    ap.add_argument("--inner", type=int, default=256)
    ap.add_argument("--outer", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="default: rnnfast's (all cores)")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds before each library's block of calls")
    args = ap.parse_args()
    if args.threads:
        rnnfast.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(rnnfast.get_num_threads())
    except ImportError:
        torch = None
    core = rnnfast._core
    core.fma_peak_gflops(rnnfast.get_num_threads())  # wakes the threads
    peak = max(core.fma_peak_gflops(rnnfast.get_num_threads()) for _ in range(3))

    N, F, O = args.rows, args.inner, args.outer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, F), dtype=np.float32)
    w = rng.standard_normal((O, F), dtype=np.float32)
    dy = rng.standard_normal((N, O), dtype=np.float32)
    y, dw, dx = np.empty((N, O), np.float32), np.zeros((O, F), np.float32), np.empty((N, F), np.float32)
    ours = {  # linear_backward always computes dW: dx's time is (dx + dW) - dW
        "y = x W^T": lambda: core.linear_forward(x, w, None, y),
        "dW = dy^T x": lambda: core.linear_backward(x, w, dy, None, dw, None),
        "dx + dW": lambda: core.linear_backward(x, w, dy, dx, dw, None),
    }
    theirs = {}
    if torch is not None:
        xt, wt, dyt = map(torch.from_numpy, (x, w, dy))
        theirs = {"y = x W^T": lambda: xt @ wt.t(), "dW = dy^T x": lambda: dyt.t() @ xt, "dx = dy W": lambda: dyt @ wt}
    # Checked before timing, against float64 NumPy: a wrong product must not be timed.
    core.linear_forward(x, w, None, y)
    dw[:] = 0
    core.linear_backward(x, w, dy, dx, dw, None)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    err = max(float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
              for got, want in ((y, x64 @ w64.T), (dw, dy64.T @ x64), (dx, dy64 @ w64)))
    if not err <= 1e-5:  # written so that NaN fails too
        raise SystemExit(f"rnnfast's products differ from NumPy's: max rel err {err:.2e}")
    times = {}
    for _ in range(args.rounds):
        for block in (ours.items(), [("torch " + k, f) for k, f in theirs.items()]):
            time.sleep(args.pause)
            for name, fn in block:
                times.setdefault(name, []).append(fastest(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    med["dx = dy W"] = med["dx + dW"] - med["dW = dy^T x"]
    flops = 2.0 * N * F * O
    print(f"({N} x {F}) x ({F} x {O}), {rnnfast.get_num_threads()} threads, FMA peak {peak:.0f} GFLOP/s; "
          f"fastest of 21 calls, median of {args.rounds} rounds; max rel err against float64 {err:.1e}")
    for name in ("y = x W^T", "dW = dy^T x", "dx = dy W"):
        if med[name] <= 0:  # dx's time is a difference of two timings: a busy spell in dW's can undo it
            print(f"{name:12} rnnfast not measurable this run (dW alone took as long as dx + dW: rerun)")
            continue
        g = flops / med[name] / 1e9
        line = f"{name:12} rnnfast {g:6.1f} GFLOP/s ({g / peak:4.0%})"
        if ("torch " + name) in med:
            gt = flops / med["torch " + name] / 1e9
            line += f"   torch {gt:6.1f} GFLOP/s ({gt / peak:4.0%})"
        print(line)


if __name__ == "__main__":
    main()
