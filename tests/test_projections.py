"""LSTM projections (torch.nn.LSTM's proj_size): h_t = W_hr (o_t * tanh(c_t)) of P < H units, on
the kernels' fast path: the layer against the NumPy reference on every instruction set, the same
bits on any thread count, the modules (NumPy and rnnfast.torch) against the reference stack and
torch.nn.LSTM(proj_size), finite differences and gradcheck, and the refusals."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref

from conftest import FD_RTOL, RTOL, assert_close, check_gradients_with_one_draw, numeric_grad


def make_projected(T, B, I, H, P, dtype, seed=0, bias=True):
    """Random inputs, weights (torch.nn's init range, a little wider) and output gradients of one
    projected layer."""
    rng = np.random.default_rng(seed)
    k = 1.5 / np.sqrt(H)
    u = lambda *s: rng.uniform(-k, k, size=s).astype(dtype)  # noqa: E731
    n = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return dict(x=n(T, B, I), h0=0.5 * n(B, P), c0=0.5 * n(B, H), w_ih=u(4 * H, I), w_hh=u(4 * H, P),
                b_ih=u(4 * H) if bias else None, b_hh=u(4 * H) if bias else None, w_hr=u(P, H),
                dy=n(T, B, P), dh_n=n(B, P), dc_n=n(B, H))


def kernels(p, threads=0, **kw):
    """[y, h_n, c_n, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr] through the kernels."""
    y, h, c, ctx = F.layer_forward("lstm", p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                   w_hr=p["w_hr"], threads=threads, **kw)
    return [y, h, c] + list(F.layer_backward(ctx, p["dy"], p["dh_n"], p["dc_n"], threads=threads))


def reference(p, **kw):
    y, h, c, cache = ref.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                      w_hr=p["w_hr"], **kw)
    return [y, h, c] + list(ref.lstm_backward(p["dy"], p["dh_n"], p["dc_n"], cache))


NAMES = ["y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_hr"]

# (T, B, I, H, P): B = 1 (the products split k), one thread below the schedule's smallest shared
# step, unit mode on 2 threads (two barriers a step: B = 3 and 7 with H 100 and 130), batch mode on
# 2 threads (B = 9, 40), odd sizes that leave partial vectors and panels, a single step.
SHAPES = [(6, 1, 5, 20, 7), (4, 3, 6, 37, 11), (4, 3, 20, 100, 45), (3, 7, 33, 130, 70), (5, 9, 7, 64, 33),
          (4, 40, 5, 24, 10), (1, 5, 4, 19, 3)]


def _regularisers(kind, T, B, P, dtype):
    rng = np.random.default_rng(9)
    if kind == "zoneout":
        return {"zoneout": (rng.random((T, B, P)) < 0.4).astype(dtype)}
    if kind == "zoneout drawn":
        return {"zoneout": 0.3, "zoneout_seed": 12345}
    if kind == "recurrent dropout":
        return {"recurrent_mask": ((rng.random((B, P)) >= 0.3) / 0.7).astype(dtype)}
    return {}


def _reference_regularisers(kw, T, B, P, dtype):
    """The kernels' arguments as the reference takes them (drawn zoneout as its masks)."""
    if "zoneout_seed" in kw:
        return {"zoneout": ref.zoneout_masks(kw["zoneout_seed"], kw["zoneout"], T, B, P, dtype)}
    return kw


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}P{}".format(*s))
@pytest.mark.parametrize("variant", ["plain", "reverse lengths", "no bias", "zoneout", "zoneout drawn",
                                     "recurrent dropout"])
def test_layer_is_the_reference_on_every_isa(shape, variant, every_isa, dtype):
    T, B, I, H, P = shape
    p = make_projected(T, B, I, H, P, dtype, seed=sum(shape), bias=variant != "no bias")
    kw = _regularisers(variant, T, B, P, dtype)
    if variant == "reverse lengths":
        kw = {"reverse": True, "lengths": np.random.default_rng(3).integers(1, T + 1, size=B)}
    got = kernels(p, **kw)
    want = reference(p, **_reference_regularisers(kw, T, B, P, dtype))
    for name, a, b in zip(NAMES, got, want):
        if b is None:
            assert a is None, name
            continue
        assert_close(a, b, RTOL[dtype] * (10 if dtype == np.float32 else 1), f"{every_isa} {name}")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}P{}".format(*s))
def test_same_bits_on_one_and_two_threads(shape, dtype):
    """Unit mode (two barriers a step), batch mode and one thread give the same bits; an eval
    forward gives the training forward's outputs."""
    T, B, I, H, P = shape
    p = make_projected(T, B, I, H, P, dtype, seed=5)
    lengths = np.random.default_rng(4).integers(1, T + 1, size=B)
    runs = [kernels(p, threads=n, lengths=lengths, zoneout=0.25, zoneout_seed=77) for n in (1, 2)]
    for name, a, b in zip(NAMES, *runs):
        assert a is None and b is None or np.array_equal(a, b), name
    y, h, c, _ = F.layer_forward("lstm", p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                 w_hr=p["w_hr"], lengths=lengths, training=False, threads=2)
    plain = kernels(p, threads=1, lengths=lengths)
    for name, a, b in zip(NAMES, (y, h, c), plain):
        assert_close(a, b, RTOL[dtype], name)
    assert np.all(y[np.arange(T)[:, None] >= lengths[None, :]] == 0)  # padded steps stay zero


def test_layer_refusals():
    p = make_projected(3, 2, 4, 6, 3, np.float64)
    args = (p["x"], p["h0"], None, p["w_ih"][:18], p["w_hh"][:18], None, None)
    with pytest.raises(ValueError, match="projections are an LSTM's"):
        F.layer_forward("gru", *args, w_hr=p["w_hr"])
    square = np.zeros((6, 6))
    with pytest.raises(ValueError, match="P < H"):
        F.layer_forward("lstm", p["x"], None, None, p["w_ih"], np.zeros((24, 6)), None, None, w_hr=square)
    with pytest.raises(ValueError, match="w_hh"):  # W_hh's columns are P with projections
        F.layer_forward("lstm", p["x"], None, None, p["w_ih"], np.zeros((24, 6)), None, None, w_hr=p["w_hr"])


# ---- the modules --------------------------------------------------------------------------

def _stack_problem(module, T, B, seed=1):
    rng = np.random.default_rng(seed)
    L, D, S, H = module.num_layers, module.num_directions, module.proj_size, module.hidden_size
    x = rng.standard_normal((T, B, module.input_size))
    hx = (0.5 * rng.standard_normal((L * D, B, S)), 0.5 * rng.standard_normal((L * D, B, H)))
    dy = rng.standard_normal((T, B, D * S))
    dhx = (rng.standard_normal((L * D, B, S)), rng.standard_normal((L * D, B, H)))
    return x, hx, dy, dhx


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_module_is_the_reference_stack(bidirectional, bias, dtype):
    m = rnnfast.LSTM(5, 12, num_layers=2, bidirectional=bidirectional, bias=bias, proj_size=4, dtype=dtype, seed=2)
    params = m.parameters()
    assert params["weight_hh_l1"].shape == (48, 4) and params["weight_hr_l0"].shape == (4, 12)
    assert params["weight_ih_l1"].shape == (48, 4 * m.num_directions)
    T, B = 6, 3
    x, hx, dy, dhx = (tuple(a.astype(dtype) for a in v) if isinstance(v, tuple) else v.astype(dtype)
                      for v in _stack_problem(m, T, B))
    lengths = [6, 2, 4]
    y, (h_n, c_n) = m(x, hx, lengths=lengths)
    m.zero_grad()
    dx, (dh0, dc0) = m.backward(dy, dhx)
    y_ref, (h_ref, c_ref), cache = ref.stack_forward("lstm", x, hx, params, 2, bidirectional, lengths=lengths)
    dx_ref, (dh0_ref, dc0_ref), grads_ref = ref.stack_backward(dy, dhx, cache)
    tol = RTOL[dtype] * (10 if dtype == np.float32 else 1)
    for name, a, b in [("y", y, y_ref), ("h_n", h_n, h_ref), ("c_n", c_n, c_ref), ("dx", dx, dx_ref),
                       ("dh0", dh0, dh0_ref), ("dc0", dc0, dc0_ref)]:
        assert_close(a, b, tol, name)
    assert sorted(grads_ref) == sorted(m.grads)
    for name, g in grads_ref.items():
        assert_close(m.grads[name], g, tol, name)


def test_module_gradients_match_finite_differences_with_regularisers():
    m = rnnfast.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dtype="float64", seed=3, zoneout=0.3,
                     recurrent_dropout=0.25, weight_drop=0.2, dropout=0.2)
    check_gradients_with_one_draw(m, ("weight_hr_l0", "weight_hr_l1_reverse", "weight_hh_l1", "bias_ih_l0_reverse",
                                      "weight_ih_l1"))


def test_module_shapes_checks_and_repr():
    m = rnnfast.LSTM(4, 8, proj_size=3, batch_first=True, seed=0)
    assert "proj_size=3" in repr(m)
    y, (h, c) = m(np.zeros((2, 5, 4), np.float32))
    assert y.shape == (2, 5, 3) and h.shape == (1, 2, 3) and c.shape == (1, 2, 8)
    with pytest.raises(ValueError, match=r"hx\[0\]"):
        m(np.zeros((2, 5, 4), np.float32), (np.zeros((1, 2, 8), np.float32), np.zeros((1, 2, 8), np.float32)))
    with pytest.raises(ValueError, match="smaller than hidden_size"):
        rnnfast.LSTM(4, 8, proj_size=8)
    with pytest.raises(ValueError, match="positive integer or zero"):
        rnnfast.LSTM(4, 8, proj_size=-1)
    with pytest.raises(TypeError, match="proj_size should be of type int"):
        rnnfast.LSTM(4, 8, proj_size=2.0)
    bi = rnnfast.BiRNN("lstm", 4, 8, merge="sum", proj_size=3)
    out, _ = bi(np.zeros((5, 2, 4), np.float32))
    assert out.shape == (5, 2, 3) and bi.output_size == 3
    assert rnnfast.quantize(m, "int8").proj_size == m.proj_size  # its kernels: tests/test_quantized_variants.py


def test_checkpoint_and_pickle_give_the_same_bits(tmp_path):
    import pickle
    m = rnnfast.LSTM(4, 8, num_layers=2, proj_size=3, seed=4)
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    rnnfast.save(tmp_path / "m.npz", m)
    again = rnnfast.LSTM(4, 8, num_layers=2, proj_size=3, seed=5)
    rnnfast.load(tmp_path / "m.npz", again)
    copy = pickle.loads(pickle.dumps(m))
    assert copy.proj_size == 3
    assert np.array_equal(m(x)[0], again(x)[0]) and np.array_equal(m(x)[0], copy(x)[0])
    with pytest.raises(ValueError):  # W_hh of (4H, H) does not fit a projected module
        rnnfast.load(tmp_path / "m.npz", rnnfast.LSTM(4, 8, num_layers=2, seed=5))


def test_onnx_export_refuses_projections(tmp_path):
    pytest.importorskip("onnx")
    from rnnfast import onnx as rnnfast_onnx
    m = rnnfast.LSTM(4, 8, proj_size=3).eval()
    with pytest.raises(ValueError, match="ONNX's LSTM has no projection"):
        rnnfast_onnx.export(m, tmp_path / "m.onnx", np.zeros((5, 2, 4), np.float32))


# ---- rnnfast.torch ------------------------------------------------------------------------

def _torch_pair(torch, bidirectional, batch_first=False, bias=True, dtype=None):
    import rnnfast.torch as rt
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(5, 9, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
                           proj_size=4, dtype=dtype or torch.float64)
    return theirs, rt.from_torch(theirs)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_torch_module_matches_torch_nn(bidirectional, packed):
    """rnnfast.torch.LSTM(proj_size) against torch.nn.LSTM(proj_size) in float64: outputs, states and
    every gradient to 1e-9."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    theirs, ours = _torch_pair(torch, bidirectional)
    assert ours.proj_size == 4 and "proj_size=4" in repr(ours)
    D = 2 if bidirectional else 1
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    hx = (torch.randn(2 * D, 3, 4, dtype=torch.float64), torch.randn(2 * D, 3, 9, dtype=torch.float64))
    lengths = torch.tensor([7, 3, 5])
    results = []
    for module in (theirs, ours):
        xi = x.clone().requires_grad_(True)
        h0 = tuple(h.clone().requires_grad_(True) for h in hx)
        inp = pack_padded_sequence(xi, lengths, enforce_sorted=False) if packed else xi
        out, (h_n, c_n) = module(inp, h0)
        y = pad_packed_sequence(out)[0] if packed else out
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum() + \
            (h_n ** 2).sum() + (c_n * 0.5).sum()
        module.zero_grad()
        loss.backward()
        results.append([y, h_n, c_n, xi.grad, h0[0].grad, h0[1].grad] +
                       [p.grad for _, p in module.named_parameters()])
    names = ["y", "h_n", "c_n", "dx", "dh0", "dc0"] + [n for n, _ in ours.named_parameters()]
    for name, a, b in zip(names, *results):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=0, atol=1e-9, err_msg=name)


def test_torch_module_round_trips_and_gradcheck():
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    theirs, ours = _torch_pair(torch, True, batch_first=True)
    back = ours.to_torch()
    assert isinstance(back, torch.nn.LSTM) and back.proj_size == 4
    numpy_module = ours.to_numpy()
    assert numpy_module.proj_size == 4
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(ours(x)[0].numpy(), theirs(x)[0].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(numpy_module(x.numpy())[0], theirs(x)[0].numpy(), rtol=0, atol=1e-12)
    small = rt.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=torch.float64, zoneout=0.2,
                    weight_drop=0.3)
    from conftest import gradcheck_with_one_draw
    assert gradcheck_with_one_draw(small, torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True), seed=3)
    with pytest.raises(ValueError, match="smaller than hidden_size"):
        rt.LSTM(3, 4, proj_size=4)


def test_torch_compile_matches_eager():
    torch = pytest.importorskip("torch")
    from conftest import assert_compiled_matches_eager
    _, ours = _torch_pair(torch, True, dtype=torch.float32)
    assert_compiled_matches_eager(ours, torch.randn(6, 3, 5, requires_grad=True))
