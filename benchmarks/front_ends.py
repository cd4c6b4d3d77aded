"""rnnfast.torch against rnnfast's NumPy modules on the same weights: the same stack, the same time?

    python benchmarks/front_ends.py [--rounds R] [--budget S] [ROW ...]

Each ROW is `cell,T,B,H,layers,directions,mode` (cell: rnn, lstm, gru; mode: eval, train; I = H).
Both front ends first run the row once and must give the same bits (outputs, and in training the
input gradient and every parameter gradient); then each round times the NumPy module, then the
torch one, each for --budget seconds (median per call), and the report gives the medians and the
median over rounds of torch time / NumPy time (1.00: no cost for going through torch). Training
is forward + backward of sum(y * dy) with the gradients zeroed first, as a training step does.
"""
import argparse
import sys

import numpy as np
from _timing import paired_rounds, parsed_rows, print_pairs

DEFAULT_ROWS = ["lstm,50,64,512,1,1,train", "lstm,100,16,256,1,1,train", "gru,100,64,256,1,1,train",
                "lstm,50,32,256,2,2,train", "lstm,100,16,256,1,1,eval", "gru,50,64,256,2,2,eval"]
CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def parse_row(text):
    cell, T, B, H, layers, directions, mode = text.split(",")
    if cell not in CLASSES or mode not in ("eval", "train") or directions not in ("1", "2"):
        raise argparse.ArgumentTypeError(f"row {text!r}: expected cell,T,B,H,layers,directions,mode")
    return cell, int(T), int(B), int(H), int(layers), int(directions) == 2, mode


def make_pair(row):
    import torch
    import rnnfast.torch as rt
    cell, T, B, H, layers, bidirectional, mode = row
    torch.manual_seed(0)
    tm = getattr(rt, CLASSES[cell])(H, H, num_layers=layers, bidirectional=bidirectional).train(mode == "train")
    nm = tm.to_numpy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H), dtype=np.float32)
    dy = rng.standard_normal((T, B, (2 if bidirectional else 1) * H), dtype=np.float32)
    xt, dyt = torch.from_numpy(x.copy()), torch.from_numpy(dy)

    def numpy_call():
        if mode == "eval":
            return nm(x)[0], None
        nm.zero_grad()
        y = nm(x)[0]
        return y, nm.backward(dy)[0]

    def torch_call():
        if mode == "eval":
            with torch.no_grad():
                return tm(xt)[0].numpy(), None
        tm.zero_grad()  # torch's default: the gradients become .grad, no addition
        xg = xt.requires_grad_() if not xt.requires_grad else xt
        xg.grad = None
        y = tm(xg)[0]
        y.backward(dyt)
        return y.detach().numpy(), xg.grad.numpy()

    return nm, tm, numpy_call, torch_call


def check(row, nm, tm, numpy_call, torch_call):
    y_n, dx_n = numpy_call()
    y_t, dx_t = torch_call()
    same = np.array_equal(y_n, y_t) and (dx_n is None or np.array_equal(dx_n, dx_t))
    if row[-1] == "train":
        same = same and all(np.array_equal(p.grad.numpy(), nm.grads[n]) for n, p in tm.named_parameters())
    if not same:
        raise SystemExit(f"{row}: the two front ends gave different results; not timed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS, metavar="ROW")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per row, front end and round")
    args = ap.parse_args(argv)
    rows = parsed_rows(ap, parse_row, args.rows)
    import rnnfast
    pairs = [make_pair(r) for r in rows]
    for r, p in zip(rows, pairs):
        check(r, *p)
    times = paired_rounds([(numpy_call, torch_call) for _, _, numpy_call, torch_call in pairs], args.rounds, args.budget)
    print(f"rnnfast {rnnfast.__version__}, isa {rnnfast.isa()}, {rnnfast.get_num_threads()} threads, "
          f"{args.rounds} rounds; results checked equal (bits) before timing")
    print_pairs(args.rows, times, "numpy", "torch")


if __name__ == "__main__":
    sys.exit(main())
