"""One recurrent layer in one direction, as functions over NumPy arrays, run by the C++ kernels.

The signatures mirror `rnnfast.reference` (the NumPy oracle), so each fast path can be checked
against its reference call for call. Shapes: x (T, B, I); h0, c0 (B, H); w_ih (G*H, I);
w_hh (G*H, H); b_ih, b_hh (G*H,) or None; lengths (B,) ints in [1, T] or None; y (T, B, H). An
LSTM with projections (w_hr (P, H), P < H) has h of P units: h0, y and W_hh's columns P. The
layer-normalised cells ("layernorm_lstm", "layernorm_gru") take `norms`: (ln_ih_weight,
ln_hh_weight) (G*H,) each, and the LSTM's ln_cell_weight, ln_cell_bias (H,) after them.

The `*_forward` functions return a context as their last value; pass it to the matching
`*_backward` to run BPTT. Arrays are taken as they are (dtype float32 or float64, all alike):
validation of user input lives in the modules.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from . import _core
from ._registry import CELLS, cell_kind

# What one layer and direction keeps between calls: the packed-weight caches and the scratch. The
# kernels compare the weights with the copy a cache holds on every call and repack only what
# changed, so any update (load_state_dict, an optimiser step, an in-place edit) is seen; a cache is
# an optimisation, never a source of stale results. A single step (T = 1) packs as it goes and
# leaves the caches as they are. Copies and pickles start empty; a workspace busy in a call on
# another thread is not waited for (that call runs on a temporary one, without caches).
LayerWorkspace = _core.LayerWorkspace
WeightCache = LayerWorkspace  # its name before it held the scratch too (and in pickles of that time)
CELL_CODES = {name: cell.code for name, cell in CELLS.items()}  # the kernels' cell codes


class LayerContext:
    """What a training forward keeps for backward: the input, the weights and the saved workspace.

    `spent` is set by a backward that consumed the workspace (retain_graph=False): it then holds
    gate gradients, and only a new forward (which may reuse the memory) makes a new context."""

    __slots__ = ("mode", "x", "w_ih", "w_hh", "has_bias", "reverse", "lengths", "saved", "workspace", "spent",
                 "w_hh_mask", "zoneout", "zoneout_seed", "recurrent_mask", "w_hr", "norms")

    def __init__(self, mode, x, w_ih, w_hh, has_bias, reverse, lengths, saved, workspace, w_hh_mask=None,
                 zoneout=None, zoneout_seed=None, recurrent_mask=None, w_hr=None, norms=None):
        self.mode, self.x, self.w_ih, self.w_hh = mode, x, w_ih, w_hh  # w_hh as the kernels ran it (masked)
        self.has_bias, self.reverse, self.lengths, self.saved = has_bias, reverse, lengths, saved
        self.workspace = workspace
        self.spent = False
        self.w_hh_mask = w_hh_mask
        self.zoneout, self.zoneout_seed = zoneout, zoneout_seed
        self.recurrent_mask = recurrent_mask
        self.w_hr = w_hr
        self.norms = norms

    def __setstate__(self, state):  # contexts pickled by an older rnnfast held a weight cache
        self.w_hh_mask = self.zoneout = self.zoneout_seed = self.recurrent_mask = self.w_hr = self.norms = None
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, "workspace" if name == "cache" else name, value)


SPENT_MESSAGE = ("backward: the saved forward was already used by a backward, which freed it (its workspace now "
                 "holds gate gradients); run the forward again, or pass retain_graph=True to the first backward")


class Int8Weight(NamedTuple):
    """An int8 weight matrix as the kernels take it (rnnfast.quantize): `values` (rows, K) int8 and
    `scale` (rows,) float32, row j standing for values[j] * scale[j]."""
    values: np.ndarray
    scale: np.ndarray

    @property
    def shape(self):
        return self.values.shape


def stored_weight(params, name):
    """params[name] as the stack takes it: the array, or with a `name + "_scale"` entry beside it
    (an int8 module's) the Int8Weight of the two."""
    scale = params.get(name + "_scale")
    return params[name] if scale is None else Int8Weight(params[name], scale)


def _zoneout_kwargs(zoneout):
    """A context's zoneout (masks, a number p, or None) as the kernels take it."""
    if zoneout is None or np.ndim(zoneout):
        return {"zoneout": zoneout}
    return {"zoneout_p": float(zoneout)}


def _lengths(lengths):
    return None if lengths is None else np.ascontiguousarray(lengths, dtype=np.int64)


def _norms_list(norms):
    """The layer-normalised cells' parameters as the kernels take them: 4 entries, None where absent."""
    norms = tuple(norms or ())
    return list(norms) + [None] * (4 - len(norms))


def layer_forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, lengths=None, training=True, out=None,
                  saved=None, workspace=None, threads=0, cache=None, w_hh_mask=None, zoneout=None,
                  zoneout_seed=None, recurrent_mask=None, w_hr=None, norms=None):
    """Runs one layer: returns (y, h_n, c_n or None, LayerContext or None).

    `norms`, the layer-normalised cells' parameters: (ln_ih_weight, ln_hh_weight) of shape (G*H,),
    the LSTM's ln_cell_weight and ln_cell_bias (H,) after them.

    `w_hr` (P, H), an LSTM's projections (torch's proj_size): h_t = W_hr (o_t * tanh(c_t)) has P
    units (h0, h_n, y, W_hh's columns, zoneout's and recurrent dropout's masks), c keeps H. With
    reduced-precision weights it is of their kind: uint16 bit patterns, or an Int8Weight.

    `w_hh_mask` (weight drop), if given, is an array of w_hh's shape that multiplies w_hh for this
    call (the parameter itself is left alone); the backward then adds dL/dw_hh through the mask.
    `zoneout`, as in the reference: (T, B, H) masks m (1 where a unit keeps its state; h_t =
    m h_{t-1} + (1 - m) h~_t), or a number p for h_t = p h_{t-1} + (1 - p) h~_t; or, in training,
    p with `zoneout_seed` (an int in [0, 2**64)): masks drawn inside the kernels with probability p
    from that seed (`reference.zoneout_masks` gives the same ones), so that no mask array exists.
    The backward uses the same. `recurrent_mask` (recurrent dropout), if given, is a (B, H) array m: the recurrent
    product reads m * h_{t-1} at every step, while the state carried from step to step stays h.

    `out`, if given, is a (T, B, H) view to write y into (e.g. one half of a bidirectional output).
    `saved`, if given, is an earlier context's workspace to reuse (overwritten: that context is
    spent); it is used when its size fits and ignored otherwise. `workspace`, if given, is this
    layer and direction's `LayerWorkspace` (its backward uses it too). `threads` > 0 caps this
    call's threads (else `get_num_threads()`). `cache` is `workspace`'s former name.
    """
    if cache is not None:
        warnings.warn("layer_forward: `cache` is now called `workspace`", DeprecationWarning, stacklevel=2)
        workspace = cache if workspace is None else workspace
    T, B, _ = x.shape
    S = w_hh.shape[1]  # h's size
    w_hh_given = w_hh
    if w_hh_mask is not None:
        w_hh = w_hh * w_hh_mask
    zoneout_p = 0.0
    if zoneout is not None and not np.ndim(zoneout):
        zoneout, zoneout_p = None, float(zoneout)
    elif zoneout_seed is not None:
        raise ValueError("layer_forward: zoneout_seed draws the masks with probability p: give zoneout=p (a number)")
    if zoneout_seed is not None and not training:
        zoneout_seed = None  # eval mixes in p
    y = np.empty((T, B, S), x.dtype) if out is None else out
    lens = _lengths(lengths)
    scales = {}
    if isinstance(w_ih, Int8Weight) != isinstance(w_hh, Int8Weight):
        raise TypeError("layer_forward: w_ih and w_hh must both be Int8Weight (int8 inference) or both arrays, got "
                        f"{type(w_ih).__name__} and {type(w_hh).__name__}")
    if w_hr is not None and isinstance(w_hr, Int8Weight) != isinstance(w_hh, Int8Weight):
        raise TypeError("layer_forward: w_hr must be an Int8Weight exactly when w_ih and w_hh are, got "
                        f"{type(w_hr).__name__} beside {type(w_hh).__name__}")
    if isinstance(w_hh, Int8Weight):  # int8 (eval only): the scales go beside the int8 values
        (w_ih, scales["w_ih_scale"]), (w_hh, scales["w_hh_scale"]) = w_ih, w_hh
        if w_hr is not None:
            w_hr, scales["w_hr_scale"] = w_hr
    h_n, c_n, saved = _core.layer_forward(cell_kind(mode).code, x, w_ih, w_hh, b_ih, b_hh, h0, c0, y=y,
                                          reverse=bool(reverse), lengths=lens, training=bool(training), saved=saved,
                                          workspace=workspace, threads=int(threads), zoneout=zoneout,
                                          zoneout_p=zoneout_p, zoneout_seed=zoneout_seed,
                                          recurrent_mask=recurrent_mask, w_hr=w_hr, norms=_norms_list(norms),
                                          **scales)
    ctx = (_layer_context(mode, x, w_ih, w_hh_given, b_ih, reverse, lens, saved, workspace, w_hh_mask,
                         zoneout if zoneout is not None else zoneout_p, zoneout_seed, recurrent_mask, w_hh_run=w_hh,
                         w_hr=w_hr, norms=norms)
           if training else None)
    return y, h_n, c_n, ctx


def _layer_context(mode, x, w_ih, w_hh, b_ih, reverse, lengths, saved, workspace, w_hh_mask=None, zoneout=None,
                   zoneout_seed=None, recurrent_mask=None, w_hh_run=None, w_hr=None, norms=None):
    """The LayerContext of a training forward that `layer_forward` ran with these arguments and
    that filled `saved`: for layer_forward itself, and for callers that keep the saved workspace
    as an array of their own (rnnfast's stack). w_hh is the parameter; `w_hh_run`, if given, is
    what the kernels ran instead of w_hh * w_hh_mask (layer_forward has it already) and is taken
    as it is."""
    if w_hh_run is None:
        w_hh_run = w_hh if w_hh_mask is None else w_hh * w_hh_mask
    if zoneout is not None and not np.ndim(zoneout):
        zoneout = float(zoneout) or None
    return LayerContext(mode, x, w_ih, w_hh_run, b_ih is not None, bool(reverse), _lengths(lengths), saved, workspace,
                        w_hh_mask, zoneout, zoneout_seed, recurrent_mask, w_hr, tuple(norms) if norms else None)


def layer_backward(ctx, dy, dh_n=None, dc_n=None, grads=None, dx_out=None, dx_accumulate=False, scratch=None,
                   threads=0, retain_graph=False):
    """BPTT through a layer_forward: returns (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), then dw_hr
    for a layer with projections and the gradients of a layer-normalised cell's `norms`.

    As in torch, a backward frees what the forward saved unless `retain_graph`: the gate gradients
    are written over the saved gates (the backward's workspace is then O(B*G*H) instead of
    O(T*B*G*H); the layer-normalised cells' keeps two or three arrays of T*B*G*H, their dL/da and
    dL/d(W_hh h) of every step) and a second backward through `ctx` raises. The results are the
    same either way.

    `grads`, if given, is (dw_ih, dw_hh, db_ih, db_hh[, dw_hr], then the norms' gradients) arrays that the weight
    gradients are added into (the returned ones are those arrays); otherwise fresh arrays are
    returned. `dx_out` with
    `dx_accumulate` adds dx into an existing array (layers whose input feeds two directions).
    `scratch`: caller-owned memory of `backward_scratch_size` values (for the same `threads` and
    `retain_graph`) to use instead of the workspace's. `threads` > 0: this call's thread count
    (else `get_num_threads()`).
    """
    if ctx is None:
        raise RuntimeError("backward: no saved forward (was the forward run with training=False?)")
    if ctx.spent:
        raise RuntimeError(SPENT_MESSAGE)
    x, dt = ctx.x, ctx.x.dtype
    if grads is None:
        grads = (np.zeros_like(ctx.w_ih), np.zeros_like(ctx.w_hh),
                 np.zeros(ctx.w_hh.shape[0], dt) if ctx.has_bias else None,
                 np.zeros(ctx.w_hh.shape[0], dt) if ctx.has_bias else None)
        grads += () if ctx.w_hr is None else (np.zeros_like(ctx.w_hr),)
        grads += tuple(np.zeros_like(g) for g in ctx.norms or ())
    extras = (ctx.w_hr is not None) + len(ctx.norms or ())
    if len(grads) != 4 + extras:
        raise ValueError(f"grads: this layer takes {4 + extras} arrays (dw_ih, dw_hh, db_ih, db_hh"
                         f"{', dw_hr' if ctx.w_hr is not None else ''}{', the norms' if ctx.norms else ''}), "
                         f"got {len(grads)}")
    dx = np.empty(x.shape, dt) if dx_out is None else dx_out
    # Weight drop: the kernels give dL/d(w_hh * mask); the parameter's share is that times the mask.
    kernel_grads = grads if ctx.w_hh_mask is None else (grads[0], np.zeros_like(grads[1])) + tuple(grads[2:])
    # Marked before the call: a Ctrl-C raised as the kernels return must not leave a workspace
    # that holds gradients looking like saved gates. The binding's own errors (types, shapes,
    # memory) come before any kernel runs: then nothing was consumed.
    ctx.spent = not retain_graph
    try:
        dh0, dc0 = _core.layer_backward(cell_kind(ctx.mode).code, x, ctx.w_ih, ctx.w_hh, ctx.saved, dy, dh_n, dc_n, dx,
                                        *kernel_grads[:4], reverse=ctx.reverse, lengths=ctx.lengths,
                                        w_hr=ctx.w_hr, dw_hr=kernel_grads[4] if ctx.w_hr is not None else None,
                                        norms=_norms_list(ctx.norms),
                                        dnorms=_norms_list(kernel_grads[4 + (ctx.w_hr is not None):]),
                                        dx_accumulate=bool(dx_accumulate), consume_saved=not retain_graph,
                                        workspace=ctx.workspace, scratch=scratch, threads=int(threads),
                                        recurrent_mask=ctx.recurrent_mask, zoneout_seed=ctx.zoneout_seed,
                                        **_zoneout_kwargs(ctx.zoneout))
    except Exception:
        ctx.spent = False
        raise
    if ctx.w_hh_mask is not None:
        np.add(grads[1], kernel_grads[1] * ctx.w_hh_mask, out=grads[1])
    return (dx, dh0, dc0) + tuple(grads)


# ---- per-cell functions with the reference's signatures -------------------------------------

def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False, lengths=None):
    y, h_n, _, ctx = layer_forward("rnn_" + nonlinearity, x, h0, None, w_ih, w_hh, b_ih, b_hh, reverse, lengths)
    return y, h_n, ctx


def rnn_backward(dy, dh_n, ctx, retain_graph=False):
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = layer_backward(ctx, dy, dh_n, retain_graph=retain_graph)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, lengths=None, w_hr=None):
    return layer_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, lengths, w_hr=w_hr)


def lstm_backward(dy, dh_n, dc_n, ctx, retain_graph=False):
    return layer_backward(ctx, dy, dh_n, dc_n, retain_graph=retain_graph)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, lengths=None):
    y, h_n, _, ctx = layer_forward("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, reverse, lengths)
    return y, h_n, ctx


def gru_backward(dy, dh_n, ctx, retain_graph=False):
    return rnn_backward(dy, dh_n, ctx, retain_graph)


def backward_scratch_size(mode, T, B, I, H, dtype, threads=0, retain_graph=False, recurrent_dropout=False,
                          proj_size=0):
    """Values of scratch `layer_backward` needs with `threads` threads (0: the current count),
    `retain_graph` (without it the gate gradients live in the saved workspace: this does not grow
    with T, except for the layer-normalised cells), a forward with or without a `recurrent_mask`,
    and projections to `proj_size` units (0: none). Only for a caller that brings its own `scratch`: a workspace sizes its own."""
    return _core.backward_scratch_size(cell_kind(mode).code, T, B, I, H, np.dtype(dtype).itemsize, int(threads),
                                       not retain_graph, bool(recurrent_dropout), int(proj_size))
