"""Remembering across N steps: plain RNN vs LSTM vs GRU, and the gradient that reaches step 0.

A sequence starts with one of 8 symbols; N - 1 random distractor symbols follow, then a query
mark; at the query the model must name the first symbol. For each N the three cells are trained
with the same budget and tested on fresh sequences (chance: 12.5%). Alongside, the vanishing
gradient measured: at initialisation, the norm of d loss / d x_0 (the gradient that reaches the
first input, the only one that matters here) relative to the one at the last step. Through a
tanh RNN it shrinks geometrically with N; the LSTM's additive cell path and the GRU's gated
update keep much more of it, which is why they can learn the long gaps.

    python examples/long_memory.py            # full mode: table and long_memory.png (with matplotlib)
    python examples/long_memory.py --quick    # a few seconds
"""
import argparse
import os
import time

import numpy as np

import rnnfast

SYMBOLS, DISTRACTORS = 8, 4
FEATURES = SYMBOLS + DISTRACTORS + 1  # the last feature is the query mark
CELLS = {"RNN": rnnfast.RNN, "LSTM": rnnfast.LSTM, "GRU": rnnfast.GRU}


def make_batch(n_steps, batch, rng):
    """x (N+1, B, FEATURES), labels (B,): symbol at step 0, distractors, the query at step N."""
    labels = rng.integers(SYMBOLS, size=batch)
    ids = np.concatenate([labels[None], rng.integers(SYMBOLS, SYMBOLS + DISTRACTORS, (n_steps - 1, batch)),
                          np.full((1, batch), FEATURES - 1)])
    return rnnfast.one_hot(ids, FEATURES), labels


class Recall:
    def __init__(self, cell, hidden, seed):
        self.rnn = CELLS[cell](FEATURES, hidden, seed=seed)
        self.head = rnnfast.Linear(hidden, SYMBOLS, seed=seed + 1)
        self.modules = [self.rnn, self.head]

    def loss(self, x, labels):
        """Loss on the output at the query step; backward fills grads and returns d loss / dx."""
        y, _ = self.rnn(x)
        loss, dlogits = rnnfast.cross_entropy(self.head(y[-1]), labels)
        dy = np.zeros_like(y)
        dy[-1] = self.head.backward(dlogits)
        dx, _ = self.rnn.backward(dy)
        return loss, dx

    def accuracy(self, x, labels):
        for m in self.modules:
            m.eval()
        acc = float(np.mean(self.head(self.rnn(x)[0][-1]).argmax(axis=-1) == labels))
        for m in self.modules:
            m.train()
        return acc


def gradient_reach(model, n_steps, rng):
    """Mean over 256 sequences of |d loss / d x_0| / |d loss / d x_N|; leaves no gradient behind."""
    x, labels = make_batch(n_steps, 256, rng)
    _, dx = model.loss(x, labels)
    for m in model.modules:
        m.zero_grad()
    norms = np.linalg.norm(dx, axis=-1)  # (N+1, B)
    return float(np.mean(norms[0] / norms[-1]))


def train(cell, n_steps, hidden, steps, seed, rng):
    """(test accuracy, gradient reach at initialisation, gradient reach after training)."""
    model = Recall(cell, hidden, seed)
    reach_init = gradient_reach(model, n_steps, rng)
    opt = rnnfast.optim.Adam(model.modules, lr=3e-3)
    for _ in range(steps):
        model.loss(*make_batch(n_steps, 64, rng))
        rnnfast.clip_grad_norm(model.modules, 1.0)
        opt.step()
        opt.zero_grad()
    return model.accuracy(*make_batch(n_steps, 2000, rng)), reach_init, gradient_reach(model, n_steps, rng)


def plot(gaps, results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install \"rnnfast[examples]\")")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, cell in enumerate(CELLS):
        acc, init, trained = zip(*(results[cell, n] for n in gaps))
        left.plot(gaps, [100 * a for a in acc], "o-", color=f"C{i}", label=cell)
        right.semilogy(gaps, init, "o--", color=f"C{i}", label=f"{cell}, at initialisation")
        right.semilogy(gaps, trained, "o-", color=f"C{i}", label=f"{cell}, trained")
    left.axhline(100 / SYMBOLS, color="0.6", ls="--", label="chance")
    left.set(xlabel="gap N (steps)", ylabel="test accuracy (%)", title="recall the symbol seen N steps earlier")
    right.set(xlabel="gap N (steps)", ylabel="|dL/dx_0| / |dL/dx_N|", title="gradient reaching step 0")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(gaps, [str(n) for n in gaps])
    left.legend()
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="directory for long_memory.png")
    args = p.parse_args()
    gaps, steps = ([5, 10], 60) if args.quick else ([5, 10, 20, 40, 80], 1500)
    rng = np.random.default_rng(args.seed)
    print(f"recall one of {SYMBOLS} symbols after N steps of distractors; {steps} Adam steps of 64 sequences per run")
    results = {}
    start = time.perf_counter()
    for n in gaps:
        for cell in CELLS:
            results[cell, n] = train(cell, n, args.hidden, steps, args.seed, rng)
        print(f"  N = {n:3d}: " + "  ".join(f"{c} {100 * results[c, n][0]:5.1f}%" for c in CELLS)
              + f"   ({time.perf_counter() - start:.0f} s)")
    header = f"{'N':>4} " + "".join(f"{c:>10}" for c in CELLS)
    for title, col, fmt in (("test accuracy (chance 12.5%)", 0, lambda v: f"{100 * v:9.1f}%"),
                            ("gradient reaching step 0, |dL/dx_0| / |dL/dx_N|, at initialisation", 1,
                             lambda v: f"{v:10.1e}"),
                            ("the same after training", 2, lambda v: f"{v:10.1e}")):
        print(f"\n{title}\n{header}")
        for n in gaps:
            print(f"{n:4d} " + "".join(fmt(results[c, n][col]) for c in CELLS))
    os.makedirs(args.out, exist_ok=True)
    plot(gaps, results, os.path.join(args.out, "long_memory.png"))


if __name__ == "__main__":
    main()
