"""Multi-digit addition learned by an LSTM, where the carry is the memory.

The two numbers are read digit by digit, least significant first, one pair of digits per time step
(each digit one-hot), and at every step the model writes one digit of the sum:

    144 + 177:  steps (4,7) (4,7) (1,1) (0,0)  ->  1 2 3 0  =  321 read backwards

The digit it writes depends on the carry from the step before, which only the recurrent state can
hold. Full mode trains on 3-digit pairs and reports exact match (every digit of the sum right) on
held-out pairs the model never saw, then on longer numbers than it was trained on.

    python examples/addition.py            # full mode (about a minute on 2 cores)
    python examples/addition.py --quick    # a few seconds
"""
import argparse
import time

import numpy as np

import rnnfast


def encode(a, b, digits):
    """Pairs of numbers -> inputs (T, N, 20) and target digits (T, N), T = digits + 1, least significant first."""
    T = digits + 1
    powers = 10 ** np.arange(T)
    da, db, ds = (x[None, :] // powers[:, None] % 10 for x in (a, b, a + b))
    return np.concatenate([rnnfast.one_hot(da, 10), rnnfast.one_hot(db, 10)], axis=-1), ds


def decode(digits_tn):
    return (digits_tn * 10 ** np.arange(digits_tn.shape[0])[:, None]).sum(axis=0)


def split_pairs(rng, digits, n_train, n_test):
    """Disjoint random train and test sets of (a, b) pairs. Every test pair has a number with all
    `digits` digits, so no shortened training pair (see main) is a test pair either."""
    top = 10 ** digits
    ids = rng.choice(top * top, size=n_train + 3 * n_test, replace=False)
    a, b = ids // top, ids % top
    test = np.flatnonzero(np.maximum(a, b) >= top // 10)[:n_test]
    train = np.setdiff1d(np.arange(len(ids)), test)[:n_train]
    return (a[train], b[train]), (a[test], b[test])


class Adder:
    def __init__(self, hidden, seed):
        self.lstm = rnnfast.LSTM(20, hidden, seed=seed)
        self.head = rnnfast.Linear(hidden, 10, seed=seed + 1)
        self.modules = [self.lstm, self.head]

    def logits(self, x):
        return self.head(self.lstm(x)[0])

    def predict(self, a, b, digits):
        for m in self.modules:
            m.eval()
        x, _ = encode(a, b, digits)
        out = decode(self.logits(x).argmax(axis=-1))
        for m in self.modules:
            m.train()
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    n_train, epochs, batch = (2000, 3, 64) if args.quick else (20000, 12, 64)
    rng = np.random.default_rng(args.seed)
    (a, b), (ta, tb) = split_pairs(rng, args.digits, n_train, 2000)
    model = Adder(args.hidden, args.seed)
    opt = rnnfast.optim.Adam(model.modules, lr=1e-2)
    print(f"learning {args.digits}-digit addition from {n_train} pairs; exact match on {len(ta)} held-out pairs")
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        losses = []
        for s in range(0, n_train, batch):
            idx = order[s:s + batch]
            # Each batch keeps only its last d digits (d = 1..digits), so that the step at which the
            # numbers end varies and the model cannot tie the carry's last digit to a step count.
            d = int(rng.integers(1, args.digits + 1))
            xb, yb = encode(a[idx] % 10 ** d, b[idx] % 10 ** d, d)
            loss, dlogits = rnnfast.cross_entropy(model.logits(xb), yb)
            model.lstm.backward(model.head.backward(dlogits))
            rnnfast.clip_grad_norm(model.modules, 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(loss)
        acc = np.mean(model.predict(ta, tb, args.digits) == ta + tb)
        print(f"epoch {epoch + 1:2d}  loss {np.mean(losses):.4f}  held-out exact match {100 * acc:6.2f}%")
    print(f"trained in {time.perf_counter() - start:.1f} s")

    pred = model.predict(ta, tb, args.digits)
    for i in range(4):
        print(f"  {ta[i]:>{args.digits}} + {tb[i]:>{args.digits}} = {ta[i] + tb[i]:>{args.digits + 1}}"
              f"   model: {pred[i]:>{args.digits + 1}}  {'ok' if pred[i] == ta[i] + tb[i] else 'WRONG'}")
    print(f"  144 + 177 = 321   model: {model.predict(np.array([144]), np.array([177]), 3)[0]}")
    acc = np.mean(pred == ta + tb)
    print(f"held-out exact match ({args.digits} digits): {100 * acc:.2f}%")
    longer = 2 * args.digits
    la, lb = rng.integers(0, 10 ** longer, (2, 2000))
    print(f"exact match on {longer}-digit numbers (never trained on): "
          f"{100 * np.mean(model.predict(la, lb, longer) == la + lb):.2f}%")


if __name__ == "__main__":
    main()
