"""The recurrent cells rnnfast knows: one entry per cell kind, read by every front end.

The kernels' code and gate count come from `_core` (the C++ knows them); the rest says how each
front end names and orders what a cell has: whether it has a cell state, torch.nn's class and
mode, ONNX's operator and gate order, RNN's nonlinearity. Gates follow PyTorch's order everywhere inside rnnfast: RNN (one), LSTM (i, f, g,
o), GRU (r, z, n).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from . import _core


class CellKind(NamedTuple):
    name: str                          # "rnn_tanh", "rnn_relu", "lstm", "gru"
    code: int                          # the kernels' CellKind
    gates: int                         # G: gates per hidden unit
    has_cell_state: bool               # LSTM: a state (h, c); the others: h only
    torch_class: str                   # torch.nn's module: "RNN", "LSTM", "GRU"
    torch_mode: str                    # torch.nn.RNNBase's `mode`
    onnx_op: Optional[str]             # ONNX's operator (None: ONNX has none)
    onnx_gate_order: Tuple[int, ...]   # torch's gate blocks, in ONNX's order (LSTM: i o f c; GRU: z r h)
    nonlinearity: Optional[str]        # RNN's "tanh" / "relu"; None for the gated cells
    layer_norm: bool = False           # the layer-normalised cells: gains ln_ih_weight, ln_hh_weight
                                       # (and the LSTM's ln_cell_weight, ln_cell_bias)


_FRONT_ENDS = {
    "rnn_tanh": dict(has_cell_state=False, torch_class="RNN", torch_mode="RNN_TANH", onnx_op="RNN",
                     onnx_gate_order=(0,), nonlinearity="tanh"),
    "rnn_relu": dict(has_cell_state=False, torch_class="RNN", torch_mode="RNN_RELU", onnx_op="RNN",
                     onnx_gate_order=(0,), nonlinearity="relu"),
    "lstm": dict(has_cell_state=True, torch_class="LSTM", torch_mode="LSTM", onnx_op="LSTM",
                 onnx_gate_order=(0, 3, 1, 2), nonlinearity=None),
    "gru": dict(has_cell_state=False, torch_class="GRU", torch_mode="GRU", onnx_op="GRU",
                onnx_gate_order=(1, 0, 2), nonlinearity=None),
    "layernorm_lstm": dict(has_cell_state=True, torch_class="LayerNormLSTM", torch_mode="LAYERNORM_LSTM", onnx_op=None,
                           onnx_gate_order=(), nonlinearity=None, layer_norm=True),
    "layernorm_gru": dict(has_cell_state=False, torch_class="LayerNormGRU", torch_mode="LAYERNORM_GRU", onnx_op=None,
                          onnx_gate_order=(), nonlinearity=None, layer_norm=True),
}

CELLS = {name: CellKind(name=name, code=code, gates=gates, **_FRONT_ENDS[name])
         for name, (code, gates) in _core.cells.items()}

# rnnfast's own training regularisers of RNN, LSTM and GRU (torch.nn has none of them): each a
# constructor keyword holding a probability, 0 (off) by default, and its name in messages.
REGULARISERS = {"weight_drop": "weight drop", "zoneout": "zoneout", "recurrent_dropout": "recurrent dropout"}


def cell_kind(name) -> CellKind:
    """The registry's entry for `name`; ValueError naming the known cells otherwise."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"mode: expected one of {sorted(CELLS)}, got {name!r}") from None


def parameter_shapes(cell: CellKind, input_size, hidden_size, num_layers, directions, bias, proj_size=0):
    """(name, shape) of every parameter in torch.nn's names and registration order. proj_size > 0
    (an LSTM's projections): h has proj_size units, W_hh as many columns, and each layer and
    direction has weight_hr (proj_size, hidden_size). The layer-normalised cells add their gains
    (and the LSTM's cell bias) after the biases, as haste names them."""
    GH = cell.gates * hidden_size
    S = proj_size or hidden_size  # h's size
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else S * directions
        for d in range(directions):
            s = suffix(layer, d)
            yield "weight_ih" + s, (GH, inputs)
            yield "weight_hh" + s, (GH, S)
            if bias:
                yield "bias_ih" + s, (GH,)
                yield "bias_hh" + s, (GH,)
            if proj_size:
                yield "weight_hr" + s, (proj_size, hidden_size)
            if cell.layer_norm:
                yield "ln_ih_weight" + s, (GH,)
                yield "ln_hh_weight" + s, (GH,)
                if cell.has_cell_state:
                    yield "ln_cell_weight" + s, (hidden_size,)
                    yield "ln_cell_bias" + s, (hidden_size,)


def suffix(layer, direction) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")
