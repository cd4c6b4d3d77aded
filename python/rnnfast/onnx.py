"""rnnfast's recurrent modules to and from standard ONNX graphs (RNN / LSTM / GRU nodes).

    import rnnfast
    lstm = rnnfast.LSTM(8, 32, num_layers=2, bidirectional=True)
    rnnfast.onnx.export(lstm, "lstm.onnx", (x, None, lengths))  # as in lstm(x, None, lengths)
    lstm = rnnfast.onnx.load("lstm.onnx")                        # any exporter's RNN/LSTM/GRU nodes

Needs the `onnx` package (`pip install onnx`, or `pip install ".[onnx]"` in the project's folder),
imported only when `export` or `load` runs. Import (`load`, `from_onnx`) is described in
`rnnfast._onnx_import`.

The graph. Its inputs follow the call `model(*example_input)`: always `input` ((T, B, I), or
(B, T, I) with batch_first); `h0` (and `c0` for an LSTM) of shape (L*D, B, H) where the example
gives hx; `lengths` (B,) int64 where the example gives lengths. T and B are symbolic (`seq_len`,
`batch`), so one file serves any sequence length and batch size. Its outputs are the module's:
`output` (T, B, D*H) (batch-first if the module is), `h_n` and for an LSTM `c_n`, (L*D, B, H).

Each layer is one ONNX node over both directions (direction="bidirectional"), the layers chained:
ONNX's Y (T, D, B, H) is transposed and reshaped into torch's (T, B, D*H) = [forward, backward]
before it feeds the next layer. The weights are stored per layer as ONNX wants them: W (D, G*H, I),
R (D, G*H, H), B (D, 2*G*H) = [b_ih, b_hh], with the gate blocks reordered from torch's order
(LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> ONNX z,r,h, with linear_before_reset=1, which is
torch's GRU). `lengths` go to every node's sequence_lens (cast to int32): outputs past each length
are 0 and the backward direction starts at each sequence's last valid step, as in rnnfast. Dropout
is an inference no-op and is left out.

An int8 LSTM (rnnfast.quantize(lstm, "int8"), or rnnfast.torch.quantize's) is written with ONNX
Runtime's com.microsoft DynamicQuantizeLSTM nodes: its int8 weights (W (D, I, 4H) and R (D, H, 4H),
transposed as that operator takes them) with their per-row scales as per-channel W_scale and R_scale
(D, 4H). The weights go as uint8, w + 128, with zero points 128: the same values, which ONNX
Runtime also multiplies without saturating on CPUs without VNNI, where with int8 weights its kernel
(vpmaddubsw on uint8 activations) saturates the 16-bit sums of pairs of products (on a Zen 3 its
outputs were 12-46% off rnnfast's; with uint8 weights within the tests' 2e-2). ONNX Runtime
quantizes the activations its own way (each tensor to uint8 with a zero point, one digit), so its
results are near rnnfast's int8 ones, not the same bits.
Other quantized modules have no ONNX operator and are refused.
"""
from __future__ import annotations

import numpy as np

from . import __version__
from . import _validate as v
from ._onnx_import import from_onnx, load
from ._registry import CELLS
from .functional import Int8Weight
from .modules import GRU, LSTM, RNN

__all__ = ["export", "load", "from_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def _numpy_module(model):
    """rnnfast.RNN / LSTM / GRU as they are; rnnfast.torch modules through their to_numpy(); an int8
    LSTM (rnnfast.quantize's or rnnfast.torch.quantize's) as the LSTM inside it, int8 weights and all."""
    precision = getattr(model, "precision", None)  # rnnfast.quantize's, or rnnfast.torch.quantize's
    inner = getattr(getattr(model, "_numpy", model), "_module", None) if precision is not None else model
    if getattr(getattr(inner, "_cell", None), "layer_norm", False):  # NumPy's or rnnfast.torch's, quantized too
        raise ValueError(f"export: ONNX has no operator for the layer-normalised cells (this module is a "
                         f"{type(inner).__name__})")
    if isinstance(model, (RNN, LSTM, GRU)):
        return model
    if type(model).__module__ == "rnnfast.torch" and hasattr(model, "to_numpy"):
        return model.to_numpy()
    if precision is not None:
        if precision == "int8" and isinstance(inner, LSTM):
            return inner
        why = ("ONNX Runtime's int8 recurrent operator (com.microsoft DynamicQuantizeLSTM) is an LSTM's only"
               if precision == "int8" else
               "ONNX's RNN, LSTM and GRU operators take float weights, and bfloat16 products have no ONNX operator")
        raise TypeError(f"export: a {precision} {type(inner).__name__} (rnnfast.quantize) is not exported: {why}; "
                        f"export the float module")
    raise TypeError(f"export: expected rnnfast.RNN, LSTM or GRU (or an rnnfast.torch one), "
                    f"got {type(model).__name__}")


def _example(model, example_input):
    """example_input -> (x, has_hx, has_lengths), checked against the module."""
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not 1 <= len(args) <= 3:
        raise TypeError(f"example_input: expected x or a tuple (x[, hx[, lengths]]), got {len(args)} items")
    x = v.float_array(args[0], "example_input x", model.dtype)
    if x.ndim != 3 or x.shape[-1] != model.input_size:
        layout = "(B, T, I)" if model.batch_first else "(T, B, I)"
        raise ValueError(f"example_input x: expected shape {layout} with I = {model.input_size}, got {x.shape}")
    hx = args[1] if len(args) > 1 else None
    lengths = args[2] if len(args) > 2 else None
    B, T = (x.shape[0], x.shape[1]) if model.batch_first else (x.shape[1], x.shape[0])
    if hx is not None:
        model._check_hx(hx, B)
    if lengths is not None:
        v.lengths_array(lengths, B, T)
    return x, hx is not None, lengths is not None


def _onnx_weights(model, layer, dtype):
    """(W, R, B or None) of one layer in ONNX's layout and gate order, as `dtype`; for an int8 layer
    W and R are (int8 values (D, K, G*H), scales (D, G*H)), DynamicQuantizeLSTM's layout."""
    H, order = model.hidden_size, CELLS[model.mode].onnx_gate_order

    def reorder(a):  # (G*H, ...) in torch's gate order -> ONNX's
        return np.concatenate([a[g * H:(g + 1) * H] for g in order])

    W, R, B = [], [], []
    for d in range(model.num_directions):
        w_ih, w_hh, b_ih, b_hh = model._layer_params(layer)[d]
        W.append(w_ih)
        R.append(w_hh)
        if b_ih is not None:
            B.append(np.concatenate([reorder(b_ih), reorder(b_hh)]))
    B = np.stack(B).astype(dtype) if B else None
    if isinstance(W[0], Int8Weight):
        def int8(ws):
            return (np.stack([reorder(w.values).T for w in ws]), np.stack([reorder(w.scale) for w in ws]))
        return int8(W), int8(R), B
    return np.stack([reorder(w) for w in W]).astype(dtype), np.stack([reorder(w) for w in R]).astype(dtype), B


def _uint8(values):
    """int8 weights as uint8 with zero point 128 (the module docstring says why)."""
    return (values.astype(np.int16) + 128).astype(np.uint8)


class _Graph:
    """Nodes and initializers (constants) as they are added."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper, self.nodes, self.inits = helper, numpy_helper, [], {}

    def node(self, op, inputs, outputs, **attrs):
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def const(self, name, array):
        if name not in self.inits:
            self.inits[name] = self.numpy_helper.from_array(array, name)
        return name


def _add_layer(g, model, layer, x, seq_lens, states, dtype):
    """One ONNX RNN / LSTM / GRU node over both directions of `layer`, its input `x` (T, B, I):
    returns (y (T, B, D*H), [h_n (D, B, H), c_n]) as value names."""
    mode, D, H, s = model.mode, model.num_directions, model.hidden_size, f"_l{layer}"
    W, R, B = _onnx_weights(model, layer, dtype)
    int8 = isinstance(W, tuple)
    inputs = [x, g.const("W" + s, _uint8(W[0]) if int8 else W), g.const("R" + s, _uint8(R[0]) if int8 else R),
              "" if B is None else g.const("B" + s, B), seq_lens]
    if states:  # this layer's rows of h0 (and c0)
        bounds = [g.const(f"start{s}", np.array([layer * D], np.int64)),
                  g.const(f"end{s}", np.array([(layer + 1) * D], np.int64)), g.const("axis0", np.array([0], np.int64))]
        inputs += [g.node("Slice", [name] + bounds, [name + s]) for name in states]
    if int8:  # no peepholes, then each weight's per-channel scales and zero points
        inputs += [""] * (8 - len(inputs))
        zeros = _uint8(np.zeros_like(W[1], dtype=np.int8))
        inputs += [g.const("W_scale" + s, W[1]), g.const("W_zero_point" + s, zeros), g.const("R_scale" + s, R[1]),
                   g.const("R_zero_point" + s, zeros)]
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["Y" + s, "h_n" + s] + (["c_n" + s] if mode == "lstm" else [])
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if mode == "rnn_relu":
        attrs["activations"] = ["Relu"] * D
    if mode == "gru":
        attrs["linear_before_reset"] = 1  # torch's GRU: r multiplies (W_hn h + b_hn)
    op = "DynamicQuantizeLSTM" if int8 else CELLS[mode].onnx_op
    g.node(op, inputs, outputs, name=op.lower() + s, **attrs, **({"domain": "com.microsoft"} if int8 else {}))
    # Y (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H): torch's [forward, backward] concatenation
    y = g.node("Transpose", ["Y" + s], ["Y_tbdh" + s], perm=[0, 2, 1, 3])
    y = g.node("Reshape", [y, g.const("shape_tb_", np.array([0, 0, -1], np.int64))], ["y" + s])
    return y, outputs[1:]


def export(model, path, example_input, opset: int = DEFAULT_OPSET, dtype=None):
    """Writes `model` (rnnfast.RNN / LSTM / GRU, or rnnfast.torch's) to `path` as an ONNX graph and
    returns the onnx.ModelProto. `example_input` is x or (x, hx) or (x, hx, lengths), as for
    `model(...)`: hx and lengths, where given (not None), become graph inputs `h0` [, `c0`] and
    `lengths`; the example's values only set which inputs exist and are checked against the module.
    `dtype` ("float32" / "float64", default the module's) is the graph's floating type: onnxruntime
    runs RNN, LSTM and GRU nodes in float32 only, so a float64 module meant for it is exported with
    dtype="float32".
    """
    # Weight drop and recurrent dropout are training-only: the exported (eval) graph is the plain one.
    if getattr(model, "zoneout", 0.0):
        raise ValueError(f"export: ONNX's RNN, LSTM and GRU have no zoneout, whose eval mixes p of h_{{t-1}} "
                         f"into every step (this module has zoneout={model.zoneout})")
    if getattr(model, "proj_size", 0):
        raise ValueError(f"export: ONNX's LSTM has no projection (h_t = W_hr (o_t * tanh(c_t))); this module has "
                         f"proj_size={model.proj_size}")
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError("rnnfast.onnx.export needs the onnx package: pip install onnx") from exc
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 14:
        raise ValueError(f"opset: expected an int >= 14, got {opset!r}")
    model = _numpy_module(model)
    _, has_hx, has_lengths = _example(model, example_input)
    mode, L, D, H = model.mode, model.num_layers, model.num_directions, model.hidden_size
    dtype = model.dtype if dtype is None else v.dtype_of(dtype)
    int8 = isinstance(model._layer_params(0)[0][0], Int8Weight)  # as _onnx_weights tells them apart
    if int8 and dtype != np.float32:
        raise ValueError("export: an int8 LSTM's graph is float32 (DynamicQuantizeLSTM takes float32 only)")
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    time_batch = ["batch", "seq_len"] if model.batch_first else ["seq_len", "batch"]
    states = (["h0", "c0"] if mode == "lstm" else ["h0"]) if has_hx else []
    finals = ["h_n", "c_n"] if mode == "lstm" else ["h_n"]

    def value(name, shape, kind=elem):
        return helper.make_tensor_value_info(name, kind, shape)

    inputs = [value("input", time_batch + [model.input_size])] + [value(s, [L * D, "batch", H]) for s in states]
    if has_lengths:
        inputs.append(value("lengths", ["batch"], TensorProto.INT64))
    outputs = [value("output", time_batch + [D * H])] + [value(s, [L * D, "batch", H]) for s in finals]

    g = _Graph(helper, numpy_helper)
    x = g.node("Transpose", ["input"], ["input_tbi"], perm=[1, 0, 2]) if model.batch_first else "input"
    seq_lens = g.node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32) if has_lengths else ""
    per_layer = []
    for layer in range(L):
        x, layer_states = _add_layer(g, model, layer, x, seq_lens, states, dtype)
        per_layer.append(layer_states)
    g.node("Transpose" if model.batch_first else "Identity", [x], ["output"],
           **({"perm": [1, 0, 2]} if model.batch_first else {}))
    for k, name in enumerate(finals):
        g.node("Concat", [s[k] for s in per_layer], [name], axis=0)

    graph = helper.make_graph(g.nodes, f"rnnfast_{type(model).__name__}", inputs, outputs, list(g.inits.values()))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if int8 else [])
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="rnnfast", producer_version=__version__)
    # The oldest IR version that carries this opset, so that older runtimes load the file too.
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import[:1])
    onnx.checker.check_model(proto, full_check=not int8)  # (onnx has no schema of ONNX Runtime's operators)
    onnx.save(proto, path)
    return proto
