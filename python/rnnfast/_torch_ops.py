"""rnnfast's layer inference as a torch custom operator, so that torch.compile and torch.export see
one graph node per layer instead of breaking the graph at the NumPy code around the kernels.

`rnnfast::layer_inference` runs one layer (all its directions) without autograd: what
`rnnfast.torch` calls under `torch.no_grad()` or `torch.inference_mode()`, or wherever nothing
needs a gradient. Its fake implementation gives the outputs' shapes and dtypes from the inputs', so
the compilers trace it without running it. A module's Stack (its workspaces and weight caches) is
reached through an integer handle (`register`) that a graph can carry as a constant; a graph that
outlives its module, or runs in another process, gets a new Stack: the same results, only without
the kept caches. Training (autograd) still runs through `rnnfast.torch._Layer`.
"""
from __future__ import annotations

import weakref
from typing import List, Optional, Tuple

import torch

from ._registry import CELLS
from ._stack import LayerMasks, Stack

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


def run_layer(stack, layer, x, h0, c0, weights, lengths, training, masks):
    """All directions of one layer through the stack, on NumPy views of the tensors:
    (y (T, B, D*H), h_n (D, B, H), c_n or None, contexts or None). `weights`: the layer's
    parameters, direction by direction; `masks`: the regularisers' draws, a LayerMasks."""
    D = stack.directions
    per = len(weights) // D
    grouped = [tuple(numpy_view(t) for t in weights[d * per:(d + 1) * per]) + (None, None) * (per == 2)
               for d in range(D)]
    return stack.run_layer(layer, numpy_view(x), None if h0 is None else numpy_view(h0),
                           None if c0 is None else numpy_view(c0), grouped, lengths, training,
                           reuse=stack.take_spare(layer) if training else None, masks=masks)


def run_inference(x: torch.Tensor, h0: Optional[torch.Tensor], c0: Optional[torch.Tensor],
                  weights: List[torch.Tensor], lengths: Optional[torch.Tensor], handle: int, cell: str,
                  layer: int, directions: int, zoneout: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's eval forward: (y (T, B, D*H), h_n (D, B, H), c_n (D, B, H), or an empty tensor
    for cells without one). lengths: int64 (B,) or None; zoneout: eval's p (0: none). Eager code
    calls this directly: the operator's dispatch costs tens of microseconds a call, which only a
    compiler or exporter tracing the model needs."""
    stack = _stack_for(handle, cell, layer, directions)
    lens = None if lengths is None else lengths.numpy()
    y, h_n, c_n, _ = run_layer(stack, layer, x, h0, c0, weights, lens, False, LayerMasks(zoneout=zoneout or None))
    return torch.from_numpy(y), torch.from_numpy(h_n), x.new_empty(0) if c_n is None else torch.from_numpy(c_n)


layer_inference = torch.library.custom_op("rnnfast::layer_inference", run_inference, mutates_args=())


@layer_inference.register_fake
def _(x, h0, c0, weights, lengths, handle, cell, layer, directions, zoneout):
    T, B, _ = x.shape
    H = weights[1].shape[1]  # w_hh (G*H, H)
    c_n = x.new_empty(directions, B, H) if CELLS[cell].has_cell_state else x.new_empty(0)
    return x.new_empty(T, B, directions * H), x.new_empty(directions, B, H), c_n
