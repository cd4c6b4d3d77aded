"""Feed-forward pieces that sit around the recurrent layers: Linear (a per-time-step head) and
Embedding (integer ids -> vectors).

Both follow the recurrent modules' conventions: `forward` / `__call__`, `backward(grad_output)`
through the last training forward, gradients *added into* `grads` (`zero_grad()` clears them),
`state_dict()` / `load_state_dict()` under torch.nn's names (`weight`, `bias`), `parameters()`
(the live arrays an optimiser updates in place), `train()` / `eval()` (eval saves nothing).

Shapes: Linear maps the last axis, so one call covers every time step of (T, B, F) or (B, T, F)
(or a plain (B, F)); Embedding maps ids of any shape (...) to (..., D).
"""
from __future__ import annotations

import numpy as np

from . import _core
from . import _validate as v
from .module import Module, serialized


class _Module(Module):
    """Module plus what Linear and Embedding share: the saved forward that backward needs."""

    def __init__(self, dtype, n_params):
        super().__init__()
        self.dtype = v.dtype_of(dtype)
        v.check_allocation(2 * n_params * self.dtype.itemsize, "the parameters and their gradients")
        self._saved = None


class Linear(_Module):
    """y = x @ weight.T + bias on the last axis: weight (out_features, in_features), bias (out_features,).

    Initialised like torch.nn.Linear: U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features, out_features, bias=True, dtype="float32", seed=None):
        self.in_features = v.positive_int(in_features, "in_features")
        self.out_features = v.positive_int(out_features, "out_features")
        self.bias = bool(bias)
        super().__init__(dtype, (self.in_features + self.bias) * self.out_features)
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / np.sqrt(self.in_features))

    @serialized
    def forward(self, x):
        """(..., in_features) -> (..., out_features)."""
        x = v.float_array(x, "input", self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"input: expected in_features {self.in_features} on the last axis, got shape {x.shape}")
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        y = np.empty((x2.shape[0], self.out_features), self.dtype)
        if x2.shape[0]:  # on rnnfast's kernels: no BLAS threads left spinning next to the RNN's
            _core.linear_forward(x2, self._params["weight"], self._params.get("bias"), y)
        self._after_forward(x2)
        return y.reshape(x.shape[:-1] + (self.out_features,))

    __call__ = forward

    @serialized
    def backward(self, grad_output):
        """grad_input (..., in_features); adds into grads["weight"] and grads["bias"]."""
        x2 = self._saved_forward()
        dy = v.float_array(grad_output, "grad_output", self.dtype)
        if dy.ndim < 1 or dy.shape[-1] != self.out_features or dy.size // self.out_features != x2.shape[0]:
            raise ValueError(f"grad_output: expected {x2.shape[0]} rows of {self.out_features} "
                             f"(the forward's output shape), got shape {dy.shape}")
        dy2 = np.ascontiguousarray(dy.reshape(-1, self.out_features))
        dx = np.empty((dy2.shape[0], self.in_features), self.dtype)
        if dy2.shape[0]:
            _core.linear_backward(x2, self._params["weight"], dy2, dx, self.grads["weight"], self.grads.get("bias"))
        return dx.reshape(dy.shape[:-1] + (self.in_features,))

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias}, dtype={self.dtype.name})"


class Embedding(_Module):
    """Row lookup: ids (...) in [0, num_embeddings) -> weight[ids] (..., embedding_dim).

    Initialised like torch.nn.Embedding: N(0, 1), with the `padding_idx` row (if any) zero; that row
    gets no gradient, so it stays zero. The backward scatters into the rows the ids touched and
    nowhere else, so its cost follows the number of ids, not the vocabulary. Both directions run on
    rnnfast's kernels (the same bits for any thread count); `_embedding_forward_reference` and
    `_embedding_backward_reference` below say in NumPy what they compute.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype="float32", seed=None):
        self.num_embeddings = v.positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = v.positive_int(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"padding_idx: expected an int or None, got {type(padding_idx).__name__}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx: expected a value in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings  # torch's convention for negative values
        self.padding_idx = padding_idx
        super().__init__(dtype, self.num_embeddings * self.embedding_dim)
        weight = np.random.default_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0
        self._params = {"weight": weight.astype(self.dtype)}
        self.grads = {"weight": np.zeros_like(self._params["weight"])}

    def _check_ids(self, ids):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.dtype == np.bool_:
            raise TypeError(f"input: expected integer ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"input: ids must lie in [0, {self.num_embeddings}), "
                             f"got min {ids.min()} max {ids.max()}")
        return ids.astype(np.int64, order="C", copy=False)  # as the kernels read them

    @serialized
    def forward(self, ids):
        """ids (...) -> vectors (..., embedding_dim), a new array."""
        ids = self._check_ids(ids)
        self._after_forward(ids)
        y = np.empty(ids.shape + (self.embedding_dim,), self.dtype)
        if ids.size:
            _core.embedding_forward(self._params["weight"], ids.reshape(-1), y.reshape(-1, self.embedding_dim))
        return y

    __call__ = forward

    @serialized
    def backward(self, grad_output):
        """Adds into grads["weight"] the rows of the ids of the last training forward; returns None
        (ids have no gradient)."""
        ids = self._saved_forward()
        dy = v.shaped(grad_output, "grad_output", self.dtype, ids.shape + (self.embedding_dim,),
                      "(the forward's output shape)")
        if ids.size:
            _core.embedding_backward(ids.reshape(-1), np.ascontiguousarray(dy.reshape(-1, self.embedding_dim)),
                                     self.grads["weight"], -1 if self.padding_idx is None else self.padding_idx)
        return None

    def __repr__(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad}, dtype={self.dtype.name})"


# ---- NumPy references of the embedding kernels (what they compute; the tests compare) ----------

def _embedding_forward_reference(weight, ids):
    """weight (V, E), ids (...) -> weight[ids] (..., E)."""
    return weight.take(ids, axis=0)


def _embedding_backward_reference(dweight, ids, dy, padding_idx=None):
    """dweight (V, E) += dy (..., E) row by row at ids (...); repeated ids add up, padding rows get nothing."""
    flat_ids, rows = ids.reshape(-1), dy.reshape(-1, dweight.shape[1])
    if padding_idx is not None:
        keep = flat_ids != padding_idx
        flat_ids, rows = flat_ids[keep], rows[keep]
    np.add.at(dweight, flat_ids, rows)
