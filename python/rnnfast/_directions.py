"""The two directions of a bidirectional layer, run at the same time when there are threads for both.

The directions of one layer are independent (each reads the layer's input and writes its own half
of the output; in backward each writes its own dx, summed afterwards), so with n >= 2 threads the
reverse direction runs on a worker thread with n // 2 of them while the caller runs the forward
direction with the rest. The kernels release the GIL, so both make progress; each direction's
results are the same bits as when run alone (no result depends on the thread count), so running
them together changes timing only.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from . import _core

# Below this many multiply-adds per direction, handing one to another thread costs more than it
# saves (a hand-off is tens of microseconds).
MIN_WORK = 2_000_000

_pool = None
_pool_lock = threading.Lock()


def _after_fork_in_child():
    """Worker threads do not survive a fork (nor does a lock another thread held): start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="rnnfast")
        return _pool


# Eval forwards run together only while a thread's share of W_hh stays this small (a typical L2):
# beyond it, one thread streaming a direction's whole W_hh each step loses to both threads taking
# the directions in turn; training, whose backward has more to overlap, still gains
# (benchmarks/RESULTS.md, "The schedule's constants").
EVAL_WEIGHT_BYTES = 512 * 1024


def thread_split(work, directions, weight_bytes=0, training=True):
    """Per-direction thread counts: (n - n // 2, n // 2) to run two together, or None to run them
    one after the other with every thread each. `work`: multiply-adds of one direction;
    `weight_bytes`: the size of one direction's W_hh at the inputs' precision."""
    n = _core.get_num_threads()
    if directions != 2 or n < 2 or work < MIN_WORK:
        return None
    if not training and weight_bytes / (n // 2) > EVAL_WEIGHT_BYTES:
        return None
    return n - n // 2, n // 2


def run(jobs, split):
    """Calls jobs[d](threads) for every direction d and returns their results in order: together
    when `split` gives thread counts, else one after the other with threads=0 (all of them).
    An error in either is raised after both have finished, so no job writes after this returns."""
    if split is None:
        return [job(0) for job in jobs]
    try:
        other = _executor().submit(jobs[1], split[1])
    except RuntimeError:  # the interpreter is shutting down: no new threads, run them in turn
        return [job(0) for job in jobs]
    try:
        first = jobs[0](split[0])
    finally:
        _wait(other)  # whether or not the first job failed, and through Ctrl-C
    error = other.exception()
    if error is not None:
        raise error
    return [first, other.result()]


def _wait(future):
    """Waits until `future` is done even if the wait is interrupted (KeyboardInterrupt): the job
    writes into the caller's arrays, so the caller must not move on while it runs. The interruption
    is raised again once the job is done."""
    interrupted = None
    while True:
        try:
            future.exception()
            break
        except BaseException as e:  # noqa: B036 (re-raised below, after the job is done)
            interrupted = interrupted or e
    if interrupted is not None:
        raise interrupted
