"""Property tests: random shapes, lengths, layers and directions against the NumPy reference.

A few dozen examples by default; set RNNFAST_HYPOTHESIS_EXAMPLES=2000 (say) for a long hunt."""
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnfast import reference as ref

from conftest import assert_close
from test_modules import MAKERS

EXAMPLES = int(os.environ.get("RNNFAST_HYPOTHESIS_EXAMPLES", "40"))


@st.composite
def problems(draw):
    T = draw(st.integers(1, 7))
    B = draw(st.integers(1, 6))
    return dict(
        mode=draw(st.sampled_from(sorted(MAKERS))), T=T, B=B, I=draw(st.integers(1, 40)), H=draw(st.integers(1, 40)),
        layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        lengths=draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B)),
        with_state=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=EXAMPLES, deadline=None)
@given(problems())
def test_modules_match_reference(p):
    rng = np.random.default_rng(p["seed"])
    L, D, T, B, H = p["layers"], 2 if p["bidirectional"] else 1, p["T"], p["B"], p["H"]
    m = MAKERS[p["mode"]](input_size=p["I"], hidden_size=H, num_layers=L, bidirectional=p["bidirectional"],
                          bias=p["bias"], batch_first=p["batch_first"], dtype="float64", seed=p["seed"] % 1000)
    x = rng.standard_normal((T, B, p["I"]))
    n_states = 2 if p["mode"] == "lstm" else 1
    states = [rng.standard_normal((L * D, B, H)) for _ in range(n_states)] if p["with_state"] else None
    hx = None if states is None else (tuple(states) if n_states == 2 else states[0])
    lengths = None if p["lengths"] is None else np.array(p["lengths"])
    xin = x.transpose(1, 0, 2) if p["batch_first"] else x
    y, hn = m(xin, hx, lengths=lengths)
    yr, hnr, cache = ref.stack_forward(p["mode"], x, hx, m.state_dict(), L, p["bidirectional"], lengths=lengths)
    dy = rng.standard_normal(yr.shape)
    dx, dhx = m.backward(dy.transpose(1, 0, 2) if p["batch_first"] else dy)
    dxr, dhxr, grads = ref.stack_backward(dy, None, cache)
    if p["batch_first"]:
        y, dx = y.transpose(1, 0, 2), dx.transpose(1, 0, 2)
    # A gradient through a saturated gate (1 - y^2 of y near 1) turns the last-bit difference of two
    # tanh implementations into a relative error of 1e-16 / (1 - y^2): gradients are held to 1e-10
    # of at least 1e-4 of the incoming gradient's size.
    floor = 1e-4 * float(np.max(np.abs(dy)))
    assert_close(y, yr, 1e-10, "y")
    assert_close(dx, dxr, 1e-10, "dx", floor)
    for a, b in zip(np.asarray(hn if n_states == 2 else [hn]), np.asarray(hnr if n_states == 2 else [hnr])):
        assert_close(a, b, 1e-10, "h_n")
    if states is not None:
        for a, b in zip(np.asarray(dhx if n_states == 2 else [dhx]), np.asarray(dhxr if n_states == 2 else [dhxr])):
            assert_close(a, b, 1e-10, "dhx", floor)
    for k in grads:
        assert_close(m.grads[k], grads[k], 1e-10, k, floor)
