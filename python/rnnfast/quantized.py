"""Reduced-precision inference: `rnnfast.quantize(module, dtype)`.

bfloat16: each weight matrix is rounded to bfloat16 (to nearest even) and kept as its 16-bit
patterns (uint16 arrays: the upper half of the float32's bits); each matrix product rounds its
activations (x_t, h_{t-1}) to bfloat16 and sums the exact products in float32; biases, gate math
and the states stay float32 (layer.h, `Precision`). Half the weight bytes; the same bits for any
thread count; every kernel path within float32 rounding of `rnnfast.reference.bfloat16_stack_forward`,
the plain statement of it (docs/precision.md says which paths share their bits).

int8: each weight matrix is quantized per row (symmetric: row j's int8 values times its float32
scale, `weight_..._scale`, stand for the row; a quarter of float32's bytes, plus a scale a row),
and each matrix product quantizes its activations per row as it goes (scale = max abs(a) / 127;
h_{t-1} in one int8 digit, x_t in two: the second quantizes what the first leaves, at 1/254 of its
step), sums q_a q_w exactly in int32 and scales the sums back to float32; biases, gate math and the
states stay float32 (layer.h, `Precision`). A loaded state_dict may hold any int8 weight, -128
included. The digits and the integer sums are the same on every kernel path;
`rnnfast.reference.int8_stack_forward` is the plain statement of it.

An LSTM's projections (W_hr) are stored the same way, and their product reads o_t tanh(c_t) as
W_hh's reads h_{t-1} (bfloat16; one int8 digit a row). The layer-normalised cells normalise the
products as they come out, in float32; their gains and biases stay float32.
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


def to_int8(w):
    """A float32 weight matrix -> (int8 values, float32 scale per row): with m = max abs(w) over a row,
    q = rint(w * (127 / m)) (ties to even), scale = m / 127; a row of zeros gives zeros and scale 0."""
    w = np.asarray(w, dtype=np.float32)
    m = np.max(np.abs(w), axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    inv = np.divide(np.float32(127), m, out=np.zeros_like(m), where=m > 0)
    return np.clip(np.rint(w * inv[:, None]), -127, 127).astype(np.int8), (m / np.float32(127)).astype(np.float32)


def _is_weight(name) -> bool:
    return name.startswith("weight_") and not name.endswith("_scale")


# What state_dict() holds of a weight at each precision.
_WEIGHT_DTYPES = {"bfloat16": np.uint16, "int8": np.int8}


class Quantized(Module):
    """An inference-only copy of an RNN, LSTM (with projections too), GRU, LayerNormLSTM, LayerNormGRU,
    BiRNN or single-step cell with reduced-precision weights.

    forward takes what the original's forward takes (float32) and returns what its eval forward
    returns, in float32. `state_dict()` holds the weights as uint16 bit patterns (bfloat16) or as
    int8 arrays with a float32 `<name>_scale` array each (int8), and the biases in float32;
    `load_state_dict` takes only such a dict (float weights are refused: quantize the float module
    instead)."""

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
        for name, p in list(params.items()):
            if not _is_weight(name):
                params[name] = np.ascontiguousarray(p, np.float32)
            elif dtype == "bfloat16":
                params[name] = to_bfloat16(p)
            else:
                params[name], params[name + "_scale"] = to_int8(p)
        core.dtype = np.dtype(np.float32)
        self._module = inner
        self._params = params
        self.training = False
        for attr in ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias",
                     "proj_size"):
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
        """Module.load_state_dict's conversion: weights must be of the dtype state_dict() holds."""
        want = np.dtype(_WEIGHT_DTYPES[self.precision])
        if _is_weight(name) and arr.dtype != want:
            what = "uint16 bit patterns" if self.precision == "bfloat16" else "int8 arrays"
            raise TypeError(f"load_state_dict: {name}: expected {self.precision} weights ({what}, as this "
                            f"module's state_dict() holds), got dtype {arr.dtype}; for float weights, load "
                            f"them into the float module and quantize it")
        return arr.astype(self._params[name].dtype)


def quantize(module, dtype: str):
    """A new inference-only module with `module`'s weights in reduced precision (`dtype`: "int8" or
    "bfloat16"). `module` (rnnfast.RNN, LSTM (with projections too), GRU, LayerNormLSTM, LayerNormGRU,
    BiRNN, RNNCell, LSTMCell or GRUCell, float32) is left as it was. Every weight matrix (weight_*,
    W_hr too) is quantized; the layer norms' gains and biases stay float32, as do the products' norms."""
    if dtype not in PRECISIONS:
        raise ValueError(f"quantize: dtype must be one of {list(PRECISIONS)}, got {dtype!r}")
    if not isinstance(module, (RNNBase, BiRNN, _Cell)):
        raise TypeError(f"quantize: expected an rnnfast.RNN, LSTM, GRU, LayerNormLSTM, LayerNormGRU, BiRNN or a "
                        f"single-step cell, got {type(module).__name__}")
    dtype_of = module.rnn.dtype if isinstance(module, BiRNN) else module.dtype
    if dtype_of != np.float32:
        raise TypeError(f"quantize: expected a float32 module, got {dtype_of}")
    return Quantized(module, dtype)
