"""rnnfast and torch.nn on a shared machine: throughput with another process on the same cores.

    python benchmarks/contention.py                    # the demo's model and bench.py's rows
    python benchmarks/contention.py --quick            # a few rows, about a minute
    python benchmarks/contention.py --competitor numpy --cells lstm --modes training

A competitor process keeps every core busy (an rnnfast LSTM inference loop by default, or a NumPy
or torch matrix-product loop, all on as many threads as there are cores); it is started once and
paused (SIGSTOP) and resumed (SIGCONT) between blocks, so that quiet and contended blocks alternate
within each round and see the same machine otherwise. Each block runs one library's calls for
--seconds and counts them; rnnfast's and torch's blocks alternate with a pause between them (an
OpenMP runtime's threads may keep spinning for a while after a call), and rnnfast's dynamic threads
start each block afresh, on all threads (as after a long quiet spell: a block does not inherit the
smaller team of a contended one before it). Every row is checked first
(rnnfast against torch autograd, or against the float64 NumPy reference without torch).

Per row: calls (or characters) per second, quiet and contended, medians over the rounds; "kept" is
contended / quiet (a fair share of 2 cores against a 2-thread competitor is about 50%); "fewer
threads" counts the times rnnfast's dynamic threads moved to a smaller team in the quiet / the
contended blocks (cpp/src/dynamic_team.h); "vs torch" is rnnfast's contended throughput over torch's. The demo's rows are `python -m rnnfast`'s model
(one-hot characters -> LSTM or GRU (128) -> Linear, 32 streams, truncated BPTT of 64 steps with Adam)
training, and its generation one character at a time. Exit status 1 when a row fails its check.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

import bench
import rnnfast

COMPETITORS = {
    "rnnfast": ("import numpy as np, rnnfast\n"
                "m = rnnfast.LSTM(256, 256, seed=0).eval()\n"
                "x = np.random.default_rng(0).standard_normal((100, 64, 256), dtype=np.float32)\n"
                "while True:\n    m(x)\n"),
    "numpy": ("import numpy as np\n"
              "a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)\n"
              "while True:\n    a @ a\n"),
    "torch": ("import torch\n"
              "a = torch.randn(1024, 1024)\n"
              "while True:\n    a @ a\n"),
}
# The competitor's watch: it exits when this process is gone (its parent changes).
WATCH = ("def _watch(parent=os.getppid()):\n"
         "    while os.getppid() == parent:\n"
         "        time.sleep(0.5)\n"
         "    os._exit(0)\n"
         "threading.Thread(target=_watch, daemon=True).start()\n")
KEEP_TARGET = 0.40  # contended / quiet throughput that counts as fair enough


def die_with_parent():
    """In the child, on Linux: SIGKILL when the parent ends, even while stopped (the watch thread
    covers other systems while the child runs)."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Competitor:
    """A process that keeps every core busy while running; paused and resumed with signals."""

    def __init__(self, kind, threads):
        # Runtime settings given to this process (a wait policy, say) are not the competitor's.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_", "OPENBLAS_"))}
        # Dynamic threads off: an rnnfast competitor keeps all its threads busy whatever happens.
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), RNNFAST_DYNAMIC_THREADS="0")
        # Its own session (so that signals reach its threads as a group, and the scheduler shares
        # the cores between it and this process as between two programs a user started), and it
        # ends with this process even when this one is killed (a stopped competitor would not
        # notice on its own).
        code = f"import os, threading, time\n{WATCH}\n{COMPETITORS[kind]}"
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                                     preexec_fn=die_with_parent)
        time.sleep(2.0)  # imports and a first call
        self.pause()

    def pause(self):
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)
        time.sleep(0.1)  # its threads back on the cores

    def close(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def rate(call, seconds):
    """Units per second of call() (which returns the units it did) over at least `seconds`."""
    start, units = time.perf_counter(), 0
    while True:
        units += call()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return units / elapsed


# ---- the rows ----------------------------------------------------------------------------------

def layer_row(cell, shape, training, use_torch):
    """(name, {library: call returning 1}) for one of bench.py's rows, after its check."""
    m, x, dy, calls = bench.make_calls(cell, shape, training, use_torch)
    ours = calls[0]()
    if use_torch:
        ref = bench.torch_to_numpy(calls[1]())
    else:
        ref = bench.reference_step(cell, m.state_dict(), x, dy, training)
    err = bench.max_error(ours, ref)
    if not err <= bench.RTOL:
        raise AssertionError(f"{cell} {shape} {bench.MODES[training]}: max rel err {err:.2e} > {bench.RTOL:g}")
    libs = {"rnnfast": calls[0]} | ({"torch": calls[1]} if use_torch else {})
    name = f"{cell} {bench.MODES[training]} {shape}"
    return name, {lib: (lambda c=c: (c(), 1)[1]) for lib, c in libs.items()}


def demo_rows(cell):
    """The demo's model: training (characters/s) and generation (characters/s), checked to learn."""
    from rnnfast import corpus, demo
    args = demo.parse_args(["--cell", cell])
    text = corpus.default_text()[:100_000]
    model = demo.CharModel("".join(sorted(set(text))), cell, demo.MODEL_DEFAULTS["hidden"],
                           demo.MODEL_DEFAULTS["layers"], args.seed)
    x, y, _, _ = demo.prepare(model, text, args)
    opt = rnnfast.optim.Adam(model.modules, lr=args.lr)
    losses = []

    def loss_fn(out, t0, t1):
        loss, dlogits = rnnfast.cross_entropy(model.head(out), y[t0:t1])
        losses.append(loss)
        return loss, model.head.backward(dlogits)

    def after_chunk(t0, t1):
        rnnfast.clip_grad_norm(model.modules, args.clip)
        opt.step()
        opt.zero_grad()

    steps = 4 * args.seq_len  # four chunks a call, from the start of the text each time

    def train():
        rnnfast.tbptt(model.rnn, x[:steps], args.seq_len, loss_fn, after_chunk=after_chunk)
        return steps * x.shape[1]

    for _ in range(10):
        train()
    if not losses[-1] < 0.9 * losses[0]:  # the same four chunks, forty Adam steps
        raise AssertionError(f"demo {cell}: the loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    rng = np.random.default_rng(0)
    sample = lambda: len(model.sample("The ", 50, args.temperature, rng)) - 4  # noqa: E731
    return [(f"demo {cell} training", {"rnnfast": train}), (f"demo {cell} generation", {"rnnfast": sample})]


# ---- measuring -----------------------------------------------------------------------------------

def measure(name, libs, competitor, rounds, seconds, pause):
    """{library: ([quiet rates], [contended rates])}, quiet and contended blocks alternating."""
    out = {lib: ([], []) for lib in libs}
    out["shrinks"] = [0, 0]
    for r in range(rounds):
        for contended in ((False, True) if r % 2 == 0 else (True, False)):
            if contended:
                competitor.resume()
            for lib, call in libs.items():
                time.sleep(pause)
                rnnfast.set_dynamic_threads(rnnfast.get_dynamic_threads())  # forgets the last block's team size
                call()  # a warm-up: caches, and the threads awake
                before = rnnfast._core.dynamic_thread_shrinks()
                out[lib][contended].append(rate(call, seconds))
                if lib == "rnnfast":
                    out["shrinks"][contended] += rnnfast._core.dynamic_thread_shrinks() - before
            if contended:
                competitor.pause()
    return out


def num(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def report_line(name, rates):
    q, c = (statistics.median(v) for v in rates["rnnfast"])
    cols = [name, num(q), num(c), f"{100 * c / q:.0f}%", "%d / %d" % tuple(rates["shrinks"])]
    row = {"name": name, "rnnfast_quiet": q, "rnnfast_contended": c, "kept": c / q}
    if "torch" in rates:
        tq, tc = (statistics.median(v) for v in rates["torch"])
        cols += [num(tq), num(tc), f"{100 * tc / tq:.0f}%", f"{c / tc:.2f}"]
        row.update(torch_quiet=tq, torch_contended=tc, torch_kept=tc / tq, vs_torch=c / tc)
    else:
        cols += ["", "", "", ""]  # no torch counterpart
    return "| " + " | ".join(cols) + " |", row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--competitor", choices=sorted(COMPETITORS), default="rnnfast")
    ap.add_argument("--cells", default="lstm,gru,rnn_tanh", help="comma-separated, of " + ",".join(bench.CELLS))
    ap.add_argument("--modes", default="inference,training")
    ap.add_argument("--shapes", default=None, help="T,B,I;T,B,I... (default: bench.py's five)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo's rows")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.8, help="per block")
    ap.add_argument("--pause", type=float, default=0.2, help="between blocks")
    ap.add_argument("--quick", action="store_true", help="LSTM and GRU at two shapes, the demo's LSTM")
    args = ap.parse_args(argv)
    use_torch = bench.torch is not None and not args.no_torch
    threads = rnnfast.get_num_threads()
    if use_torch:
        bench.torch.set_num_threads(threads)
    cells = [c for c in args.cells.split(",") if c]
    shapes = ([tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")] if args.shapes
              else bench.SHAPES)
    modes = [bool(bench.MODES.index(m)) for m in args.modes.split(",") if m]
    demo_cells = [] if args.no_demo else ["lstm", "gru"]
    if args.quick:
        cells, shapes, demo_cells = ["lstm", "gru"], [(100, 16, 256), (50, 64, 512)], ["lstm"]

    competitor = Competitor(args.competitor, threads)
    print(f"rnnfast {rnnfast.__version__} isa={rnnfast.isa()} threads={threads}; competitor: {args.competitor} "
          f"on {threads} threads (process {competitor.proc.pid}); torch {bench.torch.__version__ if use_torch else 'not used'}; "
          f"{args.rounds} rounds of {args.seconds} s blocks; rates per second (calls, or characters for the demo)\n")
    print("| row | rnnfast quiet | contended | kept | fewer threads | torch quiet | contended | kept | vs torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows, failed = [], []
    try:
        todo = [lambda c=c: demo_rows(c) for c in demo_cells]
        todo += [lambda c=c, s=s, m=m: [layer_row(c, s, m, use_torch)] for c in cells for m in modes for s in shapes]
        for make in todo:
            try:
                made = make()
            except AssertionError as exc:
                failed.append(str(exc))
                print(f"| FAILED: {exc} |")
                continue
            for name, libs in made:
                line, row = report_line(name, measure(name, libs, competitor, args.rounds, args.seconds, args.pause))
                print(line, flush=True)
                rows.append(row)
    finally:
        competitor.close()
    low = min(rows, key=lambda r: r["kept"]) if rows else None
    if low:
        print(f"\nlowest kept: {100 * low['kept']:.0f}% ({low['name']}); target >= {100 * KEEP_TARGET:.0f}%")
    behind = [r["name"] for r in rows if r.get("vs_torch", 2.0) < 1.0]
    if use_torch:
        print("contended, slower than torch: " + (", ".join(behind) if behind else "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
