"""The training toolkit: Linear, Embedding, losses, optimisers, clipping, truncated BPTT, batching,
checkpoints, and the `python -m rnnfast` demo."""
import copy
import math
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import rnnfast
from rnnfast import optim

from conftest import assert_close, numeric_grad

FD_RTOL = 1e-7  # central differences in float64 with eps = 1e-6


# ---- Linear -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 3, 4), (3, 4), (4,)], ids=["3d", "2d", "1d"])
def test_linear_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(0)
    lin = rnnfast.Linear(4, 3, dtype="float64", seed=1)
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape[:-1] + (3,))
    loss = lambda: float(np.sum(lin(x) * r))
    lin(x)
    dx = lin.backward(r)
    assert_close(dx, numeric_grad(loss, x), FD_RTOL, "dx")
    for name, p in lin.parameters().items():
        assert_close(lin.grads[name], numeric_grad(loss, p), FD_RTOL, name)


def test_linear_with_row_counts_just_past_a_chunk_of_rows():
    """N = 163 rows (a chunk of 160 on AVX-512 and 3 more), O = 125 rows of dW (120 on AVX2 and 5),
    F = 530 past one k-block of 512: against NumPy, on one thread (every row in one call)."""
    rng = np.random.default_rng(2)
    lin = rnnfast.Linear(530, 125, dtype="float64", seed=2)
    x, r = rng.standard_normal((163, 530)), rng.standard_normal((163, 125))
    w, b = lin.state_dict()["weight"], lin.state_dict()["bias"]
    before = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(1)
        assert_close(lin(x), x @ w.T + b, 1e-12, "y")
        assert_close(lin.backward(r), r @ w, 1e-12, "dx")
    finally:
        rnnfast.set_num_threads(before)
    assert_close(lin.grads["weight"], r.T @ x, 1e-12, "dweight")


def test_linear_is_per_time_step_in_either_layout():
    rng = np.random.default_rng(0)
    lin = rnnfast.Linear(4, 6, seed=0)
    x = rng.standard_normal((7, 3, 4)).astype(np.float32)
    y = lin(x)
    assert y.shape == (7, 3, 6) and y.dtype == np.float32
    assert np.array_equal(lin(x.swapaxes(0, 1)), y.swapaxes(0, 1))
    rows = x.reshape(21, 4)  # 21 rows: micro-kernel blocks of 6, 6, 5 and 4 rows on AVX2
    for i in (0, 13, 20):  # a row alone gives the bits it gets among the others
        assert np.array_equal(lin(rows[i:i + 1])[0], y.reshape(21, 6)[i])
    assert_close(y[2, 1], lin.state_dict()["weight"] @ x[2, 1] + lin.state_dict()["bias"], 1e-6, "one step")


def test_linear_init_names_and_module_conventions():
    lin = rnnfast.Linear(16, 5, seed=3)
    sd = lin.state_dict()
    assert list(sd) == ["weight", "bias"] and sd["weight"].shape == (5, 16) and sd["bias"].shape == (5,)
    assert all(np.all(np.abs(p) <= 0.25) for p in sd.values())  # U(-1/sqrt(16), 1/sqrt(16)), torch's init
    assert list(rnnfast.Linear(3, 2, bias=False).state_dict()) == ["weight"]
    assert np.array_equal(rnnfast.Linear(16, 5, seed=3).state_dict()["weight"], sd["weight"])
    x = np.ones((2, 16), np.float32)
    lin(x)
    lin.backward(np.ones((2, 5), np.float32))
    once = lin.grads["weight"].copy()
    lin(x)
    lin.backward(np.ones((2, 5), np.float32))
    assert np.array_equal(lin.grads["weight"], 2 * once)  # added into
    lin.zero_grad()
    assert not any(g.any() for g in lin.grads.values())
    lin.eval()(x)
    with pytest.raises(RuntimeError, match="eval"):
        lin.backward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="in_features 16"):
        lin(np.ones((2, 15), np.float32))
    with pytest.raises(TypeError, match="floating"):
        lin(np.ones((2, 16), np.int64))


def test_linear_load_state_dict_is_all_or_nothing_and_torch_compatible():
    lin = rnnfast.Linear(3, 2, seed=0)
    before = lin.state_dict()
    with pytest.raises(ValueError, match="bias"):
        lin.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)})
    with pytest.raises(KeyError, match="bias"):
        lin.load_state_dict({"weight": np.zeros((2, 3))})
    assert all(np.array_equal(before[k], v) for k, v in lin.state_dict().items())
    torch = pytest.importorskip("torch")
    t = torch.nn.Linear(3, 2).double()
    lin.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    assert_close(lin(x), t(torch.from_numpy(x)).detach().numpy(), 1e-6, "torch.nn.Linear")


def test_linear_and_embedding_copy_and_pickle():
    for m, x in ((rnnfast.Linear(3, 2, seed=0), np.ones((4, 3), np.float32)),
                 (rnnfast.Embedding(5, 2, seed=0), np.array([1, 4]))):
        for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert np.array_equal(clone(x), m(x))
            clone.load_state_dict({k: np.zeros_like(p) for k, p in clone.state_dict().items()})
            assert m.state_dict()["weight"].any()  # the clone owns its parameters


# ---- Embedding --------------------------------------------------------------------------------

def test_embedding_gradient_matches_finite_differences_with_repeats():
    rng = np.random.default_rng(0)
    emb = rnnfast.Embedding(7, 3, dtype="float64", seed=0)
    ids = np.array([[1, 4, 1], [6, 1, 0]])  # id 1 three times: its gradient rows add up
    r = rng.standard_normal((2, 3, 3))
    loss = lambda: float(np.sum(emb(ids) * r))
    emb(ids)
    assert emb.backward(r) is None
    assert_close(emb.grads["weight"], numeric_grad(loss, emb.parameters()["weight"]), FD_RTOL, "weight")
    untouched = [2, 3, 5]
    assert not emb.grads["weight"][untouched].any()


def test_embedding_lookup_padding_and_checks():
    emb = rnnfast.Embedding(5, 4, padding_idx=0, seed=1)
    w = emb.state_dict()["weight"]
    assert list(emb.state_dict()) == ["weight"] and w.dtype == np.float32 and not w[0].any()
    ids = np.array([[0, 3], [2, 0]])
    out = emb(ids)
    assert out.shape == (2, 2, 4) and np.array_equal(out[0, 1], w[3])
    emb.backward(np.ones_like(out))
    assert not emb.grads["weight"][0].any()  # the padding row gets no gradient
    assert np.array_equal(emb.grads["weight"][[2, 3]], np.ones((2, 4), np.float32))
    assert rnnfast.Embedding(5, 2, padding_idx=-1).padding_idx == 4
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        emb(np.array([1, 5]))
    with pytest.raises(IndexError):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([1.0]))
    torch = pytest.importorskip("torch")
    t = torch.nn.Embedding(5, 4, padding_idx=0)
    t.load_state_dict({"weight": torch.from_numpy(w)})
    assert np.array_equal(emb(ids), t(torch.from_numpy(ids)).detach().numpy())


# ---- losses -----------------------------------------------------------------------------------

def test_cross_entropy_gradient_with_ignore_index_and_mask():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 5)) * 3
    targets = rng.integers(0, 5, (4, 3))
    targets[1, 2] = -100
    mask = rng.random((4, 3)) > 0.3
    for reduction in ("mean", "sum"):
        loss, grad = rnnfast.cross_entropy(logits, targets, mask=mask, reduction=reduction)
        f = lambda: rnnfast.cross_entropy(logits, targets, mask=mask, reduction=reduction)[0]
        assert_close(grad, numeric_grad(f, logits), FD_RTOL, reduction)
    counted = (targets != -100) & mask
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(counted, targets, 0)[..., None], -1)[..., 0]
    assert math.isclose(rnnfast.cross_entropy(logits, targets, mask=mask)[0], -picked[counted].mean(), rel_tol=1e-12)
    per, _ = rnnfast.cross_entropy(logits, targets, mask=mask, reduction="none")
    assert per.shape == (4, 3) and not per[~counted].any()
    assert_close(per[counted], -picked[counted], 1e-12, "none")


def test_cross_entropy_is_stable_and_handles_nothing_to_count():
    logits = np.array([[1e4, 0.0, -1e4], [5.0, 5.0, 5.0]], np.float32)
    loss, grad = rnnfast.cross_entropy(logits, np.array([1, 2]))
    assert math.isclose(loss, (1e4 + math.log(3)) / 2, rel_tol=1e-6) and np.all(np.isfinite(grad))
    assert grad.dtype == np.float32
    loss, grad = rnnfast.cross_entropy(logits, np.array([-100, -100]))
    assert loss == 0.0 and not grad.any()
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        rnnfast.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        rnnfast.cross_entropy(logits, np.array([0]))
    with pytest.raises(TypeError, match="integer"):
        rnnfast.cross_entropy(logits, np.array([0.0, 1.0]))


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits, targets = rng.standard_normal((6, 4, 7)), rng.integers(0, 7, (6, 4))
    targets[0, :2] = -100
    t = torch.from_numpy(logits).requires_grad_()
    ref = torch.nn.functional.cross_entropy(t.reshape(-1, 7), torch.from_numpy(targets).reshape(-1))
    ref.backward()
    loss, grad = rnnfast.cross_entropy(logits, targets)
    assert math.isclose(loss, ref.item(), rel_tol=1e-12)
    assert_close(grad, t.grad.numpy(), 1e-12, "grad")


def test_mse_loss_gradient_and_masks():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    loss, grad = rnnfast.mse_loss(pred, target)
    assert math.isclose(loss, float(np.mean((pred - target) ** 2)), rel_tol=1e-12)
    assert_close(grad, numeric_grad(lambda: rnnfast.mse_loss(pred, target)[0], pred), FD_RTOL, "plain")
    steps = rnnfast.lengths_mask([5, 2, 4])  # (T, B): one flag for both features of a step
    loss, grad = rnnfast.mse_loss(pred, target, mask=steps)
    assert math.isclose(loss, float(np.mean((pred - target)[steps] ** 2)), rel_tol=1e-12)
    assert_close(grad, numeric_grad(lambda: rnnfast.mse_loss(pred, target, mask=steps)[0], pred), FD_RTOL, "mask")
    assert not grad[~steps].any()
    with pytest.raises(ValueError, match="shape"):
        rnnfast.mse_loss(pred, target[:, :2])


# ---- optimisers -------------------------------------------------------------------------------

class Params:
    """A stand-in module: given parameter arrays and settable gradients."""

    def __init__(self, **arrays):
        self._p = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self._p.items()}

    def parameters(self):
        return self._p

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)


def run_steps(opt, m, grads):
    for g in grads:
        m.grads["w"][...] = g
        opt.step()
    return m.parameters()["w"]


def test_sgd_steps_match_hand_computed_values():
    m = Params(w=[1.0, -2.0])
    w = run_steps(optim.SGD(m, lr=0.1), m, [[0.5, -1.0]])
    assert np.allclose(w, [0.95, -1.9], rtol=0, atol=1e-15)
    # momentum 0.9: buf1 = g1, buf2 = 0.9 g1 + g2; Nesterov steps with g + 0.9 buf
    g1, g2 = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    m = Params(w=[0.0, 0.0])
    w = run_steps(optim.SGD(m, lr=0.1, momentum=0.9), m, [g1, g2])
    assert np.allclose(w, -0.1 * g1 - 0.1 * (0.9 * g1 + g2), rtol=0, atol=1e-15)
    m = Params(w=[0.0, 0.0])
    w = run_steps(optim.SGD(m, lr=0.1, momentum=0.9, nesterov=True), m, [g1, g2])
    assert np.allclose(w, -0.1 * (g1 + 0.9 * g1) - 0.1 * (g2 + 0.9 * (0.9 * g1 + g2)), rtol=0, atol=1e-15)
    m = Params(w=[2.0])
    w = run_steps(optim.SGD(m, lr=0.5, weight_decay=0.1), m, [[1.0]])
    assert np.allclose(w, [2.0 - 0.5 * (1.0 + 0.2)], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(m, lr=0.1, nesterov=True)


def test_adam_and_adamw_steps_match_hand_computed_values():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    g1, g2 = 0.5, -0.25
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1 ** 2
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2 ** 2
    step1 = lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)  # = lr * g1 / (|g1| + eps)
    step2 = lr * (m2 / (1 - b1 ** 2)) / (math.sqrt(v2 / (1 - b2 ** 2)) + eps)
    m = Params(w=[1.0])
    w = run_steps(optim.Adam(m, lr=lr), m, [[g1], [g2]])
    assert math.isclose(w[0], 1.0 - step1 - step2, rel_tol=1e-14)
    assert math.isclose(step1, lr * g1 / (abs(g1) + eps), rel_tol=1e-12)
    m = Params(w=[1.0])  # AdamW: decay the weight first, then the Adam step
    w = run_steps(optim.AdamW(m, lr=lr, weight_decay=0.1), m, [[g1]])
    assert math.isclose(w[0], 1.0 * (1 - lr * 0.1) - step1, rel_tol=1e-14)


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
])
def test_optimisers_match_torch_step_by_step(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = Params(w=rng.standard_normal((3, 4)), b=rng.standard_normal(4))
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in m.parameters().values()]
    ours, theirs = getattr(optim, name)(m, **kwargs), getattr(torch.optim, name)(tp, **kwargs)
    for _ in range(6):
        for (k, p), t in zip(m.parameters().items(), tp):
            g = rng.standard_normal(p.shape)
            m.grads[k][...] = g
            t.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
        for (k, p), t in zip(m.parameters().items(), tp):
            assert_close(p, t.detach().numpy(), 1e-12, f"{name} {k}")


def test_optimiser_state_dict_round_trip_and_all_or_nothing():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(3) for _ in range(5)]
    a = Params(w=np.ones(3))
    opt_a = optim.Adam(a, lr=0.1)
    run_steps(opt_a, a, grads[:3])
    b = Params(w=a.parameters()["w"].copy())
    opt_b = optim.Adam(b, lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.lr == 0.1 and opt_b.step_count == 3  # torch restores hyperparameters too
    assert np.array_equal(run_steps(opt_a, a, grads[3:]), run_steps(opt_b, b, grads[3:]))
    before = opt_b.state_dict()
    bad = dict(before, **{"state.0.w.exp_avg": np.zeros(4)})
    with pytest.raises(ValueError, match="exp_avg"):
        opt_b.load_state_dict(bad)
    with pytest.raises(ValueError, match="SGD"):
        optim.Adam(b).load_state_dict(dict(before, type=np.array("SGD")))
    with pytest.raises(ValueError, match="state is of Adam"):
        optim.SGD(b, lr=0.1, momentum=0.9).load_state_dict(before)
    with pytest.raises(KeyError, match="max_exp_avg_sq"):  # says amsgrad, has no buffer for it
        opt_b.load_state_dict(dict(before, **{"hparam.amsgrad": np.array(1.0)}))
    after = opt_b.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("saved,fresh", [
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), lambda p: optim.SGD(p, lr=5.0)),
    (lambda p: optim.SGD(p, lr=0.1), lambda p: optim.SGD(p, lr=5.0, momentum=0.5)),
    (lambda p: optim.Adam(p, lr=0.1, amsgrad=True), lambda p: optim.Adam(p)),
    (lambda p: optim.AdamW(p, lr=0.1), lambda p: optim.AdamW(p, amsgrad=True)),
])
def test_optimiser_load_state_dict_brings_the_buffers_its_hyperparameters_need(saved, fresh):
    """As torch's: the state decides momentum, nesterov and amsgrad, and so which buffers there are."""
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(3) for _ in range(6)]
    a = Params(w=np.ones(3))
    opt_a = saved(a)
    run_steps(opt_a, a, grads[:3])
    b = Params(w=a.parameters()["w"].copy())
    opt_b = fresh(b)
    opt_b.load_state_dict(opt_a.state_dict())
    assert repr(opt_b) == repr(opt_a) and opt_b.state_dict().keys() == opt_a.state_dict().keys()
    assert np.array_equal(run_steps(opt_a, a, grads[3:]), run_steps(opt_b, b, grads[3:]))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_optimiser_state_saved_without_its_flags_still_loads(amsgrad):
    """States written before nesterov and amsgrad were saved: amsgrad shows in the buffers."""
    p = Params(w=np.ones(3))
    old = {k: v for k, v in optim.Adam(p, lr=0.1, amsgrad=amsgrad).state_dict().items() if k != "hparam.amsgrad"}
    opt = optim.Adam(p, amsgrad=not amsgrad)
    opt.load_state_dict(old)
    assert opt.lr == 0.1 and opt.amsgrad is amsgrad


@pytest.mark.parametrize("key,value,match", [
    ("hparam.lr", -1.0, "lr"), ("hparam.lr", np.nan, "lr"), ("hparam.momentum", -0.5, "momentum"),
    ("hparam.nesterov", 0.5, "nesterov"), ("hparam.nesterov", np.nan, "nesterov"),
    ("hparam.dampening", 0.5, "nesterov"),  # nesterov needs dampening 0
])
def test_optimiser_load_state_dict_checks_hyperparameters_as_the_constructor_does(key, value, match):
    p = Params(w=np.ones(3))
    opt = optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)
    run_steps(opt, p, [np.ones(3)])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(dict(before, **{key: np.array(value)}))
    after = opt.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    opt.load_state_dict(dict(before, **{"hparam.nesterov": np.array(True)}))  # a bool array is fine
    with pytest.raises(ValueError, match="betas"):
        adam = optim.Adam(p)
        adam.load_state_dict(dict(adam.state_dict(), **{"hparam.betas": np.array([1.0, 0.999])}))


def test_optimiser_steps_real_modules_and_follows_load_state_dict():
    lstm, head = rnnfast.LSTM(3, 4, seed=0), rnnfast.Linear(4, 2, seed=0)
    opt = optim.SGD([lstm, head], lr=1.0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y, _ = lstm(x)
    head(y)
    lstm.backward(head.backward(np.ones((5, 2, 2), np.float32)))
    before = {k: p.copy() for k, p in lstm.parameters().items()}
    opt.step()
    for k, p in lstm.parameters().items():
        assert np.array_equal(p, before[k] - lstm.grads[k])
    lstm.load_state_dict(before)  # swaps the module's arrays: the optimiser must follow
    opt.step()
    for k, p in lstm.parameters().items():
        assert np.array_equal(p, before[k] - lstm.grads[k])


# ---- gradient clipping ------------------------------------------------------------------------

def test_clip_grad_norm_returns_norm_before_clipping():
    m = Params(w=np.zeros(2), b=np.zeros(1))
    m.grads["w"][...] = [3.0, 0.0]
    m.grads["b"][...] = [4.0]
    assert rnnfast.clip_grad_norm(m, 10.0) == 5.0 and m.grads["w"][0] == 3.0  # below: untouched
    assert rnnfast.clip_grad_norm(m, 1.0) == 5.0
    assert math.isclose(math.hypot(*m.grads["w"], *m.grads["b"]), 1.0, rel_tol=1e-6)
    m.grads["w"][...] = [-7.0, 1.0]
    assert rnnfast.clip_grad_norm(m, 100.0, norm_type=math.inf) == 7.0


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = Params(w=np.zeros((3, 3)), b=np.zeros(3))
    for k in m.grads:
        m.grads[k][...] = rng.standard_normal(m.grads[k].shape)
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in m.grads.values()]
    for t, g in zip(ts, m.grads.values()):
        t.grad = torch.from_numpy(g.copy())
    ref = torch.nn.utils.clip_grad_norm_(ts, 0.5)
    assert math.isclose(rnnfast.clip_grad_norm(m, 0.5), ref.item(), rel_tol=1e-12)
    for t, g in zip(ts, m.grads.values()):
        assert_close(g, t.grad.numpy(), 1e-12, "clipped")


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_clip_grad_norm_leaves_non_finite_gradients_alone(bad):
    m = Params(w=np.zeros(3))
    m.grads["w"][...] = [1.0, bad, 2.0]
    before = m.grads["w"].copy()
    norm = rnnfast.clip_grad_norm(m, 1.0)
    assert not math.isfinite(norm) and (math.isnan(norm) or norm == math.inf)
    assert np.array_equal(m.grads["w"], before, equal_nan=True)
    with pytest.raises(FloatingPointError, match="norm"):
        rnnfast.clip_grad_norm(m, 1.0, error_if_nonfinite=True)
    assert np.array_equal(m.grads["w"], before, equal_nan=True)


# ---- truncated BPTT ---------------------------------------------------------------------------

def _tbptt_problem(mode, batch_first=False):
    rng = np.random.default_rng(0)
    make = {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "rnn": rnnfast.RNN}[mode]
    rnn = make(3, 5, num_layers=2, batch_first=batch_first, dtype="float64", seed=0)
    x = rng.standard_normal((9, 2, 3))
    target = rng.standard_normal((9, 2, 5))
    if batch_first:
        x, target = x.swapaxes(0, 1).copy(), target.swapaxes(0, 1).copy()
    return rnn, x, target


def _chunk_loss(target, batch_first):
    def loss_fn(y, t0, t1):
        return rnnfast.mse_loss(y, target[:, t0:t1] if batch_first else target[t0:t1], reduction="sum")
    return loss_fn


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_tbptt_with_k_at_least_T_is_full_bptt(mode, batch_first):
    rnn, x, target = _tbptt_problem(mode, batch_first)
    y, h_full = rnn(x)
    loss, dy = rnnfast.mse_loss(y, target, reduction="sum")
    dx, _ = rnn.backward(dy)
    full = {k: g.copy() for k, g in rnn.grads.items()}
    for k in (9, 50):
        rnn.zero_grad()
        res = rnnfast.tbptt(rnn, x, k, _chunk_loss(target, batch_first))
        assert res.losses == [loss]
        assert np.array_equal(res.grad_input, dx)
        assert all(np.array_equal(rnn.grads[n], full[n]) for n in full)
        states = res.state if mode == "lstm" else (res.state,)
        assert all(np.array_equal(a, b) for a, b in zip(states, h_full if mode == "lstm" else (h_full,)))


def test_tbptt_cuts_the_gradient_between_chunks_and_carries_the_state():
    rnn, x, target = _tbptt_problem("lstm")
    y_full, _ = rnn.eval()(x)
    rnn.train()
    calls = []
    res = rnnfast.tbptt(rnn, x, 4, _chunk_loss(target, False), after_chunk=lambda t0, t1: calls.append((t0, t1)))
    assert calls == [(0, 4), (4, 8), (8, 9)] and len(res.losses) == 3
    got = {k: g.copy() for k, g in rnn.grads.items()}
    # by hand: each chunk from the previous chunk's final state, taken as a constant
    rnn.zero_grad()
    state, total = None, 0.0
    for t0, t1 in calls:
        y, state = rnn(x[t0:t1], state)
        assert_close(y, y_full[t0:t1], 1e-12, "the carried state continues the sequence")
        loss, dy = rnnfast.mse_loss(y, target[t0:t1], reduction="sum")
        rnn.backward(dy)
        total += loss
    assert math.isclose(sum(res.losses), total, rel_tol=1e-12)
    assert all(np.array_equal(rnn.grads[k], got[k]) for k in got)
    with pytest.raises(ValueError, match="bidirectional"):
        rnnfast.tbptt(rnnfast.GRU(3, 4, bidirectional=True), x, 4, _chunk_loss(target, False))


# ---- data -------------------------------------------------------------------------------------

def test_one_hot_and_lengths_mask():
    oh = rnnfast.one_hot(np.array([[2, 0], [1, 2]]), 3)
    assert oh.shape == (2, 2, 3) and oh.dtype == np.float32
    assert np.array_equal(oh.argmax(-1), [[2, 0], [1, 2]]) and np.array_equal(oh.sum(-1), np.ones((2, 2)))
    with pytest.raises(IndexError):
        rnnfast.one_hot([3], 3)
    with pytest.raises(TypeError):
        rnnfast.one_hot([0.5], 3)
    assert np.array_equal(rnnfast.lengths_mask([2, 3]), [[True, True], [True, True], [False, True]])
    assert rnnfast.lengths_mask([2, 3], steps=4, batch_first=True).shape == (2, 4)


def test_batches_pad_shuffle_and_targets():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 2)) for n in (3, 5, 1, 4, 2)]
    labels = [0, 1, 2, 3, 4]
    it = rnnfast.Batches(seqs, 2, targets=labels, shuffle=True, seed=7)
    assert len(it) == 3
    epoch1, epoch2 = list(it), list(it)
    seen = np.concatenate([b.index for b in epoch1])
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert not all(np.array_equal(a.index, b.index) for a, b in zip(epoch1, epoch2))  # reshuffled per epoch
    again = list(rnnfast.Batches(seqs, 2, targets=labels, shuffle=True, seed=7))
    assert all(np.array_equal(a.index, b.index) for a, b in zip(epoch1, again))  # same seed, same order
    for b in epoch1:
        assert b.x.shape == (b.lengths.max(), len(b.index), 2)
        assert np.array_equal(b.y, b.index) and np.array_equal(b.lengths, [len(seqs[i]) for i in b.index])
        for j, i in enumerate(b.index):
            assert np.array_equal(b.x[: len(seqs[i]), j], seqs[i]) and not b.x[len(seqs[i]):, j].any()
    steps = [np.arange(len(s)) for s in seqs]
    b = next(iter(rnnfast.Batches(seqs, 5, targets=steps, batch_first=True)))
    assert b.x.shape == (5, 5, 2) and b.y.shape == (5, 5) and b.y[2, 1] == -100 and b.y[1, 4] == 4
    assert len(rnnfast.Batches(seqs, 2, drop_last=True)) == 2


def test_padded_batch_with_lengths_and_mask_equals_one_by_one():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 3)) for n in (4, 7, 2)]
    tgts = [rng.integers(0, 4, n) for n in (4, 7, 2)]
    gru, head = rnnfast.GRU(3, 6, dtype="float64", seed=0), rnnfast.Linear(6, 4, dtype="float64", seed=0)
    b = next(iter(rnnfast.Batches(seqs, 3, targets=tgts)))
    y, _ = gru(b.x, lengths=b.lengths)
    batch_loss, _ = rnnfast.cross_entropy(head(y), b.y, reduction="sum")  # padding targets are -100
    one_by_one = sum(rnnfast.cross_entropy(head(gru(s[:, None].copy())[0])[:, 0], t, reduction="sum")[0]
                     for s, t in zip(seqs, tgts))
    assert math.isclose(batch_loss, one_by_one, rel_tol=1e-12)


# ---- checkpoints ------------------------------------------------------------------------------

def _trained_model(seed=0):
    emb, lstm, head = rnnfast.Embedding(6, 3, seed=seed), rnnfast.LSTM(3, 4, seed=seed), rnnfast.Linear(4, 6, seed=seed)
    opt = optim.Adam([emb, lstm, head], lr=0.01)
    ids = np.random.default_rng(seed).integers(0, 6, (5, 2))
    for _ in range(2):
        y, _ = lstm(emb(ids))
        _, dlogits = rnnfast.cross_entropy(head(y), ids)
        emb.backward(lstm.backward(head.backward(dlogits))[0])
        opt.step()
        opt.zero_grad()
    return [emb, lstm, head], opt


def _same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_is_exact(tmp_path):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt, metadata={"vocab": "abc\n", "epochs": 3, "lr": 0.5, "ok": True})
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left behind
    fresh, fresh_opt = _trained_model(1)
    meta = rnnfast.load(path, *fresh, optimizer=fresh_opt)
    assert meta == {"vocab": "abc\n", "epochs": 3, "lr": 0.5, "ok": True}
    assert all(_same(a.state_dict(), b.state_dict()) for a, b in zip(mods, fresh))
    assert _same(opt.state_dict(), fresh_opt.state_dict())
    assert rnnfast.checkpoint.read_metadata(path)["epochs"] == 3
    rnnfast.load(path, *fresh)  # weights only: the optimiser state in the file is ignored


def _states(mods):
    return [m.state_dict() for m in mods]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage", "empty"])
def test_damaged_checkpoint_raises_and_leaves_modules_unchanged(tmp_path, damage):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":  # inside the first parameter's data: only the zip's CRC notices
        start = data.index(b"\x93NUMPY", data.index(b"0.weight")) + 200
        data = data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]
    elif damage == "garbage":
        data = b"not a checkpoint at all" * 10
    else:
        data = b""
    path.write_bytes(data)
    fresh, fresh_opt = _trained_model(1)
    before, opt_before = _states(fresh), fresh_opt.state_dict()
    with pytest.raises(ValueError, match="cannot be read|not an rnnfast checkpoint"):
        rnnfast.load(path, *fresh, optimizer=fresh_opt)
    assert all(_same(a, b) for a, b in zip(before, _states(fresh)))
    assert _same(opt_before, fresh_opt.state_dict())


def test_checkpoint_that_does_not_fit_is_refused_whole(tmp_path):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt)
    emb, lstm = rnnfast.Embedding(6, 3, seed=5), rnnfast.LSTM(3, 4, seed=5)
    wider = rnnfast.Linear(4, 7, seed=5)  # the last module does not fit: the first two must stay as they were
    before = _states([emb, lstm, wider])
    with pytest.raises(ValueError, match="module 2 .*weight"):
        rnnfast.load(path, emb, lstm, wider)
    assert all(_same(a, b) for a, b in zip(before, _states([emb, lstm, wider])))
    with pytest.raises(ValueError, match="holds modules"):
        rnnfast.load(path, lstm, emb, wider)
    with pytest.raises(ValueError, match="holds Adam"):
        rnnfast.load(path, *mods, optimizer=optim.SGD(mods, lr=0.1))
    with pytest.raises(FileNotFoundError):
        rnnfast.load(tmp_path / "missing.npz", *mods)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __format__=np.array("rnnfast-checkpoint/1"), __modules__=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="cannot be read"):  # allow_pickle=False
        rnnfast.load(pickled)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods)
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        rnnfast.save(path, *mods, optimizer=opt)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["model.npz"]
    with pytest.raises(TypeError, match="metadata"):
        rnnfast.save(path, *mods, metadata={"bad": object()})
    assert path.read_bytes() == good


# ---- the demo ---------------------------------------------------------------------------------

def test_demo_cells_reproduce_the_trained_layer():
    from rnnfast import demo
    for cell in ("lstm", "gru", "rnn"):
        model = demo.CharModel("abcd", cell, 5, 2, seed=0)
        ids = np.array([0, 3, 1, 2])
        y, _ = model.rnn.eval()(rnnfast.one_hot(ids[:, None], 4))
        # greedy sampling through the cells must follow the layer's own next-character choice
        greedy = model.sample("".join("abcd"[i] for i in ids), 1, 0.0, np.random.default_rng(0))
        assert greedy[-1] == "abcd"[int(np.argmax(model.head.eval()(y[-1, 0])))]


def test_python_m_rnnfast_quick_trains_saves_and_samples(tmp_path):
    def run(*extra):
        r = subprocess.run([sys.executable, "-m", "rnnfast", "--quick", "--out", str(tmp_path), *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    out = run()
    first, last = map(float, re.search(r"validation loss ([0-9.]+) -> ([0-9.]+)", out).groups())
    assert last < first, out
    assert "sample after training" in out and (tmp_path / "rnnfast_charlm.npz").is_file()
    assert "sample" in run("--sample-only", "--length", "20")
    run("--resume", str(tmp_path / "rnnfast_charlm.npz"))
    assert rnnfast.checkpoint.read_metadata(tmp_path / "rnnfast_charlm.npz")["epochs_done"] == 2


def test_selfcheck_still_runs():
    r = subprocess.run([sys.executable, "-m", "rnnfast.selfcheck"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "agree" in r.stdout, r.stdout + r.stderr
