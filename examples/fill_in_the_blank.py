"""Fill in the blank, where the answer is decided by the words after the blank.

    my phone broke so i plan to ___ a new phone tomorrow     -> buy
    my phone broke so i plan to ___ it myself with glue      -> fix
    we are moving away so we want to ___ it online for cash  -> sell
    we are moving away so we want to ___ the walls bright blue -> paint

The words before the blank narrow the answer to two of the four verbs; only the words after it
decide between them. A one-directional LSTM reading left to right has, at the blank, seen only
the beginning: it cannot beat 50%. A BiRNN also reads the sentence right to left, so its output at
the blank knows the end too. Both are trained alike (Embedding -> recurrent layer -> Linear,
cross-entropy at the blank only: every other position has target -100, cross_entropy's
ignore_index) on sentences of different lengths, batched with padding and `lengths`.

    python examples/fill_in_the_blank.py            # full mode: the two accuracies side by side
    python examples/fill_in_the_blank.py --quick    # a few seconds
"""
import argparse
import time

import numpy as np

import rnnfast

ANSWERS = ["buy", "fix", "sell", "paint"]
ITEMS = ["phone", "bike", "lamp", "chair", "radio", "kettle", "desk", "guitar"]
# before the blank: which pair of answers is possible
PREFIXES = {
    ("buy", "fix"): ["my {item} broke so i plan to", "the old {item} stopped working and i want to",
                     "since my {item} is broken i will"],
    ("sell", "paint"): ["we are moving away so we want to", "i am tired of the {item} so i will",
                        "before the party i need to"],
}
# after the blank: which answer it is
SUFFIXES = {
    "buy": ["a new {item} tomorrow", "another {item} at the shop", "a better {item} this week"],
    "fix": ["it myself with glue", "the broken part tonight", "it with a new screw"],
    "sell": ["it online for cash", "the {item} to a neighbour", "it at the market"],
    "paint": ["the walls bright blue", "it a dark green", "the {item} with a brush"],
}
OPENERS = ["", "", "well", "honestly", "so", "well honestly"]


def make_sentences(n, rng):
    """n (tokens, blank position, answer index) triples."""
    out = []
    for _ in range(n):
        answer = int(rng.integers(len(ANSWERS)))
        pair = next(p for p in PREFIXES if ANSWERS[answer] in p)
        item = ITEMS[rng.integers(len(ITEMS))]
        pick = lambda options: options[rng.integers(len(options))].format(item=item).split()
        before = OPENERS[rng.integers(len(OPENERS))].split() + pick(PREFIXES[pair])
        after = pick(SUFFIXES[ANSWERS[answer]])
        out.append((before + ["___"] + after, len(before), answer))
    return out


def vocabulary():
    words = {"<pad>", "___"}
    for text in [*OPENERS, *(t for v in PREFIXES.values() for t in v), *(t for v in SUFFIXES.values() for t in v)]:
        words.update(text.replace("{item}", "").split())
    words.update(ITEMS)
    return {w: i for i, w in enumerate(["<pad>"] + sorted(words - {"<pad>"}))}


def encode(sentences, vocab):
    ids = [np.array([vocab[w] for w in tokens]) for tokens, _, _ in sentences]
    targets = []
    for tokens, blank, answer in sentences:
        t = np.full(len(tokens), -100)
        t[blank] = answer
        targets.append(t)
    return ids, targets


class Filler:
    def __init__(self, kind, vocab_size, hidden, seed):
        self.emb = rnnfast.Embedding(vocab_size, 16, padding_idx=0, seed=seed)
        if kind == "bidirectional":
            self.rnn = rnnfast.BiRNN("lstm", 16, hidden, seed=seed + 1)
        else:
            self.rnn = rnnfast.LSTM(16, hidden, seed=seed + 1)
        width = 2 * hidden if kind == "bidirectional" else hidden
        self.head = rnnfast.Linear(width, len(ANSWERS), seed=seed + 2)
        self.modules = [self.emb, self.rnn, self.head]

    def forward(self, ids, lengths):
        return self.head(self.rnn(self.emb(ids), lengths=lengths)[0])

    def backward(self, dlogits):
        self.emb.backward(self.rnn.backward(self.head.backward(dlogits))[0])

    def evaluate(self, data):
        for m in self.modules:
            m.eval()
        right = total = 0
        for b in data:
            pred = self.forward(b.x, b.lengths).argmax(axis=-1)
            at_blank = b.y != -100
            right += int(np.sum(pred[at_blank] == b.y[at_blank]))
            total += int(at_blank.sum())
        for m in self.modules:
            m.train()
        return right / total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    vocab = vocabulary()
    n_train, epochs = (600, 3) if args.quick else (4000, 12)
    train_ids, train_t = encode(make_sentences(n_train, rng), vocab)
    test_ids, test_t = encode(make_sentences(1000, rng), vocab)
    test = rnnfast.Batches(test_ids, 256, targets=test_t)
    for tokens, blank, answer in make_sentences(2, rng):
        print(f"  {' '.join(tokens):60s} -> {ANSWERS[answer]}")
    print(f"{n_train} training sentences, 1000 test sentences, {len(vocab)} words, {epochs} epochs\n")
    results = {}
    for kind in ("one-directional", "bidirectional"):
        model = Filler(kind, len(vocab), args.hidden, args.seed)
        opt = rnnfast.optim.Adam(model.modules, lr=5e-3)
        batches = rnnfast.Batches(train_ids, 32, targets=train_t, shuffle=True, seed=args.seed)
        start = time.perf_counter()
        for epoch in range(epochs):
            for b in batches:
                loss, dlogits = rnnfast.cross_entropy(model.forward(b.x, b.lengths), b.y)
                model.backward(dlogits)
                opt.step()
                opt.zero_grad()
            print(f"  {kind:15s} epoch {epoch + 1:2d}  loss {loss:.3f}  test accuracy {100 * model.evaluate(test):.1f}%")
        results[kind] = (model.evaluate(test), time.perf_counter() - start)
    print("\naccuracy at the blank (test sentences; chance 25%, the words before the blank allow 50%):")
    for kind, (acc, seconds) in results.items():
        name = "LSTM, left to right" if kind == "one-directional" else "BiRNN(lstm), both ways"
        print(f"  {name:24s} {100 * acc:5.1f}%   ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
