"""Recurrent layers with PyTorch's conventions on NumPy arrays: RNN, LSTM, GRU, and the
layer-normalised LayerNormLSTM and LayerNormGRU.

A module holds its parameters (`state_dict()` names and layouts are torch.nn's), runs the C++
kernels layer by layer and direction by direction, and keeps what its last training forward saved
so that `backward` can run BPTT. Parameter gradients are added into `grads`.

Shapes: x (T, B, I) or (B, T, I) with batch_first; h0, c0 (L*D, B, H) with L layers and D = 2 for
bidirectional; y (T, B, D*H). An LSTM with projections (proj_size = P) has h of P units: h0, h_n
(L*D, B, P), y (T, B, D*P); c keeps H.
"""
from __future__ import annotations

import numpy as np

from . import _validate as v
from ._registry import REGULARISERS, cell_kind, parameter_shapes, suffix
from ._stack import Stack
from .functional import SPENT_MESSAGE, stored_weight
from .module import Module, serialized


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU; `mode` picks the cell."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0, proj_size=0):
        super().__init__()
        self._cell = cell_kind(mode)
        self.mode = mode
        self.input_size = v.positive_int(input_size, "input_size")
        self.hidden_size = v.positive_int(hidden_size, "hidden_size")
        self.proj_size = v.proj_size(proj_size, self.hidden_size, mode)
        self.num_layers = v.positive_int(num_layers, "num_layers")
        self.dropout = v.probability(dropout, "dropout")
        self.weight_drop = v.probability(weight_drop, "weight_drop")
        self.zoneout = v.probability(zoneout, "zoneout")
        self.recurrent_dropout = v.probability(recurrent_dropout, "recurrent_dropout")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dtype = v.dtype_of(dtype)
        self.training = True
        self._rng = np.random.default_rng(seed)
        self._saved = None
        self._stack = Stack(self._cell, self.num_layers, self.num_directions)
        self._names = [self._layer_names(layer) for layer in range(self.num_layers)]
        v.check_allocation(sum(int(np.prod(shape, dtype=object)) for _, shape in self._param_shapes())
                           * 2 * self.dtype.itemsize, "the parameters and their gradients")
        # torch.nn's order and init: U(-1/sqrt(H), 1/sqrt(H)); the layer norms' gains 1, the cell bias 0
        self._init_params(dict(self._param_shapes()), self._rng, 1.0 / np.sqrt(self.hidden_size))
        for name, p in self._params.items():
            if name.startswith("ln_"):
                p[...] = 0 if name.startswith("ln_cell_bias") else 1

    # ---- structure -------------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gate_size(self) -> int:
        return self._cell.gates * self.hidden_size

    @property
    def state_size(self) -> int:
        """h's size: proj_size with projections, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _param_shapes(self):
        return parameter_shapes(self._cell, self.input_size, self.hidden_size, self.num_layers,
                                self.num_directions, self.bias, self.proj_size)

    def _layer_names(self, layer):
        """(weight_ih, weight_hh, bias_ih, bias_hh) names of each of a layer's directions, then
        weight_hr's with projections or the layer norms' (as the stack takes them)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + (("weight_hr",) if self.proj_size else ())
        if self._cell.layer_norm:
            names += ("ln_ih_weight", "ln_hh_weight") + (("ln_cell_weight", "ln_cell_bias")
                                                         if self._cell.has_cell_state else ())
        return [tuple(n + suffix(layer, d) for n in names) for d in range(self.num_directions)]

    def _layer_params(self, layer):
        """The weights of a layer's directions, as the stack takes them."""
        p = self._params
        return [(stored_weight(p, wi), stored_weight(p, wh), p.get(bi), p.get(bh))
                + tuple(stored_weight(p, n) for n in extra)
                for wi, wh, bi, bh, *extra in self._names[layer]]

    def _layer_grads(self, layer):
        g = self.grads
        return [(g[wi], g[wh], g.get(bi), g.get(bh)) + tuple(g[n] for n in extra)
                for wi, wh, bi, bh, *extra in self._names[layer]]

    # ---- forward ---------------------------------------------------------------------------
    def _check_hx(self, hx, batch, name="hx"):
        rows = self.num_layers * self.num_directions
        what = "(num_layers * num_directions, batch, hidden_size)"
        return v.states(hx, name, type(self).__name__, self._cell.has_cell_state, (rows, batch, self.state_size),
                        self.dtype, what.replace("hidden", "proj") if self.proj_size else what,
                        cell_shape=(rows, batch, self.hidden_size), cell_what=what)

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
        v.check_allocation(self.num_layers * D * T * B * H * ((G + 3 + (self.proj_size > 0)) if self.training else 2)
                           * self.dtype.itemsize, "this forward's outputs and saved workspace")
        # A training forward reuses the last one's saved workspaces: that forward is spent from here
        # on. An eval forward (a validation pass between forward and backward) leaves it alone.
        old = self._saved["layers"] if self.training and self._saved else None
        if self.training:
            self._saved = None
        y, h_n, c_n, saved = self._stack.forward(x, h0, c0, self._layer_params, lens, self.training,
                                                 dropout=self._dropout_mask if self.dropout > 0 else None, reuse=old,
                                                 weight_drop=self._weight_drop_mask if self.weight_drop > 0 else None,
                                                 zoneout=self.zoneout or None, seed=self._seed,
                                                 recurrent_dropout=self._recurrent_mask if self.recurrent_dropout else None)
        self._after_forward(None if saved is None else {"layers": saved, "B": B, "T": T})
        if not self.training and self._saved and self._spent():
            self._saved = None  # nothing left to back-propagate: free its workspace
        out = y.swapaxes(0, 1) if self.batch_first else y
        out = np.ascontiguousarray(out)
        return out, ((h_n, c_n) if self._cell.has_cell_state else h_n)

    __call__ = forward

    def _dropout_mask(self, y):
        keep = self._rng.random(y.shape) >= self.dropout
        return keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)

    def _weight_drop_mask(self, w_hh):
        """W_hh's entries kept with probability 1 - p and scaled by 1 / (1 - p), drawn from the
        module's generator in the module's precision (half the draws' cost in float32)."""
        p = self.weight_drop
        keep = self._rng.random(w_hh.shape, dtype=self.dtype) >= self.dtype.type(p)
        return keep.astype(self.dtype) / self.dtype.type(1.0 - p)

    def _recurrent_mask(self, shape):
        """Recurrent dropout's (B, H) mask: h_{t-1}'s units kept with probability 1 - p, scaled by
        1 / (1 - p), drawn from the module's generator in the module's precision."""
        p = self.dtype.type(self.recurrent_dropout)
        return (self._rng.random(shape, dtype=self.dtype) >= p).astype(self.dtype) / (self.dtype.type(1) - p)

    def _seed(self):
        """A seed from the module's generator, from which the kernels draw a direction's zoneout masks."""
        return int(self._rng.integers(2 ** 64, dtype=np.uint64))

    # ---- backward --------------------------------------------------------------------------
    def _spent(self) -> bool:
        """The saved forward went through a backward that freed it (its workspace now holds gate
        gradients): it can only be reused by the next training forward."""
        return self._stack.spent(self._saved["layers"])

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
        T, B, H, D = sv["T"], sv["B"], self.state_size, self.num_directions
        layout = (B, T, D * H) if self.batch_first else (T, B, D * H)
        dy = v.shaped(grad_output, "grad_output", self.dtype, layout)
        if self.batch_first:
            dy = dy.swapaxes(0, 1)
        dy = np.ascontiguousarray(dy)
        dh_n, dc_n = self._check_hx(grad_hx, B, "grad_hx")
        dx, dh0, dc0 = self._stack.backward(sv["layers"], dy, dh_n, dc_n, self._layer_grads, retain_graph)
        grad_x = np.ascontiguousarray(dx.swapaxes(0, 1)) if self.batch_first else dx
        return grad_x, ((dh0, dc0) if self._cell.has_cell_state else dh0)

    def __setstate__(self, state):  # a module pickled by an rnnfast without the stack gets one
        super().__setstate__(state)
        for name in REGULARISERS:  # absent from a module pickled before it existed
            self.__dict__.setdefault(name, 0.0)
        self.__dict__.setdefault("proj_size", 0)
        if "_stack" not in state:
            for old in ("_workspace", "_packed"):
                self.__dict__.pop(old, None)
            self._cell = cell_kind(self.mode)
            self._stack = Stack(self._cell, self.num_layers, self.num_directions)
            self._names = [self._layer_names(layer) for layer in range(self.num_layers)]

    def __repr__(self):
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False,
                    "proj_size": 0, **dict.fromkeys(REGULARISERS, 0.0)}
        extra = "".join(f", {k}={getattr(self, k)!r}" for k, d in defaults.items() if getattr(self, k, d) != d)
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"


class RNN(RNNBase):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        self.nonlinearity = v.nonlinearity(nonlinearity)
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, weight_drop, zoneout, recurrent_dropout)


class LSTM(RNNBase):
    """LSTM with gates (i, f, g, o): c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t).

    proj_size = P > 0 (torch.nn.LSTM's projections, P < hidden_size): h_t = W_hr (o*tanh(c_t)) with
    weight_hr_l{k} (P, hidden_size); h (h0, h_n, the output's features per direction) and W_hh's
    columns have P units, c hidden_size."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0, proj_size=0):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed, weight_drop, zoneout, recurrent_dropout, proj_size)


class GRU(RNNBase):
    """GRU with gates (r, z, n): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)), h_t = (1-z)*n + z*h_{t-1}."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, seed, weight_drop, zoneout, recurrent_dropout)


class LayerNormLSTM(RNNBase):
    """The layer-normalised LSTM (Ba et al. 2016; haste's LayerNormLSTM), constructed as LSTM. With
    LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over a row's entries (biased variance):
    a = LN(W_ih x_t) * ln_ih_weight + b_ih + LN(W_hh h_{t-1}) * ln_hh_weight + b_hh gives the gates
    (i, f, g, o); c_t = f*c_{t-1} + i*g; h_t = o*tanh(LN(c_t) * ln_cell_weight + ln_cell_bias).
    Parameters: LSTM's, and ln_ih_weight_l{k}, ln_hh_weight_l{k} (4H, init 1), ln_cell_weight_l{k}
    (H, init 1), ln_cell_bias_l{k} (H, init 0). A row's norms read all of it: where the kernels'
    threads split hidden units, each computes a row's statistics itself, in one order, so results
    do not depend on the thread count."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("layernorm_lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, weight_drop, zoneout, recurrent_dropout)


class LayerNormGRU(RNNBase):
    """The layer-normalised GRU, constructed as GRU: a_ih = LN(W_ih x_t) * ln_ih_weight + b_ih and
    a_hh = LN(W_hh h_{t-1}) * ln_hh_weight + b_hh (LN as in LayerNormLSTM, over a row's 3H entries)
    take the places of the GRU's products: r = sigmoid(a_ih_r + a_hh_r), z likewise,
    n = tanh(a_ih_n + r * a_hh_n), h_t = (1 - z) n + z h_{t-1}. Parameters: GRU's, and
    ln_ih_weight_l{k}, ln_hh_weight_l{k} (3H, init 1)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype="float32", seed=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("layernorm_gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, seed, weight_drop, zoneout, recurrent_dropout)
