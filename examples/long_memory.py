"""Remembering across N steps: plain RNN vs LSTM vs GRU, and the gradient that reaches step 0.

A sequence starts with one of 8 symbols; N - 1 random distractor symbols follow, then a query
mark; at the query the model must name the first symbol (chance: 12.5%). For each N every model
is trained with the same budget and tested on fresh sequences. Alongside, the vanishing gradient
measured: the norm of d loss / d x_0 (the gradient that reaches the first input, the only one
that matters here) relative to the one at the query step, at initialisation and after training.

With torch's default initialisation the three cells start alike: the gradient shrinks
geometrically with N through all of them (the LSTM's forget gate starts at sigmoid(0) = 0.5, so
its cell path halves at every step too). What the gated cells have, and the plain RNN has not, is
a gate that can hold the state: LSTM* and GRU* are the same cells with that gate starting at
"keep" (a bias of +5 on the LSTM's forget gate and on the GRU's update gate, so that it starts at
sigmoid(5) = 0.993), and the gradient then reaches step 0 at every gap tried here.

    python examples/long_memory.py            # full mode: tables, and long_memory.png (with matplotlib)
    python examples/long_memory.py --quick    # a few seconds
"""
import argparse
import os
import time

import numpy as np

import rnnfast

SYMBOLS, DISTRACTORS = 8, 4
FEATURES = SYMBOLS + DISTRACTORS + 1  # the last feature is the query mark
# name: (layer, bias added to the rows of the gate that keeps the state: LSTM f, GRU z; rows H..2H in both)
MODELS = {"RNN": (rnnfast.RNN, 0.0), "LSTM": (rnnfast.LSTM, 0.0), "GRU": (rnnfast.GRU, 0.0),
          "LSTM*": (rnnfast.LSTM, 5.0), "GRU*": (rnnfast.GRU, 5.0)}


def make_batch(n_steps, batch, rng):
    """x (N+1, B, FEATURES), labels (B,): symbol at step 0, distractors, the query at step N."""
    labels = rng.integers(SYMBOLS, size=batch)
    ids = np.concatenate([labels[None], rng.integers(SYMBOLS, SYMBOLS + DISTRACTORS, (n_steps - 1, batch)),
                          np.full((1, batch), FEATURES - 1)])
    return rnnfast.one_hot(ids, FEATURES), labels


class Recall:
    def __init__(self, name, hidden, seed):
        layer, gate_bias = MODELS[name]
        self.rnn = layer(FEATURES, hidden, seed=seed)
        self.rnn.parameters()["bias_ih_l0"][hidden:2 * hidden] += gate_bias
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


def train(name, n_steps, hidden, steps, seed, rng):
    """(test accuracy, gradient reach at initialisation, gradient reach after training)."""
    model = Recall(name, hidden, seed)
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
        print("plot skipped: matplotlib is not installed (pip install matplotlib)")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, name in enumerate(MODELS):
        acc, init, _ = zip(*(results[name, n] for n in gaps))
        left.plot(gaps, [100 * a for a in acc], "o-", color=f"C{i}", label=name)
        right.semilogy(gaps, init, "o-", color=f"C{i}", label=name)
    left.axhline(100 / SYMBOLS, color="0.6", ls="--", label="chance")
    left.set(xlabel="gap N (steps)", ylabel="test accuracy (%)", title="recall the symbol seen N steps earlier")
    right.set(xlabel="gap N (steps)", ylabel="|dL/dx_0| / |dL/dx_N|", title="gradient reaching step 0, at initialisation")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(gaps, [str(n) for n in gaps])
    left.legend()
    right.legend()
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
        for name in MODELS:
            results[name, n] = train(name, n, args.hidden, steps, args.seed, rng)
        print(f"  N = {n:3d}: " + "  ".join(f"{c} {100 * results[c, n][0]:5.1f}%" for c in MODELS)
              + f"   ({time.perf_counter() - start:.0f} s)")
    print("\n* the gate that keeps the state starts at \"keep\": bias +5 on the LSTM's forget gate, the GRU's "
          "update gate (sigmoid(5) = 0.993)")
    header = f"{'N':>4} " + "".join(f"{c:>10}" for c in MODELS)
    for title, col, fmt in (("test accuracy (chance 12.5%)", 0, lambda v: f"{100 * v:9.1f}%"),
                            ("gradient reaching step 0, |dL/dx_0| / |dL/dx_N|, at initialisation", 1,
                             lambda v: f"{v:10.1e}"),
                            ("the same after training", 2, lambda v: f"{v:10.1e}")):
        print(f"\n{title}\n{header}")
        for n in gaps:
            print(f"{n:4d} " + "".join(fmt(results[c, n][col]) for c in MODELS))
    os.makedirs(args.out, exist_ok=True)
    plot(gaps, results, os.path.join(args.out, "long_memory.png"))


if __name__ == "__main__":
    main()
