"""Two builds of rnnfast against each other, alternated in fresh processes: is a change faster?

    python benchmarks/ab_builds.py OLD NEW [--rounds R] [--threads N] [ROW ...]

OLD and NEW are folders holding an installed `rnnfast` package (for example from
`pip install --no-deps --target /tmp/old <checkout>` into a new folder: pip leaves a package
already in the folder as it is, with a warning), or `-` for the one Python imports by default.
Each ROW is `cell,T,B,H,mode` with cell in rnn, lstm, gru, lnlstm, lngru (LayerNormLSTM,
LayerNormGRU) and mode in eval, train, int8, bf16
(I = H, as in bench.py; int8 and bf16: the eval forward of `rnnfast.quantize(module, ...)`). Every round runs OLD, then NEW, each in a new process that times every row
(median of the calls that fit in --budget seconds, at least 5, after two warm-up calls); the
report gives each row's median time per build and the median over rounds of old time / new time
(> 1: NEW faster), with every round's ratio, since on a shared machine one noisy round can move a
single pair a long way. Both builds run the same inputs and weights (seeded). The report starts with
the extension module each build imported and its modification time.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from _timing import median_seconds

DEFAULT_ROWS = ["lstm,100,16,256,eval", "lstm,100,16,256,train", "lstm,50,64,512,train",
                "gru,100,64,256,train", "rnn,25,32,1024,eval"]
CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "lnlstm": "LayerNormLSTM", "lngru": "LayerNormGRU"}
MODES = {"eval": None, "train": None, "int8": "int8", "bf16": "bfloat16"}  # mode: its quantize dtype


def parse_row(text):
    cell, T, B, H, mode = text.split(",")
    if cell not in CLASSES or mode not in MODES:
        raise argparse.ArgumentTypeError(f"row {text!r}: expected cell,T,B,H,mode (cell: {'|'.join(CLASSES)}, mode: "
                                         f"{'|'.join(MODES)})")
    return cell, int(T), int(B), int(H), mode


def check_rows(ap, rows):
    """Every ROW parses, or the parser `ap` exits with the first one's error."""
    for r in rows:
        try:
            parse_row(r)
        except (argparse.ArgumentTypeError, ValueError) as e:
            ap.error(str(e))


def time_rows(rows, threads, budget):
    """In the worker process: median seconds per row for the rnnfast that Python imports."""
    import numpy as np
    import rnnfast
    if threads:
        rnnfast.set_num_threads(threads)
    out = []
    for cell, T, B, H, mode in rows:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, H), dtype=np.float32)
        dy = rng.standard_normal((T, B, H), dtype=np.float32)
        m = getattr(rnnfast, CLASSES[cell])(H, H, seed=0).train(mode == "train")
        if MODES[mode]:
            m = rnnfast.quantize(m, MODES[mode])

        def call():
            if mode != "train":
                return m(x)
            m.zero_grad()
            m(x)
            return m.backward(dy)

        out.append(median_seconds(call, budget, warmups=2))
    return out


def run_build(folder, args):
    env = dict(os.environ)
    if folder != "-":
        env["PYTHONPATH"] = os.path.abspath(folder) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--budget", str(args.budget),
           *args.rows]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("TIMES ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"build {folder}: worker failed\n{res.stderr[-2000:]}")
    built = next((ln[6:] for ln in res.stdout.splitlines() if ln.startswith("BUILD ")), "?")
    return [float(v) for v in lines[-1].split()[1:]], built


def worker(argv):
    """`--worker [--threads N] [--budget S] ROW ...`: prints one line, TIMES and a value per row."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget", type=float, default=1.5)
    ap.add_argument("rows", nargs="+", type=parse_row)
    args = ap.parse_args(argv)
    import rnnfast._core as core
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(core.__file__)))
    print(f"BUILD {core.__file__} (modified {stamp})", flush=True)
    print("TIMES " + " ".join(f"{t:.6e}" for t in time_rows(args.rows, args.threads, args.budget)), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("old", help="folder with the old build's rnnfast, or -")
    ap.add_argument("new", help="folder with the new build's rnnfast, or -")
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS, metavar="ROW")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="default: rnnfast's (all cores)")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per row and process")
    args = ap.parse_args(argv)
    check_rows(ap, args.rows)
    times, built = {"old": [], "new": []}, {}
    for _ in range(args.rounds):
        for which, folder in (("old", args.old), ("new", args.new)):
            t, built[which] = run_build(folder, args)
            times[which].append(t)
    print(f"old: {built['old']}\nnew: {built['new']}")
    print(f"{args.rounds} rounds, {args.threads or 'all'} threads; ms old / new (medians), "
          f"old/new time (median of rounds) and each round's")
    for i, row in enumerate(args.rows):
        old = [r[i] for r in times["old"]]
        new = [r[i] for r in times["new"]]
        ratios = [o / n for o, n in zip(old, new)]
        print(f"  {row:24} {statistics.median(old) * 1e3:9.3f} {statistics.median(new) * 1e3:9.3f}   "
              f"{statistics.median(ratios):.3f}  ({' '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
