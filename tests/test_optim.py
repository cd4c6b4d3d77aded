"""rnnfast.optim (SGD, Adam, AdamW: steps, torch parity, state_dict) and rnnfast.clip_grad_norm."""
import math

import numpy as np
import pytest

import rnnfast
from rnnfast import optim

from conftest import assert_close

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
