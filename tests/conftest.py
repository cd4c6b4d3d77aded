"""Shared helpers: random problems, per-dtype comparisons and the one finite-difference gradient."""
import numpy as np
import pytest

import rnnfast

# Relative tolerances (to the largest magnitude of the expected array), per dtype.
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
MODES = list(GATES)
# Each mode's module class and the extra constructor arguments that pick the mode.
MODULES = {"rnn_tanh": (rnnfast.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (rnnfast.RNN, {"nonlinearity": "relu"}),
           "lstm": (rnnfast.LSTM, {}), "gru": (rnnfast.GRU, {})}


def assert_close(actual, expected, rtol, what="", scale_at_least=1e-30):
    """max |actual - expected| <= rtol * max(max |expected|, scale_at_least) (and the shapes match).
    scale_at_least: for a gradient that can be far smaller than what produced it (through a
    saturated tanh or sigmoid, 1 - y^2 cancels), the size of the incoming gradient."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), scale_at_least)
    err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)), initial=0.0))
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} * {scale:.3e}"


# What numeric_grad's central differences (float64, eps = 1e-6) allow, relative to the largest entry.
FD_RTOL = 1e-7


def numeric_grad(f, arr, eps=1e-6):
    """Central finite differences of the scalar f() with respect to every entry of arr (changed in place)."""
    g = np.zeros_like(arr, dtype=np.float64)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        up = f()
        arr[i] = old - eps
        down = f()
        arr[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def make_layer(mode, T, B, I, H, dtype, seed=0, bias=True):
    """Random weights and inputs for one layer (uniform, like the modules' init, a bit wider)."""
    rng = np.random.default_rng(seed)
    G = GATES[mode]
    k = 1.0 / np.sqrt(H)
    u = lambda *s: rng.uniform(-k, k, size=s).astype(dtype)
    p = dict(x=rng.standard_normal((T, B, I)).astype(dtype), h0=rng.standard_normal((B, H)).astype(dtype) * 0.5,
             c0=rng.standard_normal((B, H)).astype(dtype) * 0.5, w_ih=u(G * H, I), w_hh=u(G * H, H),
             b_ih=u(G * H) if bias else None, b_hh=u(G * H) if bias else None,
             dy=rng.standard_normal((T, B, H)).astype(dtype), dh_n=rng.standard_normal((B, H)).astype(dtype),
             dc_n=rng.standard_normal((B, H)).astype(dtype))
    return p


def reference_layer(mode, p, **kw):
    """The reference's forward and backward of make_layer's problem p: [y, h_n, (c_n,) dx, dh0,
    (dc0,) dw_ih, dw_hh, db_ih, db_hh]. kw: reverse, lengths and the variants (zoneout, ...)."""
    from rnnfast import reference as ref
    args = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if mode == "lstm":
        y, h, c, cache = ref.lstm_forward(p["x"], p["h0"], p["c0"], *args, **kw)
        return [y, h, c] + list(ref.lstm_backward(p["dy"], p["dh_n"], p["dc_n"], cache))
    if mode == "gru":
        y, h, cache = ref.gru_forward(p["x"], p["h0"], *args, **kw)
        return [y, h] + list(ref.gru_backward(p["dy"], p["dh_n"], cache))
    y, h, cache = ref.rnn_forward(p["x"], p["h0"], *args, nonlinearity=mode[4:], **kw)
    return [y, h] + list(ref.rnn_backward(p["dy"], p["dh_n"], cache))


def kernel_layer(mode, p, threads, **kw):
    """The same through the kernels (functional.layer_forward and layer_backward) on `threads`
    threads, in reference_layer's order."""
    from rnnfast import functional as F
    lstm = mode == "lstm"
    before = rnnfast.get_num_threads()
    rnnfast.set_num_threads(threads)
    try:
        y, h, c, ctx = F.layer_forward(mode, p["x"], p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"],
                                       p["b_ih"], p["b_hh"], **kw)
        grads = F.layer_backward(ctx, p["dy"], p["dh_n"], p["dc_n"] if lstm else None)
    finally:
        rnnfast.set_num_threads(before)
    return [y, h] + ([c] if lstm else []) + list(grads)


@pytest.fixture(params=rnnfast.available_isas())
def every_isa(request):
    """Runs the test on each instruction-set path this CPU supports (then restores the one in use)."""
    before = rnnfast.isa()
    rnnfast.set_isa(request.param)
    yield request.param
    rnnfast.set_isa(before)


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def check_gradients_with_one_draw(module, names, T=5, B=2, seed=11):
    """A NumPy module's gradients of the parameters `names` and of its input against central
    differences (float64), its generator reset to `seed` before each forward so that every call
    draws the same masks (weight drop, zoneout, recurrent dropout)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, module.input_size))
    dy = rng.standard_normal((T, B, module.num_directions * module.state_size))

    def loss():
        module._rng = np.random.default_rng(seed)
        return float(np.sum(module(x)[0] * dy))

    loss()
    module.zero_grad()
    dx, _ = module.backward(dy)
    for name in names:
        assert_close(module.grads[name], numeric_grad(loss, module.parameters()[name]), FD_RTOL, name)
    assert_close(dx, numeric_grad(loss, x), FD_RTOL, "dx")


def gradcheck_with_one_draw(module, x, seed):
    """torch.autograd.gradcheck of an rnnfast.torch module's output with respect to x and every
    parameter, torch's generator reset to `seed` before each call so that every call draws the same
    masks (weight drop, zoneout)."""
    import torch
    names = [n for n, _ in module.named_parameters()]

    def f(x, *params):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return torch.func.functional_call(module, dict(zip(names, params)), (x,))[0]

    return torch.autograd.gradcheck(f, (x, *module.parameters()))


def assert_compiled_matches_eager(module, x):
    """A torch module compiled (aot_eager, fullgraph) gives its eager outputs and parameter
    gradients bit for bit, in training and under no_grad."""
    import torch
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    eager_out, got = module(x), compiled(x)
    for a, b in zip((eager_out[0], *eager_out[1]), (got[0], *got[1])):
        assert torch.equal(a, b)
    got[0].sum().backward()
    g_compiled = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    eager_out[0].sum().backward()
    for a, b in zip(g_compiled, (p.grad for p in module.parameters())):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(compiled(x)[0], module(x)[0])
