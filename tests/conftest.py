"""Shared helpers: random problems, per-dtype comparisons and the one finite-difference gradient."""
import numpy as np
import pytest

import rnnfast

# Relative tolerances (to the largest magnitude of the expected array), per dtype.
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
MODES = list(GATES)


def assert_close(actual, expected, rtol, what=""):
    """max |actual - expected| <= rtol * max |expected| (and the shapes match)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
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
