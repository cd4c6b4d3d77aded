"""The losses: cross_entropy (ignore_index, masks, reductions, stability, torch) and mse_loss."""
import math

import numpy as np
import pytest

import rnnfast

from conftest import FD_RTOL, assert_close, numeric_grad

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
