"""One step of rnnfast's cells against torch.nn's, interleaved in one process.

    python benchmarks/cell_steps.py [--sizes 64,256,512] [--batches 1,16] [--rounds 7] [--calls 50]

A step is what a model that feeds its own output back (sampling, teacher forcing) runs T times:
`state = cell(x_t, state)` for RNNCell (tanh), LSTMCell and GRUCell, eval, float32, I = H. Each
round times --calls steps of rnnfast, then of torch; the report gives each library's median over
all the calls (microseconds) and torch time / rnnfast time (> 1: rnnfast faster). Both run the same
weights, and the first step's outputs are compared (max relative error) before any timing; the
script exits with status 1 if any row differs by more than --rtol. Without torch it times rnnfast
alone.
"""
import argparse
import sys
import time

import numpy as np

import rnnfast

try:
    import torch
except ImportError:
    torch = None

CELLS = {"rnn_tanh": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}


def timed(fn, calls):
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def torch_twin(cell, name):
    twin = getattr(torch.nn, name)(cell.input_size, cell.hidden_size).eval()
    with torch.no_grad():
        for key, value in cell.state_dict().items():
            getattr(twin, key).copy_(torch.from_numpy(value))
    return twin


def max_rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--sizes", default="64,256,512", help="hidden sizes H (I = H), comma-separated")
    ap.add_argument("--batches", default="1,16", help="batch sizes B, comma-separated")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50, help="steps per library per round")
    ap.add_argument("--threads", type=int, default=0, help="threads for both libraries (default: rnnfast's)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest max rel err against torch accepted")
    args = ap.parse_args()
    failed = 0
    threads = args.threads or rnnfast.get_num_threads()
    rnnfast.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"{threads} threads, eval, float32, {args.rounds} rounds x {args.calls} steps; us per step (medians)")
    print(f"{'cell':8s} {'H':>5s} {'B':>4s} {'rnnfast':>9s} {'torch':>9s} {'ratio':>6s} {'max rel err':>11s}")
    rng = np.random.default_rng(0)
    for mode, name in CELLS.items():
        for H in [int(v) for v in args.sizes.split(",")]:
            for B in [int(v) for v in args.batches.split(",")]:
                cell = getattr(rnnfast, name)(H, H, seed=0).eval()
                x = rng.standard_normal((B, H)).astype(np.float32)
                h = rng.standard_normal((B, H)).astype(np.float32) * 0.5
                state = (h, h.copy()) if mode == "lstm" else h
                ours = lambda: cell(x, state)
                times_r, times_t, err, theirs = [], [], float("nan"), None
                if torch is not None:
                    twin = torch_twin(cell, name)
                    xt = torch.from_numpy(x)
                    st = tuple(torch.from_numpy(s) for s in state) if mode == "lstm" else torch.from_numpy(state)
                    theirs = lambda: twin(xt, st)
                    with torch.no_grad():
                        want = theirs()
                    got = ours()
                    err = max(max_rel_err(g, w.numpy()) for g, w in zip(got, want)) if mode == "lstm" else \
                        max_rel_err(got, want.numpy())
                for _ in range(args.rounds):
                    times_r += timed(ours, args.calls)
                    if theirs is not None:
                        with torch.no_grad():
                            times_t += timed(theirs, args.calls)
                r_us = 1e6 * float(np.median(times_r))
                t_us = 1e6 * float(np.median(times_t)) if times_t else float("nan")
                print(f"{mode:8s} {H:5d} {B:4d} {r_us:9.1f} {t_us:9.1f} {t_us / r_us:6.2f} {err:11.1e}")
                failed += err > args.rtol
    if failed:
        print(f"FAILED: {failed} rows differ from torch by more than {args.rtol}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
