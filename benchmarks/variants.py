"""Cell variants next to the plain cell: what each costs in training (and that it costs nothing in eval).

    python benchmarks/variants.py [--rounds R] [--budget S] [ROW ...]

Each ROW is `cell,T,B,H,variant` (cell: rnn, lstm, gru; I = H; variant: weight_drop=P, zoneout=P,
recurrent_dropout=P, or layernorm=1: rnnfast.LayerNormLSTM / LayerNormGRU against LSTM / GRU). Each
row is checked first. Weight drop: in eval the variant gives the plain module's bits, and its
training step is the plain step run on W_hh times its masks (the same bits). Zoneout, recurrent
dropout and the layer-normalised cells: the eval and training forwards are one `rnnfast.functional`
layer run with what the module used (zoneout's p in eval; in training the masks the kernels drew
from the module's seed, as rnnfast.reference.zoneout_masks gives them): the same bits
(tests/test_zoneout.py and tests/test_recurrent_dropout.py hold the layer to the reference). Then each round times a training step (forward + backward) of the plain module and of the variant,
alternating, and the report gives the medians and the median over rounds of variant time / plain
time.
"""
import argparse
import sys

import numpy as np
from _timing import paired_rounds, parsed_rows, print_pairs

DEFAULT_ROWS = ["lstm,50,64,512,weight_drop=0.5", "lstm,100,16,256,weight_drop=0.5", "gru,100,64,256,weight_drop=0.5",
                "rnn,100,16,256,weight_drop=0.5", "lstm,50,64,512,zoneout=0.1", "lstm,100,16,256,zoneout=0.1",
                "gru,100,64,256,zoneout=0.1", "rnn,100,16,256,zoneout=0.1", "lstm,50,64,512,recurrent_dropout=0.25",
                "lstm,100,16,256,recurrent_dropout=0.25", "gru,100,64,256,recurrent_dropout=0.25",
                "rnn,100,16,256,recurrent_dropout=0.25", "lstm,100,1,256,layernorm=1", "lstm,100,16,256,layernorm=1",
                "lstm,100,64,256,layernorm=1", "lstm,50,64,512,layernorm=1", "gru,100,16,256,layernorm=1",
                "gru,100,64,256,layernorm=1"]
CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
VARIANTS = {"weight_drop": float, "zoneout": float, "recurrent_dropout": float, "layernorm": int}


def parse_row(text):
    cell, T, B, H, variant = text.split(",")
    name, _, value = variant.partition("=")
    if cell not in CLASSES or name not in VARIANTS or not value or (name == "layernorm" and cell == "rnn"):
        raise argparse.ArgumentTypeError(f"row {text!r}: expected cell,T,B,H,variant=value "
                                         f"(variants: {', '.join(VARIANTS)}; layernorm=1 for lstm and gru)")
    return cell, int(T), int(B), int(H), {name: VARIANTS[name](value)}


def make(row):
    import rnnfast
    cell, T, B, H, variant = row
    cls = getattr(rnnfast, CLASSES[cell])
    if "layernorm" in variant:
        plain, varied = cls(H, H, seed=0), getattr(rnnfast, "LayerNorm" + CLASSES[cell])(H, H, seed=0)
    else:
        plain, varied = cls(H, H, seed=0), cls(H, H, seed=0, **variant)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H), dtype=np.float32)
    dy = rng.standard_normal((T, B, H), dtype=np.float32)

    def step(m):
        def call():
            m.zero_grad()
            m(x)
            return m.backward(dy)
        return call

    return plain, varied, x, dy, step(plain), step(varied)


def check(row, plain, varied, x, dy):
    (check_weight_drop if varied.weight_drop else check_against_layer)(row, plain, varied, x, dy)


def check_against_layer(row, plain, varied, x, dy):
    """The module's forwards against one functional layer with the same p (eval) and masks (training)."""
    from rnnfast import functional as F
    from rnnfast.reference import zoneout_masks
    p = varied.parameters()
    weights = (p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    norms = tuple(p[k] for k in p if k.startswith("ln_")) or None  # the layer-normalised cells'
    mode = varied.mode
    eval_y = F.layer_forward(mode, x, None, None, *weights, training=False, zoneout=varied.zoneout or None,
                             norms=norms)[0]
    same = np.array_equal(varied.eval()(x)[0], eval_y)
    varied.train()
    y = varied(x)[0]
    ctx = varied._saved["layers"][0][0][0]
    zoneout = ctx.zoneout if ctx.zoneout_seed is None else zoneout_masks(ctx.zoneout_seed, ctx.zoneout, *y.shape,
                                                                          dtype=y.dtype)  # the kernels' draws
    same = same and np.array_equal(y, F.layer_forward(mode, x, None, None, *weights, training=False,
                                                      zoneout=zoneout, recurrent_mask=ctx.recurrent_mask,
                                                      norms=norms)[0])
    if not same:
        raise SystemExit(f"{row}: the variant's module does not match its layer; not timed")


def check_weight_drop(row, plain, varied, x, dy):
    """Eval: the same bits. Training: the variant's step is the plain step on W_hh * mask."""
    same_eval = np.array_equal(plain.eval()(x)[0], varied.eval()(x)[0])
    plain.train(), varied.train()
    varied.zero_grad()
    y_v = varied(x)[0]
    varied.backward(dy)
    mask = varied._saved["layers"][0][0][0].w_hh_mask
    w_hh = plain.parameters()["weight_hh_l0"]
    kept = w_hh.copy()
    w_hh *= mask
    plain.zero_grad()
    y_p = plain(x)[0]
    plain.backward(dy)
    w_hh[:] = kept
    same_train = np.array_equal(y_v, y_p) and np.array_equal(varied.grads["weight_hh_l0"],
                                                             plain.grads["weight_hh_l0"] * mask)
    if not (same_eval and same_train):
        raise SystemExit(f"{row}: the variant does not match the plain module as it should; not timed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS, metavar="ROW")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed steps per row, module and round")
    args = ap.parse_args(argv)
    rows = parsed_rows(ap, parse_row, args.rows)
    import rnnfast
    made = [make(r) for r in rows]
    for text, (plain, varied, x, dy, _, _) in zip(args.rows, made):
        check(text, plain, varied, x, dy)
    times = paired_rounds([(plain_step, varied_step) for *_, plain_step, varied_step in made], args.rounds,
                          args.budget)
    print(f"rnnfast {rnnfast.__version__}, isa {rnnfast.isa()}, {rnnfast.get_num_threads()} threads, "
          f"{args.rounds} rounds; training steps; each variant checked against the plain module first")
    print_pairs(args.rows, times, "plain", "variant")


if __name__ == "__main__":
    sys.exit(main())
