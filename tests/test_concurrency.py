"""Kernels run without the GIL: modules in parallel threads give the bits they give one after
another, and one module shared by two threads is safe (its calls take turns)."""
import subprocess
import sys
import threading

import numpy as np
import pytest

import rnnfast


def job(seed):
    rng = np.random.default_rng(seed)
    m = [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN][seed % 3](16, 32, num_layers=2, bidirectional=seed % 2 == 0,
                                                          seed=seed)
    x = rng.standard_normal((12, 5, 16)).astype(np.float32)
    y, _ = m(x, lengths=rng.integers(1, 13, size=5))
    dx, _ = m.backward(rng.standard_normal(y.shape).astype(np.float32))
    return [y, dx] + [m.grads[k] for k in sorted(m.grads)]


def test_eight_threads_match_sequential_runs_bit_for_bit():
    expected = [job(s) for s in range(8)]
    results = [None] * 8
    barrier = threading.Barrier(8)

    def run(s):
        barrier.wait()
        for _ in range(3):
            results[s] = job(s)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_one_module_shared_by_two_threads_is_safe():
    m = rnnfast.GRU(8, 16, seed=0)
    x = np.random.default_rng(1).standard_normal((10, 4, 8)).astype(np.float32)
    dy = np.ones((10, 4, 16), np.float32)
    n = 20
    twin = rnnfast.GRU(8, 16, seed=0)
    for _ in range(2 * n):  # the same 2n calls, one after another, on a twin
        twin(x)
        twin.backward(dy)
    errors = []

    def run():  # the other thread's forward may come between this one's forward and backward
        try:
            for _ in range(n):
                m(x)
                m.backward(dy, retain_graph=True)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, g in twin.grads.items():  # every backward added the same gradient: 2n of them in all
        assert np.array_equal(m.grads[k], g)


def test_bidirectional_directions_run_together_with_the_same_bits():
    """With 2+ threads the two directions of a layer run at the same time (one on a worker thread);
    outputs and every gradient must be the bits of one thread running them in turn."""
    from rnnfast import _directions

    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 8, 64)).astype(np.float32)
    dy = rng.standard_normal((20, 8, 128)).astype(np.float32)
    lengths = rng.integers(1, 21, size=8)
    before = rnnfast.get_num_threads()
    try:
        results = {}
        for threads in (1, 2, 3):
            rnnfast.set_num_threads(threads)
            assert (_directions.thread_split(20 * 8 * 4 * 64 * 128, 2) is None) == (threads == 1)
            m = rnnfast.LSTM(64, 64, num_layers=2, bidirectional=True, seed=3)
            y, (h, c) = m(x, lengths=lengths)
            dx, (dh, dc) = m.backward(dy)
            results[threads] = [y, h, c, dx, dh, dc] + [m.grads[k] for k in sorted(m.grads)]
        for threads in (2, 3):
            assert all(np.array_equal(a, b) for a, b in zip(results[threads], results[1]))
    finally:
        rnnfast.set_num_threads(before)


def test_an_error_in_one_direction_is_raised_after_both_finish():
    from rnnfast import _directions

    finished = []

    def ok(n):
        import time
        time.sleep(0.05)
        finished.append(n)

    def bad(n):
        raise ValueError("boom")

    for jobs in ([ok, bad], [bad, ok]):
        finished.clear()
        try:
            _directions.run(jobs, (1, 1))
        except ValueError as e:
            assert str(e) == "boom"
        else:
            raise AssertionError("no error raised")
        assert finished == [1]


SWITCHER = """
import sys, threading, time
import numpy as np
import rnnfast
isas = rnnfast.available_isas()
x = np.random.default_rng(0).standard_normal((12, 13, 16))
def train(m, steps):
    for _ in range(steps):
        y, _ = m(x)
        m.backward(np.cos(y))
    return [m.grads[k] for k in sorted(m.grads)]
quiet = train(rnnfast.LSTM(16, 67, num_layers=2, bidirectional=True, dtype="float64", seed=0), 30)
stop = False
def switch():
    i = 0
    while not stop:
        rnnfast.set_isa(isas[i % len(isas)])
        i += 1
        time.sleep(0.0002)
t = threading.Thread(target=switch)
t.start()
try:
    busy = train(rnnfast.LSTM(16, 67, num_layers=2, bidirectional=True, dtype="float64", seed=0), 30)
finally:
    stop = True
    t.join()
worst = max(float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in zip(quiet, busy))
print(worst)
sys.exit(0 if worst < 1e-10 else 1)
"""


@pytest.mark.skipif(len(rnnfast.available_isas()) < 2, reason="one kernel path only")
def test_set_isa_from_another_thread_while_kernels_run():
    """Every call reads the active path once and its buffers fit every path: switching paths from
    another thread mid-training crashes nothing (it used to corrupt the heap) and changes the
    results only by the paths' rounding (float64)."""
    run = subprocess.run([sys.executable, "-c", SWITCHER], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
