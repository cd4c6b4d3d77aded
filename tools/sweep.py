"""Blocking variants of the kernels built side by side and timed in alternation: which is fastest here?

    python tools/sweep.py [--variant NAME=KC,MC[,MRxNV[,E]] ...] [--isa avx512|avx2] [--rounds R]
                          [--threads N] [--work DIR] [--rows ROW ...]

Each variant is a build of this checkout whose plain products take k-blocks of KC and chunks of MC
micro-kernel row blocks on the chosen instruction set, optionally a register tile of MR rows x NV
vectors, and on avx512 optionally E rows of every full 8-row tile (the recurrent step's, and the
plain products' when theirs has 8 rows) with their broadcasts embedded in the FMAs (the CMake
options RNNFAST_AVX512_KC, RNNFAST_AVX512_MC_BLOCKS, RNNFAST_AVX512_PLAIN_MR, RNNFAST_AVX512_PLAIN_NV
and RNNFAST_AVX512_EMBEDDED_ROWS, or RNNFAST_AVX2_*; `default` as a value, or no tile, keeps
gemm.h's). The builds go into --work (kept: a second run with the same variants and sources reuses
them; the variants share one CMake build folder, so each after the first recompiles only the avx512
(or avx2) kernels). Every round then runs each variant in a new process that checks and times:
  - the three products of a layer (y = x W^T, dW = dy^T x, dx = dy W) at (3200 x 1024) x (1024 x 4096)
    and (1600 x 256) x (256 x 1024), each checked against float64 NumPy first, as benchmarks/products.py;
  - six layer rows (cell,T,B,H,mode with I = H, as benchmarks/ab_builds.py), each checked against the
    float64 NumPy reference (rnnfast.reference) on its first steps before it is timed.
The report gives, per variant, the median over rounds of each figure: products in % of the FMA peak
that the same process measured, layers in ms and % of that peak, all on a fixed team (dynamic
threads off). On a shared machine another process's busy spell halves a figure (or, caught by the
peak alone, doubles a percentage), so each process also measures the peak before and after its
timings and the share of the cores other processes took meanwhile: a round is quiet when that share
is at most 5% and the two peaks agree within 10%. A busy round is run again (--retries times, after
--pause seconds), and the report takes the quiet rounds only, saying how many there were; a variant
without one is marked. On the 2-core Zen 5 of RESULTS.md each build took 40-90 s and each variant's
round about 12 s: the avx512 defaults (three variants: 3 rows of embedded broadcasts, the 4 x 6 tile,
and gemm.h's defaults; five rounds) take about 6 minutes, builds included, and 3 once the builds are
kept (on the 2-core Xeon of RESULTS.md, whose builds took 3-5 minutes each, 16.5 before the variants
shared a build folder, and 6; on the 2-core Zen 4, five variants with builds of 170-270 s, 23).
"""
import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from ab_builds import CLASSES, check_rows, parse_row, time_rows  # noqa: E402  the A/B harness's rows and timing
from _timing import cpu_seconds, others_share  # noqa: E402
PRODUCT_SHAPES = [(3200, 1024, 4096), (1600, 256, 1024)]
PRODUCTS = ("y = x W^T", "dW = dy^T x", "dx = dy W")
DEFAULT_ROWS = ["lstm,100,16,256,eval", "lstm,100,64,256,eval", "lstm,50,64,512,eval",
                "lstm,50,64,512,train", "gru,100,64,256,train", "rnn,25,32,1024,eval"]
DEFAULT_VARIANTS = {"avx512": ["e3=default,default,default,3", "t4x6=default,default,4x6", "default=default,default"],
                    "avx2": ["kc256=256,20", "kc1024=1024,20", "default=default,default"]}  # 16 registers: no 4 x 6
QUIET_OTHERS = 0.05  # a quiet round: other processes took at most this share of the cores while it timed,
QUIET_PEAKS = 0.10   # and its FMA peaks before and after the timings differ by at most this share
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
MODES = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru"}


def parse_variant(text):
    """NAME=KC,MC[,TILE[,E]] -> (NAME, {CMake option suffix: value or 'default'}). TILE is MRxNV or
    default; E the rows of the avx512 tile whose broadcasts are embedded in the FMAs (gemm.h)."""
    name, _, spec = text.partition("=")
    parts = spec.split(",")
    tile = ["default", "default"] if len(parts) < 3 or parts[2] == "default" else parts[2].split("x")
    embedded = parts[3] if len(parts) == 4 else "default"
    values = parts[:2] + tile + [embedded]
    if not 2 <= len(parts) <= 4 or len(values) != 5 or any(v != "default" and not v.isdigit() for v in values) \
            or (tile != ["default", "default"] and not all(v.isdigit() for v in tile)):
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME=KC,MC[,MRxNV[,E]] with numbers or 'default'")
    if tile[0] != "default" and not (1 <= int(tile[0]) <= 8 and 1 <= int(tile[1]) <= 8):
        raise argparse.ArgumentTypeError(f"variant {text!r}: a tile of 1 to 8 rows and 1 to 8 vectors (gemm.h)")
    if embedded != "default" and int(embedded) > 8:
        raise argparse.ArgumentTypeError(f"variant {text!r}: at most 8 rows with embedded broadcasts")
    if not name or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"variant {text!r}: NAME must be letters, digits and _")
    return name, dict(zip(("KC", "MC_BLOCKS", "PLAIN_MR", "PLAIN_NV", "EMBEDDED_ROWS"), values))


def flops(row):
    """Multiply-adds x 2 of one call: forward, or forward and backward (twice the forward's)."""
    cell, T, B, H, mode = row
    fwd = 2.0 * T * B * 2 * H * GATES[cell] * H
    return fwd if mode == "eval" else 3 * fwd


# ---- the worker: runs in a variant's process ------------------------------------------------

def time_products(core, N, F, O):
    import numpy as np
    from products import fastest  # imports rnnfast: only in a worker
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, F), dtype=np.float32)
    w = rng.standard_normal((O, F), dtype=np.float32)
    dy = rng.standard_normal((N, O), dtype=np.float32)
    y, dw, dx = np.empty((N, O), np.float32), np.zeros((O, F), np.float32), np.empty((N, F), np.float32)
    core.linear_forward(x, w, None, y)
    core.linear_backward(x, w, dy, dx, dw, None)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    for got, want in ((y, x64 @ w64.T), (dw, dy64.T @ x64), (dx, dy64 @ w64)):
        err = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
        if not err <= 1e-5:
            raise SystemExit(f"products ({N} x {F}) x ({F} x {O}) differ from NumPy's: {err:.2e}")
    calls = 5 if N * F * O > 1e9 else 15
    t_y = fastest(lambda: core.linear_forward(x, w, None, y), calls)
    t_dw = fastest(lambda: core.linear_backward(x, w, dy, None, dw, None), calls)
    t_both = fastest(lambda: core.linear_backward(x, w, dy, dx, dw, None), calls)
    return [t_y, t_dw, t_both - t_dw]


def check_row(row):
    """The row's layer (seed 0) against the float64 reference on its first 3 steps."""
    import numpy as np
    import rnnfast
    import rnnfast.reference
    cell, T, B, H, mode = row
    m = getattr(rnnfast, CLASSES[cell])(H, H, seed=0).train(mode == "train")
    x = np.random.default_rng(1).standard_normal((min(T, 3), B, H), dtype=np.float32)
    out = m(x)
    y = out[0]
    p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    h0 = np.zeros((1, B, H))
    ry, _, _ = rnnfast.reference.stack_forward(MODES[cell], x.astype(np.float64),
                                               (h0, h0) if cell == "lstm" else h0, p64)
    err = float(np.max(np.abs(y - ry))) / float(np.max(np.abs(ry)))
    if not err <= 1e-4:
        raise SystemExit(f"layer {row}: max rel err {err:.2e} against the reference")


def worker(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--isa", required=True)
    ap.add_argument("rows", nargs="+", type=parse_row)
    args = ap.parse_args(argv)
    import rnnfast
    if args.threads:
        rnnfast.set_num_threads(args.threads)
    rnnfast.set_isa(args.isa)
    # A fixed team: with dynamic threads a moment in which the host takes a core (which the quiet
    # test below cannot see) would put the rest of the round on fewer threads (RESULTS.md, Zen 4).
    rnnfast.set_dynamic_threads(False)
    core = rnnfast._core
    nth = rnnfast.get_num_threads()
    core.fma_peak_gflops(nth)
    peak_before = max(core.fma_peak_gflops(nth) for _ in range(3))
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    figures = []
    for shape in PRODUCT_SHAPES:
        figures += time_products(core, *shape)
    for row in args.rows:
        check_row(row)
    figures += time_rows(args.rows, args.threads, 1.0)
    others = others_share(cpu0, time.perf_counter() - t0)
    peak_after = max(core.fma_peak_gflops(nth) for _ in range(3))
    print("FIGURES " + " ".join(f"{v:.6e}" for v in [peak_before, peak_after, others] + figures), flush=True)


# A worker's figures: the FMA peak before and after its timings (GFLOP/s), the share of the cores
# other processes took meanwhile, then the products' and the layers' seconds.
def is_quiet(fig):
    return fig[2] <= QUIET_OTHERS and abs(fig[0] - fig[1]) <= QUIET_PEAKS * max(fig[0], fig[1])


# ---- the driver -------------------------------------------------------------------------------

def source_digest():
    """A digest of what a build is made of (the C++ sources, CMakeLists.txt, the Python package)."""
    h = hashlib.sha1()
    for top in ("cpp", "python", "CMakeLists.txt", "pyproject.toml"):
        path = os.path.join(ROOT, top)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if not f.endswith(".pyc"))
        for f in files:
            h.update(os.path.relpath(f, ROOT).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def build(name, opts, isa, work):
    """Installs this checkout with the variant's blocking into work/name; kept while the sources and
    options are the same (a stamp file records them). The variants share one CMake build folder, in
    which every option is set each time (empty for a default), so that a variant recompiles only the
    kernels its options change."""
    target = os.path.join(work, name)
    stamp = os.path.join(target, ".sweep-options")
    options = f"{isa} {sorted(opts.items())} {source_digest()}"
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == options:
                return target
    defs = []
    for opt, value in opts.items():
        if opt == "EMBEDDED_ROWS" and isa != "avx512":  # no such CMake option for the other paths
            continue
        defs += ["-C", f"cmake.define.RNNFAST_{isa.upper()}_{opt}={'' if value == 'default' else value}"]
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--upgrade",
                    "--target", target, "-C", f"build-dir={os.path.join(work, 'build-' + isa)}", *defs, ROOT],
                   check=True)
    with open(stamp, "w") as f:
        f.write(options)
    print(f"built {name} ({', '.join(f'{k} {v}' for k, v in opts.items())}) in {time.time() - t0:.0f} s", flush=True)
    return target


def run_variant(target, args):
    env = dict(os.environ, PYTHONPATH=target)
    env.pop("RNNFAST_ISA", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--isa", args.isa,
           "--threads", str(args.threads), *args.rows]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("FIGURES ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"{target}: worker failed\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return [float(v) for v in lines[-1].split()[1:]]


def report(variants, results, rows):
    """Per variant, medians over its quiet rounds (over all of them, marked *, when none was quiet);
    a percentage is taken in each round against that round's peak (the higher of its two)."""
    names = [name for name, _ in variants]
    used = {n: [f for f in results[n] if is_quiet(f)] or results[n] for n in names}
    marks = {n: "" if any(is_quiet(f) for f in results[n]) else "*" for n in names}

    def share(n, i, gflop):  # dx's seconds are a difference of two timings: a busy one can make them <= 0
        shares = [gflop / f[i] / max(f[0], f[1]) for f in used[n] if f[i] > 0]
        return statistics.median(shares) if shares else float("nan")

    def seconds(n, i):
        return statistics.median(f[i] for f in used[n])

    print("\n" + " " * 36 + "".join(f"{n:>18}" for n in names))
    quiet = {n: sum(map(is_quiet, results[n])) for n in names}
    print(f"{'quiet rounds':36}" + "".join(f"{quiet[n]:>15}/{len(results[n]):<2}" for n in names))
    print(f"{'FMA peak, GFLOP/s':36}" +
          "".join(f"{statistics.median(max(f[0], f[1]) for f in used[n]):17.0f}{marks[n] or ' '}" for n in names))
    i = 3
    for N, F, O in PRODUCT_SHAPES:
        for p in PRODUCTS:
            label = f"({N}x{F})x({F}x{O}) {p}"
            gflop = 2.0 * N * F * O / 1e9
            print(f"{label:36}" + "".join(f"{share(n, i, gflop):17.0%}{marks[n] or ' '}" for n in names))
            i += 1
    for row in rows:
        r = parse_row(row)
        cells = [f"{seconds(n, i) * 1e3:.2f} ms {share(n, i, flops(r) / 1e9):4.0%}{marks[n]}" for n in names]
        print(f"{row:36}" + "".join(f"{c:>18}" for c in cells))
        i += 1
    print("\nproducts: fastest call's GFLOP/s over the peak; layers: median ms, GFLOP/s over the peak "
          "(training counted as 3 forwards); medians over the quiet rounds (other processes took at most "
          f"{QUIET_OTHERS:.0%} of the cores, the peaks before and after within {QUIET_PEAKS:.0%}).")
    if any(marks.values()):
        print("* no quiet round: medians over busy rounds, not to be trusted.")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--variant", action="append", type=parse_variant, metavar="NAME=KC,MC[,MRxNV[,E]]",
                    help="a build to compare (repeatable; default: " +
                    "; ".join(f"{isa}: {' '.join(v)}" for isa, v in DEFAULT_VARIANTS.items()) + ")")
    ap.add_argument("--isa", choices=["avx512", "avx2"], default="avx512",
                    help="the kernel path the variants change and run (default avx512)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every variant (default 5)")
    ap.add_argument("--retries", type=int, default=2, help="runs again of a busy round (default 2)")
    ap.add_argument("--pause", type=float, default=5.0, help="seconds before running a busy round again (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    ap.add_argument("--work", default=os.path.join("/tmp", "rnnfast-sweep"), help="where builds go (kept)")
    ap.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, help=f"layer rows (default: {' '.join(DEFAULT_ROWS)})")
    args = ap.parse_args(argv)
    check_rows(ap, args.rows)
    variants = args.variant or [parse_variant(v) for v in DEFAULT_VARIANTS[args.isa]]
    if args.isa != "avx512" and any(opts["EMBEDDED_ROWS"] != "default" for _, opts in variants):
        ap.error("embedded broadcasts (E) are an avx512 option")
    probe = subprocess.run([sys.executable, "-c", "import rnnfast; print(' '.join(rnnfast.available_isas()))"],
                           capture_output=True, text=True, cwd="/")
    if probe.returncode == 0 and args.isa not in probe.stdout.split():
        raise SystemExit(f"this CPU does not run {args.isa} (it runs: {probe.stdout.strip()})")
    os.makedirs(args.work, exist_ok=True)
    targets = {name: build(name, opts, args.isa, args.work) for name, opts in variants}
    results = {name: [] for name, _ in variants}
    for r in range(args.rounds):
        busy = []
        for name, _ in variants:
            for attempt in range(args.retries + 1):
                if attempt:
                    time.sleep(args.pause)
                fig = run_variant(targets[name], args)
                if is_quiet(fig):
                    break
                busy.append(f"{name} (others {fig[2]:.0%}, peaks {fig[0]:.0f} / {fig[1]:.0f})")
            results[name].append(fig)
        print(f"round {r + 1} of {args.rounds} done" + (f"; busy: {', '.join(busy)}" if busy else ""), flush=True)
    report(variants, results, args.rows)


if __name__ == "__main__":
    main()
