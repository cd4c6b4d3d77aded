"""rnnfast.Linear: gradients against finite differences, the rows of the GEMM kernels, the
per-time-step layout, module conventions, load_state_dict and torch.nn.Linear, copies."""
import copy
import pickle

import numpy as np
import pytest

import rnnfast

from conftest import FD_RTOL, assert_close, numeric_grad

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
