"""One stack of recurrent layers over the `_core` kernels, for every front end.

A Stack runs L layers of D directions of one cell: each layer's directions (at the same time when
there are threads for both, `_directions`), each with its own `LayerWorkspace` (packed-weight
caches and scratch, kept between calls), and back-propagates through them. It holds no parameters:
the front end passes them in each call, so that `rnnfast.RNN/LSTM/GRU` (and `BiRNN`), the
single-step cells and `rnnfast.torch` all run the same code and get the same bits. The front ends
keep what is theirs: argument checks and messages in their users' terms, parameter storage, and
(in rnnfast.torch) autograd and torch's own dropout between layers.

Shapes: x (T, B, I); states (D, B, H) per layer, (L*D, B, H) for the stack; y (T, B, D*H).
`weights` of a layer: D tuples (w_ih, w_hh, b_ih or None, b_hh or None), forward direction first,
with w_hr (P, H) after them for an LSTM with projections (then h (h0, h_n, y) has P units where
the shapes above say H; c keeps H), or a layer-normalised cell's gains (functional's `norms`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from . import _directions
from ._registry import CellKind
from .functional import LayerWorkspace, _layer_context, layer_backward, layer_forward


class LayerMasks(NamedTuple):
    """One layer's regularisers, per direction: each a list of D arrays, or None for off."""
    w_hh: Optional[list] = None                     # weight drop: masks of W_hh's shape
    zoneout: Union[list, float, None] = None        # p (with zoneout_seeds in training), or (T, B, S) masks
    zoneout_seeds: Optional[list] = None            # zoneout in training: the kernels draw the masks
    recurrent: Optional[list] = None                # recurrent dropout: (B, S) masks on h_{t-1} (S: h's size)

    def of(self, d):
        """Direction d's, as functional.layer_forward's keyword arguments."""
        return dict(w_hh_mask=None if self.w_hh is None else self.w_hh[d],
                    zoneout=self.zoneout[d] if isinstance(self.zoneout, list) else self.zoneout,
                    zoneout_seed=None if self.zoneout_seeds is None else self.zoneout_seeds[d],
                    recurrent_mask=None if self.recurrent is None else self.recurrent[d])


def _kernel_weights(cell, weights):
    """A direction's weights as layer_forward takes them: the positional (w_ih, w_hh, b_ih, b_hh),
    w_hr (or None) and norms (or None)."""
    if cell.layer_norm:
        return weights[:4], None, weights[4:]
    return weights[:4], (weights[4] if len(weights) > 4 else None), None


def _sizes(w_hh, w_hr):
    """(S, H), h's size and c's, from a direction's W_hh (G*H, S) and W_hr (P, H) or None:
    (P, H) with projections, else (H, H)."""
    S = w_hh.shape[1]
    return S, (S if w_hr is None else w_hr.shape[1])


def _step_work(T, B, I, H, S, G):
    """A direction's multiply-adds: the products with W_ih and W_hh, and W_hr's with projections (S < H)."""
    return T * B * H * (G * (I + S) + (S if S < H else 0))


class Stack:
    def __init__(self, cell: CellKind, num_layers: int, directions: int):
        self.cell, self.num_layers, self.directions = cell, num_layers, directions
        self._workspaces = [LayerWorkspace() for _ in range(num_layers * directions)]
        self._spare = {}  # layer -> consumed saved workspaces a new forward may take

    def __getstate__(self):  # copies and pickles start with empty workspaces and no spares
        return {"cell": self.cell, "num_layers": self.num_layers, "directions": self.directions}

    def __setstate__(self, state):
        self.__init__(state["cell"], state["num_layers"], state["directions"])

    # ---- one layer ---------------------------------------------------------------------------
    def run_layer(self, layer, x, h0, c0, weights, lengths, training, reuse=None, h_n=None, c_n=None,
                  masks=LayerMasks()):
        """Both directions of `layer` over x: (y, h_n, c_n or None, contexts or None).

        h_n, c_n: (D, B, H) arrays to write the final states into (else new ones). `reuse`: D saved
        workspaces of an earlier training forward to overwrite (that forward is spent). `masks`:
        the regularisers' draws (LayerMasks)."""
        D, G = self.directions, self.cell.gates
        T, B, I = x.shape
        S, H = _sizes(weights[0][1], _kernel_weights(self.cell, weights[0])[1])
        y = np.empty((T, B, D * S), x.dtype)
        h_n = np.empty((D, B, S), x.dtype) if h_n is None else h_n
        lstm = self.cell.has_cell_state
        c_n = (np.empty((D, B, H), x.dtype) if c_n is None else c_n) if lstm else None

        def direction(d, threads):
            plain, w_hr, norms = _kernel_weights(self.cell, weights[d])
            _, hn, cn, ctx = layer_forward(
                self.cell.name, x, None if h0 is None else h0[d], None if c0 is None else c0[d], *plain,
                reverse=bool(d), lengths=lengths, training=training, out=y[:, :, d * S:(d + 1) * S],
                saved=None if reuse is None else reuse[d], workspace=self._workspaces[layer * D + d], threads=threads,
                w_hr=w_hr, norms=norms, **masks.of(d))
            h_n[d] = hn
            if lstm:
                c_n[d] = cn
            return ctx

        if D == 1:
            contexts = [direction(0, 0)]
        else:
            # W_hh's size at the inputs' precision, a quantized module's too: the split follows the
            # work, which its own bytes understate (RESULTS.md, "The schedule's constants").
            split = _directions.thread_split(_step_work(T, B, I, H, S, G), D, G * H * S * x.dtype.itemsize,
                                             training)
            contexts = _directions.run([lambda n, d=d: direction(d, n) for d in range(D)], split)
        return y, h_n, c_n, contexts if training else None

    def contexts_of(self, layer, x, weights, lengths, saved, masks=LayerMasks()):
        """The contexts a training forward of `layer` made, from what it was given (the regularisers'
        draws too) and the `saved` workspaces it filled (one per direction): for callers that keep
        the saved forward as an array of their own (rnnfast.torch's compiled graphs) rather than the
        contexts."""
        contexts = []
        for d, w in enumerate(weights):
            (w_ih, w_hh, b_ih, _), w_hr, norms = _kernel_weights(self.cell, w)
            contexts.append(_layer_context(self.cell.name, x, w_ih, w_hh, b_ih, bool(d), lengths, saved[d],
                                           self._workspaces[layer * self.directions + d], w_hr=w_hr, norms=norms,
                                           **masks.of(d)))
        return contexts

    def backprop_layer(self, contexts, dy, dh_n, dc_n, grads, retain_graph, dh0=None, dc0=None):
        """BPTT through one layer's directions: (dx, dh0, dc0 or None, grads).

        dy (T, B, D*H); dh_n, dc_n (D, B, H) or None; grads: D tuples of arrays that the weight
        gradients are added into, or None for new ones. Each direction writes its own dx (so that
        they can run together) and their sum is dx: the same bits whichever way they ran."""
        D = self.directions
        T, B, I = contexts[0].x.shape
        S, H = _sizes(contexts[0].w_hh, contexts[0].w_hr)
        dtype = contexts[0].x.dtype
        lstm = self.cell.has_cell_state
        dh0 = np.empty((D, B, S), dtype) if dh0 is None else dh0
        dc0 = (np.empty((D, B, H), dtype) if dc0 is None else dc0) if lstm else None
        dxs = [np.empty((T, B, I), dtype) for _ in range(D)]

        def direction(d, threads):
            _, dh, dc, *dw = layer_backward(
                contexts[d], dy[:, :, d * S:(d + 1) * S], None if dh_n is None else dh_n[d],
                None if dc_n is None else dc_n[d], grads=None if grads is None else grads[d], dx_out=dxs[d],
                threads=threads, retain_graph=retain_graph)
            dh0[d] = dh
            if lstm:
                dc0[d] = dc
            return tuple(dw)

        if D == 1:
            dweights = [direction(0, 0)]
        else:
            split = _directions.thread_split(_step_work(T, B, I, H, S, self.cell.gates), D)
            dweights = _directions.run([lambda n, d=d: direction(d, n) for d in range(D)], split)
        dx = dxs[0] if D == 1 else np.add(dxs[0], dxs[1], out=dxs[0])
        return dx, dh0, dc0, dweights

    # ---- the stack ---------------------------------------------------------------------------
    def layers(self, x, h0, c0, run, between):
        """The layer loop of every front end: (the last layer's output, each layer's result).

        run(layer, input, h0 rows, c0 rows) runs one layer (h0, c0: (L*D, B, H), sliced to the
        layer's rows, or None) and returns (y, result); between(layer, y) gives the next layer's
        input (dropout in training)."""
        D, L = self.directions, self.num_layers
        inp, results = x, []
        for layer in range(L):
            rows = slice(layer * D, (layer + 1) * D)
            y, result = run(layer, inp, None if h0 is None else h0[rows], None if c0 is None else c0[rows])
            results.append(result)
            inp = between(layer, y) if layer < L - 1 else y
        return inp, results

    def forward(self, x, h0, c0, weights, lengths, training, dropout=None, reuse=None, weight_drop=None,
                zoneout=None, seed=None, recurrent_dropout=None):
        """Every layer on NumPy arrays: (y, h_n, c_n or None, saved or None).

        weights(layer) gives a layer's weights. dropout(y), if given, is called in training between
        layers and returns a mask (or None) that multiplies y before the next layer. weight_drop(w_hh),
        if given, is called in training for each layer's directions before the layer runs and returns
        a mask for that W_hh. zoneout: its p, or None; in training the kernels draw each direction's
        masks from a seed that seed() gives. recurrent_dropout, if given, is a function of a
        (B, H) shape called in training for each layer's directions: a mask on h_{t-1} in the
        recurrent product. `reuse`: an earlier forward's `saved`, whose workspaces this forward
        overwrites. `saved` is a list of (contexts, mask) per layer, for backward."""
        L, D = self.num_layers, self.directions
        T, B, _ = x.shape
        S, H = _sizes(weights(0)[0][1], _kernel_weights(self.cell, weights(0)[0])[1])
        h_n = np.empty((L * D, B, S), x.dtype)
        c_n = np.empty((L * D, B, H), x.dtype) if self.cell.has_cell_state else None
        masks = [None] * L

        def run(layer, inp, h0_rows, c0_rows):
            rows = slice(layer * D, (layer + 1) * D)
            old = None if reuse is None else [ctx.saved for ctx in reuse[layer][0]]
            layer_weights = weights(layer)
            masks = LayerMasks(
                w_hh=[weight_drop(w[1]) for w in layer_weights] if training and weight_drop is not None else None,
                zoneout=zoneout,
                zoneout_seeds=[seed() for _ in range(D)] if training and zoneout and seed else None,
                recurrent=[recurrent_dropout((B, S)) for _ in range(D)] if training and recurrent_dropout else None)
            y, _, _, contexts = self.run_layer(layer, inp, h0_rows, c0_rows, layer_weights, lengths, training,
                                               reuse=old, h_n=h_n[rows], c_n=None if c_n is None else c_n[rows],
                                               masks=masks)
            return y, contexts

        def between(layer, y):
            masks[layer] = dropout(y) if training and dropout is not None else None
            return y if masks[layer] is None else y * masks[layer]

        y, contexts = self.layers(x, h0, c0, run, between)
        return y, h_n, c_n, list(zip(contexts, masks)) if training else None

    def backward(self, saved, dy, dh_n, dc_n, grads, retain_graph):
        """BPTT through a forward's `saved`: (dx, dh0, dc0 or None). grads(layer) gives the D tuples
        of arrays that each layer's weight gradients are added into."""
        L, D = self.num_layers, self.directions
        contexts = saved[0][0]
        B, dtype = contexts[0].x.shape[1], contexts[0].x.dtype
        S, H = _sizes(contexts[0].w_hh, contexts[0].w_hr)
        dh0 = np.empty((L * D, B, S), dtype)
        dc0 = np.empty((L * D, B, H), dtype) if self.cell.has_cell_state else None
        for layer in reversed(range(L)):
            k = slice(layer * D, (layer + 1) * D)
            dx, *_ = self.backprop_layer(saved[layer][0], dy, None if dh_n is None else dh_n[k],
                                         None if dc_n is None else dc_n[k], grads(layer), retain_graph, dh0=dh0[k],
                                         dc0=None if dc0 is None else dc0[k])
            mask = saved[layer - 1][1] if layer > 0 else None
            dy = dx if mask is None else dx * mask
        return dy, dh0, dc0

    def recycle(self, layer, contexts):
        """Offers the saved workspaces of a layer's consumed forward to the next forward of the same
        layer (`take_spare`), which then need not fault in fresh pages. For callers whose forwards
        outlive the stack's view of them (rnnfast.torch's graphs); the NumPy modules reuse their
        last forward's directly."""
        if all(ctx.spent for ctx in contexts):
            self._spare[layer] = [ctx.saved for ctx in contexts]

    def take_spare(self, layer):
        """The recycled workspaces of `layer` (then no longer on offer, to any thread), or None."""
        return self._spare.pop(layer, None)  # one step under the GIL: two forwards never get the same

    def drop_spares(self):
        """Frees the recycled workspaces (an eval module has no use for them)."""
        self._spare.clear()

    def spent(self, saved) -> bool:
        """A backward freed `saved` (its workspaces now hold gate gradients): only a new forward,
        which may reuse the memory, can follow."""
        return any(ctx.spent for contexts, _ in saved for ctx in contexts)
