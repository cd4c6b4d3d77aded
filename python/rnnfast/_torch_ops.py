"""rnnfast's layers as torch custom operators, so that torch.compile and torch.export see one graph
node per layer instead of breaking the graph at the NumPy code around the kernels.

`rnnfast::layer_inference` runs one layer (all its directions) without autograd: what
`rnnfast.torch` calls under `torch.no_grad()` or `torch.inference_mode()`, or wherever nothing
needs a gradient. Its fake implementation gives the outputs' shapes and dtypes from the inputs', so
the compilers trace it without running it. A module's Stack (its workspaces and weight caches) is
reached through an integer handle (`register`) that a graph can carry as a constant; a graph that
outlives its module, or runs in another process, gets a new Stack: the same results, only without
the kept caches.

Training under torch.compile: `rnnfast::layer_train` runs one layer's training forward and returns
its saved forward as a tensor (D, saved_size) beside the outputs; `rnnfast::layer_train_backward`
back-propagates through it, registered as the first one's autograd formula. The saved tensor is an
ordinary tensor to the compilers: they keep it for the backward graph and free it after. The
backward leaves it as it was (retain_graph's path in the kernels: the same results, and a second
backward through a retained graph works), where eager training (`rnnfast.torch._Layer`) lets the
backward write its gate gradients over the saved forward and so needs less memory.
"""
from __future__ import annotations

import weakref
from typing import List, Optional, Tuple

import numpy as np
import torch

from . import _core, _validate
from ._registry import CELLS
from ._stack import LayerMasks, Stack

DOUBLE_BACKWARD = ("rnnfast.torch: double backward is not supported: rnnfast's layers compute first derivatives "
                   "only (here a gradient taken with create_graph=True through an rnnfast layer was differentiated "
                   "again); use torch.nn's layer where second derivatives are needed")

_STACKS: "weakref.WeakValueDictionary[int, Stack]" = weakref.WeakValueDictionary()


def register(stack: Stack) -> int:
    """The handle under which the operator finds `stack`."""
    _STACKS[id(stack)] = stack
    return id(stack)


def _stack_for(handle, cell, layer, directions):
    stack = _STACKS.get(handle)
    if stack is None or stack.cell.name != cell or stack.directions != directions or stack.num_layers <= layer:
        stack = Stack(CELLS[cell], layer + 1, directions)  # a stale handle: same results, fresh workspaces
    return stack


def numpy_view(t):
    """A tensor as a NumPy view of its memory (a contiguous copy only where it is not contiguous)."""
    return t.detach().contiguous().numpy()


def _trailing(per, cell):
    """How many of a direction's `per` parameter tensors follow w_ih, w_hh (and the biases): the
    layer norms' gains, or W_hr (then `per` is odd: 3 or 5)."""
    return (4 if cell.has_cell_state else 2) if cell.layer_norm else per % 2


def _grouped(weights, directions, cell):
    """A layer's flat parameter tensors (torch's order: w_ih, w_hh[, b_ih, b_hh], then w_hr or the
    layer norms' gains) -> per direction (w_ih, w_hh, b_ih, b_hh, ...) as the stack takes them,
    NumPy views."""
    per = len(weights) // directions
    extra = _trailing(per, cell)
    groups = []
    for d in range(directions):
        mine = [numpy_view(t) for t in weights[d * per:(d + 1) * per]]
        plain, tail = mine[:per - extra], mine[per - extra:]
        groups.append(tuple(plain) + (None, None) * (len(plain) == 2) + tuple(tail))
    return groups


def _sizes(weights, directions, cell):
    """(S, H), h's size and c's, of a layer's flat parameter tensors (fake ones too, so no NumPy
    views): (P, H) with projections, else (H, H)."""
    per = len(weights) // directions
    w_hr = weights[per - 1] if per % 2 and not CELLS[cell].layer_norm else None  # _trailing's W_hr
    return weights[1].shape[1], (weights[1].shape[1] if w_hr is None else w_hr.shape[1])


def run_layer(stack, layer, x, h0, c0, weights, lengths, training, masks, reuse=None):
    """All directions of one layer through the stack, on NumPy views of the tensors:
    (y (T, B, D*H), h_n (D, B, H), c_n or None, contexts or None). `weights`: the layer's
    parameters, direction by direction; `masks`: the regularisers' draws, a LayerMasks; `reuse`:
    the saved workspaces to fill (else the stack's recycled ones, in training)."""
    if training and reuse is None:
        reuse = stack.take_spare(layer)
    return stack.run_layer(layer, numpy_view(x), None if h0 is None else numpy_view(h0),
                           None if c0 is None else numpy_view(c0), _grouped(weights, stack.directions, stack.cell), lengths,
                           training, reuse=reuse, masks=masks)


def run_inference(x: torch.Tensor, h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                  weights: List[torch.Tensor], lengths: Optional[torch.Tensor], handle: int, cell: str,
                  layer: int, directions: int, zoneout: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's eval forward: (y (T, B, D*H), h_n (D, B, H), c_n (D, B, H), or an empty tensor
    for cells without one). lengths: int64 (B,), checked, or None; zoneout: eval's p (0: none).
    Eager code calls this directly: the operator's dispatch costs tens of microseconds a call,
    which only a compiler or exporter tracing the model needs."""
    stack = _stack_for(handle, cell, layer, directions)
    y, h_n, c_n, _ = run_layer(stack, layer, x, h0, c0, weights, None if lengths is None else lengths.numpy(), False,
                               LayerMasks(zoneout=zoneout or None))
    return torch.from_numpy(y), torch.from_numpy(h_n), x.new_empty(0) if c_n is None else torch.from_numpy(c_n)


def _inference_operator(x: torch.Tensor, h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                        weights: List[torch.Tensor], lengths: Optional[torch.Tensor], handle: int, cell: str,
                        layer: int, directions: int, zoneout: float
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rnnfast::layer_inference's body: traced code hands it the lengths unchecked (of any dtype),
    so they are checked here, as eager code checks them, before run_inference."""
    lengths = None if lengths is None else torch.from_numpy(_lengths_array(lengths, x))
    return run_inference(x, h0, c0, weights, lengths, handle, cell, layer, directions, zoneout)


layer_inference = torch.library.custom_op("rnnfast::layer_inference", _inference_operator, mutates_args=())


def _inference_shapes(x, weights, cell, directions):
    """Empty tensors of a layer's outputs' shapes: y, h_n and c_n (or an empty tensor)."""
    T, B, _ = x.shape
    S, H = _sizes(weights, directions, cell)
    c_n = x.new_empty(directions, B, H) if CELLS[cell].has_cell_state else x.new_empty(0)
    return x.new_empty(T, B, directions * S), x.new_empty(directions, B, S), c_n


@layer_inference.register_fake
def _(x, h0, c0, weights, lengths, handle, cell, layer, directions, zoneout):
    return _inference_shapes(x, weights, cell, directions)


# ---- training under torch.compile ---------------------------------------------------------

def _saved_values(cell, x, weights, directions):
    T, B, I = x.shape
    S, H = _sizes(weights, directions, cell)
    return _core.saved_size(CELLS[cell].code, int(T), int(B), int(I), int(H), int(S) if S != H else 0)


def _lengths_array(lengths, x):
    """The lengths tensor as the stack takes them, checked as eager code checks them (under
    torch.compile they reach the operator unchecked, of any dtype: the checks run here, eagerly)."""
    return None if lengths is None else _validate.lengths_array(lengths.numpy(), x.shape[1], x.shape[0])


def _layer_masks(zoneout, zoneout_seeds, w_hh_masks, recurrent_masks):
    """The regularisers' draws as the stack takes them (LayerMasks, NumPy views): zoneout's p (0:
    none) and its seeds (int64 (D,), or None), weight drop's W_hh masks and recurrent dropout's
    (B, H) masks, one per direction (an empty list: none)."""
    views = lambda masks: [numpy_view(m) for m in masks] or None  # noqa: E731
    return LayerMasks(w_hh=views(w_hh_masks), zoneout=zoneout or None,
                      zoneout_seeds=None if zoneout_seeds is None else [int(v) for v in zoneout_seeds.tolist()],
                      recurrent=views(recurrent_masks))


def run_training(x: torch.Tensor, h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                 weights: List[torch.Tensor], lengths: Optional[torch.Tensor], handle: int, cell: str, layer: int,
                 directions: int, save: bool, zoneout: float, zoneout_seeds: Optional[torch.Tensor],
                 w_hh_masks: List[torch.Tensor], recurrent_masks: List[torch.Tensor]
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's training forward: (y, h_n, c_n or an empty tensor, saved (D, saved_size)), with
    the regularisers' draws as _layer_masks takes them. Without `save` (a module in training mode
    under no_grad) the forward saves nothing (saved is (D, 0)) and, as eagerly, zoneout mixes in p
    instead of drawing masks from its seeds."""
    stack = _stack_for(handle, cell, layer, directions)
    # Zeros: the kernels leave some entries unwritten (padded steps), and an operator's outputs
    # must be the same bits from call to call.
    saved = x.new_zeros(directions, _saved_values(cell, x, weights, directions) if save else 0)
    rows = [saved[d].numpy() for d in range(directions)]
    masks = _layer_masks(zoneout, zoneout_seeds, w_hh_masks, recurrent_masks)
    y, h_n, c_n, contexts = run_layer(stack, layer, x, h0, c0, weights, _lengths_array(lengths, x), save, masks,
                                      reuse=rows if save else None)
    assert not save or all(np.shares_memory(ctx.saved, row) for ctx, row in zip(contexts, rows)), "the saved moved"
    c_n = x.new_empty(0) if c_n is None else torch.from_numpy(c_n)
    return torch.from_numpy(y), torch.from_numpy(h_n), c_n, saved


def run_training_backward(x: torch.Tensor, weights: List[torch.Tensor], lengths: Optional[torch.Tensor],
                          saved: torch.Tensor, dy: Optional[torch.Tensor], dh_n: Optional[torch.Tensor],
                          dc_n: Optional[torch.Tensor], handle: int, cell: str, layer: int, directions: int,
                          zoneout: float, zoneout_seeds: Optional[torch.Tensor], w_hh_masks: List[torch.Tensor],
                          recurrent_masks: List[torch.Tensor]
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    """Back through run_training's forward (given the same draws): (dx, dh0, dc0 or an empty
    tensor, the weights' gradients in `weights`' order). `saved` is read, not written."""
    stack = _stack_for(handle, cell, layer, directions)
    xs = numpy_view(x)
    contexts = stack.contexts_of(layer, xs, _grouped(weights, directions, stack.cell), _lengths_array(lengths, xs),
                                 [saved[d].numpy() for d in range(directions)],
                                 _layer_masks(zoneout, zoneout_seeds, w_hh_masks, recurrent_masks))
    T, B, _ = xs.shape
    S = weights[1].shape[1]  # h's size
    dy = np.zeros((T, B, directions * S), xs.dtype) if dy is None else numpy_view(dy)
    dx, dh0, dc0, dw = stack.backprop_layer(contexts, dy, None if dh_n is None else numpy_view(dh_n),
                                            None if dc_n is None else numpy_view(dc_n), None, retain_graph=True)
    dweights = [torch.from_numpy(g) for group in dw for g in group if g is not None]
    dc0 = x.new_empty(0) if dc0 is None else torch.from_numpy(dc0)
    return torch.from_numpy(dx), torch.from_numpy(dh0), dc0, dweights


layer_train = torch.library.custom_op("rnnfast::layer_train", run_training, mutates_args=())
layer_train_backward = torch.library.custom_op("rnnfast::layer_train_backward", run_training_backward,
                                               mutates_args=())


@layer_train.register_fake
def _(x, h0, c0, weights, lengths, handle, cell, layer, directions, save, *masks):
    y, h_n, c_n = _inference_shapes(x, weights, cell, directions)
    return y, h_n, c_n, x.new_empty(directions, _saved_values(cell, x, weights, directions) if save else 0)


@layer_train_backward.register_fake
def _(x, weights, lengths, saved, dy, dh_n, dc_n, handle, cell, layer, directions, *masks):
    _, h_n, c_n = _inference_shapes(x, weights, cell, directions)
    return x.new_empty(x.shape), h_n, c_n, [w.new_empty(w.shape) for w in weights]


def _setup_context(ctx, inputs, output):
    x, h0, c0, weights, lengths, handle, cell, layer, directions, save, zoneout, seeds, w_hh_masks, recurrent = inputs
    ctx.mark_non_differentiable(output[3])  # the saved forward: workspace, not a result
    ctx.set_materialize_grads(False)  # outputs without a gradient arrive as None, not zeros
    ctx.masks = (len(w_hh_masks), len(recurrent))
    ctx.save_for_backward(x, lengths, output[3], seeds, *weights, *w_hh_masks, *recurrent)
    ctx.weights = len(weights)
    ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
    ctx.args = (handle, cell, layer, directions, zoneout)


def _backward(ctx, dy, dh_n, dc_n, _dsaved):
    x, lengths, saved, seeds, *rest = ctx.saved_tensors
    if saved.shape[1] == 0:
        raise RuntimeError("rnnfast::layer_train: a forward run with save=False (training mode under no_grad) "
                           "saved nothing to back-propagate through")
    weights, rest = rest[:ctx.weights], rest[ctx.weights:]
    w_hh_masks, recurrent = rest[:ctx.masks[0]], rest[ctx.masks[0]:]
    cell_state = CELLS[ctx.args[1]].has_cell_state
    dx, dh0, dc0, dweights = layer_train_backward(x, weights, lengths, saved, dy, dh_n,
                                                  dc_n if cell_state else None, *ctx.args, seeds, w_hh_masks,
                                                  recurrent)
    # One gradient per input, lists as lists: none for the lengths, the arguments and the draws.
    return (dx, dh0 if ctx.has_h0 else None, dc0 if ctx.has_c0 else None, dweights) + (None,) * 8 + \
        ([None] * ctx.masks[0], [None] * ctx.masks[1])


def _no_second_derivative(ctx, *grads):
    raise RuntimeError(DOUBLE_BACKWARD)


layer_train.register_autograd(_backward, setup_context=_setup_context)
layer_train_backward.register_autograd(_no_second_derivative, setup_context=lambda ctx, inputs, output: None)
