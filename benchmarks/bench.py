"""Benchmark rnnfast against PyTorch on CPU: RNN(tanh), LSTM, GRU; inference and training.

    python benchmarks/bench.py            # every cell and shape, a few minutes
    python benchmarks/bench.py --quick    # two shapes, fewer repeats, under a minute

Shapes follow rnnfast's convention: x is (T, B, I), H = I, G gates (1 RNN, 4 LSTM, 3 GRU);
lstm_proj is an LSTM with projections to P = H / 4 units (torch.nn.LSTM's proj_size).
Each (cell, shape, mode) row is first checked: rnnfast against torch autograd with the same
weights (without torch, against the float64 NumPy reference); a wrong result gets no timing.
Then one rnnfast call and one torch call alternate, so that both see the same machine state
(other load, clock, caches), and the medians are reported.
Writes results.json, results.md (also printed) and, when matplotlib is importable, results.png.
"""
import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

import rnnfast
import rnnfast.reference
from _timing import cpu_seconds, others_share

try:
    import torch
except ImportError:  # torch is optional: rnnfast alone is still checked and timed
    torch = None

# class (tanh by default), G, H / proj_size (0: no projections)
CELLS = {"rnn_tanh": ("RNN", 1, 0), "lstm": ("LSTM", 4, 0), "lstm_proj": ("LSTM", 4, 4), "gru": ("GRU", 3, 0)}


def proj_size(cell, H):
    return H // CELLS[cell][2] if CELLS[cell][2] else 0
SHAPES = [(100, 1, 256), (100, 16, 256), (100, 64, 256), (50, 64, 512), (25, 32, 1024)]
QUICK_SHAPES = [(100, 1, 256), (100, 64, 256)]
MODES = ("inference", "training")
RTOL = 1e-3  # float32 sums of up to T*(I+H) terms; error relative to the tensor's largest entry
BUSY = 0.05  # share of the cores taken by other processes above which a timing is suspect


# ---- the two calls being compared ----------------------------------------------------------

def rnnfast_step(m, x, dy, training):
    """One timed rnnfast call; returns (y, dx, weight grads), the last two None for inference."""
    if not training:
        return m(x)[0], None, None
    m.zero_grad()  # so that the grads hold this call's alone, as torch's do
    y, _ = m(x)
    dx, _ = m.backward(dy)
    return y, dx, m.grads


def torch_step(tm, x, dy, training):
    """The same work in torch: an inference-mode forward, or forward + y.backward(dy)."""
    if not training:
        with torch.inference_mode():
            return tm(x)[0], None, None
    tm.zero_grad()
    x.grad = None
    y, _ = tm(x)
    y.backward(dy)
    return y, x.grad, {k: p.grad for k, p in tm.named_parameters()}


def make_calls(cell, shape, training, use_torch):
    """The rnnfast model and the calls to time: [rnnfast] or [rnnfast, torch], same weights."""
    T, B, I = shape
    cls = CELLS[cell][0]
    P = proj_size(cell, I)
    kw = {"proj_size": P} if P else {}
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal((T, B, P or I), dtype=np.float32)
    m = getattr(rnnfast, cls)(I, I, seed=0, **kw).train(training)
    calls = [lambda: rnnfast_step(m, x, dy, training)]
    if use_torch:
        torch.manual_seed(0)
        tm = getattr(torch.nn, cls)(I, I, **kw).train(training)
        m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        tx, tdy = torch.from_numpy(x).requires_grad_(training), torch.from_numpy(dy)
        calls.append(lambda: torch_step(tm, tx, tdy, training))
    return m, x, dy, calls


# ---- correctness -------------------------------------------------------------------------

def rel_err(got, ref):
    """max |got - ref| / max |ref|: one scale per tensor, as float32 rounding grows with it."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


def max_error(ours, ref):
    """The largest rel_err over y and, for training, dx and every weight grad."""
    (y, dx, grads), (ry, rdx, rgrads) = ours, ref
    errs = [rel_err(y, ry)]
    if dx is not None:
        errs += [rel_err(dx, rdx)] + [rel_err(grads[k], rgrads[k]) for k in grads]
    return max(errs)


def torch_to_numpy(result):
    """A torch_step result as NumPy arrays."""
    y, dx, grads = result
    if dx is None:
        return y.detach().numpy(), None, None
    return y.detach().numpy(), dx.numpy(), {k: g.numpy() for k, g in grads.items()}


def reference_step(cell, params, x, dy, training):
    """The float64 NumPy reference for the same call (the oracle when torch is absent)."""
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    B, H = x.shape[1:]
    h0 = np.zeros((1, B, proj_size(cell, H) or H))  # explicit zeros: stack_forward("lstm", hx=None) raises TypeError
    hx = (h0, np.zeros((1, B, H))) if CELLS[cell][0] == "LSTM" else h0
    mode = "lstm" if cell == "lstm_proj" else cell
    y, _, cache = rnnfast.reference.stack_forward(mode, x.astype(np.float64), hx, p64)
    if not training:
        return y, None, None
    dx, _, grads = rnnfast.reference.stack_backward(dy.astype(np.float64), None, cache)
    return y, dx, grads


# ---- memory ------------------------------------------------------------------------------

def numpy_peak_bytes(fn):
    """(fn(), peak bytes of NumPy arrays allocated during it and not yet freed).

    tracemalloc sees NumPy's allocator but not the C++ std::vector scratch in rnnfast's binding,
    so this counts outputs, the workspace saved for backward and temporaries: a lower bound.
    """
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def torch_peak_bytes(fn):
    """(fn(), peak bytes of tensors allocated during it and not yet freed), from the profiler.

    The same measure as numpy_peak_bytes: tensors, not oneDNN or allocator scratch outside them.
    The events' own "Total Allocated" is not used: it also counts blocks of earlier profiling
    sessions that were freed while the profiler was off, so it drifts upward from row to row.
    """
    from torch.profiler import ProfilerActivity, profile
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as d:  # the allocation events are only in the trace
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = [e for e in json.load(f)["traceEvents"] if e.get("name") == "[memory]"]
    live, now, peak = set(), 0, 0
    for e in sorted(events, key=lambda e: e["ts"]):
        addr, nbytes = e["args"]["Addr"], e["args"]["Bytes"]
        if nbytes > 0:
            live.add(addr)
        elif addr in live:
            live.remove(addr)
        else:
            continue  # a block allocated before fn(): not counted, as in tracemalloc
        now += nbytes
        peak = max(peak, now)
    return result, peak


@contextlib.contextmanager
def _quiet_stderr():
    """Silences the profiler's C++ log lines, which would otherwise bury the progress lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ---- timing ------------------------------------------------------------------------------

def time_interleaved(calls, n):
    """n rounds of each call in turn; returns (seconds per call, share of the cores others used).

    The share matters because with one thread per core, a core taken by another process stalls
    the barrier of every time step: a 5% share can make a row many times slower.
    """
    times = [[] for _ in calls]
    cpu0, start = cpu_seconds(), time.perf_counter()
    for _ in range(n):
        for call, ts in zip(calls, times):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
    return times, others_share(cpu0, time.perf_counter() - start)


def fp32_peak(threads):
    """(GFLOP/s, what it is): rnnfast's measured FMA peak when it has one, else numpy sgemm's."""
    fma = getattr(rnnfast._core, "fma_peak_gflops", None)
    if fma is not None:
        # The best of three after a warm-up: the first call may meet idle cores at a low clock, and
        # right after torch's calls its OpenMP threads may still be spinning on the same cores
        # (16 threads of a Xeon: one call at the start and one at the end read 1259 GFLOP/s, the best
        # of three after a warm-up, in benchmarks/products.py on the same machine, 1755).
        fma(threads)
        return max(float(fma(threads)) for _ in range(3)), "FMA peak"
    # A child process, because OpenBLAS reads its thread count only when it loads.
    code = ("import time, numpy as np\n"
            "a = np.random.rand(2048, 2048).astype(np.float32); b = a.copy(); best = 1e9\n"
            "for _ in range(8):\n"
            "    t = time.perf_counter(); np.matmul(a, b); best = min(best, time.perf_counter() - t)\n"
            "print(2 * 2048 ** 3 / best / 1e9)\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout), "sgemm peak (numpy)"


# ---- one row -----------------------------------------------------------------------------

def bench_row(cell, shape, training, use_torch, budget_s, min_reps, repeats):
    """Checks, then times one (cell, shape, mode); returns the row as a dict."""
    T, B, I = shape
    start = time.perf_counter()
    row = {"cell": cell, "mode": MODES[training], "T": T, "B": B, "I": I, "H": I}
    # The checked calls are also the first warm-up, and the ones whose memory is measured.
    try:
        m, x, dy, calls = make_calls(cell, shape, training, use_torch)
        ours, row["rnnfast_bytes"] = numpy_peak_bytes(calls[0])
        if use_torch:
            ref, row["torch_bytes"] = torch_peak_bytes(calls[1])
            ref = torch_to_numpy(ref)
        else:
            ref = reference_step(cell, m.state_dict(), x, dy, training)
        row["max_rel_err"] = max_error(ours, ref)
    except Exception as e:  # a crash is a failed check too, and must not hide the other rows
        return dict(row, status="FAILED", error=f"{type(e).__name__}: {e}")
    if not row["max_rel_err"] <= RTOL:  # written so that NaN fails too
        return dict(row, status="FAILED", error=f"max rel err {row['max_rel_err']:.2e} > {RTOL:g}")

    t0 = time.perf_counter()
    for call in calls:  # a second warm-up, which also sizes the number of repeats
        call()
    n = repeats or max(min_reps, min(100, int(budget_s / (time.perf_counter() - t0))))
    times, row["others_cpu"] = time_interleaved(calls, n)
    if row["others_cpu"] > BUSY:  # another process's burst; a second try may find a quiet spell
        times, row["others_cpu"] = min([(times, row["others_cpu"]), time_interleaved(calls, n)],
                                       key=lambda t: t[1])

    G, P = CELLS[cell][1], proj_size(cell, I)
    flop = 2 * T * B * (G * I * (I + (P or I)) + P * I) * (3 if training else 1)  # backward: about two forwards
    row.update(status="ok", repeats=n, gflop=flop / 1e9)
    for name, ts in zip(("rnnfast", "torch"), times):
        row[name + "_ms"] = statistics.median(ts) * 1e3
        row[name + "_samples_ms"] = [round(t * 1e3, 4) for t in ts]
    if use_torch:
        row["ratio"] = row["torch_ms"] / row["rnnfast_ms"]
    row["row_seconds"] = time.perf_counter() - start
    return row


# ---- reporting ---------------------------------------------------------------------------

def summarize(rows):
    """Per cell and mode: geometric mean of the ratios over the shapes, and the lowest ratio."""
    out = []
    for cell in CELLS:
        for mode in MODES:
            sel = [r for r in rows if r["cell"] == cell and r["mode"] == mode]
            ok = [r for r in sel if "ratio" in r]
            if not sel:
                continue
            s = {"cell": cell, "mode": mode, "rows": len(sel), "failed": len(sel) - len(ok)}
            if ok:
                worst = min(ok, key=lambda r: r["ratio"])
                s.update(geomean_ratio=math.exp(statistics.fmean(math.log(r["ratio"]) for r in ok)),
                         min_ratio=worst["ratio"], min_ratio_shape=[worst["T"], worst["B"], worst["I"]])
            out.append(s)
    return out


def machine_info(threads, peaks, peak_name, use_torch):
    """What a reader needs to compare this run with another."""
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "threads": threads, "isa": rnnfast.isa(),
            "rnnfast": rnnfast.__version__, "torch": torch.__version__ if use_torch else None,
            "numpy": np.__version__, "python": platform.python_version(),
            # the best measurement: a busy machine can only lower one
            "fp32_peak_gflops": round(max(peaks), 1), "fp32_peak_measurements": peaks, "peak_name": peak_name,
            "checked_against": "torch autograd" if use_torch else "the float64 NumPy reference",
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def markdown(info, rows, summary):
    """The report as Markdown: machine and legend, one line per row, then the summary."""
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)
    peak, pct = info["fp32_peak_gflops"], f"% of {info['peak_name']}"
    busy = max((r["others_cpu"] for r in rows if "others_cpu" in r), default=0.0)
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} threads, isa {info['isa']}, "
             f"torch {info['torch'] or 'not used'}, {info['date']}; fp32 peak {peak} GFLOP/s ({info['peak_name']}).",
             f"Each row is checked against {info['checked_against']} before it is timed "
             f"(FAILED: max rel err > {RTOL:g}, no timing). ratio = torch ms / rnnfast ms (> 1: rnnfast faster).",
             "MiB = peak bytes of the arrays/tensors one call allocates (rnnfast: NumPy arrays by tracemalloc, "
             "without its C++ scratch; torch: tensors by its profiler). "
             "others % = share of the cores other processes took while the row was timed.", ""]
    if busy > BUSY:
        lines += [f"**Warning: other processes took up to {100 * busy:.0f}% of the cores during timing; "
                  "rows with a high others % are unreliable.**", ""]
    lines += [f"| cell | mode | T, B, I=H | rnnfast ms | torch ms | ratio | rnnfast GFLOP/s | torch GFLOP/s "
              f"| rnnfast {pct} | torch {pct} | rnnfast MiB | torch MiB | max rel err | others % |",
              "|" + "---|" * 14]
    for r in rows:
        head = f"| {r['cell']} | {r['mode']} | {r['T']}, {r['B']}, {r['I']} "
        if r["status"] != "ok":
            lines.append(head + f"| FAILED: {r['error']} |" + " |" * 10)
            continue
        rates = [r["gflop"] / (r[k + "_ms"] / 1e3) if k + "_ms" in r else None for k in ("rnnfast", "torch")]
        cols = [fmt(r["rnnfast_ms"], ".2f"), fmt(r.get("torch_ms"), ".2f"), fmt(r.get("ratio"), ".2f")]
        cols += [fmt(g, ".1f") for g in rates] + [fmt(None if g is None else 100 * g / peak, ".1f") for g in rates]
        cols += [fmt(r[k] / 2 ** 20 if k in r else None, ".1f") for k in ("rnnfast_bytes", "torch_bytes")]
        cols += [f"{r['max_rel_err']:.1e}", f"{100 * r['others_cpu']:.0f}"]
        lines.append(head + "| " + " | ".join(cols) + " |")
    if any("geomean_ratio" in s for s in summary):
        lines += ["", "| cell | mode | geomean ratio | lowest ratio (T, B, I) | failed rows |", "|---|---|---|---|---|"]
        for s in summary:
            g = s.get("geomean_ratio")
            low = f"{s['min_ratio']:.2f} ({', '.join(map(str, s['min_ratio_shape']))})" if g else "n/a"
            lines.append(f"| {s['cell']} | {s['mode']} | {fmt(g, '.2f')} | {low} | {s['failed']} of {s['rows']} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """A bar chart of the ratios of the checked rows; skipped when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in rows if "ratio" in r]
    if not ok:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(ok)), 4))
    ax.bar(range(len(ok)), [r["ratio"] for r in ok], color=["C0" if r["mode"] == "inference" else "C1" for r in ok])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(ok)), [f"{r['cell']} {r['mode'][:5]} {r['T']},{r['B']},{r['I']}" for r in ok],
                  rotation=75, fontsize=7)
    ax.set_ylabel("torch time / rnnfast time (> 1: rnnfast faster)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    """Parses the options, runs every row, writes and prints the report; 1 if any row FAILED."""
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--quick", action="store_true", help=f"shapes {QUICK_SHAPES} only, fewer repeats")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per row (default: as many as fit in --budget, at least 5, 3 with --quick)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timing per row (default 6, 1 with --quick)")
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="default: benchmarks/")
    p.add_argument("--no-torch", action="store_true", help="rnnfast alone, checked against the NumPy reference")
    args = p.parse_args(argv)
    use_torch = torch is not None and not args.no_torch
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 6.0)

    rnnfast.set_num_threads(args.threads)
    if use_torch:
        torch.set_num_threads(args.threads)
    peak, peak_name = fp32_peak(args.threads)
    rows = []
    for cell in args.cells:
        for shape in QUICK_SHAPES if args.quick else SHAPES:
            for training in (False, True):
                row = bench_row(cell, shape, training, use_torch, budget, 3 if args.quick else 5, args.repeats)
                done = row.get("error") or ", ".join(
                    [f"{k} {row[k + '_ms']:.2f} ms" for k in ("rnnfast", "torch") if k + "_ms" in row]
                    + [f"others {100 * row['others_cpu']:.0f}%"])
                print(f"{cell:8s} {row['mode']:9s} {shape}: {row['status']}: {done}", file=sys.stderr, flush=True)
                rows.append(row)
    peaks = [round(peak, 1), round(fp32_peak(args.threads)[0], 1)]  # measured again: see machine_info
    info = machine_info(args.threads, peaks, peak_name, use_torch)
    summary = summarize(rows)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": info, "rtol": RTOL, "rows": rows, "summary": summary}, f, indent=1)
    report = markdown(info, rows, summary)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report)
    plot(rows, os.path.join(args.out, "results.png"))
    print(report)
    return 1 if any(r["status"] != "ok" for r in rows) else 0  # so that a wrong result fails CI


if __name__ == "__main__":
    sys.exit(main())
