"""Zoneout (Krueger et al. 2016, haste's semantics): `zoneout=p` on RNN, LSTM and GRU, NumPy and
rnnfast.torch. In training each unit of h keeps its previous value with probability p, a fresh
mask per step, unit and batch row: h_t = m h_{t-1} + (1 - m) h~_t (an LSTM's c as the cell made
it); the output at t is h_t. In eval h_t = p h_{t-1} + (1 - p) h~_t."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref

from conftest import (MODES, MODULES, RTOL, assert_close, check_gradients_with_one_draw, gradcheck_with_one_draw,
                      kernel_layer, make_layer, reference_layer)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_layer_with_masks_is_the_reference(mode, reverse, threads, dtype):
    """The kernels' layer with zoneout masks against the reference: outputs, states and every
    gradient, with lengths, both directions, in unit and batch mode (B = 40 on 2 threads)."""
    T, B, I, H = 5, 40, 6, 20
    p = make_layer(mode, T, B, I, H, dtype, seed=7)
    lengths = np.random.default_rng(1).integers(1, T + 1, size=B)
    mask = (np.random.default_rng(2).random((T, B, H)) < 0.4).astype(dtype)
    got = [a for a in kernel_layer(mode, p, threads, reverse=reverse, lengths=lengths, zoneout=mask) if a is not None]
    want = [a for a in reference_layer(mode, p, reverse=reverse, lengths=lengths, zoneout=mask) if a is not None]
    for i, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, RTOL[dtype] * (10 if dtype == np.float32 else 1), f"output {i}")


@pytest.mark.parametrize("mode", MODES)
def test_eval_mixes_in_p_of_the_previous_state(mode):
    p = make_layer(mode, 6, 3, 4, 7, np.float64, seed=3)
    lstm = mode == "lstm"
    y, *_ = F.layer_forward(mode, p["x"], p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"], p["b_ih"],
                            p["b_hh"], training=False, zoneout=0.3)
    assert_close(y, reference_layer(mode, p, zoneout=0.3)[0], RTOL[np.float64], "y")


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_module_gradient_matches_finite_differences_for_one_mask(mode):
    """Modules (stacked, bidirectional, float64) whose every call draws the same masks."""
    cls, extra = MODULES[mode]
    m = cls(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=5, zoneout=0.4, **extra)
    check_gradients_with_one_draw(m, ("weight_hh_l0", "weight_hh_l1_reverse", "bias_ih_l0_reverse"))

@pytest.mark.parametrize("mode", MODES)
def test_zero_is_the_plain_module_and_eval_uses_p(mode):
    cls, extra = MODULES[mode]
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    plain = cls(5, 8, num_layers=2, seed=1, **extra)
    zero = cls(5, 8, num_layers=2, seed=1, zoneout=0.0, **extra)
    zoned = cls(5, 8, num_layers=2, seed=1, zoneout=0.5, **extra)
    assert np.array_equal(plain(x)[0], zero(x)[0])
    assert not np.array_equal(plain(x)[0], zoned(x)[0])
    assert not np.array_equal(plain.eval()(x)[0], zoned.eval()(x)[0])  # eval: p of h_{t-1} mixed in
    assert "zoneout=0.5" in repr(zoned)
    with pytest.raises(ValueError, match="zoneout"):
        cls(5, 8, zoneout=1.0, **extra)


def test_a_module_draws_masks_from_a_seed_per_call_layer_and_direction():
    """A training forward keeps no mask array: the kernels draw each direction's masks from a seed
    of the module's generator, and rnnfast.reference.zoneout_masks gives the same masks."""
    m = rnnfast.GRU(4, 64, seed=2, zoneout=0.25, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((50, 8, 4)).astype(np.float32)
    y = m(x)[0]
    (forward, backward), _ = m._saved["layers"][0]
    assert forward.zoneout == 0.25 and forward.zoneout_seed != backward.zoneout_seed
    masks = ref.zoneout_masks(forward.zoneout_seed, 0.25, 50, 8, 64)
    assert set(np.unique(masks)) == {0.0, 1.0} and 0.24 < masks.mean() < 0.26
    p = m.parameters()
    want = F.layer_forward("gru", x, None, None, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
                           p["bias_hh_l0"], training=False, zoneout=masks)[0]
    assert np.array_equal(y[:, :, :64], want)
    m(x)
    assert m._saved["layers"][0][0][0].zoneout_seed != forward.zoneout_seed  # a fresh draw per call


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threads", [1, 2])
def test_masks_drawn_in_the_kernels_are_the_reference_s(mode, threads, dtype):
    """zoneout=p with a seed (no mask array) gives the bits of the reference's masks passed in."""
    T, B, H = 5, 40, 20
    p = make_layer(mode, T, B, 6, H, dtype, seed=7)
    lengths = np.random.default_rng(1).integers(1, T + 1, size=B)
    seed = 0xDEADBEEF12345678
    drawn = kernel_layer(mode, p, threads, lengths=lengths, zoneout=0.3, zoneout_seed=seed)
    given = kernel_layer(mode, p, threads, lengths=lengths, zoneout=ref.zoneout_masks(seed, 0.3, T, B, H, dtype))
    for a, b in zip(drawn, given):
        assert (a is None and b is None) or np.array_equal(a, b)


def test_zoneout_masks_match_their_formula():
    """rnnfast.reference.zoneout_masks against its formula written out for single values."""
    def mix(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) % 2 ** 32
        x ^= x >> 15
        x = (x * 0x846CA68B) % 2 ** 32
        return x ^ (x >> 16)

    seed, T, B, H, p = 2 ** 63 + 12345, 3, 4, 5, 0.5
    masks = ref.zoneout_masks(seed, p, T, B, H, np.float64)
    lo, hi = seed % 2 ** 32, seed >> 32
    for t, b, u in [(0, 0, 0), (2, 3, 4), (1, 2, 3)]:
        row = mix(lo ^ mix((t * B + b) ^ hi))
        assert masks[t, b, u] == float(mix((u * 0x9E3779B1) % 2 ** 32 ^ row) < int(p * 2 ** 32))
    assert 0.3 < ref.zoneout_masks(7, 0.5, 20, 10, 10).mean() < 0.7


class TestTorch:
    torch = pytest.importorskip("torch")

    def test_gradcheck_with_one_mask(self):
        torch = self.torch
        import rnnfast.torch as rt
        m = rt.GRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, zoneout=0.4)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        assert gradcheck_with_one_draw(m, x, seed=5)

    def test_eval_is_the_numpy_module_s_and_to_torch_refuses(self):
        torch = self.torch
        import rnnfast.torch as rt
        ours = rt.LSTM(3, 6, num_layers=2, zoneout=0.3).eval()
        x = torch.randn(4, 2, 3)
        with torch.no_grad():
            assert np.array_equal(ours(x)[0].numpy(), ours.to_numpy().eval()(x.numpy())[0])
        with pytest.raises(ValueError, match="no zoneout"):
            ours.to_torch()


@pytest.mark.parametrize("mode", MODES)
def test_a_cell_in_eval_is_the_layer_s_step(mode):
    """The single-step cells take zoneout too (the demo samples through them): a cell's eval step
    is the eval layer's at T = 1, and a training step back-propagates like the layer."""
    cls, extra = MODULES[mode]
    cell_cls = {"rnn_tanh": rnnfast.RNNCell, "rnn_relu": rnnfast.RNNCell, "lstm": rnnfast.LSTMCell,
                "gru": rnnfast.GRUCell}[mode]
    layer = cls(4, 6, seed=3, zoneout=0.3, **extra).eval()
    cell = cell_cls(4, 6, seed=3, zoneout=0.3, **extra).eval()
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((1, 2, 4)).astype(np.float32)
    h0 = np.random.default_rng(2).standard_normal((1, 2, 6)).astype(np.float32)
    hx = (h0, h0 * 0.5) if mode == "lstm" else h0
    state = (h0[0], h0[0] * 0.5) if mode == "lstm" else h0[0]
    y, _ = layer(x, hx)
    got = cell(x[0], state)
    assert np.array_equal(got[0] if mode == "lstm" else got, y[0])


def test_onnx_export_refuses_zoneout():
    m = rnnfast.LSTM(3, 4, zoneout=0.2)
    with pytest.raises(ValueError, match="no zoneout"):
        rnnfast.onnx.export(m, "unused.onnx", np.zeros((2, 1, 3), np.float32))
