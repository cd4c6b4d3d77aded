"""Weight drop (DropConnect on W_hh, AWD-LSTM): `weight_drop=p` on RNN, LSTM and GRU, NumPy and
rnnfast.torch. In training one mask per forward call, layer and direction multiplies W_hh (kept
with probability 1 - p, scaled by 1 / (1 - p)); the stored weights are untouched and their gradient
is the masked layer's dL/dW_hh times the mask; in eval the module is the plain one."""
import numpy as np
import pytest

import rnnfast
from rnnfast import reference as ref

from conftest import MODES, MODULES, RTOL, assert_close, check_gradients_with_one_draw, gradcheck_with_one_draw


def module(mode, I, H, dtype, **kw):
    cls, extra = MODULES[mode]
    return cls(I, H, dtype=dtype, seed=4, **extra, **kw)


def masks_of(m):
    """The W_hh masks the last training forward used, per layer and direction."""
    return [[ctx.w_hh_mask for ctx in contexts] for contexts, _ in m._saved["layers"]]


@pytest.mark.parametrize("mode", MODES)
def test_zero_and_eval_are_the_plain_module(mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    plain = module(mode, 5, 8, "float32", num_layers=2, bidirectional=True)
    zero = module(mode, 5, 8, "float32", num_layers=2, bidirectional=True, weight_drop=0.0)
    dropped = module(mode, 5, 8, "float32", num_layers=2, bidirectional=True, weight_drop=0.4)
    assert np.array_equal(plain(x)[0], zero(x)[0])
    assert not np.array_equal(plain(x)[0], dropped(x)[0])  # training: W_hh masked
    assert np.array_equal(plain.eval()(x)[0], dropped.eval()(x)[0])
    assert dropped.parameters()["weight_hh_l0"].tolist() == plain.parameters()["weight_hh_l0"].tolist()


@pytest.mark.parametrize("mode", MODES)
def test_training_is_the_reference_with_masked_weights(mode):
    """Forward and every gradient against the NumPy reference run on W_hh * mask, the parameter's
    gradient being that run's dW_hh times the mask."""
    T, B, I, H, dtype = 7, 3, 4, 6, np.float64
    m = module(mode, I, H, "float64", weight_drop=0.3)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, H))
    y, _ = m(x)
    dx, _ = m.backward(dy)
    (mask,), = masks_of(m)
    assert set(np.unique(mask)) <= {0.0, 1.0 / 0.7} and 0.1 < (mask == 0).mean() < 0.5
    p = m.parameters()
    w = [p["weight_ih_l0"], p["weight_hh_l0"] * mask, p["bias_ih_l0"], p["bias_hh_l0"]]
    h0 = np.zeros((B, H))
    if mode == "lstm":
        y_ref, _, _, cache = ref.lstm_forward(x, h0, h0, *w)
        dx_ref, _, _, dw_ih, dw_hh, db_ih, db_hh = ref.lstm_backward(dy, None, None, cache)
    elif mode == "gru":
        y_ref, _, cache = ref.gru_forward(x, h0, *w)
        dx_ref, _, dw_ih, dw_hh, db_ih, db_hh = ref.gru_backward(dy, None, cache)
    else:
        y_ref, _, cache = ref.rnn_forward(x, h0, *w, nonlinearity=mode[4:])
        dx_ref, _, dw_ih, dw_hh, db_ih, db_hh = ref.rnn_backward(dy, None, cache)
    g = m.grads
    for name, got, want in [("y", y, y_ref), ("dx", dx, dx_ref), ("dw_ih", g["weight_ih_l0"], dw_ih),
                            ("dw_hh", g["weight_hh_l0"], dw_hh * mask), ("db_ih", g["bias_ih_l0"], db_ih),
                            ("db_hh", g["bias_hh_l0"], db_hh)]:
        assert_close(got, want, RTOL[dtype], name)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_gradient_matches_finite_differences_for_one_mask(mode):
    """Modules (stacked, bidirectional, float64) whose every call draws the same masks."""
    m = module(mode, 3, 4, "float64", num_layers=2, bidirectional=True, weight_drop=0.5)
    check_gradients_with_one_draw(m, ("weight_hh_l0", "weight_hh_l1_reverse", "weight_ih_l1"), T=4)

def test_masks_are_fresh_per_call_and_per_direction():
    m = module("gru", 3, 5, "float32", num_layers=2, bidirectional=True, weight_drop=0.5)
    x = np.ones((3, 2, 3), np.float32)
    m(x)
    first = masks_of(m)
    m(x)
    second = masks_of(m)
    flat = [k for layer in first for k in layer]
    assert len(flat) == 4 and all(a.shape == (15, 5) for a in flat)
    assert not np.array_equal(flat[0], flat[1])
    assert not np.array_equal(first[0][0], second[0][0])


def test_weight_drop_is_checked():
    with pytest.raises(ValueError, match="weight_drop"):
        rnnfast.LSTM(3, 4, weight_drop=1.0)
    with pytest.raises(ValueError, match="weight_drop"):
        rnnfast.GRU(3, 4, weight_drop=-0.1)
    assert "weight_drop=0.25" in repr(rnnfast.LSTM(3, 4, weight_drop=0.25))


class TestTorch:
    torch = pytest.importorskip("torch")

    def test_gradcheck_with_one_mask(self):
        torch = self.torch
        import rnnfast.torch as rt
        m = rt.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, weight_drop=0.5)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        assert gradcheck_with_one_draw(m, x, seed=3)

    def test_eval_and_zero_are_the_plain_module_and_to_torch_refuses(self):
        torch = self.torch
        import rnnfast.torch as rt
        torch.manual_seed(0)
        plain = rt.GRU(3, 6, num_layers=2)
        dropped = rt.GRU(3, 6, num_layers=2, weight_drop=0.3)
        dropped.load_state_dict(plain.state_dict())
        x = torch.randn(4, 2, 3)
        with torch.no_grad():
            assert not torch.equal(plain(x)[0], dropped(x)[0])
            assert torch.equal(plain.eval()(x)[0], dropped.eval()(x)[0])
        assert "weight_drop=0.3" in repr(dropped)
        assert rt.from_numpy(dropped.to_numpy()).weight_drop == 0.3
        with pytest.raises(ValueError, match="no weight drop"):
            dropped.to_torch()
