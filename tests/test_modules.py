"""The module API: PyTorch conventions, parameters, modes, gradients accumulation, checks."""
import numpy as np
import pytest

import rnnfast
from rnnfast import reference as ref

from conftest import assert_close

MAKERS = {
    "rnn_tanh": lambda **k: rnnfast.RNN(**k),
    "rnn_relu": lambda **k: rnnfast.RNN(nonlinearity="relu", **k),
    "lstm": lambda **k: rnnfast.LSTM(**k),
    "gru": lambda **k: rnnfast.GRU(**k),
}


@pytest.mark.parametrize("mode", list(MAKERS))
def test_state_dict_names_shapes_and_init(mode):
    m = MAKERS[mode](input_size=3, hidden_size=5, num_layers=2, bidirectional=True, seed=0)
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[mode]
    sd = m.state_dict()
    assert list(sd) == [f"{w}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
                        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert sd["weight_ih_l0"].shape == (G * 5, 3) and sd["weight_ih_l1"].shape == (G * 5, 10)
    bound = 1 / np.sqrt(5)
    assert all(np.all(np.abs(p) <= bound) and p.dtype == np.float32 for p in sd.values())
    assert set(m.grads) == set(sd) and all(m.grads[k].shape == sd[k].shape for k in sd)


def test_seed_reproduces_and_differs():
    a, b, c = (rnnfast.GRU(4, 6, seed=s).state_dict() for s in (1, 1, 2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["weight_hh_l0"], c["weight_hh_l0"])


def test_load_state_dict_is_all_or_nothing():
    m = rnnfast.LSTM(3, 4, seed=0)
    before = m.state_dict()
    bad = dict(before, weight_hh_l0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="weight_hh_l0"):
        m.load_state_dict(bad)
    with pytest.raises(KeyError, match="bias_ih_l0"):
        m.load_state_dict({k: v for k, v in before.items() if k != "bias_ih_l0"})
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())


def test_grads_accumulate_and_zero_grad():
    m = rnnfast.GRU(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = m(x)
    m.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in m.grads.items()}
    m(x)
    m.backward(np.ones_like(y))
    for k in once:
        assert_close(m.grads[k], 2 * once[k], 1e-12, k)
    m.zero_grad()
    assert all(not g.any() for g in m.grads.values())


def test_eval_saves_nothing_and_backward_refuses():
    m = rnnfast.LSTM(3, 4, seed=0).eval()
    y, _ = m(np.zeros((2, 1, 3), np.float32))
    with pytest.raises(RuntimeError, match="eval"):
        m.backward(np.ones_like(y))
    m.train()
    y2, _ = m(np.zeros((2, 1, 3), np.float32))
    assert np.array_equal(y, y2)
    m.backward(np.ones_like(y2))


def test_dropout_only_in_training_and_reproducible():
    x = np.random.default_rng(0).standard_normal((6, 3, 4)).astype(np.float32)
    a, b = (rnnfast.LSTM(4, 8, num_layers=2, dropout=0.5, seed=3) for _ in range(2))
    ya, yb = a(x)[0], b(x)[0]
    assert np.array_equal(ya, yb)  # same seed, same masks
    nodrop = rnnfast.LSTM(4, 8, num_layers=2, seed=3)
    assert not np.allclose(ya, nodrop(x)[0])
    assert np.array_equal(a.eval()(x)[0], nodrop.eval()(x)[0])


def test_dropout_gradient_matches_reference_with_the_same_masks():
    m = rnnfast.GRU(3, 4, num_layers=3, dropout=0.3, bidirectional=True, dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 8))
    y, hn = m(x)
    masks = [layer[1] for layer in m._saved["layers"][:-1]]
    yr, hnr, cache = ref.stack_forward("gru", x, None, m.state_dict(), 3, True, dropout_masks=masks)
    assert_close(y, yr, 1e-12, "y")
    dx, _ = m.backward(dy)
    dxr, _, gr = ref.stack_backward(dy, None, cache)
    assert_close(dx, dxr, 1e-12, "dx")
    for k in gr:
        assert_close(m.grads[k], gr[k], 1e-12, k)


def test_batch_first_is_a_transpose():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)  # (B, T, I)
    a = rnnfast.LSTM(3, 5, batch_first=True, seed=0)
    b = rnnfast.LSTM(3, 5, seed=0)
    ya, (ha, ca) = a(x)
    yb, (hb, cb) = b(x.transpose(1, 0, 2))
    assert ya.shape == (4, 6, 5) and np.array_equal(ya, yb.transpose(1, 0, 2)) and np.array_equal(ha, hb)
    dy = rng.standard_normal(ya.shape).astype(np.float32)
    dxa, _ = a.backward(dy)
    dxb, _ = b.backward(dy.transpose(1, 0, 2))
    assert np.array_equal(dxa, dxb.transpose(1, 0, 2))


def test_dtype_arguments():
    assert rnnfast.RNN(2, 3, dtype=np.float64).dtype == np.float64
    assert rnnfast.RNN(2, 3, dtype="float32").dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        rnnfast.RNN(2, 3, dtype="float16")
    m = rnnfast.RNN(2, 3, dtype="float64")
    y, _ = m(np.zeros((1, 1, 2), np.float32))  # float input of another precision is converted
    assert y.dtype == np.float64


@pytest.mark.parametrize("bad", [
    lambda: rnnfast.RNN(0, 3), lambda: rnnfast.RNN(2, -1), lambda: rnnfast.LSTM(2, 3, num_layers=0),
    lambda: rnnfast.GRU(2, 3, dropout=1.0), lambda: rnnfast.RNN(2, 3, nonlinearity="sigmoid")])
def test_constructor_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        bad()


def test_input_checks_name_the_argument():
    m = rnnfast.LSTM(3, 4)
    with pytest.raises(ValueError, match="input_size 3"):
        m(np.zeros((2, 1, 5), np.float32))
    with pytest.raises(TypeError, match="floating"):
        m(np.zeros((2, 1, 3), np.int64))
    with pytest.raises(TypeError, match="tuple"):
        m(np.zeros((2, 1, 3), np.float32), np.zeros((1, 1, 4), np.float32))
    with pytest.raises(ValueError, match="lengths"):
        m(np.zeros((2, 1, 3), np.float32), lengths=[3])


def test_set_num_threads_round_trip():
    before = rnnfast.get_num_threads()
    rnnfast.set_num_threads(1)
    assert rnnfast.get_num_threads() == 1
    rnnfast.set_num_threads(before)
    with pytest.raises(ValueError):
        rnnfast.set_num_threads(0)


@pytest.mark.parametrize("mode", list(MAKERS))
def test_reused_workspaces_give_fresh_results(mode):
    """Workspaces are kept between calls: any sequence of calls equals the same calls on a fresh module."""
    rng = np.random.default_rng(3)
    m = MAKERS[mode](input_size=4, hidden_size=6, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    for T, B in [(5, 3), (5, 3), (7, 2), (5, 3)]:
        x, dy = rng.standard_normal((T, B, 4)), rng.standard_normal((T, B, 12))
        fresh = MAKERS[mode](input_size=4, hidden_size=6, num_layers=2, bidirectional=True, dtype="float64", seed=0)
        m.zero_grad()
        y, _ = m(x)
        dx, _ = m.backward(dy)
        yf, _ = fresh(x)
        dxf, _ = fresh.backward(dy)
        assert np.array_equal(y, yf) and np.array_equal(dx, dxf)
        assert all(np.array_equal(m.grads[k], fresh.grads[k]) for k in m.grads)
