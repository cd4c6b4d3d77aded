"""Losses that return `(loss, grad)`: the value and its gradient with respect to the prediction, ready
to pass to the producing module's `backward`.

Masks: `mask` has the targets' shape (cross_entropy) or the prediction's shape or that shape less
its last axis (mse_loss, e.g. a (T, B) mask of valid steps for (T, B, F) predictions, see
`rnnfast.lengths_mask`). False / 0 leaves a position out; non-negative numbers weight it.
"mean" divides by the total weight of the positions that count (the number of them for a
boolean mask). When no position counts, the loss is 0 and the gradient zero (torch gives NaN):
an all-padding chunk of a batch then adds nothing instead of poisoning the parameters.
"""
from __future__ import annotations

import numpy as np

from . import _core

_REDUCTIONS = ("mean", "sum", "none")
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # cross_entropy's other floats take the NumPy reference


def _float(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr


def _weights(mask, shape, dtype, name="mask"):
    """mask -> float weights broadcast to `shape`, or None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a boolean or numeric array, got dtype {m.dtype}")
    if m.dtype.kind == "f" and not (np.all(np.isfinite(m)) and np.all(m >= 0)):
        raise ValueError(f"{name}: weights must be finite and non-negative")
    if m.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {m.shape}")
    return m.astype(dtype)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def cross_entropy(logits, targets, ignore_index=-100, mask=None, reduction="mean"):
    """Softmax cross-entropy over the last axis of `logits` (..., C) with integer `targets` (...).

    Positions whose target is `ignore_index`, or where `mask` is False / 0, do not count.
    Returns (loss, grad) with grad = d loss / d logits, of the logits' shape and dtype. With
    reduction="none" the loss is the per-position array (0 where a position does not count) and
    grad that of its sum. Computed with the log-sum-exp shift, so large logits neither overflow
    nor lose the small probabilities.
    """
    z, t, valid, m = _cross_entropy_args(logits, targets, ignore_index, mask, reduction)
    if z.dtype in _KERNEL_DTYPES:
        return _cross_entropy_kernel(z, t, valid, m, reduction)
    return _cross_entropy_reference(z, t, valid, m, reduction)


def _cross_entropy_args(logits, targets, ignore_index, mask, reduction):
    """Checked arguments: logits z (..., C), targets t (...), valid (t != ignore_index), mask weights or None."""
    _check_reduction(reduction)
    z = _float(logits, "logits")
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(f"logits: expected shape (..., C) with C >= 1, got {z.shape}")
    C = z.shape[-1]
    t = np.asarray(targets)
    if t.dtype.kind not in "iu" or t.dtype == np.bool_:
        raise TypeError(f"targets: expected integer class ids, got dtype {t.dtype}")
    if t.shape != z.shape[:-1]:
        raise ValueError(f"targets: expected shape {z.shape[:-1]} (the logits' shape less the class axis), "
                         f"got {t.shape}")
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(f"targets: class ids must lie in [0, {C}) or equal ignore_index={ignore_index}, "
                         f"got {t[bad].reshape(-1)[0]}")
    return z, t, valid, _weights(mask, t.shape, z.dtype)


def _cross_entropy_kernel(z, t, valid, m, reduction):
    """cross_entropy on rnnfast's kernel: rows split over threads, the same bits for any thread count."""
    # Positions that do not count go in as -1, the kernel's ignore_index, whatever the caller's
    # ignore_index and integer type (a uint64 id past int64's range is never a valid one).
    ids = t.astype(np.int64).reshape(-1)
    ids[~valid.reshape(-1)] = -1
    row_weight = None if m is None else np.ascontiguousarray(m.reshape(-1))
    total, per_position, grad = _core.cross_entropy(np.ascontiguousarray(z.reshape(-1, z.shape[-1])), ids, -1,
                                                    row_weight, reduction)
    if reduction == "none":
        return per_position.reshape(t.shape)[()], grad.reshape(z.shape)  # [()]: a 0-d result as a scalar
    return total, grad.reshape(z.shape)


def _cross_entropy_reference(z, t, valid, m, reduction):
    """cross_entropy in NumPy: the statement of what the kernel computes, and the path for float
    dtypes other than float32 and float64."""
    w = valid.astype(z.dtype)
    if m is not None:
        w *= m
    safe_t = np.where(valid, t, 0).astype(np.intp)

    shifted = z - z.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, safe_t[..., None], axis=-1)[..., 0]
    per_position = (np.log(sum_exp[..., 0]) - picked) * w  # -log softmax(z)[t], weighted

    grad = exp
    grad /= sum_exp  # softmax
    np.put_along_axis(grad, safe_t[..., None], np.take_along_axis(grad, safe_t[..., None], axis=-1) - 1, axis=-1)
    if reduction == "none":
        return per_position, grad * w[..., None]
    total = float(w.sum())
    scale = 1.0 if reduction == "sum" else (1.0 / total if total > 0 else 0.0)
    grad *= (w * z.dtype.type(scale))[..., None]
    return float(per_position.sum(dtype=np.float64)) * scale, grad


def mse_loss(pred, target, mask=None, reduction="mean"):
    """Mean squared error: (loss, grad) with grad = d loss / d pred.

    `mask` has pred's shape or pred's shape less the last axis (one flag per position, covering all
    its features). "mean" divides by the total weight of the elements that count (all of them
    without a mask: torch's MSELoss).
    """
    _check_reduction(reduction)
    p = _float(pred, "pred")
    y = _float(target, "target")
    if y.shape != p.shape:
        raise ValueError(f"target: expected the prediction's shape {p.shape}, got {y.shape}")
    diff = p - y.astype(p.dtype, copy=False)
    w = None
    if mask is not None:
        shape = np.shape(mask)
        if p.ndim and shape == p.shape[:-1]:
            w = _weights(mask, shape, p.dtype)[..., None]
        else:
            w = _weights(mask, p.shape, p.dtype)
    sq = diff * diff if w is None else diff * diff * w
    grad = 2 * diff if w is None else 2 * diff * w
    if reduction == "none":
        return sq, grad
    if reduction == "sum":
        return float(sq.sum(dtype=np.float64)), grad
    total = float(p.size if w is None else np.broadcast_to(w, p.shape).sum(dtype=np.float64))
    scale = 1.0 / total if total > 0 else 0.0
    grad *= p.dtype.type(scale)
    return float(sq.sum(dtype=np.float64)) * scale, grad
