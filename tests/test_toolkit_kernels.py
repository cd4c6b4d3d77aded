"""The toolkit's C++ kernels (embedding gather / scatter-add) against their NumPy references
(nn._embedding_*_reference) on every instruction set, the references against finite differences,
and the same bits whatever the thread count."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, nn

from conftest import assert_close, numeric_grad

RTOL = {np.float64: 1e-12, np.float32: 1e-5}
FD_RTOL = 1e-7  # central differences in float64 with eps = 1e-6


pytestmark = pytest.mark.usefixtures("every_isa")  # each test on each instruction set the CPU has


@pytest.fixture
def threads():
    """Sets the thread count for a test and restores it afterwards."""
    before = rnnfast.get_num_threads()
    yield rnnfast.set_num_threads
    rnnfast.set_num_threads(before)


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


# ---- the references against finite differences -----------------------------------------------

def test_references_match_finite_differences():
    rng = np.random.default_rng(3)
    weight, ids = rng.standard_normal((6, 3)), np.array([[1, 4, 1], [5, 1, 0]])
    r = rng.standard_normal((2, 3, 3))
    dweight = np.zeros_like(weight)
    nn._embedding_backward_reference(dweight, ids, r, padding_idx=5)
    loss = lambda: float(np.sum(np.where((ids == 5)[..., None], 0, nn._embedding_forward_reference(weight, ids)) * r))
    assert_close(dweight, numeric_grad(loss, weight), FD_RTOL, "dweight")


# ---- threads ---------------------------------------------------------------------------------

def test_thread_count_does_not_change_bits(threads):
    """A problem past the one-thread threshold, so that 2 and 3 threads really split the work."""
    emb, ids, dy = embedding_problem(50, 131, (700,), np.float32, seed=7, padding_idx=3)
    results = []
    for n in (1, 2, 3, 1):
        threads(n)
        emb.zero_grad()
        y = emb(ids)
        emb.backward(dy)
        results.append([y, emb.grads["weight"].copy()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)
