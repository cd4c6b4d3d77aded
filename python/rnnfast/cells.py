"""Single-step cells for streaming inference and for models that feed their own output back.

`new_state = cell(x_t, state)` runs one step (x_t (B, I); state (B, H), or (h, c) for LSTMCell).
In train mode every step is recorded; `cell.backward(grad_new_state)` back-propagates through the
most recent recorded step and returns (grad_x_t, grad_state), so calling it once per step in
reverse order walks the recorded sequence back (BPTT step by step, with whatever the model did
between steps in the caller's hands: teacher forcing or free running). Parameter gradients are
added into `grads`. In eval mode nothing is recorded; use eval (or `reset()`) for long streams.
"""
from __future__ import annotations

import numpy as np

from . import _validate as v
from ._registry import cell_kind
from ._stack import LayerMasks, Stack
from .functional import stored_weight
from .module import Module, serialized


class _Cell(Module):
    def __init__(self, mode, input_size, hidden_size, bias, dtype, seed, zoneout=0.0):
        super().__init__()
        self.mode = mode
        self._stack = Stack(cell_kind(mode), 1, 1)  # one layer, one direction, one step a call
        self.input_size = v.positive_int(input_size, "input_size")
        self.hidden_size = v.positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.dtype = v.dtype_of(dtype)
        self.zoneout = v.probability(zoneout, "zoneout")
        self._tape = []
        rng = self._rng = np.random.default_rng(seed)
        GH, bound = self._stack.cell.gates * self.hidden_size, 1.0 / np.sqrt(self.hidden_size)
        v.check_allocation(2 * GH * (self.input_size + self.hidden_size + 2) * self.dtype.itemsize,
                           "the parameters and their gradients")
        shapes = {"weight_ih": (GH, self.input_size), "weight_hh": (GH, self.hidden_size)}
        if self.bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        self._init_params(shapes, rng, bound)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def state_size(self):
        return (self.hidden_size, self.hidden_size) if self.mode == "lstm" else self.hidden_size

    @property
    def recorded_steps(self) -> int:
        return len(self._tape)

    def reset(self):
        """Forgets the recorded steps."""
        self._tape.clear()

    def _state(self, state, batch, name):
        return v.states(state, name, type(self).__name__, self._stack.cell.has_cell_state, (batch, self.hidden_size),
                        self.dtype)

    @serialized
    def forward(self, x, state=None):
        x = v.float_array(x, "input", self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"input: expected shape (batch, {self.input_size}), got {x.shape}")
        h0, c0 = self._state(state, x.shape[0], "state")
        p = self._params
        weights = [(stored_weight(p, "weight_ih"), stored_weight(p, "weight_hh"), p.get("bias_ih"),
                    p.get("bias_hh"))]
        _, h, c, contexts = self._stack.run_layer(0, np.ascontiguousarray(x)[None], None if h0 is None else h0[None],
                                                  None if c0 is None else c0[None], weights, None, self.training,
                                                  masks=self._zoneout_masks())
        if self.training:
            self._tape.append(contexts)
        return (h[0], c[0]) if self.mode == "lstm" else h[0]

    __call__ = forward

    def __setstate__(self, state):  # a cell pickled by an rnnfast without zoneout
        super().__setstate__(state)
        self.__dict__.setdefault("zoneout", 0.0)
        self.__dict__.setdefault("_rng", np.random.default_rng())

    def _zoneout_masks(self):
        """Zoneout as the stack takes it (see rnnfast.LSTM): p, and in training a seed from the cell's
        generator that the kernels draw the step's masks from."""
        if not self.zoneout:
            return LayerMasks()
        seeds = [int(self._rng.integers(2 ** 64, dtype=np.uint64))] if self.training else None
        return LayerMasks(zoneout=self.zoneout, zoneout_seeds=seeds)

    @serialized
    def backward(self, grad_state):
        """Back through the last recorded step: returns (grad_x, grad_prev_state)."""
        if not self._tape:
            raise RuntimeError("backward: no recorded step left (steps are recorded by train-mode calls)")
        contexts = self._tape[-1]
        B, H = contexts[0].x.shape[1], self.hidden_size
        dh, dc = self._state(grad_state, B, "grad_state")
        g = self.grads
        grads = [(g["weight_ih"], g["weight_hh"], g.get("bias_ih"), g.get("bias_hh"))]
        dx, dh0, dc0, _ = self._stack.backprop_layer(contexts, np.zeros((1, B, H), self.dtype),
                                                     None if dh is None else dh[None], None if dc is None else dc[None],
                                                     grads, retain_graph=False)
        self._tape.pop()
        return dx[0], ((dh0[0], dc0[0]) if self.mode == "lstm" else dh0[0])

    def __repr__(self):
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}, bias={self.bias}, dtype={self.dtype.name})"


class RNNCell(_Cell):
    """h' = f(W_ih x + b_ih + W_hh h + b_hh), f = tanh or relu."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype="float32", seed=None,
                 zoneout=0.0):
        self.nonlinearity = v.nonlinearity(nonlinearity)
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, dtype, seed, zoneout)


class LSTMCell(_Cell):
    """(h', c') from (x, (h, c)) with gates i, f, g, o."""

    def __init__(self, input_size, hidden_size, bias=True, dtype="float32", seed=None, zoneout=0.0):
        super().__init__("lstm", input_size, hidden_size, bias, dtype, seed, zoneout)


class GRUCell(_Cell):
    """h' from (x, h) with gates r, z, n."""

    def __init__(self, input_size, hidden_size, bias=True, dtype="float32", seed=None, zoneout=0.0):
        super().__init__("gru", input_size, hidden_size, bias, dtype, seed, zoneout)
