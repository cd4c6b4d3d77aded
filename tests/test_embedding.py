"""rnnfast.Embedding: the gradient of repeated ids, padding_idx, the checks on ids, torch.nn.Embedding."""
import numpy as np
import pytest

import rnnfast

from conftest import FD_RTOL, assert_close, numeric_grad

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
