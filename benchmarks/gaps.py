"""rnnfast calls with idle gaps between them, as a server that scores a stream chunk by chunk makes
them.

    python benchmarks/gaps.py [--gaps 0,5,20,100] [--calls 20] [--rounds 3] [--threads N] [ROW ...]

Between two calls the cores idle, the team's threads go to sleep, and the next call wakes them:
the scheduler may then put two of them on one core, and a layer with a barrier per step stalls at
every step until they are apart again (cpp/src/team_barrier.h). Each ROW is `cell,T,B,H` (cell
rnn, lstm or gru; inference, float32, I = H; default lstm,100,1,256 gru,100,16,256
lstm,50,16,512), checked first against the float64 NumPy reference. Each round then runs, for
every gap, --calls calls after sleeping the gap before each, in turn on one thread, on --threads
with dynamic threads off (the team asked for, whatever it costs) and on --threads with dynamic
threads on (the default, cpp/src/dynamic_team.h). The report gives, per row and gap, each
setting's median ms per call over all rounds, and the team's time over one thread's (< 1: the
team is faster). On a quiet machine no gap should make a team slower than one thread.
"""
import argparse
import statistics
import time

import bench
from _timing import parsed_rows

import rnnfast

CELLS = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru"}
DEFAULT_ROWS = ["lstm,100,1,256", "gru,100,16,256", "lstm,50,16,512"]
LIMIT = 1e-4  # float32 against the float64 reference, max |difference| / max |reference|


def parse_row(text):
    cell, *dims = text.split(",")
    if cell not in CELLS or len(dims) != 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise argparse.ArgumentTypeError(f"row {text!r}: expected cell,T,B,H with cell one of {', '.join(CELLS)}")
    return CELLS[cell], tuple(int(d) for d in dims)


def checked_call(cell, shape):
    """The row's inference call, after its output matched the float64 reference."""
    m, x, dy, (call,) = bench.make_calls(cell, shape, False, False)
    err = bench.max_error(bench.rnnfast_step(m, x, dy, False), bench.reference_step(cell, m.state_dict(), x, dy, False))
    if not err <= LIMIT:
        raise SystemExit(f"{cell} {shape}: max rel err {err:.2e} against the reference (limit {LIMIT:.0e})")
    return call


def settings(threads):
    """(name, thread count, dynamic threads) of each setting a gap is timed with."""
    return [("1 thread", 1, False), (f"{threads} fixed", threads, False), (f"{threads} dynamic", threads, True)]


def time_after_gaps(call, gap, calls, threads, dynamic):
    rnnfast.set_num_threads(threads)
    rnnfast.set_dynamic_threads(dynamic)  # also forgets what earlier calls taught it
    call()
    out = []
    for _ in range(calls):
        time.sleep(gap)
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("rows", nargs="*", help=f"cell,T,B,H (default: {' '.join(DEFAULT_ROWS)})")
    ap.add_argument("--gaps", default="0,5,20,100", help="idle ms before each call, comma-separated")
    ap.add_argument("--calls", type=int, default=20, help="calls per gap, setting and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="the team's threads (default: rnnfast's, all cores)")
    args = ap.parse_args(argv)
    rows = parsed_rows(ap, parse_row, args.rows or DEFAULT_ROWS)
    gaps = [float(g) / 1e3 for g in args.gaps.split(",")]
    threads = args.threads or rnnfast.get_num_threads()
    if threads < 2:
        raise SystemExit("gaps.py compares a team with one thread: it needs --threads 2 or more (or 2 cores)")
    names = [name for name, _, _ in settings(threads)]
    asked, was_dynamic = rnnfast.get_num_threads(), rnnfast.get_dynamic_threads()
    print(f"rnnfast {rnnfast.__version__}, isa {rnnfast.isa()}; {args.calls} calls per gap, setting and round, "
          f"{args.rounds} rounds; median ms per call, and the team's time over one thread's")
    print(f"{'row':24s} {'gap ms':>6s} " + " ".join(f"{n:>12s}" for n in names) + "   fixed/1  dynamic/1")
    for (cell, shape), text in zip(rows, args.rows or DEFAULT_ROWS):
        call = checked_call(cell, shape)
        times = {(g, n): [] for g in gaps for n in names}
        for _ in range(args.rounds):
            for g in gaps:
                for name, n, dynamic in settings(threads):
                    times[g, name] += time_after_gaps(call, g, args.calls, n, dynamic)
        for g in gaps:
            ms = [1e3 * statistics.median(times[g, n]) for n in names]
            print(f"{text:24s} {1e3 * g:6.0f} " + " ".join(f"{v:12.3f}" for v in ms)
                  + f"   {ms[1] / ms[0]:7.2f}  {ms[2] / ms[0]:9.2f}", flush=True)
    rnnfast.set_num_threads(asked)
    rnnfast.set_dynamic_threads(was_dynamic)


if __name__ == "__main__":
    main()
