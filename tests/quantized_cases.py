"""What the tests of the reduced-precision layers share: one layer's random case, its reference
run through a quantized stack reference, and the error measure of the targets."""
import numpy as np
import pytest

from rnnfast import _core

CELLS = {"rnn_tanh": 1, "lstm": 4, "gru": 3}


@pytest.fixture
def each_isa():
    """Runs a test body once per instruction set this CPU runs, restoring the active one after."""
    before = _core.isa()
    yield list(_core.available_isas())
    _core.set_isa(before)


def layer_case(mode, T, B, I, H, seed):
    """x, [w_ih, w_hh], [b_ih, b_hh], h0, c0 (LSTM, else None), float32."""
    rng = np.random.default_rng(seed)
    G = CELLS[mode]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w = [(rng.standard_normal(s) * 0.4).astype(np.float32) for s in ((G * H, I), (G * H, H))]
    b = [rng.standard_normal(G * H).astype(np.float32) * 0.5 for _ in range(2)]
    h0 = rng.standard_normal((B, H)).astype(np.float32) * 0.5
    c0 = rng.standard_normal((B, H)).astype(np.float32) * 0.5 if mode == "lstm" else None
    return x, w, b, h0, c0


def reference_layer(stack_forward, mode, x, w, b, h0, c0, reverse=False, lengths=None):
    """One layer and direction through `stack_forward` (a reference of the quantized stack, given
    the float weights): (y, h_n, c_n or None)."""
    params = {"weight_ih_l0": w[0], "weight_hh_l0": w[1], "bias_ih_l0": b[0], "bias_hh_l0": b[1]}
    if reverse:  # the reference runs a bidirectional stack's reverse half as direction 1
        params = {k + "_reverse": v for k, v in params.items()} | {k: v for k, v in params.items()}
    hx = None if h0 is None else (np.stack([h0] * (2 if reverse else 1)))
    if mode == "lstm":
        hx = (hx, np.stack([c0] * (2 if reverse else 1)))
    y, hn = stack_forward(mode, x, hx, params, bidirectional=reverse, lengths=lengths)
    H = w[1].shape[1]
    y = y[:, :, H:] if reverse else y
    h_n = (hn[0] if mode == "lstm" else hn)[-1]
    return y, h_n, (hn[1][-1] if mode == "lstm" else None)


def relative_error(q, f):
    """The targets' measure: max |q - f| / max |f|."""
    return np.abs(q - f).max() / np.abs(f).max()
