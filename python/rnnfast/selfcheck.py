"""`python -m rnnfast.selfcheck`: a self-check. Runs every cell forward and backward through the C++ kernels
and the NumPy reference on the same random problem, prints the largest differences and the time
each took, and exits non-zero if any gradient disagrees."""
from __future__ import annotations

import sys
import time

import numpy as np

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref
from rnnfast._registry import CELLS


def run(lib, mode, p):
    if mode == "lstm":
        y, h, c, ctx = lib.lstm_forward(p["x"], p["h0"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return [y, h, c] + list(lib.lstm_backward(p["dy"], None, None, ctx))
    if mode == "gru":
        y, h, ctx = lib.gru_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return [y, h] + list(lib.gru_backward(p["dy"], None, ctx))
    y, h, ctx = lib.rnn_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], nonlinearity=mode[4:])
    return [y, h] + list(lib.rnn_backward(p["dy"], None, ctx))


def timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> int:
    T, B, I, H = 50, 16, 64, 128
    rng = np.random.default_rng(0)
    print(f"rnnfast {rnnfast.__version__}: isa={rnnfast.isa()} threads={rnnfast.get_num_threads()}")
    print(f"self-check on T={T} B={B} I={I} H={H}, float64, forward + backward\n")
    print(f"{'cell':9} {'max rel. diff':>14} {'rnnfast ms':>11} {'numpy ms':>9} {'speed-up':>9}")
    ok = True
    for mode, G in ((c.name, c.gates) for c in CELLS.values() if not c.layer_norm):
        k = 1 / np.sqrt(H)
        p = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)) * 0.5,
             "w_ih": rng.uniform(-k, k, (G * H, I)), "w_hh": rng.uniform(-k, k, (G * H, H)),
             "b_ih": rng.uniform(-k, k, G * H), "b_hh": rng.uniform(-k, k, G * H),
             "dy": rng.standard_normal((T, B, H))}
        fast, t_fast = timed(lambda: run(F, mode, p))
        slow, t_slow = timed(lambda: run(ref, mode, p), repeats=1)
        diff = max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) for a, b in zip(fast, slow))
        ok &= diff < 1e-10
        print(f"{mode:9} {diff:14.2e} {t_fast * 1e3:11.2f} {t_slow * 1e3:9.1f} {t_slow / t_fast:8.1f}x")
    print("\nall cells agree with the reference" if ok else "\nMISMATCH: a kernel disagrees with the reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
