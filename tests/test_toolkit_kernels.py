"""The toolkit's C++ kernels (embedding gather / scatter-add, softmax cross-entropy) against their
NumPy references (nn._embedding_*_reference, losses._cross_entropy_reference) on every instruction
set, the references against finite differences, and the same bits whatever the thread count."""
import math

import numpy as np
import pytest

import rnnfast
from rnnfast import _core, losses, nn

from conftest import FD_RTOL, assert_close, numeric_grad

RTOL = {np.float64: 1e-12, np.float32: 1e-5}


pytestmark = pytest.mark.usefixtures("every_isa")  # each test on each instruction set the CPU has


@pytest.fixture
def threads():
    """Sets the thread count for a test and restores it afterwards."""
    before = rnnfast.get_num_threads()
    yield rnnfast.set_num_threads
    rnnfast.set_num_threads(before)


def cross_entropy_both(logits, targets, ignore_index=-100, mask=None, reduction="mean"):
    """((loss, grad) from the kernel, (loss, grad) from the NumPy reference) for the same arguments."""
    args = losses._cross_entropy_args(logits, targets, ignore_index, mask, reduction)
    return losses._cross_entropy_kernel(*args, reduction), losses._cross_entropy_reference(*args, reduction)


def embedding_problem(V, E, ids_shape, dtype, seed, padding_idx=None):
    """An Embedding, ids drawn with repeats (and the padding id, if any), and a grad_output."""
    rng = np.random.default_rng(seed)
    emb = rnnfast.Embedding(V, E, padding_idx=padding_idx, dtype=dtype, seed=seed)
    ids = rng.integers(0, V, ids_shape)
    if padding_idx is not None and ids.size:
        ids.reshape(-1)[:: 3] = padding_idx
    return emb, ids, rng.standard_normal(ids.shape + (E,)).astype(dtype)


# ---- embedding -------------------------------------------------------------------------------

EMBEDDING_SHAPES = [(1, 1, (1,)), (5, 3, (7,)), (7, 13, (2, 9)), (40, 67, (600,)), (3, 200, (4, 50)), (9, 8, ())]


@pytest.mark.parametrize("V, E, ids_shape", EMBEDDING_SHAPES, ids=lambda s: str(s).replace(" ", ""))
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_matches_reference(V, E, ids_shape, padding_idx, dtype):
    padding_idx = None if padding_idx is None else padding_idx % V
    emb, ids, dy = embedding_problem(V, E, ids_shape, dtype, seed=V + E, padding_idx=padding_idx)
    weight = emb.parameters()["weight"]
    y = emb(ids)
    assert y.dtype == dtype and y.shape == ids.shape + (E,)
    assert np.array_equal(y, nn._embedding_forward_reference(weight, ids))  # a copy: exact
    start = np.random.default_rng(1).standard_normal(weight.shape).astype(dtype)  # gradients are added into
    emb.grads["weight"][...] = start
    emb.backward(dy)
    expected = start.copy()
    nn._embedding_backward_reference(expected, ids, dy, padding_idx)
    assert_close(emb.grads["weight"], expected, RTOL[dtype], "dweight")
    if padding_idx is not None:
        assert np.array_equal(emb.grads["weight"][padding_idx], start[padding_idx])


def test_embedding_kernel_refuses_ids_out_of_range_before_writing():
    weight, y = np.ones((4, 3), np.float32), np.zeros((2, 3), np.float32)
    for bad in (4, -1, 2**40):
        with pytest.raises(IndexError, match=r"\[0, 4\)"):
            _core.embedding_forward(weight, np.array([0, bad], np.int64), y)
        dweight = np.zeros_like(weight)
        with pytest.raises(IndexError, match=r"\[0, 4\)"):
            _core.embedding_backward(np.array([1, bad], np.int64), np.ones((2, 3), np.float32), dweight, -1)
        assert not y.any() and not dweight.any()
    with pytest.raises(ValueError, match="padding_idx"):
        _core.embedding_backward(np.array([1, 2], np.int64), np.ones((2, 3), np.float32), dweight, 4)
    with pytest.raises(ValueError, match="int64"):
        _core.embedding_forward(weight, np.array([0, 1], np.int32), y)
    with pytest.raises(ValueError, match="int64"):
        _core.embedding_forward(weight, np.array([0, 1, 2, 3], np.int64)[::2], y)


# ---- cross-entropy ---------------------------------------------------------------------------

CE_SHAPES = [(1, 1), (1, 3), (6, 1), (7, 3), (2, 5, 17), (33, 1000), (300, 67)]


@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_cross_entropy_matches_reference(shape, reduction, mask_kind, dtype):
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    targets = rng.integers(0, shape[-1], shape[:-1])
    targets.reshape(-1)[1::4] = -100
    mask = {None: None, "bool": rng.random(targets.shape) > 0.3,
            "float": rng.random(targets.shape) * 2}[mask_kind]
    (loss, grad), (ref_loss, ref_grad) = cross_entropy_both(logits, targets, mask=mask, reduction=reduction)
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert_close(grad, ref_grad, RTOL[dtype], "grad")
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == targets.shape
        assert_close(loss, ref_loss, RTOL[dtype], "loss")
    else:
        assert type(loss) is float and math.isclose(loss, ref_loss, rel_tol=RTOL[dtype], abs_tol=1e-300)


def test_cross_entropy_one_dimensional_logits_keep_their_types(dtype):
    logits = np.array([0.5, -1.0, 2.0], dtype)
    for reduction in ("mean", "sum", "none"):
        (loss, grad), (ref_loss, ref_grad) = cross_entropy_both(logits, np.array(2), reduction=reduction)
        assert type(loss) is type(ref_loss) and grad.shape == ref_grad.shape == (3,)
        assert math.isclose(loss, ref_loss, rel_tol=RTOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_ignore_index_everywhere_is_zero(reduction, dtype):
    logits = np.random.default_rng(0).standard_normal((9, 5)).astype(dtype)
    for ignore_index in (-100, 3):
        (loss, grad), (ref_loss, _) = cross_entropy_both(logits, np.full(9, ignore_index), ignore_index, None,
                                                         reduction)
        assert not np.any(loss) and not grad.any() and not np.any(ref_loss)
    mask = np.zeros(9)  # a mask that leaves every row out does the same
    (loss, grad), _ = cross_entropy_both(logits, np.zeros(9, np.int64), mask=mask, reduction=reduction)
    assert not np.any(loss) and not grad.any()


def test_cross_entropy_huge_logits_stay_finite(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [-1e4, 1e4, 0.0]], dtype)
    targets = np.array([1, 2, 0, 1])
    for reduction in ("mean", "sum", "none"):
        (loss, grad), (ref_loss, ref_grad) = cross_entropy_both(logits, targets, reduction=reduction)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, ref_loss, RTOL[dtype], "loss")
        assert_close(grad, ref_grad, RTOL[dtype], "grad")


def test_cross_entropy_float16_takes_the_reference():
    logits = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float16)
    loss, grad = rnnfast.cross_entropy(logits, np.array([0, 1, 2, 1]))
    assert grad.dtype == np.float16
    assert_close(grad, rnnfast.cross_entropy(logits.astype(np.float64), np.array([0, 1, 2, 1]))[1], 2e-3, "grad")


def test_cross_entropy_kernel_refuses_targets_out_of_range():
    logits = np.zeros((2, 3))
    for bad in (3, -2, 2**40):
        with pytest.raises(IndexError, match=r"\[0, 3\)"):
            _core.cross_entropy(logits, np.array([0, bad], np.int64), -1, None, "mean")
    with pytest.raises(ValueError, match="reduction"):
        _core.cross_entropy(logits, np.array([0, 1], np.int64), -1, None, "avg")


# ---- the references against finite differences -----------------------------------------------

def test_references_match_finite_differences():
    rng = np.random.default_rng(3)
    logits, targets = rng.standard_normal((5, 4)) * 3, np.array([0, 3, -100, 1, 2])
    mask = np.array([1.0, 0.5, 1.0, 0.0, 2.0])
    for reduction in ("mean", "sum"):
        f = lambda: losses._cross_entropy_reference(*losses._cross_entropy_args(logits, targets, -100, mask,
                                                                                reduction), reduction)
        assert_close(f()[1], numeric_grad(lambda: f()[0], logits), FD_RTOL, reduction)
    weight, ids = rng.standard_normal((6, 3)), np.array([[1, 4, 1], [5, 1, 0]])
    r = rng.standard_normal((2, 3, 3))
    dweight = np.zeros_like(weight)
    nn._embedding_backward_reference(dweight, ids, r, padding_idx=5)
    loss = lambda: float(np.sum(np.where((ids == 5)[..., None], 0, nn._embedding_forward_reference(weight, ids)) * r))
    assert_close(dweight, numeric_grad(loss, weight), FD_RTOL, "dweight")


# ---- threads ---------------------------------------------------------------------------------

def test_thread_count_does_not_change_bits(threads):
    """Problems past the one-thread thresholds, so that 2 and 3 threads really split the work."""
    rng = np.random.default_rng(7)
    emb, ids, dy = embedding_problem(50, 131, (700,), np.float32, seed=7, padding_idx=3)
    logits = (rng.standard_normal((701, 67)) * 4).astype(np.float32)
    targets = rng.integers(0, 67, 701)
    targets[::5] = -100
    mask = rng.random(701) * 2
    results = []
    for n in (1, 2, 3, 1):
        threads(n)
        emb.zero_grad()
        y = emb(ids)
        emb.backward(dy)
        results.append([y, emb.grads["weight"].copy()] + [x for red in ("mean", "none") for x in
                                                          rnnfast.cross_entropy(logits, targets, mask=mask,
                                                                                reduction=red)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)
