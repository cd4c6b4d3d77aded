"""Every float32 in [-LIMIT, LIMIT] through rnnfast's sigmoid and tanh kernels, against float64.

    python tools/activation_accuracy.py [--limit 100] [--step 1]       # RNNFAST_ISA=... for a path

Prints the largest relative error of each function and where it occurs (about 2 minutes on the
project's 2 cores at the default limit of 100). A sigmoid below 1e-37 is skipped, as the kernel
test does: float32 cannot hold such values relative to 1e-6. --step N looks at every N-th float
only (a quick look). tests/test_kernels.py checks a sample of the same range on every run.
"""
import argparse

import numpy as np

import rnnfast


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=100.0)
    ap.add_argument("--step", type=int, default=1)
    args = ap.parse_args()
    top = int(np.array([args.limit], np.float32).view(np.uint32)[0])
    worst = {"sigmoid": (0.0, 0.0), "tanh": (0.0, 0.0)}
    chunk = 1 << 24
    for sign in (0, 0x80000000):  # the positive floats' bit patterns, then the same with the sign bit
        for b0 in range(0, top + 1, chunk):
            bits = np.arange(b0, min(b0 + chunk, top + 1), args.step, dtype=np.uint32) | np.uint32(sign)
            x = bits.view(np.float32)
            xd = x.astype(np.float64)
            for name, f, exact in (("sigmoid", 0, 1 / (1 + np.exp(-xd))), ("tanh", 1, np.tanh(xd))):
                got = rnnfast._core.activation(f, x).astype(np.float64)
                keep = exact > 1e-37 if name == "sigmoid" else exact != 0
                rel = np.abs(got[keep] - exact[keep]) / np.abs(exact[keep])
                if rel.size and rel.max() > worst[name][0]:
                    worst[name] = (float(rel.max()), float(x[keep][rel.argmax()]))
    for name, (err, at) in worst.items():
        print(f"{rnnfast.isa()} {name}: max relative error {err:.3e} at x = {at!r}")


if __name__ == "__main__":
    main()
