"""Reduced-precision inference: rnnfast int8 and bfloat16 next to rnnfast float32, and next to
torch's float32, bfloat16 (module.to(torch.bfloat16)) and int8 (quantize_dynamic) when torch is
installed.

    python benchmarks/precision.py [--rounds R] [--budget S] [--threads N] [ROW ...]

Each ROW is `cell,T,B,H` (cell: rnn, lstm, gru, lstm_proj (an LSTM with proj_size H/4), lnlstm,
lngru (the layer-normalised cells, which torch.nn does not have); I = H; one layer; N(0, 1) inputs;
torch's default initialisation, the same weights in every model; the layer-normalised cells
rnnfast's). Every model is checked first: its error against float32 (max |q - f| / max |f| over the
output and the final states) is printed, and an rnnfast model whose error is above its limit
(bfloat16 1e-2, int8 2e-2: a broken path; the errors the rounding alone gives are in RESULTS.md)
stops the run before any timing. The layer-normalised cells are checked on the row's first step
only, against 5e-2: at this initialisation they carry any perturbation further from step to step
(docs/precision.md), so their error over T steps says little about a path. Then each round times rnnfast's
models, alternating, then pauses (torch's idle threads spin for a while after a call and would steal
the cores), then torch's; the report gives medians over rounds, in ms, and the ratios to rnnfast
float32's time.
"""
import argparse
import copy
import statistics
import time

import numpy as np
from _timing import median_seconds, parsed_rows

import rnnfast

try:
    import torch
except ImportError:
    torch = None

DEFAULT_ROWS = [f"{cell},{T},{B},{H}" for cell in ("lstm", "gru")
                for T, B, H in ((100, 1, 256), (100, 16, 256), (100, 64, 256), (50, 64, 512), (25, 32, 1024))]
CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "lstm_proj": "LSTM", "lnlstm": "LayerNormLSTM",
           "lngru": "LayerNormGRU"}
LIMITS = {"rnnfast bf16": 1e-2, "rnnfast int8": 2e-2}
ONE_STEP_LIMIT = 5e-2  # the layer-normalised cells', on one step (seen: 3.0e-2, LSTM int8 at H = 1024)


def parse_row(text):
    cell, *sizes = text.split(",")
    if cell not in CLASSES or len(sizes) != 3 or not all(s.isdigit() and int(s) > 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"row {text!r}: expected cell,T,B,H with cell in {list(CLASSES)}")
    return (cell, *map(int, sizes))


def error(got, want):
    """max |got - want| / max |want| over matching lists of arrays."""
    return max(float(np.abs(np.asarray(g, np.float64) - w).max() / np.abs(w).max()) for g, w in zip(got, want))


def flat(y, h):
    return [y] + (list(h) if isinstance(h, tuple) else [h])


def make(row):
    """{name: (call, error against float32)} for every model of the row."""
    cell, T, B, H = row
    x = np.random.default_rng(0).standard_normal((T, B, H), dtype=np.float32)
    kw = {"proj_size": H // 4} if cell == "lstm_proj" else {}
    m = getattr(rnnfast, CLASSES[cell])(H, H, seed=0, **kw).eval()
    models = {}
    layer_normalised = cell.startswith("ln")
    with_torch = torch is not None and not layer_normalised
    if with_torch:
        torch.manual_seed(0)
        tm = getattr(torch.nn, CLASSES[cell])(H, H, **kw).eval()
        m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    checked = x[:1] if layer_normalised else x
    ref = flat(*m(checked))
    models["rnnfast f32"] = (lambda: m(x), 0.0)
    for name, dtype in (("rnnfast int8", "int8"), ("rnnfast bf16", "bfloat16")):
        q = rnnfast.quantize(m, dtype)
        models[name] = (lambda q=q: q(x), error(flat(*q(checked)), ref))
    if with_torch:
        xt = torch.from_numpy(x)

        def torch_call(model, dtype):
            def call():
                with torch.inference_mode():
                    return model(xt.to(dtype))
            return call

        def torch_outputs(model, dtype):
            y, h = torch_call(model, dtype)()
            return [t.float().numpy() for t in flat(y, h)]

        tb = copy.deepcopy(tm).to(torch.bfloat16)
        models["torch f32"] = (torch_call(tm, torch.float32), error(torch_outputs(tm, torch.float32), ref))
        models["torch bf16"] = (torch_call(tb, torch.bfloat16), error(torch_outputs(tb, torch.bfloat16), ref))
        if cell in ("lstm", "gru", "lstm_proj"):
            # quantize_dynamic swaps a module's children, never the module itself: give it a parent.
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its deprecation notice, many lines long
                parent = torch.nn.ModuleDict({"rnn": copy.deepcopy(tm)})
                ti = torch.ao.quantization.quantize_dynamic(parent, {type(tm)}, dtype=torch.qint8)["rnn"]
            try:
                models["torch int8"] = (torch_call(ti, torch.float32), error(torch_outputs(ti, torch.float32), ref))
            except RuntimeError as exc:  # an LSTM with proj_size: torch's int8 LSTM cannot run it
                print(f"{row}: torch int8 not timed: {str(exc).splitlines()[0]}")
    return models


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of timing per model and round")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between the two libraries' blocks")
    ap.add_argument("--threads", type=int, default=0, help="default: rnnfast's (all cores)")
    args = ap.parse_args(argv)
    rows = parsed_rows(ap, parse_row, args.rows)
    if args.threads:
        rnnfast.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(rnnfast.get_num_threads())
    print(f"rnnfast {rnnfast.isa()}, {rnnfast.get_num_threads()} threads"
          + (f"; torch {torch.__version__}" if torch is not None else "; torch not installed"))
    built = []
    for row in rows:
        models = make(row)
        for name, (_, err) in models.items():
            limit = ONE_STEP_LIMIT if row[0].startswith("ln") and name in LIMITS else LIMITS.get(name, np.inf)
            if err > limit:
                raise SystemExit(f"{row}: {name} is {err:.1e} from float32 (limit {limit:g}): not timed")
        built.append(models)
    names = list(dict.fromkeys(n for models in built for n in models))
    times = [{n: [] for n in models} for models in built]
    for _ in range(args.rounds):
        for lib in ("rnnfast", "torch"):
            for models, t in zip(built, times):
                for name, (call, _) in models.items():
                    if name.startswith(lib):
                        t[name].append(median_seconds(call, args.budget, at_least=3))
            time.sleep(args.pause)
    print("ms per call (median over rounds) [error against rnnfast float32]; ratios: time / rnnfast f32's")
    print(f"  {'row':18}" + "".join(f"{n:>24}" for n in names))
    for row, models, t in zip(rows, built, times):
        med = {n: statistics.median(v) * 1e3 for n, v in t.items()}
        cells = []
        for n in names:
            if n not in med:
                cells.append(f"{'-':>24}")
                continue
            ratio = med[n] / med["rnnfast f32"]
            cells.append(f"{med[n]:8.2f} ({ratio:4.2f}) [{models[n][1]:.1e}]".rjust(24))
        print(f"  {','.join(map(str, row)):18}" + "".join(cells))


if __name__ == "__main__":
    main()
