"""rnnfast on cores it shares: barriers that sleep when a partner is late (cpp/src/team_barrier.h),
dynamic team sizes (cpp/src/dynamic_team.h), and the OpenMP spin setting at import.

A process pinned to one core and running four threads is a machine shared with other work, on any
machine: every barrier meets threads the scheduler has taken away. The threads then sleep and
wake, teams shrink, and the results must stay the bits of one thread."""
import os
import subprocess
import sys
import textwrap

import pytest

import rnnfast

pinnable = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")


def run_python(code, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "RNNFAST_DYNAMIC_THREADS", "OMP_NUM_THREADS")}
    full.update(env)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


ON_ONE_CORE = """
    import os
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # before OpenMP starts
    import numpy as np
    import rnnfast
"""


@pinnable
def test_four_threads_on_one_core_give_the_bits_of_one_thread():
    """Every cell, training, with lengths; dynamic threads off (so that the four threads really run
    and sleep at every barrier) and on (so that teams shrink in the middle of the calls)."""
    code = ON_ONE_CORE + """
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 9, 20)).astype(np.float32)
    dy = rng.standard_normal((30, 9, 192)).astype(np.float32)
    lengths = np.array([30, 4, 30, 17, 1, 30, 29, 30, 8])

    def train(cls):
        m = cls(20, 96, num_layers=2, bidirectional=True, seed=3)
        y, state = m(x, lengths=lengths)
        dx, _ = m.backward(dy)
        return [y, dx, *(state if isinstance(state, tuple) else (state,))] + [m.grads[k] for k in sorted(m.grads)]

    for cls in (rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN):
        rnnfast.set_num_threads(1)
        want = train(cls)
        rnnfast.set_num_threads(4)
        for dynamic in (False, True):
            rnnfast.set_dynamic_threads(dynamic)
            for _ in range(3):
                assert all(np.array_equal(a, b) for a, b in zip(train(cls), want)), (cls, dynamic)
    print("same")
    """
    assert run_python(code) == ["same"]


@pinnable
def test_teams_shrink_when_their_threads_keep_waiting():
    """Four threads on one core, a barrier per step: dynamic threads move to fewer, and the results
    stay the same bits."""
    code = ON_ONE_CORE + """
    import time
    m = rnnfast.LSTM(128, 128, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((200, 2, 128)).astype(np.float32)
    rnnfast.set_num_threads(1)
    want = m(x)[0]
    rnnfast.set_num_threads(4)
    start = time.monotonic()
    while rnnfast._core.dynamic_thread_shrinks() == 0 and time.monotonic() - start < 60:
        assert np.array_equal(m(x)[0], want)
    print(rnnfast._core.dynamic_thread_shrinks())
    """
    assert int(run_python(code)[0]) > 0


def test_dynamic_threads_setting():
    before = rnnfast.get_dynamic_threads()
    try:
        rnnfast.set_dynamic_threads(False)
        assert rnnfast.get_dynamic_threads() is False
        rnnfast.set_dynamic_threads(True)
        assert rnnfast.get_dynamic_threads() is True
        with pytest.raises(ValueError, match="True or False"):
            rnnfast.set_dynamic_threads(1)
    finally:
        rnnfast.set_dynamic_threads(before)


def test_environment_turns_dynamic_threads_off():
    code = "import rnnfast; print(rnnfast.get_dynamic_threads())"
    assert run_python(code, RNNFAST_DYNAMIC_THREADS="0") == ["False"]
    assert run_python(code) == ["True"]


def test_import_leaves_the_environment_as_the_user_set_it():
    """The shorter OpenMP spin is set only while the extension loads: child processes see the
    user's environment, and a spin count or wait policy the user chose is kept."""
    code = "import os, rnnfast; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    assert run_python(code) == ["None", "None"]
    assert run_python(code, GOMP_SPINCOUNT="123") == ["123", "None"]
    assert run_python(code, OMP_WAIT_POLICY="active") == ["None", "active"]
