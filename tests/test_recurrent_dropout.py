"""Recurrent dropout (variational dropout, Gal and Ghahramani 2016; Keras' recurrent_dropout):
`recurrent_dropout=p` on RNN, LSTM and GRU, NumPy and rnnfast.torch. In training one mask r per
forward call, layer and direction, of shape (B, H), units kept with probability 1 - p and scaled
by 1 / (1 - p), multiplies h_{t-1} where it enters the recurrent product: W_hh (r * h_{t-1}). The
state carried from step to step (GRU's z * h_{t-1}, zoneout's m * h_{t-1}, h_n) is h itself. In
eval the module is the plain one."""
import numpy as np
import pytest

import rnnfast

from conftest import (MODES, MODULES, RTOL, assert_close, check_gradients_with_one_draw, gradcheck_with_one_draw,
                      kernel_layer, make_layer, reference_layer)


def a_mask(B, H, dtype, p=0.3, seed=2):
    keep = np.random.default_rng(seed).random((B, H)) >= p
    return (keep / (1 - p)).astype(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B", [3, 40], ids=["unit-mode", "batch-mode"])
def test_layer_is_the_reference(mode, reverse, threads, B, dtype):
    """The kernels' layer with a recurrent mask against the reference: outputs, states and every
    gradient, with lengths, both directions, in unit mode and (B = 40 on 2 threads) batch mode."""
    T, I, H = 5, 6, 20
    p = make_layer(mode, T, B, I, H, dtype, seed=7)
    kw = dict(reverse=reverse, lengths=np.random.default_rng(1).integers(1, T + 1, size=B),
              recurrent_mask=a_mask(B, H, dtype))
    got = [a for a in kernel_layer(mode, p, threads, **kw) if a is not None]
    want = [a for a in reference_layer(mode, p, **kw) if a is not None]
    for i, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, RTOL[dtype] * (10 if dtype == np.float32 else 1), f"output {i}")


@pytest.mark.parametrize("mode", MODES)
def test_with_zoneout_and_a_single_step(mode):
    """Recurrent dropout next to zoneout (the masked copy is of the zoned-out state), and a single
    step (T = 1, whose weights are packed as used), against the reference in float64."""
    for T in (4, 1):
        B, H = 3, 9
        p = make_layer(mode, T, B, 5, H, np.float64, seed=3)
        zoneout = (np.random.default_rng(4).random((T, B, H)) < 0.4).astype(np.float64)
        kw = dict(recurrent_mask=a_mask(B, H, np.float64), zoneout=zoneout)
        got = [a for a in kernel_layer(mode, p, 2, **kw) if a is not None]
        want = [a for a in reference_layer(mode, p, **kw) if a is not None]
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, RTOL[np.float64], f"T={T}, output {i}")


@pytest.mark.parametrize("mode", MODES)
def test_same_bits_for_any_thread_count(mode):
    p = make_layer(mode, 6, 24, 10, 40, np.float32, seed=5)
    kw = dict(recurrent_mask=a_mask(24, 40, np.float32), lengths=np.arange(24) % 6 + 1)
    runs = [kernel_layer(mode, p, n, **kw) for n in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert (a is None and b is None) or np.array_equal(a, b)


def test_an_all_ones_mask_is_the_plain_layer():
    """The masked path with r = 1: the forward's bits are the plain layer's; the backward adds
    dG_hh W_hh into dh after the product instead of inside it, so its gradients round apart."""
    p = make_layer("gru", 5, 6, 7, 16, np.float32, seed=6)
    plain = kernel_layer("gru", p, 2)
    ones = kernel_layer("gru", p, 2, recurrent_mask=np.ones((6, 16), np.float32))
    for i, (a, b) in enumerate((a, b) for a, b in zip(plain, ones) if a is not None):
        if i < 2:
            assert np.array_equal(a, b)
        else:
            assert_close(b, a, RTOL[np.float32], f"gradient {i}")


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_module_gradient_matches_finite_differences_for_one_mask(mode):
    """Modules (stacked, bidirectional, float64) whose every call draws the same masks."""
    cls, extra = MODULES[mode]
    m = cls(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=5, recurrent_dropout=0.4, **extra)
    check_gradients_with_one_draw(m, ("weight_hh_l0", "weight_hh_l1_reverse", "weight_ih_l1", "bias_hh_l0_reverse"))

@pytest.mark.parametrize("mode", MODES)
def test_zero_and_eval_are_the_plain_module(mode):
    cls, extra = MODULES[mode]
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    plain = cls(5, 8, num_layers=2, bidirectional=True, seed=1, **extra)
    zero = cls(5, 8, num_layers=2, bidirectional=True, seed=1, recurrent_dropout=0.0, **extra)
    dropped = cls(5, 8, num_layers=2, bidirectional=True, seed=1, recurrent_dropout=0.5, **extra)
    assert np.array_equal(plain(x)[0], zero(x)[0])
    assert not np.array_equal(plain(x)[0], dropped(x)[0])
    assert np.array_equal(plain.eval()(x)[0], dropped.eval()(x)[0])
    assert "recurrent_dropout=0.5" in repr(dropped)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        cls(5, 8, recurrent_dropout=1.0, **extra)


def test_one_mask_per_call_layer_and_direction():
    """Each layer and direction draws its own (B, H) mask once per forward; kept units are scaled
    by 1 / (1 - p) and about 1 - p of them are kept."""
    m = rnnfast.LSTM(4, 64, num_layers=2, bidirectional=True, seed=2, recurrent_dropout=0.25)
    m(np.ones((7, 32, 4), np.float32))
    masks = [ctx.recurrent_mask for contexts, _ in m._saved["layers"] for ctx in contexts]
    assert len(masks) == 4 and all(r.shape == (32, 64) and r.dtype == np.float32 for r in masks)
    assert all(set(np.unique(r)) == {0.0, np.float32(1 / 0.75)} for r in masks)
    assert all(0.2 < (r == 0).mean() < 0.3 for r in masks)
    assert not any(np.array_equal(masks[0], r) for r in masks[1:])
    first = masks[0].copy()
    m(np.ones((7, 32, 4), np.float32))
    assert not np.array_equal(first, m._saved["layers"][0][0][0].recurrent_mask)  # a fresh draw per call


class TestTorch:
    torch = pytest.importorskip("torch")

    def test_gradcheck_with_one_mask(self):
        torch = self.torch
        import rnnfast.torch as rt
        m = rt.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, recurrent_dropout=0.4)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        assert gradcheck_with_one_draw(m, x, seed=5)

    def test_same_seed_same_masks_eval_plain_and_to_torch_refuses(self):
        torch = self.torch
        import rnnfast.torch as rt
        m = rt.GRU(3, 6, num_layers=2, recurrent_dropout=0.3)
        x = torch.randn(4, 2, 3)
        runs = []
        for _ in range(2):
            torch.manual_seed(3)
            runs.append(m(x)[0].detach())
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], m(x)[0].detach())
        m.eval()
        plain = rt.GRU(3, 6, num_layers=2).eval()
        plain.load_state_dict(m.state_dict())
        with torch.no_grad():
            assert torch.equal(m(x)[0], plain(x)[0])
        assert "recurrent_dropout=0.3" in repr(m)
        with pytest.raises(ValueError, match="no recurrent dropout"):
            m.to_torch()
        assert m.to_numpy().recurrent_dropout == 0.3
