"""backward called when it cannot run or with what it cannot take: before any forward, in eval
mode, after an eval forward, a second time without retain_graph, with gradients of the wrong shape
or dtype, interrupted by Ctrl-C, and a double backward through rnnfast.torch. A refused backward
leaves the gradients and the saved forward exactly as they were."""
import numpy as np
import pytest

import rnnfast

from small_lstm import B, H, I, T, lstm, x_ok


# ---- no training forward to run through: before a forward, eval mode --------------------------

def test_backward_before_forward_and_after_eval():
    m = lstm()
    with pytest.raises(RuntimeError):
        m.backward(np.zeros((T, B, H), np.float32))
    m.eval()(x_ok())
    with pytest.raises(RuntimeError, match="eval"):
        m.backward(np.zeros((T, B, H), np.float32))


def test_backward_after_an_eval_forward_says_what_to_do():
    """A train forward, then eval() and an eval forward: the saved forward is still there, and the
    message says how to reach it (after train(), the backward runs through it)."""
    m = lstm()
    m(x_ok())
    m.eval()(x_ok())
    with pytest.raises(RuntimeError, match=r"call \.train\(\) first") as info:
        m.backward(np.ones((T, B, H), np.float32))
    assert "no saved forward" not in str(info.value)
    m.train().backward(np.ones((T, B, H), np.float32))
    assert any(np.any(g != 0) for g in m.grads.values())


class Tagger:
    """Embedding -> LSTM -> Linear head, as a training loop strings them together."""

    def __init__(self):
        self.emb, self.lstm, self.head = rnnfast.Embedding(9, 3, seed=0), rnnfast.LSTM(3, 4, seed=0), \
            rnnfast.Linear(4, 2, seed=0)
        self.parts = (self.emb, self.lstm, self.head)

    def __call__(self, ids):
        return self.head(self.lstm(self.emb(ids))[0]), None

    def backward(self, g):
        dx, _ = self.lstm.backward(self.head.backward(g))
        return self.emb.backward(dx), None

    def train(self, mode=True):
        for p in self.parts:
            p.train(mode)

    def eval(self):
        self.train(False)

    @property
    def grads(self):
        return {f"{i}.{k}": g for i, p in enumerate(self.parts) for k, g in p.grads.items()}


@pytest.mark.parametrize("make", [lambda: rnnfast.LSTM(3, 4, num_layers=2, seed=0),
                                  lambda: rnnfast.BiRNN("lstm", 3, 4, merge="mul", seed=0),
                                  Tagger])
def test_an_eval_forward_between_forward_and_backward_leaves_the_training_forward(make):
    """A validation pass (of another shape) between a training forward and its backward, as a torch
    user may run one; a backward still in eval mode after it raises instead."""
    rng = np.random.default_rng(6)
    tagger = make is Tagger
    x = rng.integers(0, 9, (5, 2)) if tagger else rng.standard_normal((5, 2, 3)).astype(np.float32)
    x_val = rng.integers(0, 9, (7, 3)) if tagger else rng.standard_normal((7, 3, 3)).astype(np.float32)
    results = []
    for validate in (False, True):
        m = make()
        y, _ = m(x)
        if validate:
            m.eval()
            m(x_val)
            with pytest.raises(RuntimeError, match="eval"):
                m.backward(np.cos(y))
            m.train()
        dx, _ = m.backward(np.cos(y))
        results.append(([] if dx is None else [dx]) + [m.grads[k] for k in sorted(m.grads)])
    assert len(results[0]) >= 6
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_an_eval_forward_frees_a_spent_training_forward():
    m = rnnfast.GRU(3, 4, seed=0)
    y, _ = m(np.ones((5, 2, 3), np.float32))
    m.eval()
    m(np.ones((5, 2, 3), np.float32))
    assert m._saved is not None  # not spent: kept for a backward after train()
    m.train()
    m.backward(np.ones_like(y))
    m.eval()
    m(np.ones((5, 2, 3), np.float32))
    assert m._saved is None  # spent: nothing to keep its workspace for


# ---- gradients backward refuses ---------------------------------------------------------------

@pytest.mark.parametrize("grad,grad_hx,exc", [
    (np.zeros((T, B, H + 1), np.float32), None, ValueError),
    (np.zeros((T + 1, B, H), np.float32), None, ValueError),
    (np.zeros((T, B, H), np.int64), None, TypeError),
    (np.zeros((T, B, H), np.float32), np.zeros((1, B, H), np.float32), TypeError),
    (np.zeros((T, B, H), np.float32), (np.zeros((1, B, H), np.float32), np.zeros((2, B, H), np.float32)), ValueError),
])
def test_failed_backward_leaves_grads_and_saved_forward(grad, grad_hx, exc):
    m = lstm()
    m(x_ok())
    m.backward(np.ones((T, B, H), np.float32), retain_graph=True)
    before = {k: g.copy() for k, g in m.grads.items()}
    with pytest.raises(exc):
        m.backward(grad, grad_hx)  # would consume the saved forward, had it run
    assert all(np.array_equal(before[k], m.grads[k]) for k in before)
    m.backward(np.ones((T, B, H), np.float32))  # the saved forward still works
    assert all(np.allclose(m.grads[k], 2 * before[k]) for k in before)
    with pytest.raises(RuntimeError, match="retain_graph=True"):  # and now it is spent
        m.backward(np.ones((T, B, H), np.float32))
    assert all(np.allclose(m.grads[k], 2 * before[k]) for k in before)


def test_backward_rejected_by_the_binding_frees_nothing():
    """An argument the C++ binding refuses (here dx_out's shape) fails before any kernel runs: the
    saved forward is intact and the next backward gives what a retained one gives."""
    from rnnfast import functional as F
    rng = np.random.default_rng(0)
    m = lstm()
    x = x_ok()
    args = [m.state_dict()[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    _, _, _, ctx = F.layer_forward("lstm", x, None, None, *args)
    saved = ctx.saved.copy()
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    with pytest.raises(ValueError):
        F.layer_backward(ctx, dy, dx_out=np.empty((T, B, I + 1), np.float32))
    # Bit for bit: the workspace's alignment padding is never written, so it may hold any bits
    # (NaN among them, which == would call unequal).
    assert not ctx.spent and np.array_equal(ctx.saved.view(np.uint32), saved.view(np.uint32))
    kept = F.layer_backward(ctx, dy, retain_graph=True)
    spent = F.layer_backward(ctx, dy)
    assert ctx.spent and all(np.array_equal(a, b) for a, b in zip(kept, spent) if a is not None)


def test_birnn_backward_checks_its_gradient():
    net = rnnfast.BiRNN("gru", 3, 4, merge="mul", seed=0)
    y, _ = net(np.ones((5, 2, 3), np.float32))
    assert y.shape == (5, 2, 4)
    with pytest.raises(ValueError, match=r"expected shape \(5, 2, 4\)"):
        net.backward(np.ones((5, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(5, 2, 4\)"):
        net.backward(np.ones(4, np.float32))  # would broadcast
    with pytest.raises(TypeError):
        net.backward(np.ones((5, 2, 4), np.int64))
    net.backward(np.ones((5, 2, 4), np.float32))  # the forward was kept through the failures


# ---- interrupted and double backward ----------------------------------------------------------

class _InterruptAfter:
    """Stands in for rnnfast._core: runs the real layer_backward, then raises KeyboardInterrupt as
    a Ctrl-C arriving during the kernels would (Python raises it once the call returns)."""

    def __init__(self, core):
        self.core = core

    def __getattr__(self, name):
        return getattr(self.core, name)

    def layer_backward(self, *args, **kw):
        self.core.layer_backward(*args, **kw)
        raise KeyboardInterrupt


def test_interrupted_backward_leaves_the_forward_freed(monkeypatch):
    """Ctrl-C in a 2-layer backward after the top layer: that layer's workspace holds gradients now,
    so another backward must refuse to run (not read them as gates), and touch no gradient."""
    from rnnfast import functional as F
    m = lstm(num_layers=2)
    m(x_ok())
    monkeypatch.setattr(F, "_core", _InterruptAfter(F._core))
    with pytest.raises(KeyboardInterrupt):
        m.backward(np.ones((T, B, H), np.float32))
    monkeypatch.undo()
    before = {k: g.copy() for k, g in m.grads.items()}
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        m.backward(np.ones((T, B, H), np.float32))
    assert all(np.array_equal(before[k], m.grads[k]) for k in before)


def test_double_backward_through_rnnfast_torch_says_it_is_not_supported():
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    m = rt.LSTM(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    y, _ = m(x)
    (first,) = torch.autograd.grad(y.pow(2).sum(), x)
    y, _ = m(x)
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)  # the first derivative still comes
    assert torch.equal(g, first)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        g.pow(2).sum().backward()  # a second derivative through the layer
