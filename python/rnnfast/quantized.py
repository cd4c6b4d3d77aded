"""Reduced-precision inference: `rnnfast.quantize(module, dtype)`.

bfloat16: each weight matrix is rounded to bfloat16 (to nearest even) and kept as its 16-bit
patterns (uint16 arrays: the upper half of the float32's bits); each matrix product rounds its
activations (x_t, h_{t-1}) to bfloat16 and sums the exact products in float32; biases, gate math
and the states stay float32 (layer.h, `Precision`). Half the weight bytes; the same bits for any
thread count; every kernel path within float32 rounding of `rnnfast.reference.bfloat16_stack_forward`,
the plain statement of it (docs/precision.md says which paths share their bits).

int8 is named in the API and not built yet: asking for it raises NotImplementedError.
"""
from __future__ import annotations

import copy

import numpy as np

from .birnn import BiRNN
from .cells import _Cell
from .module import Module
from .modules import RNNBase

PRECISIONS = ("int8", "bfloat16")


def to_bfloat16(a) -> np.ndarray:
    """float32 values -> their bfloat16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (bits >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def from_bfloat16(bits) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _is_weight(name) -> bool:
    return name.startswith("weight_")


class Quantized(Module):
    """An inference-only copy of an RNN, LSTM, GRU, BiRNN or single-step cell with reduced-precision
    weights.

    forward takes what the original's forward takes (float32) and returns what its eval forward
    returns, in float32. `state_dict()` holds the weights as uint16 bit patterns and the biases in
    float32; `load_state_dict` takes only such a dict (float weights are refused: quantize the float
    module instead)."""

    def __init__(self, module, dtype: str):
        super().__init__()
        self.precision = dtype
        self.dtype = np.dtype(np.float32)
        inner = copy.deepcopy(module)
        inner.eval()
        core = inner.rnn if isinstance(inner, BiRNN) else inner  # the module holding the parameters
        core._saved = None
        core.grads = {}
        params = core.parameters()
        for name, p in params.items():
            params[name] = to_bfloat16(p) if _is_weight(name) else np.ascontiguousarray(p, np.float32)
        core.dtype = np.dtype(np.float32)
        self._module = inner
        self._params = params
        self.training = False
        for attr in ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias"):
            if hasattr(core, attr):
                setattr(self, attr, getattr(core, attr))

    def __repr__(self):
        return f"Quantized({self._module!r}, {self.precision!r})"

    def forward(self, *args, **kwargs):
        """As the original module's eval forward (RNN, LSTM, GRU, BiRNN: x, hx=None, lengths=None;
        a cell: x, state=None), all float32. A cell keeps no steps for backward."""
        return self._module.forward(*args, **kwargs)

    __call__ = forward

    def reset(self):
        """A cell's reset (a no-op otherwise: an inference-only cell records no steps)."""
        if hasattr(self._module, "reset"):
            self._module.reset()

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(f"train: a {self.precision} module is inference-only; train the float module "
                               "and quantize it again")
        return self

    def backward(self, *args, **kwargs):
        raise RuntimeError(f"backward: a {self.precision} module is inference-only (it keeps no gradients); "
                           "back-propagate through the float module")

    def _loaded(self, name, arr):
        """Module.load_state_dict's conversion: weights must be uint16 bit patterns, as state_dict() holds."""
        if _is_weight(name) and arr.dtype != np.uint16:
            raise TypeError(f"load_state_dict: {name}: expected {self.precision} weights (uint16 bit patterns, as "
                            f"this module's state_dict() holds), got dtype {arr.dtype}; for float weights, load "
                            f"them into the float module and quantize it")
        return arr.astype(self._params[name].dtype)


def quantize(module, dtype: str):
    """A new inference-only module with `module`'s weights in reduced precision (`dtype`: "bfloat16";
    "int8" is not built yet). `module` (rnnfast.RNN, LSTM, GRU, BiRNN, RNNCell, LSTMCell or GRUCell,
    float32) is left as it was."""
    if dtype not in PRECISIONS:
        raise ValueError(f"quantize: dtype must be one of {list(PRECISIONS)}, got {dtype!r}")
    if dtype == "int8":
        raise NotImplementedError("quantize: int8 is not built yet; use 'bfloat16'")
    if not isinstance(module, (RNNBase, BiRNN, _Cell)):
        raise TypeError(f"quantize: expected an rnnfast.RNN, LSTM, GRU, BiRNN or a single-step cell, got "
                        f"{type(module).__name__}")
    dtype_of = module.rnn.dtype if isinstance(module, BiRNN) else module.dtype
    if dtype_of != np.float32:
        raise TypeError(f"quantize: expected a float32 module, got {dtype_of}")
    return Quantized(module, dtype)
