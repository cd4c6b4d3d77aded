"""Two builds of rnnfast give the same bits: outputs, states and every gradient, on a grid.

    python tools/bit_identity.py OLD NEW [--quick]
    python tools/bit_identity.py --threads BUILD [--quick]  # one build: 1 thread against 2
    python tools/bit_identity.py --dump FILE.npz        # the rnnfast Python imports, for later

OLD and NEW are folders holding an installed `rnnfast` package (`pip install --no-deps --target
DIR <checkout>`), `-` for the one Python imports by default, or a .npz written by --dump. Each
build runs, in its own process, every cell (rnn_tanh, rnn_relu, lstm, gru, layernorm_lstm,
layernorm_gru) in float32 and float64,
one and two directions, with and without lengths, stacked with dropout, on 1 and 2 threads, on
every instruction set the CPU runs, through the public front ends: the NumPy modules (forward,
backward, parameter gradients), the single-step cells, `rnnfast.functional` (a backward that keeps
the saved forward and one that consumes it), `rnnfast.torch` where torch is installed (the
layer-normalised cells have no single-step cells), and in float32 the int8 and bfloat16 inference
modules of `rnnfast.quantize` (stacked and bidirectional with lengths, and the cells). The shapes
cover a single step, unit mode, batch mode and a layer with more hidden units than a panel.
Exit status 0 when every array is bit-identical and both builds produced the same set. With
--threads, one build's arrays on 1 thread against its own on 2.

The first change on record (issue 22): rnnfast.torch's bidirectional layers used to add the reverse
direction's dx into the forward one's inside the kernel; they now run the NumPy modules' stack,
which computes each direction's dx apart and sums them (so that the directions can run at the same
time), and give the NumPy modules' bits. Against a build before that, only the torch gradients of
a bidirectional stack's input and of the layers below its top layer differ.

The second (16930e7, the layer-normalised cells splitting hidden units between threads): their
a = LN(v) * gain + bias became one fused multiply-add on the instruction sets with FMA (before, the
compiler fused it in some places and not in others). Against a build before it, their results with
gains other than 1 (the functional grid's) differ by a rounding on those paths; the NumPy and torch
modules' (whose gains are exactly 1 at initialisation, so that x * 1 + b rounds once either way)
do not.

The third (the input projection in batch mode by each thread for its own rows, 2026-12-07): the
projection's rows now sum k in plain order wherever they sit. Against a build before it, the
results whose chunk of input rows ended in a block of 1 to 3 rows (which split k) differ by
roundings: on AVX2 and the portable path (6-row tiles) the grid's 7 x 3 sequences and B = 32
single steps; its shapes leave no such block on AVX-512's 8-row tiles, whose arrays are identical.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm", "layernorm_gru")
LSTMS = ("lstm", "layernorm_lstm")  # the cells with a c state
GATES = {"lstm": 4, "gru": 3, "layernorm_lstm": 4, "layernorm_gru": 3}
# (T, B, I, H): a single step; unit mode (few rows); batch mode (many rows, small W_hh; 8 rows a
# thread on 2 threads, which AVX2's float tile does not fill, so that the team projects the inputs,
# in eval in two chunks, and 16, which each thread projects itself); H past a panel; one row, split
# by units on 2 threads.
SHAPES = ((1, 4, 8, 16), (7, 3, 5, 9), (40, 16, 12, 24), (9, 32, 12, 24), (6, 2, 20, 150), (5, 1, 6, 160))
QUICK_SHAPES = ((1, 4, 8, 16), (7, 3, 5, 9))


def _module(rnnfast, cell, I, H, layers, bidirectional, dtype, dropout=0.0):
    kw = dict(num_layers=layers, bidirectional=bidirectional, dtype=dtype, seed=3, dropout=dropout)
    if cell.startswith("rnn_"):
        return rnnfast.RNN(I, H, nonlinearity=cell[4:], **kw)
    return {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "layernorm_lstm": rnnfast.LayerNormLSTM,
            "layernorm_gru": rnnfast.LayerNormGRU}[cell](I, H, **kw)


def _cell(rnnfast, cell, I, H, dtype):
    """The single-step cell of one of CELLS[:4] (the layer-normalised cells have none)."""
    kw = dict(dtype=dtype, seed=5)
    if cell.startswith("rnn_"):
        return rnnfast.RNNCell(I, H, nonlinearity=cell[4:], **kw)
    return {"lstm": rnnfast.LSTMCell, "gru": rnnfast.GRUCell}[cell](I, H, **kw)


def _lengths(T, B):
    return None if T == 1 else np.array([T - (b % T) for b in range(B)], np.int64)


def _numpy_modules(rnnfast, out, tag, cell, shape, dtype):
    T, B, I, H = shape
    rng = np.random.default_rng(7)
    for D in (1, 2):
        for lens_on in (False, True):
            lengths = _lengths(T, B) if lens_on else None
            layers = 2 if D == 2 else 1
            m = _module(rnnfast, cell, I, H, layers, D == 2, dtype, dropout=0.25 if layers > 1 else 0.0)
            x = rng.standard_normal((T, B, I)).astype(dtype)
            hx = rng.standard_normal((layers * D, B, H)).astype(dtype)
            hx = (hx, hx * dtype(0.5)) if cell in LSTMS else hx
            y, h_n = m(x, hx, lengths)
            dy = rng.standard_normal(y.shape).astype(dtype)
            dh = rng.standard_normal((layers * D, B, H)).astype(dtype)
            dx, dhx = m.backward(dy, (dh, dh * dtype(2)) if cell in LSTMS else dh)
            key = f"{tag}/modules/D{D}/len{int(lens_on)}"
            out[key + "/y"] = y
            for i, a in enumerate(h_n if cell in LSTMS else (h_n,)):
                out[f"{key}/state{i}"] = a
            out[key + "/dx"] = dx
            for i, a in enumerate(dhx if cell in LSTMS else (dhx,)):
                out[f"{key}/dstate{i}"] = a
            for name, g in m.grads.items():
                out[f"{key}/grad/{name}"] = g
            m.eval()
            out[key + "/eval_y"] = m(x, hx, lengths)[0]


def _cells(rnnfast, out, tag, cell, shape, dtype):
    if cell not in CELLS[:4]:
        return
    T, B, I, H = shape
    rng = np.random.default_rng(11)
    c = _cell(rnnfast, cell, I, H, dtype)
    state = None
    xs = [rng.standard_normal((B, I)).astype(dtype) for _ in range(3)]
    for t, x in enumerate(xs):
        state = c(x, state)
        for i, a in enumerate(state if cell == "lstm" else (state,)):
            out[f"{tag}/cell/step{t}/state{i}"] = a
    g = state
    for t in reversed(range(len(xs))):
        dx, g = c.backward(g)
        out[f"{tag}/cell/back{t}/dx"] = dx
    for name, a in c.grads.items():
        out[f"{tag}/cell/grad/{name}"] = a


def _functional(rnnfast, out, tag, cell, shape, dtype):
    from rnnfast import functional as F
    T, B, I, H = shape
    G = GATES.get(cell, 1)
    rng = np.random.default_rng(13)
    w_ih, w_hh = (rng.uniform(-0.3, 0.3, (G * H, n)).astype(dtype) for n in (I, H))
    b_ih, b_hh = (rng.uniform(-0.3, 0.3, G * H).astype(dtype) for _ in range(2))
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = h0 * dtype(0.25) if cell in LSTMS else None
    sizes = (G * H, G * H, H, H) if cell == "layernorm_lstm" else (G * H, G * H)
    norms = tuple(rng.uniform(0.5, 1.5, n).astype(dtype) for n in sizes) if cell.startswith("layernorm") else None
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    for reverse in (False, True):
        for retain in (True, False):
            y, h_n, c_n, ctx = F.layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                               lengths=_lengths(T, B), norms=norms)
            grads = F.layer_backward(ctx, dy, h_n, c_n, retain_graph=retain)
            key = f"{tag}/functional/rev{int(reverse)}/retain{int(retain)}"
            out[key + "/y"] = y
            for name, a in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"), grads):
                if a is not None:
                    out[f"{key}/{name}"] = a
            for i, a in enumerate(grads[7:]):  # the layer-normalised cells' gains (and cell bias)
                out[f"{key}/dnorm{i}"] = a


def _torch_modules(rnnfast, out, tag, cell, shape, dtype):
    try:
        import torch
        import rnnfast.torch as rt
    except ImportError:
        return
    T, B, I, H = shape
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    cls = {"lstm": rt.LSTM, "gru": rt.GRU, "layernorm_lstm": rt.LayerNormLSTM,
           "layernorm_gru": rt.LayerNormGRU}.get(cell, rt.RNN)
    kw = {"nonlinearity": cell[4:]} if cell.startswith("rnn_") else {}
    lengths = _lengths(T, B)
    for layers, bidirectional in ((2, True), (1, False)):
        torch.manual_seed(0)
        m = cls(I, H, num_layers=layers, bidirectional=bidirectional, dtype=tdt, **kw)
        x = torch.randn(T, B, I, dtype=tdt, requires_grad=True)
        y, _ = m(x, lengths=None if lengths is None else torch.from_numpy(lengths))
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=tdt).reshape(y.shape)).sum()
        params = [x, *m.parameters()]
        first = torch.autograd.grad(loss, params, retain_graph=True)
        second = torch.autograd.grad(loss, params)  # a second backward through the same graph
        key = f"{tag}/torch/L{layers}D{2 if bidirectional else 1}"
        out[key + "/y"] = y.detach().numpy()
        for name, g1, g2 in zip(["x"] + [n for n, _ in m.named_parameters()], first, second):
            out[f"{key}/grad/{name}"] = g1.numpy()
            out[f"{key}/again/{name}"] = g2.numpy()


def _quantized(rnnfast, out, tag, cell, shape, dtype):
    """The inference modules of rnnfast.quantize, int8 and bfloat16 (float32 only): stacked and
    bidirectional with lengths, and the single-step cells."""
    if dtype != np.float32:
        return
    T, B, I, H = shape
    rng = np.random.default_rng(17)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    for precision in ("int8", "bfloat16"):
        m = rnnfast.quantize(_module(rnnfast, cell, I, H, 2, True, dtype), precision)
        y, h_n = m(x, None, _lengths(T, B))
        key = f"{tag}/quantized/{precision}"
        out[key + "/y"] = y
        for i, a in enumerate(h_n if cell in LSTMS else (h_n,)):
            out[f"{key}/state{i}"] = a
        if cell in CELLS[:4]:
            state = rnnfast.quantize(_cell(rnnfast, cell, I, H, dtype), precision)(x[0])
            for i, a in enumerate(state if cell == "lstm" else (state,)):
                out[f"{key}/cell/state{i}"] = a


def dump(path, quick):
    import rnnfast
    out = {}
    for isa in rnnfast.available_isas():
        rnnfast.set_isa(isa)
        for threads in (1, 2):
            rnnfast.set_num_threads(threads)
            for shape in QUICK_SHAPES if quick else SHAPES:
                for dtype in (np.float32, np.float64):
                    for cell in CELLS:
                        tag = f"{isa}/t{threads}/{'x'.join(map(str, shape))}/{np.dtype(dtype).name}/{cell}"
                        _numpy_modules(rnnfast, out, tag, cell, shape, dtype)
                        _cells(rnnfast, out, tag, cell, shape, dtype)
                        _functional(rnnfast, out, tag, cell, shape, dtype)
                        _torch_modules(rnnfast, out, tag, cell, shape, dtype)
                        _quantized(rnnfast, out, tag, cell, shape, dtype)
    np.savez(path, **out)
    return len(out)


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    only_a, only_b = sorted(set(a.files) - set(b.files)), sorted(set(b.files) - set(a.files))
    differ = []
    for k in sorted(set(a.files) & set(b.files)):
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            differ.append(k)
    print(f"{len(set(a.files) & set(b.files))} arrays in both; {len(differ)} differ; "
          f"{len(only_a)} only in the first; {len(only_b)} only in the second")
    for what, keys in (("differs", differ), ("only in the first", only_a), ("only in the second", only_b)):
        for k in keys[:20]:
            print(f"  {what}: {k}")
    return not (differ or only_a or only_b)


def compare_threads(path):
    """One dump's arrays on 1 thread against the same ones on 2."""
    a = np.load(path)
    pairs = [(k, k.replace("/t1/", "/t2/", 1)) for k in a.files if k.split("/")[1] == "t1"]
    differ = [k for k, k2 in pairs if a[k].tobytes() != a[k2].tobytes()]
    print(f"{len(pairs)} arrays on 1 thread against 2; {len(differ)} differ")
    for k in differ[:20]:
        print(f"  differs: {k}")
    return not differ


def _dumped(build, quick, tmp):
    if build.endswith(".npz"):
        return build
    path = os.path.join(tmp, f"{len(os.listdir(tmp))}.npz")
    env = dict(os.environ)
    if build != "-":
        env["PYTHONPATH"] = os.path.abspath(build) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--dump", path] + (["--quick"] if quick else [])
    subprocess.run(cmd, env=env, check=True, cwd=tmp)  # not the checkout: its python/ is no package
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="*", help="OLD NEW: package folders, '-' or .npz dumps")
    ap.add_argument("--dump", metavar="FILE", help="write this process's rnnfast's results to FILE (.npz)")
    ap.add_argument("--quick", action="store_true", help="two small shapes only")
    ap.add_argument("--threads", action="store_true", help="one build (BUILD): its 1-thread results against its 2-thread")
    args = ap.parse_args()
    if args.dump:
        import rnnfast
        n = dump(args.dump, args.quick)
        print(f"{n} arrays from {rnnfast._core.__file__} written to {args.dump}")
        return 0
    if args.threads:
        if len(args.builds) != 1:
            ap.error("--threads takes one BUILD")
        with tempfile.TemporaryDirectory() as tmp:
            return 0 if compare_threads(_dumped(args.builds[0], args.quick, tmp)) else 1
    if len(args.builds) != 2:
        ap.error("give OLD and NEW (or --dump FILE)")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [_dumped(b, args.quick, tmp) for b in args.builds]
        return 0 if compare(*paths) else 1


if __name__ == "__main__":
    sys.exit(main())
