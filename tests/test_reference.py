"""Tests of the NumPy reference alone (rnnfast/reference/).

The reference is the oracle for the C++ core, so it is checked against things
that do not share its code: central finite differences in float64 for every
gradient, direct per-entry runs for the lengths semantics, and PyTorch's own
modules (where torch is installed) for the forward pass.
"""
import numpy as np
import pytest

from rnnfast import reference as ref

from conftest import numeric_grad

MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
INPUT_NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")

# Finite differences (conftest's numeric_grad) run in float64. With eps = 1e-6
# the truncation error is ~1e-12 and the rounding error ~1e-10 for losses of
# order 10, far below the tolerance, while a gradient that is 1% wrong is far
# above it.
FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-8)
# Two computations of the same quantity in one dtype (float32 vs float64
# reference, reference vs torch).
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
RELU_MARGIN = 1e-3  # keep every relu preactivation this far from its kink


# ----------------------------------------------------------------------------
# Helpers: one calling convention for the four cells, data, the gradient check.
# ----------------------------------------------------------------------------

def forward(mode, inputs, reverse=False, lengths=None):
    """Single-layer forward of any mode: (y, final states as a tuple, cache)."""
    x, h0 = inputs["x"], inputs["h0"]
    weights = (inputs["w_ih"], inputs["w_hh"], inputs["b_ih"], inputs["b_hh"])
    if mode == "lstm":
        y, h_n, c_n, cache = ref.lstm_forward(x, h0, inputs["c0"], *weights,
                                              reverse=reverse, lengths=lengths)
        return y, (h_n, c_n), cache
    if mode == "gru":
        y, h_n, cache = ref.gru_forward(x, h0, *weights, reverse=reverse, lengths=lengths)
    else:
        y, h_n, cache = ref.rnn_forward(x, h0, *weights, nonlinearity=mode[4:],
                                        reverse=reverse, lengths=lengths)
    return y, (h_n,), cache


def backward(mode, dy, dstates_n, cache):
    """Single-layer backward of any mode: a dict of gradients keyed like the inputs."""
    if mode == "lstm":
        grads = ref.lstm_backward(dy, *dstates_n, cache)
        return dict(zip(INPUT_NAMES, grads))
    backward_fn = ref.gru_backward if mode == "gru" else ref.rnn_backward
    grads = backward_fn(dy, *dstates_n, cache)
    return dict(zip(("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"), grads))


def relu_preactivations(inputs, reverse, lengths):
    """Every preactivation of a relu RNN, computed independently of the reference."""
    x, h0 = inputs["x"], inputs["h0"]
    w_ih, w_hh = inputs["w_ih"], inputs["w_hh"]
    b_sum = 0 if inputs["b_ih"] is None else inputs["b_ih"] + inputs["b_hh"]
    T, B, _ = x.shape
    pres = []
    for b in range(B):
        L = T if lengths is None else lengths[b]
        h = h0[b]
        for t in (reversed(range(L)) if reverse else range(L)):
            pre = w_ih @ x[t, b] + w_hh @ h + b_sum
            pres.append(pre)
            h = np.maximum(pre, 0)
    return np.concatenate(pres)


def make_inputs(mode, T, B, I, H, bias=True, reverse=False, lengths=None, seed=0,
                dtype=np.float64):
    """Random inputs of a single layer; for relu the first seed with no
    preactivation near the kink, so that finite differences are valid."""
    G = GATES[mode]
    for attempt in range(100):
        rng = np.random.default_rng(1000 * seed + attempt)
        inputs = {
            "x": rng.standard_normal((T, B, I)),
            "h0": rng.uniform(-1, 1, (B, H)),
            "c0": rng.uniform(-1, 1, (B, H)) if mode == "lstm" else None,
            "w_ih": rng.uniform(-0.8, 0.8, (G * H, I)),
            "w_hh": rng.uniform(-0.8, 0.8, (G * H, H)),
            "b_ih": rng.uniform(-0.5, 0.5, G * H) if bias else None,
            "b_hh": rng.uniform(-0.5, 0.5, G * H) if bias else None,
        }
        if (mode != "rnn_relu"
                or np.abs(relu_preactivations(inputs, reverse, lengths)).min() > RELU_MARGIN):
            break
    else:
        raise RuntimeError("no seed keeps the relu preactivations off the kink")
    if mode != "lstm":
        del inputs["c0"]
    return {k: None if v is None else v.astype(dtype) for k, v in inputs.items()}


def assert_gradient_matches(analytic, numeric, name):
    np.testing.assert_allclose(analytic, numeric, err_msg=f"gradient of {name}", **FD_TOL)


def check_single_layer_gradients(mode, T, B, I, H, reverse, lengths, bias=True,
                                 with_dstates_n=True):
    """Every gradient of sum(y*r_y) + sum(h_n*r_h) (+ sum(c_n*r_c)) against
    finite differences; with_dstates_n=False drops the final-state terms and
    passes None for dh_n (and dc_n)."""
    inputs = make_inputs(mode, T, B, I, H, bias, reverse, lengths)
    y, states_n, cache = forward(mode, inputs, reverse, lengths)
    rng = np.random.default_rng(1)
    r_y = rng.standard_normal(y.shape)
    r_states = [rng.standard_normal(s.shape) if with_dstates_n else None for s in states_n]

    def loss():
        y, states_n, _ = forward(mode, inputs, reverse, lengths)
        total = np.sum(y * r_y)
        for s, r in zip(states_n, r_states):
            if r is not None:
                total += np.sum(s * r)
        return total

    grads = backward(mode, r_y, r_states, cache)
    assert grads.keys() == inputs.keys()
    for name, a in inputs.items():
        if a is None:
            assert grads[name] is None, f"{name} is None, so its gradient must be"
        else:
            assert grads[name].shape == a.shape
            assert_gradient_matches(grads[name], numeric_grad(loss, a, eps=FD_EPS), name)


# ----------------------------------------------------------------------------
# Single layer: gradients.
# ----------------------------------------------------------------------------

UNSORTED_LENGTHS = [2, 4, 1]  # for T = 4, B = 3: unsorted, one equal to T, one 1


@pytest.mark.parametrize("with_dstates_n", [True, False], ids=["dh_n", "dh_n_None"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("lengths", [None, UNSORTED_LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(mode, reverse, lengths, bias, with_dstates_n):
    check_single_layer_gradients(mode, 4, 3, 5, 3, reverse, lengths, bias, with_dstates_n)


@pytest.mark.parametrize("T, B, I, H, lengths", [
    (1, 1, 1, 1, None),
    (1, 2, 3, 1, [1, 1]),
    (5, 1, 2, 1, [3]),
    (3, 2, 1, 4, [3, 1]),
])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_odd_shapes(mode, reverse, T, B, I, H, lengths):
    check_single_layer_gradients(mode, T, B, I, H, reverse, lengths)


def test_gradient_check_rejects_a_wrong_gradient():
    inputs = make_inputs("lstm", 3, 2, 2, 2)
    y, _, cache = forward("lstm", inputs)
    r_y = np.random.default_rng(1).standard_normal(y.shape)
    analytic = backward("lstm", r_y, (None, None), cache)["w_hh"]
    numeric = numeric_grad(lambda: np.sum(forward("lstm", inputs)[0] * r_y),
                           inputs["w_hh"], eps=FD_EPS)
    assert_gradient_matches(analytic, numeric, "w_hh")
    with pytest.raises(AssertionError):
        assert_gradient_matches(analytic * 1.01, numeric, "w_hh")


# ----------------------------------------------------------------------------
# Single layer: lengths, dtypes, errors.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_equal_running_each_entry_alone(mode, reverse):
    lengths = UNSORTED_LENGTHS
    inputs = make_inputs(mode, 4, 3, 5, 3, reverse=reverse, lengths=lengths)
    y, states_n, _ = forward(mode, inputs, reverse, lengths)
    for b, L in enumerate(lengths):
        assert np.all(y[L:, b] == 0), "outputs at padded steps must be zero"
        alone = dict(inputs, x=inputs["x"][:L, b:b + 1], h0=inputs["h0"][b:b + 1])
        if mode == "lstm":
            alone["c0"] = inputs["c0"][b:b + 1]
        y_alone, states_alone, _ = forward(mode, alone, reverse)
        np.testing.assert_allclose(y[:L, b], y_alone[:, 0], **TOL[np.float64])
        for s_n, s_alone in zip(states_n, states_alone):
            np.testing.assert_allclose(s_n[b], s_alone[0], **TOL[np.float64])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_gradients_ignore_padding(mode, reverse):
    lengths = UNSORTED_LENGTHS
    inputs = make_inputs(mode, 4, 3, 5, 3, reverse=reverse, lengths=lengths)
    y, states_n, cache = forward(mode, inputs, reverse, lengths)
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(y.shape)
    dstates_n = [rng.standard_normal(s.shape) for s in states_n]
    padded = np.arange(4)[:, None] >= np.array(lengths)[None, :]  # (T, B)
    dy_zero_padded = np.where(padded[..., None], 0.0, dy)

    grads = backward(mode, dy, dstates_n, cache)
    grads_zero_padded = backward(mode, dy_zero_padded, dstates_n, cache)
    assert np.all(grads["x"][padded] == 0), "dx at padded steps must be zero"
    for name, g in grads.items():
        np.testing.assert_allclose(g, grads_zero_padded[name], err_msg=name,
                                   **TOL[np.float64])


@pytest.mark.parametrize("lengths", [None, UNSORTED_LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("mode", MODES)
def test_float32_computes_in_float32(mode, lengths):
    inputs64 = make_inputs(mode, 4, 3, 5, 3, lengths=lengths, reverse=True)
    inputs32 = {k: v.astype(np.float32) for k, v in inputs64.items()}
    results = {}
    for dtype, inputs in ((np.float32, inputs32), (np.float64, inputs64)):
        y, states_n, cache = forward(mode, inputs, True, lengths)
        rng = np.random.default_rng(1)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dstates_n = [rng.standard_normal(s.shape).astype(dtype) for s in states_n]
        results[dtype] = dict(backward(mode, dy, dstates_n, cache), y=y,
                              **{f"state_n{i}": s for i, s in enumerate(states_n)})
    for name, value in results[np.float32].items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, results[np.float64][name], err_msg=name,
                                   **TOL[np.float32])


def test_invalid_arguments_raise():
    inputs = make_inputs("gru", 4, 3, 5, 3)
    for bad_lengths in ([0, 1, 2], [1, 2, 5], [1, 2], [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError, match="lengths"):
            forward("gru", inputs, lengths=bad_lengths)
    with pytest.raises(ValueError, match="w_ih"):
        forward("gru", dict(inputs, w_ih=inputs["w_ih"][:-1]))
    with pytest.raises(ValueError, match="nonlinearity"):
        ref.rnn_forward(inputs["x"], inputs["h0"], inputs["w_ih"][:3], inputs["w_hh"][:3],
                        None, None, nonlinearity="sigmoid")


# ----------------------------------------------------------------------------
# Stacked, bidirectional layers.
# ----------------------------------------------------------------------------

def make_stack(mode, T, B, I, H, num_layers, D, bias=True, seed=0, proj_size=0):
    """Random x, hx (PyTorch's structure) and params (PyTorch's keys); an LSTM with proj_size > 0
    has projections (weight_hr_l{k}, h of proj_size)."""
    rng = np.random.default_rng(seed)
    G = GATES[mode]
    P = proj_size or H
    x = rng.standard_normal((T, B, I))
    h0 = rng.uniform(-1, 1, (num_layers * D, B, P))
    hx = (h0, rng.uniform(-1, 1, (num_layers * D, B, H))) if mode == "lstm" else h0
    params = {}
    for k in range(num_layers):
        for suffix in ("", "_reverse")[:D]:
            layer_input = I if k == 0 else D * P
            params[f"weight_ih_l{k}{suffix}"] = rng.uniform(-0.8, 0.8, (G * H, layer_input))
            params[f"weight_hh_l{k}{suffix}"] = rng.uniform(-0.8, 0.8, (G * H, P))
            if bias:
                params[f"bias_ih_l{k}{suffix}"] = rng.uniform(-0.5, 0.5, G * H)
                params[f"bias_hh_l{k}{suffix}"] = rng.uniform(-0.5, 0.5, G * H)
            if proj_size:
                params[f"weight_hr_l{k}{suffix}"] = rng.uniform(-0.8, 0.8, (P, H))
    return x, hx, params


def as_tuple(states):
    return tuple(states) if isinstance(states, tuple) else (states,)


def check_stack_gradients(loss, backward, x, hx, params):
    """stack_backward's (dx, dhx, grads) against finite differences of loss() in x, hx and params."""
    dx, dhx, grads = backward
    assert grads.keys() == params.keys()
    assert_gradient_matches(dx, numeric_grad(loss, x, eps=FD_EPS), "x")
    for i, (dstate, state) in enumerate(zip(as_tuple(dhx), as_tuple(hx))):
        assert_gradient_matches(dstate, numeric_grad(loss, state, eps=FD_EPS), f"hx[{i}]")
    for name, p in params.items():
        assert_gradient_matches(grads[name], numeric_grad(loss, p, eps=FD_EPS), name)


@pytest.mark.parametrize("mode, bias, dropout, with_dhn, proj_size", [
    ("rnn_tanh", True, False, True, 0),
    ("lstm", True, False, True, 0),
    ("gru", True, False, True, 0),
    ("lstm", True, True, False, 0),
    ("gru", False, True, True, 0),
    ("lstm", True, True, True, 2),
    ("lstm", False, False, True, 1),
])
def test_stack_gradients_match_finite_differences(mode, bias, dropout, with_dhn, proj_size):
    T, B, I, num_layers = 3, 3, 2, 2
    H = 3 if proj_size else 2
    lengths = [2, 3, 1]
    x, hx, params = make_stack(mode, T, B, I, H, num_layers, 2, bias, proj_size=proj_size)
    rng = np.random.default_rng(1)
    masks = None
    if dropout:  # drop with p = 0.5, survivors scaled by 1 / (1 - p)
        masks = [2.0 * (rng.uniform(size=(T, B, 2 * (proj_size or H))) > 0.5)]
    kwargs = dict(num_layers=num_layers, bidirectional=True, lengths=lengths,
                  dropout_masks=masks)
    y, hn, cache = ref.stack_forward(mode, x, hx, params, **kwargs)
    r_y = rng.standard_normal(y.shape)
    r_hn = tuple(rng.standard_normal(s.shape) for s in as_tuple(hn))

    def loss():
        y, hn, _ = ref.stack_forward(mode, x, hx, params, **kwargs)
        total = np.sum(y * r_y)
        if with_dhn:
            total += sum(np.sum(s * r) for s, r in zip(as_tuple(hn), r_hn))
        return total

    dhn = (r_hn if mode == "lstm" else r_hn[0]) if with_dhn else None
    check_stack_gradients(loss, ref.stack_backward(r_y, dhn, cache), x, hx, params)


# ----------------------------------------------------------------------------
# Against PyTorch, where it is installed.
# ----------------------------------------------------------------------------

def torch_module(torch, mode, I, H, num_layers, bidirectional, params):
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional,
                  bias="bias_ih_l0" in params, dtype=torch.float64)
    if "weight_hr_l0" in params:
        kwargs["proj_size"] = params["weight_hr_l0"].shape[0]
    if mode == "lstm":
        module = torch.nn.LSTM(I, H, **kwargs)
    elif mode == "gru":
        module = torch.nn.GRU(I, H, **kwargs)
    else:
        module = torch.nn.RNN(I, H, nonlinearity=mode[4:], **kwargs)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    return module


def torch_run(torch, module, x, hx, lengths):
    """(y (T, B, D*H), hn) from torch, through pack/pad when lengths are given."""
    rnn_utils = torch.nn.utils.rnn
    T = x.shape[0]
    x = torch.from_numpy(x)
    hx = tuple(torch.from_numpy(s) for s in hx) if isinstance(hx, tuple) else torch.from_numpy(hx)
    if lengths is None:
        y, hn = module(x, hx)
    else:
        packed = rnn_utils.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        y, hn = module(packed, hx)
        y, _ = rnn_utils.pad_packed_sequence(y, total_length=T)
    return y.detach().numpy(), tuple(s.detach().numpy() for s in as_tuple(hn))


@pytest.mark.parametrize("lengths", [None, [3, 5, 1, 4]], ids=["full", "packed"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mode", MODES)
def test_single_layer_matches_torch(mode, bias, lengths):
    """Both directions of a one-layer bidirectional torch module: the
    backward one is the reference with reverse=True."""
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 4, 3, 2
    x, hx, params = make_stack(mode, T, B, I, H, 1, 2, bias)
    y_torch, hn_torch = torch_run(torch, torch_module(torch, mode, I, H, 1, True, params),
                                  x, hx, lengths)
    for d, suffix in enumerate(("", "_reverse")):
        inputs = {
            "x": x,
            "h0": as_tuple(hx)[0][d],
            "w_ih": params["weight_ih_l0" + suffix], "w_hh": params["weight_hh_l0" + suffix],
            "b_ih": params.get("bias_ih_l0" + suffix), "b_hh": params.get("bias_hh_l0" + suffix),
        }
        if mode == "lstm":
            inputs["c0"] = hx[1][d]
        y, states_n, _ = forward(mode, inputs, reverse=(d == 1), lengths=lengths)
        np.testing.assert_allclose(y, y_torch[..., d * H:(d + 1) * H], **TOL[np.float64])
        for s_n, s_torch in zip(states_n, hn_torch):
            np.testing.assert_allclose(s_n, s_torch[d], **TOL[np.float64])


@pytest.mark.parametrize("mode, proj_size", [(m, 0) for m in MODES] + [("lstm", 2)])
def test_stack_matches_torch(mode, proj_size):
    """Two bidirectional layers over a packed batch: outputs, final states and,
    through autograd, every gradient (an LSTM with projections too)."""
    torch = pytest.importorskip("torch")
    T, B, I, num_layers = 5, 4, 3, 2
    H = 3 if proj_size else 2
    lengths = [3, 5, 1, 4]
    x, hx, params = make_stack(mode, T, B, I, H, num_layers, 2, proj_size=proj_size)
    module = torch_module(torch, mode, I, H, num_layers, True, params)
    y, hn, cache = ref.stack_forward(mode, x, hx, params, num_layers, True, lengths)

    x_t = torch.from_numpy(x).requires_grad_()
    hx_t = tuple(torch.from_numpy(s).requires_grad_() for s in as_tuple(hx))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.tensor(lengths),
                                                     enforce_sorted=False)
    y_t, hn_t = module(packed, hx_t if mode == "lstm" else hx_t[0])
    y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(y_t, total_length=T)
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL[np.float64])
    for s, s_t in zip(as_tuple(hn), as_tuple(hn_t)):
        np.testing.assert_allclose(s, s_t.detach().numpy(), **TOL[np.float64])

    rng = np.random.default_rng(1)
    dy = rng.standard_normal(y.shape)
    dhn = tuple(rng.standard_normal(s.shape) for s in as_tuple(hn))
    torch.autograd.backward([y_t, *as_tuple(hn_t)],
                            [torch.from_numpy(dy), *map(torch.from_numpy, dhn)])
    dx, dhx, grads = ref.stack_backward(dy, dhn if mode == "lstm" else dhn[0], cache)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **TOL[np.float64])
    for ds, s_t in zip(as_tuple(dhx), hx_t):
        np.testing.assert_allclose(ds, s_t.grad.numpy(), **TOL[np.float64])
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), err_msg=name,
                                   **TOL[np.float64])


def test_projections_with_zoneout_and_recurrent_dropout_match_finite_differences():
    """One projected LSTM layer (P = 2 of H = 4), reversed, with lengths, zoneout masks and a
    recurrent mask, both of h's size P: every gradient, dw_hr last."""
    rng = np.random.default_rng(5)
    T, B, I, H, P = 4, 3, 2, 4, 2
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.uniform(-1, 1, (B, P)), rng.uniform(-1, 1, (B, H))
    w = [rng.uniform(-0.8, 0.8, s) for s in ((4 * H, I), (4 * H, P), (4 * H,), (4 * H,), (P, H))]
    zoneout = (rng.uniform(size=(T, B, P)) < 0.4).astype(np.float64)
    mask = 2.0 * (rng.uniform(size=(B, P)) < 0.5)
    kw = dict(reverse=True, lengths=[2, 4, 3], zoneout=zoneout, recurrent_mask=mask)
    r_y, r_h, r_c = rng.standard_normal((T, B, P)), rng.standard_normal((B, P)), rng.standard_normal((B, H))

    def loss():
        y, h_n, c_n, _ = ref.lstm_forward(x, h0, c0, *w[:4], w_hr=w[4], **kw)
        return np.sum(y * r_y) + np.sum(h_n * r_h) + np.sum(c_n * r_c)

    y, h_n, c_n, cache = ref.lstm_forward(x, h0, c0, *w[:4], w_hr=w[4], **kw)
    assert y.shape == (T, B, P) and h_n.shape == (B, P) and c_n.shape == (B, H)
    grads = ref.lstm_backward(r_y, r_h, r_c, cache)
    assert len(grads) == 8
    for name, g, a in zip(("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"), grads, [x, h0, c0] + w):
        assert g.shape == a.shape, name
        assert_gradient_matches(g, numeric_grad(loss, a, eps=FD_EPS), name)


def test_projections_refuse_bad_shapes():
    x, w = np.zeros((2, 1, 3)), np.zeros((8, 3))
    with pytest.raises(ValueError, match=r"w_hr \(projections, LSTM only\): expected shape \(P, H\) with 0 < P < H, "
                                         r"got \(2, 2\)"):
        ref.lstm_forward(x, None, None, w, np.zeros((8, 2)), None, None, w_hr=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"w_hh must have shape \(G\*H, P\) = \(8, 1\)"):
        ref.lstm_forward(x, None, None, w, np.zeros((8, 2)), None, None, w_hr=np.zeros((1, 2)))


# ----------------------------------------------------------------------------
# The layer-normalised cells (rnnfast.LayerNormLSTM / LayerNormGRU).
# ----------------------------------------------------------------------------

def _ln(v):  # the LN, written with np.var: over each row, biased variance, eps 1e-5
    return (v - v.mean(axis=1, keepdims=True)) / np.sqrt(v.var(axis=1, keepdims=True) + 1e-5)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def make_layernorm_inputs(gates, T, B, I, H, bias=True, seed=3):
    rng = np.random.default_rng(seed)
    u = lambda *s, r=0.8: rng.uniform(-r, r, s)  # noqa: E731
    inputs = dict(x=rng.standard_normal((T, B, I)), h0=u(B, H, r=1), c0=u(B, H, r=1) if gates == 4 else None,
                  w_ih=u(gates * H, I), w_hh=u(gates * H, H), b_ih=u(gates * H, r=0.5) if bias else None,
                  b_hh=u(gates * H, r=0.5) if bias else None, ln_ih_weight=1 + u(gates * H, r=0.3),
                  ln_hh_weight=1 + u(gates * H, r=0.3))
    if gates == 4:
        inputs.update(ln_cell_weight=1 + u(H, r=0.3), ln_cell_bias=u(H, r=0.3))
    else:
        del inputs["c0"]
    return inputs


def layernorm_forward(inputs, **kw):
    if "c0" in inputs:
        y, h_n, c_n, cache = ref.layernorm_lstm_forward(**inputs, **kw)
        return y, (h_n, c_n), cache
    y, h_n, cache = ref.layernorm_gru_forward(**inputs, **kw)
    return y, (h_n,), cache


def layernorm_backward(inputs, dy, dstates, cache):
    if "c0" in inputs:
        return ref.layernorm_lstm_backward(dy, *dstates, cache)
    return ref.layernorm_gru_backward(dy, *dstates, cache)


@pytest.mark.parametrize("gates", [4, 3], ids=["lstm", "gru"])
def test_layernorm_cells_one_step_is_the_equations(gates):
    """T = 1 against the issue's equations, written out again here with np.var."""
    p = make_layernorm_inputs(gates, 1, 3, 4, 5)
    y, states, _ = layernorm_forward(p)
    a_ih = _ln(p["x"][0] @ p["w_ih"].T) * p["ln_ih_weight"] + p["b_ih"]
    a_hh = _ln(p["h0"] @ p["w_hh"].T) * p["ln_hh_weight"] + p["b_hh"]
    if gates == 4:
        i, f, g, o = np.split(a_ih + a_hh, 4, axis=1)
        c = _sig(f) * p["c0"] + _sig(i) * np.tanh(g)
        h = _sig(o) * np.tanh(_ln(c) * p["ln_cell_weight"] + p["ln_cell_bias"])
        np.testing.assert_allclose(states[1], c, **TOL[np.float64])
    else:
        (ir, iz, i_n), (hr, hz, hn) = np.split(a_ih, 3, axis=1), np.split(a_hh, 3, axis=1)
        r, z = _sig(ir + hr), _sig(iz + hz)
        h = (1 - z) * np.tanh(i_n + r * hn) + z * p["h0"]
    np.testing.assert_allclose(y[0], h, **TOL[np.float64])
    np.testing.assert_allclose(states[0], h, **TOL[np.float64])


@pytest.mark.parametrize("regularised", [False, True], ids=["plain", "zoneout_and_recurrent_mask"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("reverse, lengths", [(False, None), (True, UNSORTED_LENGTHS)],
                         ids=["forward", "reverse_lengths"])
@pytest.mark.parametrize("gates", [4, 3], ids=["lstm", "gru"])
def test_layernorm_gradients_match_finite_differences(gates, reverse, lengths, bias, regularised):
    T, B, I, H = 4, 3, 2, 3
    p = make_layernorm_inputs(gates, T, B, I, H, bias)
    rng = np.random.default_rng(11)
    kw = dict(reverse=reverse, lengths=lengths)
    if regularised:
        kw.update(zoneout=(rng.uniform(size=(T, B, H)) < 0.4).astype(np.float64),
                  recurrent_mask=2.0 * (rng.uniform(size=(B, H)) < 0.5))
    y, states, cache = layernorm_forward(p, **kw)
    r_y = rng.standard_normal(y.shape)
    r_states = [rng.standard_normal(s.shape) for s in states]

    def loss():
        y, states, _ = layernorm_forward(p, **kw)
        return np.sum(y * r_y) + sum(np.sum(s * r) for s, r in zip(states, r_states))

    grads = layernorm_backward(p, r_y, r_states, cache)
    assert len(grads) == len(p)
    for (name, a), g in zip(p.items(), grads):
        if a is None:
            assert g is None, name
        else:
            assert g.shape == a.shape, name
            assert_gradient_matches(g, numeric_grad(loss, a, eps=FD_EPS), name)


@pytest.mark.parametrize("mode", ["layernorm_lstm", "layernorm_gru"])
def test_layernorm_stack_gradients_match_finite_differences(mode):
    """Two bidirectional layers, lengths, inter-layer dropout: every parameter by its torch-style
    name (ln_ih_weight_l{k}, ..., _reverse)."""
    T, B, I, H, L = 3, 3, 2, 2, 2
    base = "lstm" if mode == "layernorm_lstm" else "gru"
    x, hx, params = make_stack(base, T, B, I, H, L, 2)
    rng = np.random.default_rng(2)
    G = GATES[base]
    for k in range(L):
        for suffix in ("", "_reverse"):
            params[f"ln_ih_weight_l{k}{suffix}"] = 1 + rng.uniform(-0.3, 0.3, G * H)
            params[f"ln_hh_weight_l{k}{suffix}"] = 1 + rng.uniform(-0.3, 0.3, G * H)
            if base == "lstm":
                params[f"ln_cell_weight_l{k}{suffix}"] = 1 + rng.uniform(-0.3, 0.3, H)
                params[f"ln_cell_bias_l{k}{suffix}"] = rng.uniform(-0.3, 0.3, H)
    kwargs = dict(num_layers=L, bidirectional=True, lengths=[2, 3, 1],
                  dropout_masks=[2.0 * (rng.uniform(size=(T, B, 2 * H)) > 0.5)])
    y, hn, cache = ref.stack_forward(mode, x, hx, params, **kwargs)
    r_y = rng.standard_normal(y.shape)
    r_hn = tuple(rng.standard_normal(s.shape) for s in as_tuple(hn))

    def loss():
        y, hn, _ = ref.stack_forward(mode, x, hx, params, **kwargs)
        return np.sum(y * r_y) + sum(np.sum(s * r) for s, r in zip(as_tuple(hn), r_hn))

    check_stack_gradients(loss, ref.stack_backward(r_y, r_hn if base == "lstm" else r_hn[0], cache), x, hx, params)


def test_layernorm_shapes_are_checked():
    p = make_layernorm_inputs(4, 2, 1, 3, 2)
    with pytest.raises(ValueError, match=r"ln_ih_weight and ln_hh_weight must have shape \(8,\)"):
        ref.layernorm_lstm_forward(**dict(p, ln_hh_weight=np.ones(2)))
    with pytest.raises(ValueError, match=r"ln_cell_weight and ln_cell_bias must have shape \(2,\)"):
        ref.layernorm_lstm_forward(**dict(p, ln_cell_bias=np.ones(8)))


def test_shapes_are_named_in_the_messages_with_and_without_projections():
    x = np.zeros((2, 1, 2))
    with pytest.raises(ValueError, match=r"w_hh must have shape \(G\*H, H\) = \(8, 2\) for G = 4 gates, "
                                         r"got \(9, 2\)"):
        ref.lstm_forward(x, None, None, np.zeros((8, 2)), np.zeros((9, 2)), None, None)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(G\*H, H\) = \(8, 2\) for G = 4 gates, "
                                         r"got \(6, 2\)"):
        ref.lstm_forward(x, None, None, np.zeros((6, 2)), np.zeros((6, 2)), None, None)
    with pytest.raises(ValueError, match=r"w_hh must have shape .* got \(\)"):
        ref.gru_forward(x, None, np.zeros((6, 2)), None, None, None)
    with pytest.raises(ValueError, match=r"w_ih must have shape \(8, 2\), got \(9, 2\)"):
        ref.lstm_forward(x, None, None, np.zeros((9, 2)), np.zeros((8, 2)), None, None)
    with pytest.raises(ValueError, match=r"w_hr \(projections, LSTM only\).*for _GRUCell"):
        ref.stack_forward("gru", x, None, {"weight_ih_l0": np.zeros((12, 2)), "weight_hh_l0": np.zeros((12, 2)),
                                           "weight_hr_l0": np.zeros((2, 4))})
    _, _, params = make_stack("lstm", 2, 1, 2, 3, 2, 1, proj_size=2)
    del params["weight_hr_l1"]
    with pytest.raises(ValueError, match="every layer and direction has projections or none does"):
        ref.stack_forward("lstm", x, None, params, num_layers=2)


def test_the_reduced_precisions_round_what_a_variant_multiplies():
    # One step from given states, written out from the equations: bfloat16 rounds W_hr and the
    # o * tanh(c) it multiplies, int8 quantizes them; a layer-normalised GRU normalises the rounded
    # products in float32.
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    rb = ref.round_to_bfloat16
    x, (h0, c0), p = make_stack("lstm", 1, 2, 3, 4, 1, 1, proj_size=2)
    x, h0, c0 = (a.astype(np.float32) for a in (x, h0, c0))
    p = {k: v.astype(np.float32) for k, v in p.items()}
    y, _ = ref.bfloat16_stack_forward("lstm", x, (h0, c0), p)
    a = (rb(x[0]) @ rb(p["weight_ih_l0"]).T + p["bias_ih_l0"] + rb(h0[0]) @ rb(p["weight_hh_l0"]).T
         + p["bias_hh_l0"])
    i, f, g, o = np.split(a, 4, axis=1)
    c = sig(f) * c0[0] + sig(i) * np.tanh(g)
    want = rb(sig(o) * np.tanh(c)) @ rb(p["weight_hr_l0"]).T
    np.testing.assert_allclose(y[0], want, rtol=1e-5, atol=1e-6)
    # int8: x_t in two digits, h_{t-1} and o * tanh(c) in one, each weight's rows quantized.
    y, _ = ref.int8_stack_forward("lstm", x, (h0, c0), p)
    q = {k: ref.quantize_rows(v) for k, v in p.items() if k.startswith("weight_")}
    a = (ref.int8_input_product(x[0], *q["weight_ih_l0"]) + p["bias_ih_l0"]
         + ref.int8_product(h0[0], *q["weight_hh_l0"]) + p["bias_hh_l0"])
    i, f, g, o = np.split(a, 4, axis=1)
    c = sig(f) * c0[0] + sig(i) * np.tanh(g)
    want = ref.int8_product(sig(o) * np.tanh(c), *q["weight_hr_l0"])
    np.testing.assert_allclose(y[0], want, rtol=1e-5, atol=1e-6)

    x, h0, p = make_stack("gru", 1, 2, 3, 4, 1, 1)
    x, h0 = x.astype(np.float32), h0.astype(np.float32)
    p = {k: v.astype(np.float32) for k, v in p.items()}
    p.update(ln_ih_weight_l0=np.linspace(0.5, 1.5, 12, dtype=np.float32),
             ln_hh_weight_l0=np.linspace(1.5, 0.5, 12, dtype=np.float32))
    y, _ = ref.bfloat16_stack_forward("layernorm_gru", x, h0, p)

    def ln(v, gain):
        return (v - v.mean(axis=1, keepdims=True)) / np.sqrt(v.var(axis=1, keepdims=True) + 1e-5) * gain
    ai = ln(rb(x[0]) @ rb(p["weight_ih_l0"]).T, p["ln_ih_weight_l0"]) + p["bias_ih_l0"]
    ah = ln(rb(h0[0]) @ rb(p["weight_hh_l0"]).T, p["ln_hh_weight_l0"]) + p["bias_hh_l0"]
    r, z = sig(ai[:, :4] + ah[:, :4]), sig(ai[:, 4:8] + ah[:, 4:8])
    n = np.tanh(ai[:, 8:] + r * ah[:, 8:])
    np.testing.assert_allclose(y[0], (1 - z) * n + z * h0[0], rtol=1e-5, atol=1e-6)


def test_int8_stack_takes_pairs_as_tuples_or_lists_and_float_weights_as_nested_lists():
    x, _, params = make_stack("gru", 3, 2, 2, 3, 1, 1)
    x = x.astype(np.float32)
    want = ref.int8_stack_forward("gru", x, None, params)[0]
    as_lists = {k: v.tolist() for k, v in params.items()}
    as_pairs = {k: list(ref.quantize_rows(v.astype(np.float32))) if k.startswith("weight_") else v
                for k, v in params.items()}
    for given in (as_lists, as_pairs):
        np.testing.assert_array_equal(ref.int8_stack_forward("gru", x, None, given)[0], want)
    with pytest.raises(ValueError, match=r"weight_ih_l0: expected int8 weights \(N, K\) and N scales"):
        ref.int8_stack_forward("gru", x, None, dict(params, weight_ih_l0=(np.zeros((9, 2), np.int8), np.ones(3))))


@pytest.mark.parametrize("mode", ["layernorm_lstm", "layernorm_gru"])
def test_layernorm_stack_names_each_parameter_by_its_role(mode):
    """One layer of the stack is the layer function on the arrays of the same names (the finite
    differences alone would pass a stack that swapped two of them consistently)."""
    lstm = mode == "layernorm_lstm"
    p = make_layernorm_inputs(4 if lstm else 3, 3, 2, 4, 5)
    names = dict(w_ih="weight_ih_l0", w_hh="weight_hh_l0", b_ih="bias_ih_l0", b_hh="bias_hh_l0",
                 ln_ih_weight="ln_ih_weight_l0", ln_hh_weight="ln_hh_weight_l0", ln_cell_weight="ln_cell_weight_l0",
                 ln_cell_bias="ln_cell_bias_l0")
    params = {names[k]: v for k, v in p.items() if k in names}
    hx = (p["h0"][None], p["c0"][None]) if lstm else p["h0"][None]
    y, hn, _ = ref.stack_forward(mode, p["x"], hx, params)
    want_y, want_states, _ = layernorm_forward(p)
    np.testing.assert_array_equal(y, want_y)
    for got, want in zip(as_tuple(hn), want_states):
        np.testing.assert_array_equal(got[0], want)


def test_stack_parameters_outside_their_mode_are_refused():
    x, hx, params = make_stack("gru", 2, 1, 2, 3, 1, 1)
    with pytest.raises(ValueError, match="layer-norm parameters are for the layernorm_\\* modes, not 'gru'"):
        ref.stack_forward("gru", x, hx, dict(params, ln_ih_weight_l0=np.ones(9)))
    x, hx, params = make_stack("lstm", 2, 1, 2, 3, 1, 1, proj_size=2)
    params.update(ln_ih_weight_l0=np.ones(12), ln_hh_weight_l0=np.ones(12), ln_cell_weight_l0=np.ones(3),
                  ln_cell_bias_l0=np.zeros(3))
    with pytest.raises(ValueError, match="projections are defined for the plain LSTM only"):
        ref.stack_forward("layernorm_lstm", x, hx, params)


def test_int8_pairs_need_int8_values_and_two_row_float_weights_are_weights():
    x, _, params = make_stack("rnn_tanh", 3, 2, 2, 2, 1, 1)  # 2-row weights: a nested list of two rows
    x = x.astype(np.float32)
    want = ref.int8_stack_forward("rnn_tanh", x, None, params)[0]
    got = ref.int8_stack_forward("rnn_tanh", x, None, {k: v.tolist() for k, v in params.items()})[0]
    np.testing.assert_array_equal(got, want)
