"""Truncated backpropagation through time: a long sequence in chunks of k steps.

Each chunk runs forward from the state the previous chunk ended in, its loss is back-propagated
through that chunk only (the carried state is a constant, so the gradient is cut at the chunk
boundary), and an optional callback runs after each chunk's backward: put the optimiser step there
for the classic per-chunk update, or leave it out to add all chunks' gradients together. Memory
and the gradient's reach both follow k, not the sequence length; with k >= T it is plain BPTT.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import numpy as np

from . import _validate as v

__all__ = ["tbptt", "TBPTTResult"]


class TBPTTResult(NamedTuple):
    """losses: each chunk's loss; state: the final state (h_n, or (h_n, c_n) for an LSTM), copies to
    carry into the next call; grad_input: d(sum of chunk losses)/dx with the cuts, x's shape."""
    losses: List[float]
    state: Any
    grad_input: Optional[np.ndarray]


def _detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.copy() for s in state)
    return state.copy()


def tbptt(rnn, x, k, loss_fn, hx=None, after_chunk=None) -> TBPTTResult:
    """Runs `rnn` (an RNN, LSTM or GRU module, one direction, in train mode) over x in chunks of k steps.

    x: (T, B, I), or (B, T, I) when rnn.batch_first. hx: the initial state as for rnn.forward.
    loss_fn(y, t0, t1) -> (loss, grad_y): y is the chunk's output for steps t0..t1-1, grad_y its
    gradient (y's shape); a head such as a Linear runs (and back-propagates) inside loss_fn.
    after_chunk(t0, t1), if given, runs after each chunk's backward.
    Variable lengths are not supported: a stream is one long sequence per batch entry.
    """
    if getattr(rnn, "bidirectional", False):
        raise ValueError("tbptt: a bidirectional layer needs the whole sequence; use full BPTT")
    k = v.positive_int(k, "k")
    if not callable(loss_fn):
        raise TypeError("loss_fn: expected a callable loss_fn(y, t0, t1) -> (loss, grad_y)")
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"input: expected 3 dimensions, got shape {x.shape}")
    time_axis = 1 if getattr(rnn, "batch_first", False) else 0
    T = x.shape[time_axis]
    if T == 0:
        raise ValueError(f"input: expected at least one time step, got shape {x.shape}")
    losses, state, grad_input = [], hx, None
    for t0 in range(0, T, k):
        t1 = min(t0 + k, T)
        chunk = x[:, t0:t1] if time_axis else x[t0:t1]
        y, h_n = rnn.forward(chunk, state)
        loss, grad_y = loss_fn(y, t0, t1)
        dx, _ = rnn.backward(grad_y)
        if grad_input is None:
            grad_input = np.empty(x.shape, dx.dtype)
        if time_axis:
            grad_input[:, t0:t1] = dx
        else:
            grad_input[t0:t1] = dx
        losses.append(float(loss))
        state = _detach(h_n)
        if after_chunk is not None:
            after_chunk(t0, t1)
    return TBPTTResult(losses, state, grad_input)
