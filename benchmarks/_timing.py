"""The benchmarks' shared timer."""
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
