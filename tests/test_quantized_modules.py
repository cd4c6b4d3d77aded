"""rnnfast.quantize's modules at either precision against their float32 originals: stacks on a
grid (cells x layers x directions x lengths x batch_first), BiRNN, and single-step cells."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, functional as F
from rnnfast.functional import stored_weight
from quantized_cases import each_isa, relative_error  # noqa: F401

# The targets (max |q - f| / max |f|); measured errors are in docs/precision.md.
LIMITS = {"bfloat16": 1e-2, "int8": 2e-2}


def _outputs(out, lstm):
    y, h = out
    return [y] + (list(h) if lstm else [h])


@pytest.mark.parametrize("precision", LIMITS)
@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (3, True, True), (2, False, True)])
def test_quantized_module_is_within_the_target_of_float32(precision, cls, layers, bidirectional, batch_first):
    m = cls(48, 64, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, seed=1).eval()
    q = rnnfast.quantize(m, precision)
    T, B = 60, 5
    x = np.random.default_rng(2).standard_normal((B, T, 48) if batch_first else (T, B, 48)).astype(np.float32)
    lengths = np.array([60, 17, 1, 44, 60])
    lstm = cls is rnnfast.LSTM
    f, got = _outputs(m(x, lengths=lengths), lstm), _outputs(q(x, lengths=lengths), lstm)
    assert got[0].dtype == np.float32 and got[0].shape == f[0].shape
    for a, e in zip(got, f):
        assert relative_error(a, e) <= LIMITS[precision]
    pad = (lambda y, b, L: y[b, L:]) if batch_first else (lambda y, b, L: y[L:, b])
    for bi, L in enumerate(lengths):
        assert not pad(got[0], bi, L).any()  # padded steps stay exactly zero


@pytest.mark.parametrize("precision", LIMITS)
@pytest.mark.parametrize("merge", ["concat", "sum", "mul"])
def test_quantized_birnn(precision, merge):
    b = rnnfast.BiRNN("gru", 10, 16, num_layers=2, merge=merge, seed=2).eval()
    q = rnnfast.quantize(b, precision)
    x = np.random.default_rng(5).standard_normal((7, 3, 10)).astype(np.float32)
    lengths = [7, 2, 5]
    (yq, hq), (yf, hf) = q(x, lengths=lengths), b(x, lengths=lengths)
    assert yq.shape == yf.shape
    assert relative_error(yq, yf) <= LIMITS[precision] and relative_error(hq, hf) <= LIMITS[precision]
    assert not yq[5:, 1].any()  # padded steps stay zero whatever the merge
    with pytest.raises(RuntimeError, match="inference-only"):
        q.backward(np.ones_like(yq))


@pytest.mark.parametrize("precision", LIMITS)
@pytest.mark.parametrize("cls", [rnnfast.RNNCell, rnnfast.LSTMCell, rnnfast.GRUCell])
def test_quantized_cells_step_by_step(precision, cls):
    cell = cls(12, 40, seed=3).eval()
    q = rnnfast.quantize(cell, precision)
    rng = np.random.default_rng(6)
    state_f = state_q = None
    for _ in range(6):
        x = rng.standard_normal((4, 12)).astype(np.float32)
        state_f, state_q = cell(x, state_f), q(x, state_q)
    for a, e in zip(state_q if isinstance(state_q, tuple) else [state_q],
                    state_f if isinstance(state_f, tuple) else [state_f]):
        assert a.dtype == np.float32 and relative_error(a, e) <= LIMITS[precision]
    # A step is one layer call at T = 1: the same bits as that layer in functional form.
    x = rng.standard_normal((4, 12)).astype(np.float32)
    p = q.state_dict()
    h0 = rng.standard_normal((4, 40)).astype(np.float32)
    c0 = rng.standard_normal((4, 40)).astype(np.float32) if cls is rnnfast.LSTMCell else None
    got = q(x, (h0, c0) if c0 is not None else h0)
    want = F.layer_forward(cell.mode, x[None], h0, c0, stored_weight(p, "weight_ih"), stored_weight(p, "weight_hh"),
                           p["bias_ih"], p["bias_hh"], training=False)
    assert np.array_equal(got[0] if c0 is not None else got, want[1])


@pytest.mark.parametrize("precision", LIMITS)
def test_a_module_run_again_after_an_isa_switch_repacks_its_weights(precision, each_isa):
    # A module keeps its packed weights between calls; AMX packs int8 and bfloat16 panels for its
    # tiles, other paths for their vectors: after set_isa, the next call must not read the old ones.
    # Elsewhere the switch between widths (avx2, avx512) checks a cache's tag too; but paths of
    # one width pack the same panels and the tag held the width before it held the ISA's name, so
    # a cache that ignored the name fails here only on a CPU with AMX.
    m = rnnfast.LSTM(20, 24, num_layers=2, seed=2).eval()
    x = np.random.default_rng(0).standard_normal((11, 4, 20)).astype(np.float32)
    q = rnnfast.quantize(m, precision)
    for isa in each_isa + each_isa[:1]:
        _core.set_isa(isa)
        assert np.array_equal(q(x)[0], rnnfast.quantize(m, precision)(x)[0]), isa
