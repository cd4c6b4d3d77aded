"""rnnfast.tbptt: with k >= T it is full BPTT; otherwise it cuts the gradient between chunks and
carries the state."""
import math

import numpy as np
import pytest

import rnnfast

from conftest import assert_close

def _tbptt_problem(mode, batch_first=False):
    rng = np.random.default_rng(0)
    make = {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "rnn": rnnfast.RNN}[mode]
    rnn = make(3, 5, num_layers=2, batch_first=batch_first, dtype="float64", seed=0)
    x = rng.standard_normal((9, 2, 3))
    target = rng.standard_normal((9, 2, 5))
    if batch_first:
        x, target = x.swapaxes(0, 1).copy(), target.swapaxes(0, 1).copy()
    return rnn, x, target


def _chunk_loss(target, batch_first):
    def loss_fn(y, t0, t1):
        return rnnfast.mse_loss(y, target[:, t0:t1] if batch_first else target[t0:t1], reduction="sum")
    return loss_fn


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_tbptt_with_k_at_least_T_is_full_bptt(mode, batch_first):
    rnn, x, target = _tbptt_problem(mode, batch_first)
    y, h_full = rnn(x)
    loss, dy = rnnfast.mse_loss(y, target, reduction="sum")
    dx, _ = rnn.backward(dy)
    full = {k: g.copy() for k, g in rnn.grads.items()}
    for k in (9, 50):
        rnn.zero_grad()
        res = rnnfast.tbptt(rnn, x, k, _chunk_loss(target, batch_first))
        assert res.losses == [loss]
        assert np.array_equal(res.grad_input, dx)
        assert all(np.array_equal(rnn.grads[n], full[n]) for n in full)
        states = res.state if mode == "lstm" else (res.state,)
        assert all(np.array_equal(a, b) for a, b in zip(states, h_full if mode == "lstm" else (h_full,)))


def test_tbptt_cuts_the_gradient_between_chunks_and_carries_the_state():
    rnn, x, target = _tbptt_problem("lstm")
    y_full, _ = rnn.eval()(x)
    rnn.train()
    calls = []
    res = rnnfast.tbptt(rnn, x, 4, _chunk_loss(target, False), after_chunk=lambda t0, t1: calls.append((t0, t1)))
    assert calls == [(0, 4), (4, 8), (8, 9)] and len(res.losses) == 3
    got = {k: g.copy() for k, g in rnn.grads.items()}
    # by hand: each chunk from the previous chunk's final state, taken as a constant
    rnn.zero_grad()
    state, total = None, 0.0
    for t0, t1 in calls:
        y, state = rnn(x[t0:t1], state)
        assert_close(y, y_full[t0:t1], 1e-12, "the carried state continues the sequence")
        loss, dy = rnnfast.mse_loss(y, target[t0:t1], reduction="sum")
        rnn.backward(dy)
        total += loss
    assert math.isclose(sum(res.losses), total, rel_tol=1e-12)
    assert all(np.array_equal(rnn.grads[k], got[k]) for k in got)
    with pytest.raises(ValueError, match="bidirectional"):
        rnnfast.tbptt(rnnfast.GRU(3, 4, bidirectional=True), x, 4, _chunk_loss(target, False))
