"""Bad input of every kind, with the exception it must raise, and the odd but valid input that must
work: input arrays, memory layouts, states, lengths, constructor arguments, load_state_dict,
numerics, copies and instruction sets (backward called wrongly: test_backward_misuse.py). Nothing may
crash the interpreter, and a failed call must leave the module exactly as it was."""
import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import rnnfast

from small_lstm import B, H, I, T, lstm, x_ok


# ---- input arrays -----------------------------------------------------------------------------

@pytest.mark.parametrize("x,exc,match", [
    (np.zeros((T, I), np.float32), ValueError, "3 dimensions"),
    (np.zeros((T, B, I, 1), np.float32), ValueError, "3 dimensions"),
    (np.zeros((T, B, I + 1), np.float32), ValueError, "input_size 5"),
    (np.zeros((0, B, I), np.float32), ValueError, "positive"),
    (np.zeros((T, 0, I), np.float32), ValueError, "positive"),
    (np.zeros((T, B, I), np.int32), TypeError, "floating"),
    (np.zeros((T, B, I), bool), TypeError, "floating"),
    (np.zeros((T, B, I), np.complex64), TypeError, "floating"),
    (np.zeros((T, B, I), object), TypeError, "floating"),
    ("not an array", TypeError, "floating"),
    ([[1.0, 2.0], [3.0]], TypeError, "floating"),
    (None, TypeError, "floating"),
])
def test_input_of_wrong_shape_or_dtype_is_refused(x, exc, match):
    with pytest.raises(exc, match=match):
        lstm()(x)


def test_input_in_another_float_precision_is_converted():
    m = lstm()
    y16, _ = m(x_ok(np.float16))
    y64, _ = m(x_ok(np.float16).astype(np.float64))
    assert y16.dtype == np.float32 and np.array_equal(y16, y64)


def test_forward_larger_than_memory_is_refused_before_allocating(monkeypatch):
    m = lstm()
    y, _ = m(x_ok())
    monkeypatch.setattr(rnnfast._validate, "physical_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match="GiB"):
        m(x_ok())
    monkeypatch.undo()
    dx, _ = m.backward(np.ones_like(y))  # the earlier forward is still there to back-propagate
    assert dx.shape == (T, B, I)


# ---- memory layouts: strides, Fortran order, size-one axes ------------------------------------

@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: np.repeat(x, 2, axis=2)[:, :, ::2],               # strided last axis
    lambda x: np.stack([x, x], axis=2).reshape(T, 2 * B, I)[:, ::2],  # strided batch
    lambda x: x.transpose(1, 0, 2).copy().transpose(1, 0, 2),   # batch-major memory
])
def test_non_contiguous_inputs_equal_a_contiguous_copy(make):
    x = x_ok()
    view = make(x)
    assert np.array_equal(view, x) and not view.flags.c_contiguous
    m = lstm()
    assert np.array_equal(m(view)[0], m(np.ascontiguousarray(x))[0])


def test_size_one_axes_with_any_stride_are_accepted():
    s = np.random.default_rng(0).standard_normal((4, 3))
    m = rnnfast.GRU(3, 6, dtype="float64")
    y, _ = m(s[:, None])  # (T, 1, I) whose size-1 axis has stride 0
    assert np.array_equal(y, m(s[:, None].copy())[0])


STRIDED = [
    lambda a: np.asfortranarray(a),
    lambda a: np.repeat(a, 2, axis=2)[:, :, ::2],                          # strided last axis
    lambda a: np.concatenate([a, np.ones_like(a)], axis=2)[:, :, :a.shape[2]],  # rows wider than H
]


@pytest.mark.parametrize("make", STRIDED)
def test_non_contiguous_states_and_gradients_equal_a_contiguous_copy(make):
    """h0, c0 and the gradients given to backward, as views that are not rows back to back."""
    rng = np.random.default_rng(3)
    h0, c0 = (rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dh, dc = (rng.standard_normal((1, B, H)).astype(np.float32) for _ in range(2))
    results = []
    for f in (np.ascontiguousarray, make):
        m = lstm()
        y, (h, c) = m(x_ok(), (f(h0), f(c0)))
        dx, (dh0, dc0) = m.backward(dy, (f(dh), f(dc)))
        results.append([y, h, c, dx, dh0, dc0] + [m.grads[k] for k in sorted(m.grads)])
    assert not make(h0).flags.c_contiguous
    for a, b in zip(*results):
        assert np.array_equal(a, b)
    cell = rnnfast.GRUCell(I, H, seed=0)
    x1, s = x_ok()[0], h0[0]
    assert np.array_equal(cell(x1, make(s[None])[0]), cell(x1, s))


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU])
def test_bidirectional_batch_of_one_takes_any_gradient_layout(cls):
    """B = 1: each direction's half of the gradient has a stray stride on its batch axis (which
    NumPy's contiguity ignores); batch_first and a [:, None] gradient alike."""
    rng = np.random.default_rng(5)
    for batch_first in (True, False):
        m = cls(3, 4, bidirectional=True, batch_first=batch_first, dtype="float64", seed=0)
        x = rng.standard_normal((1, 7, 3) if batch_first else (7, 1, 3))
        y, _ = m(x)
        g = rng.standard_normal((7, 8))
        grads = []
        for dy in (g[None] if batch_first else g[:, None], np.array(g[None] if batch_first else g[:, None], order="F")):
            m.zero_grad()
            m(x)
            dx, _ = m.backward(dy)
            grads.append([dx] + [m.grads[k].copy() for k in sorted(m.grads)])
        for a, b in zip(*grads):
            assert np.array_equal(a, b)


def test_functional_refuses_weights_with_a_row_stride():
    """The functional API takes arrays as they are; weights whose rows are not back to back are
    refused with a clear error instead of being read as if they were."""
    from rnnfast import functional as F
    rng = np.random.default_rng(4)
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    wide = np.concatenate([rng.standard_normal((4 * H, H)), np.ones((4 * H, 3))], axis=1).astype(np.float32)
    with pytest.raises(ValueError, match="w_hh: expected a C-contiguous array"):
        F.layer_forward("lstm", x_ok(), None, None, w_ih, wide[:, :H], None, None)


# ---- states (hx) ------------------------------------------------------------------------------

@pytest.mark.parametrize("hx,exc", [
    (np.zeros((1, B, H), np.float32), TypeError),                                     # bare array for LSTM
    ((np.zeros((1, B, H), np.float32),), TypeError),                                  # tuple of one
    ((np.zeros((2, B, H), np.float32), np.zeros((1, B, H), np.float32)), ValueError),  # layers
    ((np.zeros((1, B + 1, H), np.float32), np.zeros((1, B, H), np.float32)), ValueError),  # batch
    ((np.zeros((1, B, H), np.float32), np.zeros((1, B, H + 1), np.float32)), ValueError),  # hidden
    ((np.zeros((1, B, H), np.int64), np.zeros((1, B, H), np.float32)), TypeError),     # dtype
])
def test_lstm_hx_of_wrong_structure_shape_or_dtype_is_refused(hx, exc):
    with pytest.raises(exc):
        lstm()(x_ok(), hx)


def test_gru_hx_of_wrong_structure_or_shape_is_refused():
    m = rnnfast.GRU(I, H)
    with pytest.raises(TypeError):
        m(x_ok(), (np.zeros((1, B, H), np.float32), np.zeros((1, B, H), np.float32)))
    with pytest.raises(ValueError, match="hx"):
        m(x_ok(), np.zeros((1, B, H + 1), np.float32))


# ---- lengths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths,exc", [
    ([T, T], ValueError),                  # count
    (np.full((B, 1), T), ValueError),      # shape
    ([T, 0, T], ValueError),               # < 1
    ([T, T + 1, T], ValueError),           # > T
    ([T, 2.5, T], TypeError),              # not integers
    (["a", "b", "c"], TypeError),
    (np.array([True, True, True]), TypeError),
])
def test_lengths_of_wrong_count_shape_range_or_type_are_refused(lengths, exc):
    with pytest.raises(exc, match="lengths"):
        lstm()(x_ok(), lengths=lengths)


# ---- constructor arguments --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc", [
    (dict(input_size=0, hidden_size=H), ValueError),
    (dict(input_size=I, hidden_size=-2), ValueError),
    (dict(input_size=I, hidden_size=2.5), TypeError),
    (dict(input_size=I, hidden_size=H, num_layers=0), ValueError),
    (dict(input_size=I, hidden_size=H, dropout=-0.1), ValueError),
    (dict(input_size=I, hidden_size=H, dropout=1.0), ValueError),
    (dict(input_size=I, hidden_size=H, dtype="int8"), ValueError),
    (dict(input_size=I, hidden_size=H, dtype=np.int32), ValueError),
    (dict(input_size=I, hidden_size=H, dtype=object()), TypeError),
    (dict(input_size=2 ** 40, hidden_size=2 ** 40), MemoryError),
    (dict(input_size=2 ** 62, hidden_size=2 ** 62), MemoryError),
])
def test_constructor_refuses_bad_sizes_dropout_and_dtype(kwargs, exc):
    with pytest.raises(exc):
        rnnfast.LSTM(**kwargs)


def test_constructor_refuses_an_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnfast.RNN(I, H, nonlinearity="softsign")


# ---- load_state_dict --------------------------------------------------------------------------

@pytest.mark.parametrize("edit,exc", [
    (lambda d: d.pop("weight_ih_l0"), KeyError),
    (lambda d: d.update(weight_ih_l1=np.zeros((4 * H, I))), KeyError),
    (lambda d: d.update(bias_hh_l0=np.zeros(4 * H + 1)), ValueError),
    (lambda d: d.update(weight_hh_l0=np.zeros((4 * H, H), complex)), TypeError),
])
def test_failed_load_state_dict_changes_nothing(edit, exc):
    m = lstm()
    before = m.state_dict()
    live = m.parameters()["weight_hh_l0"]
    bad = {k: np.full_like(v, 7.0) for k, v in before.items()}
    edit(bad)
    with pytest.raises(exc):
        m.load_state_dict(bad)
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    m.load_state_dict({k: np.full_like(v, 0.5) for k, v in before.items()})
    assert m.parameters()["weight_hh_l0"] is live and np.all(live == 0.5)  # copied in place


@pytest.mark.parametrize("edit,says,not_says", [
    (lambda d: d.update(extra=np.zeros(1)), "unexpected keys ['extra']", "missing"),
    (lambda d: d.pop("bias_hh_l0"), "missing keys ['bias_hh_l0']", "unexpected"),
])
def test_load_state_dict_names_only_what_is_wrong(edit, says, not_says):
    m = lstm()
    state = m.state_dict()
    edit(state)
    with pytest.raises(KeyError) as info:
        m.load_state_dict(state)
    assert says in str(info.value) and not_says not in str(info.value)
    opt = rnnfast.optim.Adam([m])
    bad = dict(opt.state_dict(), extra=1)
    with pytest.raises(KeyError) as info:
        opt.load_state_dict(bad)
    assert "unexpected keys ['extra']" in str(info.value) and "missing" not in str(info.value)


# ---- numerics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_inputs_saturate_cleanly(mode, dtype):
    m = {"rnn_tanh": lambda: rnnfast.RNN(I, H, dtype=dtype), "rnn_relu": lambda: rnnfast.RNN(I, H, dtype=dtype),
         "lstm": lambda: rnnfast.LSTM(I, H, dtype=dtype), "gru": lambda: rnnfast.GRU(I, H, dtype=dtype)}[mode]()
    if mode == "rnn_relu":
        m = rnnfast.RNN(I, H, nonlinearity="relu", dtype=dtype)
    x = np.where(np.arange(T * B * I).reshape(T, B, I) % 2, 1e30, -1e30).astype(dtype)
    y, _ = m(x)
    assert not np.any(np.isnan(y))
    if mode != "rnn_relu":
        assert np.all(np.abs(y) <= 1)
    dx, _ = m.backward(np.ones_like(y))
    assert not np.any(np.isnan(dx))


@pytest.mark.parametrize("mode", ["rnn_tanh", "lstm", "gru"])
def test_nan_propagates_to_the_affected_outputs_only(mode):
    m = {"rnn_tanh": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[mode](I, H)
    x = x_ok()
    x[2, 1, 0] = np.nan
    y, _ = m(x)
    assert np.all(np.isnan(y[2:, 1]))                      # the entry from that step on
    assert not np.any(np.isnan(y[:2])) and not np.any(np.isnan(y[:, [0, 2]]))  # nothing else
    m.backward(np.ones_like(y))                             # and no hang or crash in BPTT


# ---- copies -----------------------------------------------------------------------------------

def test_modules_deepcopy_and_pickle():
    m = lstm()
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert np.array_equal(clone(x_ok())[0], m(x_ok())[0])


# ---- instruction sets -------------------------------------------------------------------------

def test_unavailable_isa_is_refused_with_a_clear_message():
    """set_isa names the paths there are; RNNFAST_ISA with one that is not warns at import."""
    with pytest.raises(ValueError, match="not available here.*available: .*scalar"):
        rnnfast.set_isa("no_such_isa")
    env = dict(os.environ, RNNFAST_ISA="no_such_isa")
    code = "import warnings; warnings.simplefilter('error'); import rnnfast"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "RNNFAST_ISA='no_such_isa' is not available here" in run.stderr
    env["RNNFAST_ISA"] = "scalar"  # one there is: no warning, and it is used
    run = subprocess.run([sys.executable, "-c", code + "; print(rnnfast.isa())"], env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0 and run.stdout.strip() == "scalar", run.stderr
