"""Handwritten digits read row by row: many-to-one classification with an LSTM and with a BiRNN.

Each 8x8 image of scikit-learn's bundled digits (1797 of them, the small cousin of MNIST) becomes a
sequence of 8 time steps of 8 pixels, top row first. The recurrent layer reads the rows and its
final state (both final states for the BiRNN: forward after the last row, backward after the
first) goes through a Linear layer to 10 classes. The gradient enters through the final state
(`backward(zeros, grad_hx)`), not through the outputs.

    python examples/digits.py            # full mode: test accuracy of both models
    python examples/digits.py --quick    # a few seconds

Needs scikit-learn (pip install scikit-learn, or pip install ".[examples]" in the project's folder);
without it, says so and exits.
"""
import argparse
import sys
import time

import numpy as np

import rnnfast


class RowReader:
    """A recurrent layer over the rows, its final state(s) -> Linear -> 10 logits."""

    def __init__(self, bidirectional, hidden, seed):
        if bidirectional:
            self.rnn = rnnfast.BiRNN("lstm", 8, hidden, batch_first=True, seed=seed)
        else:
            self.rnn = rnnfast.LSTM(8, hidden, batch_first=True, seed=seed)
        self.directions = 2 if bidirectional else 1
        self.head = rnnfast.Linear(self.directions * hidden, 10, seed=seed + 1)
        self.modules = [self.rnn, self.head]

    def forward(self, x):
        y, (h_n, c_n) = self.rnn(x)  # h_n (D, B, H)
        self._shapes = y.shape, h_n.shape
        return self.head(np.concatenate(list(h_n), axis=-1))

    def backward(self, dlogits):
        (y_shape, h_shape), D = self._shapes, self.directions
        dh = self.head.backward(dlogits)  # (B, D*H) -> (D, B, H)
        dh_n = np.stack(np.split(dh, D, axis=-1))
        self.rnn.backward(np.zeros(y_shape, np.float32), (dh_n, np.zeros(h_shape, np.float32)))

    def accuracy(self, x, labels):
        for m in self.modules:
            m.eval()
        acc = float(np.mean(self.forward(x).argmax(axis=-1) == labels))
        for m in self.modules:
            m.train()
        return acc


def train(model, x, y, x_test, y_test, epochs, rng, label):
    lr = 1e-2
    opt = rnnfast.optim.Adam(model.modules, lr=lr)
    start = time.perf_counter()
    for epoch in range(epochs):
        opt.lr = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine decay: the last epochs settle
        for batch in rnnfast.Batches(list(x), 64, targets=list(y), shuffle=True, seed=int(rng.integers(2**31)),
                                     batch_first=True):
            loss, dlogits = rnnfast.cross_entropy(model.forward(batch.x), batch.y)
            model.backward(dlogits)
            opt.step()
            opt.zero_grad()
        if (epoch + 1) % max(1, epochs // 6) == 0 or epoch + 1 == epochs:
            print(f"  {label} epoch {epoch + 1:3d}  loss {loss:.4f}  test accuracy "
                  f"{100 * model.accuracy(x_test, y_test):.2f}%")
    return model.accuracy(x_test, y_test), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("digits.py needs scikit-learn: pip install scikit-learn (or pip install \".[examples]\" in the project's folder); "
              "skipping")
        return 0
    digits = load_digits()
    x_all = (digits.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 pixels), batch first
    y_all = digits.target
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y_all))
    n_test = len(y_all) // 4
    test, tr = order[:n_test], order[n_test:]
    epochs = 3 if args.quick else 40
    print(f"{len(tr)} training and {n_test} test images of 8 rows x 8 pixels; {epochs} epochs")
    results = {}
    for label, bidirectional in (("LSTM", False), ("BiRNN(lstm)", True)):
        model = RowReader(bidirectional, args.hidden, args.seed)
        results[label] = train(model, x_all[tr], y_all[tr], x_all[test], y_all[test], epochs, rng, label)
    print()
    for label, (acc, seconds) in results.items():
        print(f"{label:12s} test accuracy {100 * acc:.2f}%  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
