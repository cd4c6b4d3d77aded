"""Two builds of rnnfast against each other, alternated in fresh processes: is a change faster?

    python benchmarks/ab_builds.py OLD NEW [--rounds R] [--threads N] [--side-by-side | --interleaved] [ROW ...]

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

With --side-by-side both builds run at the same moment instead, one thread each, each process
pinned to a core of its own (two CPUs on different physical cores; the two swap cores every round):
a slow spell of a shared machine that slows both alike cancels in the ratios, which scattered less
than alternated runs' (benchmarks/RESULTS.md, "Side by side"); a spell on one core alone still
moves a round. It measures one core's work (the kernels, the cell math), not how threads share a
call; and both processes share the L3 and memory, as a call's threads do.

With --interleaved both builds' workers start once and wait; they are then asked for one call at
a time, in turn (which build goes first alternates), each after --pause seconds (so that the
other's idle threads have stopped spinning), with any thread count: --rounds calls of each per
row (30 by default), and the report gives the median of the pairs' ratios with their quartiles.
A slow spell longer than a call slows both calls of a pair, so the ratios hold through spells
that scatter alternated processes' rounds.
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


def make_call(row):
    """In a worker process: the call that one timing of `row` makes (seeded inputs and weights)."""
    import numpy as np
    import rnnfast
    cell, T, B, H, mode = row
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
    return call


def time_rows(rows, threads, budget):
    """In the worker process: median seconds per row for the rnnfast that Python imports."""
    import rnnfast
    if threads:
        rnnfast.set_num_threads(threads)
    return [median_seconds(make_call(row), budget, warmups=2) for row in rows]


def serve_rows(rows, threads):
    """In an --interleaved worker: after READY, times one call of row i for each line i read,
    printing its seconds, until its input ends."""
    import rnnfast
    if threads:
        rnnfast.set_num_threads(threads)
    calls = [make_call(row) for row in rows]
    for call in calls:  # two warm-up calls each, as time_rows makes
        call()
        call()
    print("READY", flush=True)
    for line in sys.stdin:
        call = calls[int(line)]
        t0 = time.perf_counter()
        call()
        print(f"{time.perf_counter() - t0:.6e}", flush=True)


def two_cores():
    """Two CPUs this process may run on, on different physical cores (Linux's topology files; where
    they are missing every CPU counts as a core of its own), or fewer when there are none."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    chosen, cores = [], set()
    for cpu in sorted(os.sched_getaffinity(0)):
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                core = f.read().strip()
        except OSError:
            core = str(cpu)
        if core not in cores:
            cores.add(core)
            chosen.append(cpu)
    return chosen[:2]


def start_build(folder, args, cpu=None):
    """A worker process timing the rows on `folder`'s build (pinned to `cpu` if given; serving one
    call at a time with --interleaved)."""
    env = dict(os.environ)
    if folder != "-":
        env["PYTHONPATH"] = os.path.abspath(folder) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--budget", str(args.budget),
           *(["--cpu", str(cpu)] if cpu is not None else []), *(["--serve"] if args.interleaved else []), *args.rows]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE if args.interleaved else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def worker_failed(folder, err):
    """Ends the run with a worker's error output."""
    raise SystemExit(f"build {folder}: worker failed\n{err[-2000:]}")


def built_module(lines):
    """The extension module a worker's output lines say it imported."""
    return next((ln[6:] for ln in lines if ln.startswith("BUILD ")), "?")


def finish_build(folder, proc):
    """The worker's times per row and the module it imported."""
    out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("TIMES ")]
    if proc.returncode != 0 or not lines:
        worker_failed(folder, err)
    return [float(v) for v in lines[-1].split()[1:]], built_module(out.splitlines())


def worker(argv):
    """`--worker [--threads N] [--budget S] ROW ...`: prints one line, TIMES and a value per row."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget", type=float, default=1.5)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("rows", nargs="+", type=parse_row)
    args = ap.parse_args(argv)
    if args.cpu is not None:  # before rnnfast loads, so that its thread pool sees the one core
        os.sched_setaffinity(0, {args.cpu})
    import rnnfast._core as core
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(core.__file__)))
    print(f"BUILD {core.__file__} (modified {stamp})", flush=True)
    if args.serve:
        return serve_rows(args.rows, args.threads)
    print("TIMES " + " ".join(f"{t:.6e}" for t in time_rows(args.rows, args.threads, args.budget)), flush=True)


def interleave(args, builds):
    """--interleaved: both builds' workers at once, asked for one call at a time in turn (which
    goes first alternates), after a pause each; returns the times, [build][row][call], and the
    modules they imported."""
    procs = [start_build(folder, args) for _, folder in builds]
    try:
        built = []
        for (_, folder), proc in zip(builds, procs):
            lines = []
            while not lines or lines[-1] != "READY":
                line = proc.stdout.readline()
                if not line:  # the worker ended before it was ready
                    worker_failed(folder, proc.communicate()[1])
                lines.append(line.strip())
            built.append(built_module(lines))
        times = [[[] for _ in args.rows] for _ in builds]
        for i in range(len(args.rows)):
            for r in range(args.rounds):
                for b in ((0, 1) if r % 2 == 0 else (1, 0)):
                    time.sleep(args.pause)
                    procs[b].stdin.write(f"{i}\n")
                    procs[b].stdin.flush()
                    line = procs[b].stdout.readline()
                    if not line:
                        worker_failed(builds[b][1], procs[b].communicate()[1])
                    times[b][i].append(float(line))
        return times, built
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("old", help="folder with the old build's rnnfast, or -")
    ap.add_argument("new", help="folder with the new build's rnnfast, or -")
    ap.add_argument("rows", nargs="*", default=DEFAULT_ROWS, metavar="ROW")
    ap.add_argument("--rounds", type=int, default=None, help="default: 3 (--interleaved: 30 calls of each build)")
    ap.add_argument("--threads", type=int, default=0, help="default: rnnfast's (all cores)")
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per row and process")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--side-by-side", action="store_true",
                      help="both builds at once, one thread each on a core of its own (swapped every round)")
    mode.add_argument("--interleaved", action="store_true",
                      help="one call of each build in turn, from two waiting processes, each after --pause")
    ap.add_argument("--pause", type=float, default=0.05, help="--interleaved: seconds before each call")
    args = ap.parse_args(argv)
    check_rows(ap, args.rows)
    if args.rounds is None:
        args.rounds = 30 if args.interleaved else 3
    cpus = two_cores() if args.side_by_side else []
    if args.side_by_side:
        if len(cpus) < 2:
            ap.error("--side-by-side needs two physical cores to run on (and Linux's sched_setaffinity)")
        if args.threads not in (0, 1):
            ap.error("--side-by-side runs one thread per build")
        args.threads = 1
    builds = (("old", args.old), ("new", args.new))
    if args.interleaved:
        (old_t, new_t), (built_old, built_new) = interleave(args, builds)
        print(f"old: {built_old}\nnew: {built_new}")
        print(f"{args.rounds} calls of each, {args.threads or 'all'} threads, interleaved; ms old / new (medians), "
              f"old/new time (median of the pairs' ratios) and their quartiles")
        for i, row in enumerate(args.rows):
            ratios = [o / n for o, n in zip(old_t[i], new_t[i])]
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            print(f"  {row:24} {statistics.median(old_t[i]) * 1e3:9.3f} {statistics.median(new_t[i]) * 1e3:9.3f}   "
                  f"{statistics.median(ratios):.3f}  ({q[0]:.2f} {q[2]:.2f})")
        return
    times, built = {"old": [], "new": []}, {}
    for r in range(args.rounds):
        procs = [start_build(folder, args, cpus[(i + r) % 2]) for i, (_, folder) in enumerate(builds)] \
            if args.side_by_side else []
        try:
            for i, (which, folder) in enumerate(builds):
                proc = procs[i] if procs else start_build(folder, args)
                t, built[which] = finish_build(folder, proc)
                times[which].append(t)
        finally:  # a failed worker must not leave its partner running
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    print(f"old: {built['old']}\nnew: {built['new']}")
    print(f"{args.rounds} rounds, {args.threads or 'all'} threads{', side by side' if args.side_by_side else ''}; "
          f"ms old / new (medians), old/new time (median of rounds) and each round's")
    for i, row in enumerate(args.rows):
        old = [r[i] for r in times["old"]]
        new = [r[i] for r in times["new"]]
        ratios = [o / n for o, n in zip(old, new)]
        print(f"  {row:24} {statistics.median(old) * 1e3:9.3f} {statistics.median(new) * 1e3:9.3f}   "
              f"{statistics.median(ratios):.3f}  ({' '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
