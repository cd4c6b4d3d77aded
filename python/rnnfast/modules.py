"""Recurrent layers with PyTorch's conventions on NumPy arrays: RNN, LSTM, GRU.

A module holds its parameters (`state_dict()` names and layouts are torch.nn's), runs the C++
kernels layer by layer and direction by direction, and keeps what its last training forward saved
so that `backward` can run BPTT. Parameter gradients are added into `grads`.

Shapes: x (T, B, I) or (B, T, I) with batch_first; h0, c0 (L*D, B, H) with L layers and D = 2 for
bidirectional; y (T, B, D*H).
"""
from __future__ import annotations

import numpy as np

from . import _directions
from . import _validate as v
from .module import Module, serialized
from .functional import CELL_CODES, SPENT_MESSAGE, WeightCache, backward_scratch_size, layer_backward, layer_forward
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU; `mode` picks the cell."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", seed=None):
        super().__init__()
        if mode not in CELL_CODES:
            raise ValueError(f"mode: expected one of {sorted(CELL_CODES)}, got {mode!r}")
        self.mode = mode
        self.input_size = v.positive_int(input_size, "input_size")
        self.hidden_size = v.positive_int(hidden_size, "hidden_size")
        self.num_layers = v.positive_int(num_layers, "num_layers")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dtype = v.dtype_of(dtype)
        self.training = True
        self._rng = np.random.default_rng(seed)
        self._saved = None
        self._workspace = {}  # reused between calls: fresh pages cost ~5% of a training step
        self._packed = {}  # (layer, direction) -> WeightCache: W_hh packed once per weight change
        v.check_allocation(sum(int(np.prod(shape, dtype=object)) for _, shape in self._param_shapes())
                           * 2 * self.dtype.itemsize, "the parameters and their gradients")
        # torch.nn's order and init: U(-1/sqrt(H), 1/sqrt(H))
        self._init_params(dict(self._param_shapes()), self._rng, 1.0 / np.sqrt(self.hidden_size))

    # ---- structure -------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gate_size(self) -> int:
        return _GATES[self.mode] * self.hidden_size

    def _suffix(self, layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _param_shapes(self):
        G_H, H, D = self.gate_size, self.hidden_size, self.num_directions
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else H * D
            for d in range(D):
                s = self._suffix(layer, d)
                yield "weight_ih" + s, (G_H, in_size)
                yield "weight_hh" + s, (G_H, H)
                if self.bias:
                    yield "bias_ih" + s, (G_H,)
                    yield "bias_hh" + s, (G_H,)

    def _layer_params(self, layer, d):
        s = self._suffix(layer, d)
        p = self._params
        return p["weight_ih" + s], p["weight_hh" + s], p.get("bias_ih" + s), p.get("bias_hh" + s)

    # ---- forward ---------------------------------------------------------------------------
    def _check_hx(self, hx, batch):
        L, H = self.num_layers * self.num_directions, self.hidden_size
        shape = (L, batch, H)
        what = "(num_layers * num_directions, batch, hidden_size)"
        if self.mode == "lstm":
            if hx is None:
                return None, None
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx: LSTM expects a tuple (h0, c0)")
            return (np.ascontiguousarray(v.shaped(hx[0], "h0", self.dtype, shape, what)),
                    np.ascontiguousarray(v.shaped(hx[1], "c0", self.dtype, shape, what)))
        if hx is None:
            return None, None
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: {type(self).__name__} expects one array h0, got a {type(hx).__name__}")
        return np.ascontiguousarray(v.shaped(hx, "hx", self.dtype, shape, what)), None  # the kernels read rows back to back

    def _check_input(self, x):
        x = v.float_array(x, "input", self.dtype)
        if x.ndim != 3:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"input: expected 3 dimensions {layout}, got shape {x.shape}")
        if self.batch_first:
            x = x.swapaxes(0, 1)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"input: expected input_size {self.input_size} on the last axis, got {I}")
        if T == 0 or B == 0:
            raise ValueError(f"input: T and B must be positive, got shape {x.shape}")
        return np.ascontiguousarray(x)

    @serialized
    def forward(self, x, hx=None, lengths=None):
        """y, h_n (LSTM: y, (h_n, c_n)). `lengths` (B,) gives each entry's valid steps."""
        x = self._check_input(x)
        T, B, _ = x.shape
        h0, c0 = self._check_hx(hx, B)
        lens = None if lengths is None else v.lengths_array(lengths, B, T)
        H, D = self.hidden_size, self.num_directions
        G = self.gate_size // H
        v.check_allocation(self.num_layers * D * T * B * H * ((G + 3) if self.training else 2) * self.dtype.itemsize,
                           "this forward's outputs and saved workspace")
        h_n = np.empty((self.num_layers * D, B, H), self.dtype)
        c_n = np.empty_like(h_n) if self.mode == "lstm" else None
        saved = [] if self.training else None
        # A training forward reuses the last one's saved workspaces below: that forward is spent from
        # here on. An eval forward (a validation pass between forward and backward) leaves it alone.
        old = self._saved if self.training else None
        if self.training:
            self._saved = None
        inp = x
        for layer in range(self.num_layers):
            y = np.empty((T, B, D * H), self.dtype)

            def direction(d, threads, inp=inp, y=y, layer=layer):
                k = layer * D + d
                reuse = old["layers"][layer][0][d].saved if old and self.training else None
                _, hn, cn, ctx = layer_forward(
                    self.mode, inp, None if h0 is None else h0[k], None if c0 is None else c0[k],
                    *self._layer_params(layer, d), reverse=bool(d), lengths=lens, training=self.training,
                    out=y[:, :, d * H:(d + 1) * H], saved=reuse, cache=self._packed[k], threads=threads)
                h_n[k] = hn
                if c_n is not None:
                    c_n[k] = cn
                return ctx

            for d in range(D):
                self._packed.setdefault(layer * D + d, WeightCache())
            jobs = [lambda n, d=d: direction(d, n) for d in range(D)]
            split = _directions.thread_split(T * B * G * H * (inp.shape[2] + H), D, G * H * H * self.dtype.itemsize,
                                             self.training)
            contexts = _directions.run(jobs, split)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                keep = self._rng.random(y.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)
            if saved is not None:
                saved.append((contexts, mask))
            inp = y if mask is None else y * mask
        self._after_forward(None if saved is None else {"layers": saved, "B": B, "T": T})
        if not self.training and self._saved and self._spent():
            self._saved = None  # nothing left to back-propagate: free its workspace
        out = y.swapaxes(0, 1) if self.batch_first else y
        out = np.ascontiguousarray(out)
        return out, ((h_n, c_n) if self.mode == "lstm" else h_n)

    __call__ = forward

    # ---- backward --------------------------------------------------------------------------
    def _spent(self) -> bool:
        """The saved forward went through a backward that freed it (its workspace now holds gate
        gradients): it can only be reused by the next training forward."""
        return any(ctx.spent for contexts, _ in self._saved["layers"] for ctx in contexts)

    @serialized
    def backward(self, grad_output, grad_hx=None, retain_graph=False):
        """BPTT through the last training forward: (grad_x, grad_hx). Adds into `grads`.

        As in torch, this frees the saved forward (its memory then holds the gate gradients, which
        saves T*B*G*H values per layer and direction); a second backward raises unless the first
        one had `retain_graph=True`. Everything is checked before any gradient is touched: after
        an error `grads` and the saved forward are as they were (a backward interrupted by Ctrl-C
        has freed the forward, as far as it got)."""
        sv = self._saved_forward()
        if self._spent():
            raise RuntimeError(SPENT_MESSAGE)
        T, B, H, D = sv["T"], sv["B"], self.hidden_size, self.num_directions
        layout = (B, T, D * H) if self.batch_first else (T, B, D * H)
        dy = v.shaped(grad_output, "grad_output", self.dtype, layout)
        if self.batch_first:
            dy = dy.swapaxes(0, 1)
        dy = np.ascontiguousarray(dy)
        dh_n, dc_n = self._check_hx(grad_hx, B)
        dh0 = np.zeros((self.num_layers * D, B, H), self.dtype)
        dc0 = np.zeros_like(dh0) if self.mode == "lstm" else None
        g = self.grads
        G = self.gate_size // H
        for layer in reversed(range(self.num_layers)):
            contexts, _ = sv["layers"][layer]
            I = contexts[0].x.shape[2]
            split = _directions.thread_split(T * B * G * H * (I + H), D)
            dxs = [np.empty((T, B, I), self.dtype) for _ in range(D)]

            def direction(d, threads, layer=layer, contexts=contexts, I=I, dy=dy, dxs=dxs):
                k, s = layer * D + d, self._suffix(layer, d)
                _, dh, dc, *_ = layer_backward(
                    contexts[d], dy[:, :, d * H:(d + 1) * H], None if dh_n is None else dh_n[k],
                    None if dc_n is None else dc_n[k],
                    grads=(g["weight_ih" + s], g["weight_hh" + s], g.get("bias_ih" + s), g.get("bias_hh" + s)),
                    dx_out=dxs[d], scratch=self._scratch(T, B, I, d, threads, retain_graph),
                    threads=threads, retain_graph=retain_graph)
                dh0[k] = dh
                if dc0 is not None:
                    dc0[k] = dc

            _directions.run([lambda n, d=d: direction(d, n) for d in range(D)], split)
            # Each direction wrote its own dx (so they can run together); their sum is dx, the same
            # bits whichever way they ran.
            dx = dxs[0] if D == 1 else np.add(dxs[0], dxs[1], out=dxs[0])
            if layer > 0:
                mask = sv["layers"][layer - 1][1]
                dy = dx if mask is None else dx * mask
            else:
                dy = dx
        grad_x = np.ascontiguousarray(dy.swapaxes(0, 1)) if self.batch_first else dy
        return grad_x, ((dh0, dc0) if self.mode == "lstm" else dh0)

    def __getstate__(self):  # copies and pickles leave the reusable workspaces behind
        state = super().__getstate__()
        state["_workspace"] = {}
        state["_packed"] = {}
        return state

    def _scratch(self, T, B, I, direction, threads, retain_graph):
        """The backward's workspace of one direction for a layer of input size I, kept for the next
        call (the directions may run at the same time: each has its own)."""
        n = backward_scratch_size(self.mode, T, B, I, self.hidden_size, self.dtype, threads, retain_graph)
        buf = self._workspace.get((I, direction))
        if buf is None or buf.size != n:
            buf = self._workspace[(I, direction)] = np.empty(n, self.dtype)
        return buf

    def __repr__(self):
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("num_layers", "bias", "batch_first", "dropout",
                                                                 "bidirectional") if getattr(self, k) != {
            "num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}[k])
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"


class RNN(RNNBase):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed)


class LSTM(RNNBase):
    """LSTM with gates (i, f, g, o): c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed)


class GRU(RNNBase):
    """GRU with gates (r, z, n): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h_t = (1-z)*n + z*h_{t-1}."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed)
