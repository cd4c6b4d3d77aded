"""BiRNN: a bidirectional recurrent network whose two directions are merged per time step.

merge = "concat" gives [forward, backward] on the last axis (2H, as torch.nn with
bidirectional=True); "sum", "mul" and "ave" combine the two H-wide halves element-wise. The
textbook output o_t = g(V s_t + V' s'_t) is "concat" followed by a linear layer.
"""
from __future__ import annotations

import numpy as np

from . import _validate as v
from .module import Lockable, serialized
from .modules import GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM

_CELLS = {
    "rnn_tanh": lambda **k: RNN(nonlinearity="tanh", **k),
    "rnn_relu": lambda **k: RNN(nonlinearity="relu", **k),
    "lstm": lambda **k: LSTM(**k),
    "gru": lambda **k: GRU(**k),
    "layernorm_lstm": lambda **k: LayerNormLSTM(**k),
    "layernorm_gru": lambda **k: LayerNormGRU(**k),
}
MERGES = ("concat", "sum", "mul", "ave")


class BiRNN(Lockable):
    r"""BiRNN(cell, input_size, hidden_size, num_layers=1, merge="concat", \*\*kwargs): a bidirectional
    `cell` network ("rnn_tanh", "rnn_relu", "lstm", "gru"; kwargs as rnnfast.RNN's, less
    `bidirectional`) whose two directions are merged per step by `merge` ("concat", "sum", "mul",
    "ave"). forward(x, hx=None, lengths=None) -> (y, h_n) with y of `output_size` features;
    backward(grad_output, grad_hx=None, retain_graph=False) -> (grad_x, grad_hx)."""

    def __init__(self, cell, input_size, hidden_size, num_layers=1, merge="concat", **kwargs):
        if cell not in _CELLS:
            raise ValueError(f"cell: expected one of {sorted(_CELLS)}, got {cell!r}")
        if merge not in MERGES:
            raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
        if "bidirectional" in kwargs:
            raise TypeError("BiRNN is always bidirectional: drop the 'bidirectional' argument")
        super().__init__()
        self.cell, self.merge = cell, merge
        self.rnn = _CELLS[cell](input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                                bidirectional=True, **kwargs)
        self._halves = None

    hidden_size = property(lambda self: self.rnn.hidden_size)
    grads = property(lambda self: self.rnn.grads)
    training = property(lambda self: self.rnn.training)

    @property
    def output_size(self) -> int:
        S = self.rnn.state_size  # h's size (an LSTM's proj_size, if it has projections)
        return 2 * S if self.merge == "concat" else S

    @serialized
    def forward(self, x, hx=None, lengths=None):
        """(y, h_n): y has output_size features; h_n as the underlying bidirectional module's."""
        y, h_n = self.rnn.forward(x, hx, lengths)
        S = self.rnn.state_size
        fwd, bwd = y[..., :S], y[..., S:]
        if self.rnn.training:  # an eval forward leaves the last training forward's halves for backward
            self._halves = (fwd, bwd) if self.merge == "mul" else None
        if self.merge == "concat":
            out = y
        elif self.merge == "sum":
            out = fwd + bwd
        elif self.merge == "mul":
            out = fwd * bwd
        else:
            out = (fwd + bwd) * y.dtype.type(0.5)
        return out, h_n

    __call__ = forward

    @serialized
    def backward(self, grad_output, grad_hx=None, retain_graph=False):
        """BPTT through the merge and both directions: (grad_x, grad_hx); `retain_graph` as in
        RNNBase.backward."""
        saved = self.rnn._saved_forward()
        T, B, out = saved["T"], saved["B"], self.output_size
        g = v.shaped(grad_output, "grad_output", self.rnn.dtype, (B, T, out) if self.rnn.batch_first else (T, B, out))
        if self.merge == "concat":
            dy = g
        elif self.merge == "mul":
            if self._halves is None:  # the saved forward did not come through this BiRNN
                raise RuntimeError("backward: no saved training forward of this BiRNN")
            fwd, bwd = self._halves
            dy = np.concatenate([g * bwd, g * fwd], axis=-1)
        else:
            scale = g.dtype.type(0.5 if self.merge == "ave" else 1.0)
            dy = np.concatenate([g * scale, g * scale], axis=-1)
        return self.rnn.backward(dy, grad_hx, retain_graph)

    def state_dict(self):
        return self.rnn.state_dict()

    def load_state_dict(self, state):
        self.rnn.load_state_dict(state)

    def parameters(self):
        return self.rnn.parameters()

    def zero_grad(self):
        self.rnn.zero_grad()

    def train(self, mode=True):
        self.rnn.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def __repr__(self):
        proj = f", proj_size={self.rnn.proj_size}" if self.rnn.proj_size else ""
        return f"BiRNN({self.cell!r}, {self.rnn.input_size}, {self.hidden_size}{proj}, merge={self.merge!r})"
