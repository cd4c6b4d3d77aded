"""The recurrent cells rnnfast knows: one entry per cell kind, read by every front end.

The kernels' code and gate count come from `_core` (the C++ knows them); the rest says how each
front end names and orders what a cell has: its states, torch.nn's class and mode, ONNX's operator
and gate order. Gates follow PyTorch's order everywhere inside rnnfast: RNN (one), LSTM (i, f, g,
o), GRU (r, z, n).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from . import _core


class CellKind(NamedTuple):
    name: str                          # "rnn_tanh", "rnn_relu", "lstm", "gru"
    code: int                          # the kernels' CellKind
    gates: int                         # G: gates per hidden unit
    states: Tuple[str, ...]            # ("h",), or ("h", "c") for LSTM
    torch_class: str                   # torch.nn's module: "RNN", "LSTM", "GRU"
    torch_mode: str                    # torch.nn.RNNBase's `mode`
    onnx_op: str                       # ONNX's operator
    onnx_gate_order: Tuple[int, ...]   # torch's gate blocks, in ONNX's order (LSTM: i o f c; GRU: z r h)
    nonlinearity: Optional[str]        # RNN's "tanh" / "relu"; None for the gated cells

    @property
    def has_cell_state(self) -> bool:
        return len(self.states) == 2


_FRONT_ENDS = {
    "rnn_tanh": (("h",), "RNN", "RNN_TANH", "RNN", (0,), "tanh"),
    "rnn_relu": (("h",), "RNN", "RNN_RELU", "RNN", (0,), "relu"),
    "lstm": (("h", "c"), "LSTM", "LSTM", "LSTM", (0, 3, 1, 2), None),
    "gru": (("h",), "GRU", "GRU", "GRU", (1, 0, 2), None),
}

CELLS = {name: CellKind(name, code, gates, *_FRONT_ENDS[name]) for name, (code, gates) in _core.cells.items()}


def cell_kind(name) -> CellKind:
    """The registry's entry for `name`; ValueError naming the known cells otherwise."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"mode: expected one of {sorted(CELLS)}, got {name!r}") from None


def cell_of_rnn(nonlinearity) -> CellKind:
    """RNN's cell for a nonlinearity name (validated by the caller)."""
    return CELLS["rnn_" + nonlinearity]


def parameter_shapes(cell: CellKind, input_size, hidden_size, num_layers, directions, bias):
    """(name, shape) of every parameter in torch.nn's names and registration order."""
    GH = cell.gates * hidden_size
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else hidden_size * directions
        for d in range(directions):
            s = suffix(layer, d)
            yield "weight_ih" + s, (GH, inputs)
            yield "weight_hh" + s, (GH, hidden_size)
            if bias:
                yield "bias_ih" + s, (GH,)
                yield "bias_hh" + s, (GH,)


def suffix(layer, direction) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")
