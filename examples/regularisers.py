"""A character LSTM on a small text overfits; the recurrent regularisers hold it back.

The text is 400 sentences of rnnfast's generated corpus (about 19,000 characters; the last tenth
held out). An LSTM of 256 units over one-hot characters, a Linear head, truncated BPTT in chunks
of 64 with Adam, as `python -m rnnfast` trains. Without a regulariser the model learns the
training text by heart: its validation loss bottoms out early and then climbs. Each run below is
the same model with one regulariser of `rnnfast.LSTM` switched on:

    weight_drop=p        DropConnect on W_hh (AWD-LSTM): one mask over the recurrent weights per
                         forward call (here: per chunk of 64 steps), the parameters left as they are
    zoneout=p            each unit keeps its previous value with probability p, a fresh mask per step
    recurrent_dropout=p  one mask per call on h where it enters the recurrent product

Each prints its best validation loss (nats per character), the epoch it was reached at, and the
last epoch's. Eval mode turns weight drop and recurrent dropout off; zoneout uses its expectation
(h_t = p h_{t-1} + (1 - p) h~_t).

    python examples/regularisers.py            # full mode: 100 epochs per run, about 90 s on 2 cores
    python examples/regularisers.py --quick    # a few seconds
"""
import argparse
import time

import numpy as np

import rnnfast
from rnnfast.corpus import generate

RUNS = [("no regulariser", {}), ("weight_drop=0.5", {"weight_drop": 0.5}), ("zoneout=0.1", {"zoneout": 0.1}),
        ("recurrent_dropout=0.25", {"recurrent_dropout": 0.25})]


def streams(ids, batch, vocab_size):
    """ids -> one-hot inputs (L, B, V) and targets (L, B): B streams, each over its own slice."""
    L = (len(ids) - 1) // batch
    x = ids[: L * batch].reshape(batch, L).T
    y = ids[1: L * batch + 1].reshape(batch, L).T
    return rnnfast.one_hot(x, vocab_size), y


def validation_loss(rnn, head, x, y):
    rnn.eval(), head.eval()
    loss = rnnfast.cross_entropy(head(rnn(x)[0]), y)[0]
    rnn.train(), head.train()
    return loss


def train(data, vocab_size, hidden, epochs, seed, regulariser):
    """Validation losses after each epoch of one model."""
    x, y, vx, vy = data
    rnn = rnnfast.LSTM(vocab_size, hidden, seed=seed, **regulariser)
    head = rnnfast.Linear(hidden, vocab_size, seed=seed + 1)
    opt = rnnfast.optim.Adam([rnn, head], lr=3e-3)

    def loss_fn(out, t0, t1):
        loss, dlogits = rnnfast.cross_entropy(head(out), y[t0:t1])
        return loss, head.backward(dlogits)

    def after_chunk(t0, t1):
        rnnfast.clip_grad_norm([rnn, head], 5.0)
        opt.step()
        opt.zero_grad()

    losses = []
    for _ in range(epochs):
        rnnfast.tbptt(rnn, x, 64, loss_fn, after_chunk=after_chunk)
        losses.append(validation_loss(rnn, head, vx, vy))
    return losses


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sentences, epochs, hidden = (60, 2, 32) if args.quick else (400, args.epochs, args.hidden)
    text = generate(n_sentences=sentences, seed=1)
    vocab = sorted(set(text))
    ids = np.array([vocab.index(ch) for ch in text])
    split = int(len(ids) * 0.9)
    data = streams(ids[:split], 32, len(vocab)) + streams(ids[split:], 4, len(vocab))
    print(f"{len(text):,} characters ({split:,} for training), {len(vocab)} symbols; LSTM {hidden}, "
          f"{epochs} epochs a run\n")
    print(f"{'':24s} best validation loss   at epoch   last epoch's")
    for name, regulariser in RUNS:
        start = time.perf_counter()
        losses = train(data, len(vocab), hidden, epochs, args.seed, regulariser)
        best = int(np.argmin(losses))
        print(f"{name:24s} {losses[best]:10.3f} nats/char {best + 1:8d} {losses[-1]:14.3f}   "
              f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
