"""The layer-normalised LSTM and GRU on the kernels' fast path: the layer against the NumPy
reference on every instruction set, the same bits on any thread count, rnnfast.LayerNormLSTM and
LayerNormGRU against the reference stack and finite differences, and the refusals."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref

from conftest import RTOL, assert_close, check_gradients_with_one_draw

G = {"layernorm_lstm": 4, "layernorm_gru": 3}
MODES = list(G)


def make_normed(mode, T, B, I, H, dtype, seed=0, bias=True):
    """Random inputs, weights, gains about 1 (and the LSTM's cell bias about 0) and output gradients
    of one layer."""
    rng = np.random.default_rng(seed)
    GH, k = G[mode] * H, 1.0 / np.sqrt(H)
    u = lambda *s: rng.uniform(-k, k, size=s).astype(dtype)  # noqa: E731
    n = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    p = dict(x=n(T, B, I), h0=0.5 * n(B, H), c0=0.5 * n(B, H), w_ih=u(GH, I), w_hh=u(GH, H),
             b_ih=u(GH) if bias else None, b_hh=u(GH) if bias else None,
             norms=(1 + 0.3 * n(GH), 1 + 0.3 * n(GH)) + ((1 + 0.3 * n(H), 0.3 * n(H)) if mode == "layernorm_lstm"
                                                          else ()),
             dy=n(T, B, H), dh_n=n(B, H), dc_n=n(B, H))
    return p


def kernels(mode, p, threads=0, **kw):
    """[y, h_n, (c_n,) dx, dh0, (dc0,) dw_ih, dw_hh, db_ih, db_hh, *dnorms] through the kernels."""
    lstm = mode == "layernorm_lstm"
    y, h, c, ctx = F.layer_forward(mode, p["x"], p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"],
                                   p["b_ih"], p["b_hh"], norms=p["norms"], threads=threads, **kw)
    grads = F.layer_backward(ctx, p["dy"], p["dh_n"], p["dc_n"] if lstm else None, threads=threads)
    return [y, h] + ([c] if lstm else []) + [g for i, g in enumerate(grads) if lstm or i != 2]


def reference(mode, p, **kw):
    args = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]) + tuple(p["norms"])
    if mode == "layernorm_lstm":
        y, h, c, cache = ref.layernorm_lstm_forward(p["x"], p["h0"], p["c0"], *args, **kw)
        return [y, h, c] + list(ref.layernorm_lstm_backward(p["dy"], p["dh_n"], p["dc_n"], cache))
    y, h, cache = ref.layernorm_gru_forward(p["x"], p["h0"], *args, **kw)
    return [y, h] + list(ref.layernorm_gru_backward(p["dy"], p["dh_n"], cache))


# (T, B, I, H): steps too small to share (one thread); unit mode on 2 threads (B = 1, 3 and 6, from
# H = 150: the threads split units, H = 150 into a partial last group; a single step); batch mode
# on 2 threads (B = 8, 40); odd H; a single step too small to share.
SHAPES = [(6, 1, 5, 20), (4, 3, 6, 37), (5, 1, 7, 160), (4, 3, 6, 150), (3, 6, 5, 160), (1, 2, 300, 160),
          (5, 8, 7, 64), (4, 40, 5, 24), (1, 9, 4, 19)]
VARIANTS = ["plain", "reverse lengths", "no bias", "zoneout", "zoneout drawn", "recurrent dropout"]


def _variant(kind, T, B, H, dtype):
    """(the kernels' keyword arguments, the reference's) for a variant."""
    rng = np.random.default_rng(9)
    if kind == "reverse lengths":
        kw = {"reverse": True, "lengths": rng.integers(1, T + 1, size=B)}
        return kw, kw
    if kind == "zoneout":
        kw = {"zoneout": (rng.random((T, B, H)) < 0.4).astype(dtype)}
        return kw, kw
    if kind == "zoneout drawn":
        return {"zoneout": 0.3, "zoneout_seed": 4321}, {"zoneout": ref.zoneout_masks(4321, 0.3, T, B, H, dtype)}
    if kind == "recurrent dropout":
        kw = {"recurrent_mask": ((rng.random((B, H)) >= 0.3) / 0.7).astype(dtype)}
        return kw, kw
    return {}, {}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_is_the_reference_on_every_isa(mode, shape, variant, every_isa, dtype):
    T, B, I, H = shape
    p = make_normed(mode, T, B, I, H, dtype, seed=sum(shape), bias=variant != "no bias")
    ours, theirs = _variant(variant, T, B, H, dtype)
    got, want = kernels(mode, p, **ours), reference(mode, p, **theirs)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        if b is None:
            assert a is None, i
            continue
        assert_close(a, b, RTOL[dtype] * (30 if dtype == np.float32 else 1), f"{every_isa} output {i}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_same_bits_on_one_and_two_threads_and_eval_is_training(mode, shape, dtype):
    T, B, I, H = shape
    p = make_normed(mode, T, B, I, H, dtype, seed=5)
    lengths = np.random.default_rng(4).integers(1, T + 1, size=B)
    runs = [kernels(mode, p, threads=n, lengths=lengths, zoneout=0.25, zoneout_seed=77) for n in (1, 2)]
    for i, (a, b) in enumerate(zip(*runs)):
        assert a is None and b is None or np.array_equal(a, b), i
    lstm = mode == "layernorm_lstm"
    y, h, c, _ = F.layer_forward(mode, p["x"], p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"], p["b_ih"],
                                 p["b_hh"], norms=p["norms"], lengths=lengths, training=False)
    trained = kernels(mode, p, lengths=lengths)
    assert np.array_equal(y, trained[0]) and np.array_equal(h, trained[1])
    assert np.all(y[np.arange(T)[:, None] >= lengths[None, :]] == 0)  # padded steps stay zero


def test_layer_refusals():
    p = make_normed("layernorm_gru", 3, 2, 4, 6, np.float64)
    args = (p["x"], p["h0"], None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    with pytest.raises(ValueError, match="ln_ih_weight: this cell needs it"):
        F.layer_forward("layernorm_gru", *args)
    with pytest.raises(ValueError, match="only a layer-normalised cell takes it"):
        F.layer_forward("gru", *args, norms=p["norms"])
    with pytest.raises(ValueError, match="ln_hh_weight"):
        F.layer_forward("layernorm_gru", *args, norms=(p["norms"][0], p["norms"][1][:-1]))


# ---- the modules --------------------------------------------------------------------------

CLASSES = {"layernorm_lstm": rnnfast.LayerNormLSTM, "layernorm_gru": rnnfast.LayerNormGRU}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_module_is_the_reference_stack(mode, bidirectional, bias, dtype):
    m = CLASSES[mode](5, 7, num_layers=2, bidirectional=bidirectional, bias=bias, dtype=dtype, seed=2)
    params = m.parameters()
    assert np.all(params["ln_ih_weight_l0"] == 1) and params["ln_hh_weight_l1"].shape == (G[mode] * 7,)
    if mode == "layernorm_lstm":
        assert np.all(params["ln_cell_bias_l0"] == 0)
    rng = np.random.default_rng(1)
    for name, value in params.items():  # gains and biases away from their init
        if name.startswith("ln_"):
            value += dtype(0.2) * rng.standard_normal(value.shape).astype(dtype)
    T, B, D = 6, 3, m.num_directions
    x = rng.standard_normal((T, B, 5)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((2 * D, B, 7))).astype(dtype)
    hx = (h0, h0[::-1].copy()) if mode == "layernorm_lstm" else h0
    dy = rng.standard_normal((T, B, D * 7)).astype(dtype)
    lengths = [6, 2, 4]
    y, h_n = m(x, hx, lengths=lengths)
    m.zero_grad()
    dx, dh0 = m.backward(dy)
    y_ref, h_ref, cache = ref.stack_forward(mode, x, hx, params, 2, bidirectional, lengths=lengths)
    dx_ref, dh0_ref, grads_ref = ref.stack_backward(dy, None, cache)
    tol = RTOL[dtype] * (30 if dtype == np.float32 else 1)
    flat = lambda v: list(v) if isinstance(v, tuple) else [v]  # noqa: E731
    for name, a, b in [("y", y, y_ref), ("dx", dx, dx_ref)] + [("h_n", a, b) for a, b in zip(flat(h_n), flat(h_ref))] \
            + [("dh0", a, b) for a, b in zip(flat(dh0), flat(dh0_ref))]:
        assert_close(a, b, tol, name)
    assert sorted(grads_ref) == sorted(m.grads)
    for name, g in grads_ref.items():
        assert_close(m.grads[name], g, tol, name)


@pytest.mark.parametrize("mode", MODES)
def test_module_gradients_match_finite_differences_with_regularisers(mode):
    m = CLASSES[mode](3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=3, zoneout=0.3,
                      recurrent_dropout=0.25, weight_drop=0.2, dropout=0.2)
    names = ["ln_ih_weight_l0", "ln_hh_weight_l1_reverse", "weight_hh_l1", "bias_hh_l0_reverse", "weight_ih_l1"]
    if mode == "layernorm_lstm":
        names += ["ln_cell_weight_l1", "ln_cell_bias_l0_reverse"]
    check_gradients_with_one_draw(m, names)


def test_module_repr_checkpoint_and_refusals(tmp_path):
    m = rnnfast.LayerNormLSTM(4, 8, num_layers=2, seed=4, zoneout=0.1)
    assert repr(m).startswith("LayerNormLSTM(4, 8, num_layers=2")
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    rnnfast.save(tmp_path / "m.npz", m)
    again = rnnfast.LayerNormLSTM(4, 8, num_layers=2, seed=5, zoneout=0.1)
    rnnfast.load(tmp_path / "m.npz", again)
    assert np.array_equal(m.eval()(x)[0], again.eval()(x)[0])
    assert rnnfast.quantize(m, "bfloat16").state_dict().keys() == m.state_dict().keys()  # test_quantized_variants.py
    pytest.importorskip("onnx")
    from rnnfast import onnx as rnnfast_onnx
    with pytest.raises(ValueError, match="no operator for the layer-normalised cells"):
        rnnfast_onnx.export(rnnfast.LayerNormGRU(4, 8), tmp_path / "m.onnx", x)
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    with pytest.raises(ValueError, match="no operator for the layer-normalised cells"):
        rnnfast_onnx.export(rt.LayerNormLSTM(4, 8), tmp_path / "m.onnx", torch.from_numpy(x))


# ---- rnnfast.torch ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_torch_module_is_the_numpy_module_and_passes_gradcheck(mode):
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    from conftest import gradcheck_with_one_draw
    numpy_module = CLASSES[mode](5, 6, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    for value in numpy_module.parameters().values():
        value += 0.1 * rng.standard_normal(value.shape)
    ours = rt.from_numpy(numpy_module)
    assert type(ours).__name__ == CLASSES[mode].__name__
    x = rng.standard_normal((7, 3, 5))
    dy = rng.standard_normal((7, 3, 12))
    y_np, _ = numpy_module(x, lengths=[7, 2, 5])
    numpy_module.zero_grad()
    dx_np, _ = numpy_module.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    y, _ = ours(xt, lengths=[7, 2, 5])
    y.backward(torch.from_numpy(dy))
    assert np.array_equal(y.detach().numpy(), y_np) and np.array_equal(xt.grad.numpy(), dx_np)
    for name, p in ours.named_parameters():
        assert np.array_equal(p.grad.numpy(), numpy_module.grads[name]), name
    fresh = getattr(rt, CLASSES[mode].__name__)(3, 4, bidirectional=True, dtype=torch.float64)
    assert all(torch.all(p == (0 if n.startswith("ln_cell_bias") else 1)) for n, p in fresh.named_parameters()
               if n.startswith("ln_"))
    small = getattr(rt, CLASSES[mode].__name__)(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64,
                                                zoneout=0.2, weight_drop=0.3, recurrent_dropout=0.2)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert gradcheck_with_one_draw(small, torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True), seed=3)
    with pytest.raises(ValueError, match="torch.nn has no"):
        small.to_torch()


def test_torch_compile_matches_eager():
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    from conftest import assert_compiled_matches_eager
    torch.manual_seed(0)
    assert_compiled_matches_eager(rt.LayerNormLSTM(5, 8, num_layers=2, bidirectional=True),
                                  torch.randn(6, 3, 5, requires_grad=True))
