"""The benchmarks' shared timer, the share of the cores other processes took, and the reports of
paired timings."""
import argparse
import os
import resource
import statistics
import time


def median_seconds(call, budget, warmups=1, at_least=5):
    """Median seconds of `call()` over the calls that fit in `budget` seconds (at least `at_least`),
    after `warmups` untimed calls."""
    for _ in range(warmups):
        call()
    times, end = [], time.perf_counter() + budget
    while time.perf_counter() < end or len(times) < at_least:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_seconds():
    """(CPU seconds the whole machine has been busy, CPU seconds this process has used)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    me = resource.getrusage(resource.RUSAGE_SELF)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), me.ru_utime + me.ru_stime


def others_share(start, wall):
    """The share of this process's cores that other processes (or, in a VM, other guests: steal)
    took since `start`, a cpu_seconds() reading taken `wall` seconds ago."""
    (busy0, mine0), (busy1, mine1) = start, cpu_seconds()
    return max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (wall * len(os.sched_getaffinity(0)))


def paired_rounds(pairs, rounds, budget):
    """pairs: per row, (first, second) zero-argument callables. Each round times every row's first,
    then its second; returns per row (first's times, second's times), a median per round."""
    times = [([], []) for _ in pairs]
    for _ in range(rounds):
        for (ta, tb), (a, b) in zip(times, pairs):
            ta.append(median_seconds(a, budget))
            tb.append(median_seconds(b, budget))
    return times


def print_pairs(rows, times, first, second):
    """One line per row: both medians (ms) and second / first, its median and every round's."""
    print(f"  {'row':36} {first + ' ms':>10} {second + ' ms':>10}   {second}/{first} (median; each round)")
    for text, (ta, tb) in zip(rows, times):
        ratios = [b / a for a, b in zip(ta, tb)]
        print(f"  {text:36} {statistics.median(ta) * 1e3:10.3f} {statistics.median(tb) * 1e3:10.3f}   "
              f"{statistics.median(ratios):.3f}  ({' '.join(f'{r:.2f}' for r in ratios)})")


def parsed_rows(ap, parse, texts):
    """Every row text parsed by `parse`, or the parser `ap` exits with the first one's error."""
    try:
        return [parse(t) for t in texts]
    except (ValueError, argparse.ArgumentTypeError) as e:
        ap.error(str(e))
