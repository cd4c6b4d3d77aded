"""Import of ONNX graphs made of RNN / LSTM / GRU nodes as rnnfast modules (`rnnfast.onnx.load`).

What an exporter writes for a stack of recurrent layers: one node per layer (both directions in
one node), the layers chained through glue (Transpose / Reshape / Squeeze / Concat / Identity,
and for the initial states Slice or Expand of zeros). The weights are the nodes' W (D, G*H, I),
R (D, G*H, H) and B (D, 2*G*H) = [Wb, Rb] in ONNX's gate order (LSTM i, o, f, c; GRU z, r, h),
which go back to torch's order (LSTM i, f, g, o; GRU r, z, n) and names. The nodes' runtime inputs
(sequence_lens, initial_h, initial_c) become the module's call arguments (lengths, hx).
What rnnfast's cells do not compute is refused with an error that names it: peepholes, clipping,
input_forget, activations other than the plain cells', GRU with linear_before_reset=0 (rnnfast's
GRU, like torch's, applies the reset gate after the recurrent product), a lone reverse direction.
"""
from __future__ import annotations

import numpy as np

from ._registry import CELLS
from .modules import GRU, LSTM, RNN

_OPS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
# The activations each op's cell computes, per direction (ONNX's defaults).
_ACTIVATIONS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}
_GLUE = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Identity", "Dropout", "Cast"}


def _attributes(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constants(graph):
    """Every initializer and Constant node's value, by name."""
    from onnx import numpy_helper
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


class _Layer:
    """One recurrent node, checked, with its weights in torch's layout and gate order."""

    def __init__(self, node, constants):
        op, name = node.op_type, node.name or node.output[0]
        a = _attributes(node)
        self.node, self.op = node, op
        what = f"{op} node {name!r}"
        for unsupported in ("clip", "activation_alpha", "activation_beta"):
            if unsupported in a:
                raise ValueError(f"from_onnx: {what} has `{unsupported}`, which rnnfast's {op} does not compute")
        if a.get("input_forget", 0):
            raise ValueError(f"from_onnx: {what} has input_forget=1 (coupled input and forget gates), which "
                             f"rnnfast's LSTM does not compute")
        if op == "GRU" and a.get("linear_before_reset", 0) != 1:
            raise ValueError(f"from_onnx: {what} has linear_before_reset=0: rnnfast's GRU (like torch's) "
                             f"applies the reset gate after the recurrent product, r * (W_hn h + b_hn), which "
                             f"ONNX writes as linear_before_reset=1")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction == "reverse":
            raise ValueError(f"from_onnx: {what} runs the reverse direction alone; rnnfast's modules run "
                             f"forward or bidirectional layers")
        self.directions = 2 if direction == "bidirectional" else 1
        self.layout = a.get("layout", 0)
        acts = [s.decode().lower() if isinstance(s, bytes) else s.lower() for s in a.get("activations", [])]
        if op == "RNN":
            acts = acts or ["tanh"] * self.directions
            if len(set(acts)) != 1 or acts[0] not in ("tanh", "relu"):
                raise ValueError(f"from_onnx: {what} has activations {acts}: rnnfast's RNN computes Tanh or Relu, "
                                 f"the same in both directions")
            self.nonlinearity = acts[0]
        elif acts and acts != _ACTIVATIONS[op] * self.directions:
            raise ValueError(f"from_onnx: {what} has activations {acts}: rnnfast's {op} computes "
                             f"{_ACTIVATIONS[op] * self.directions}")
        inputs = list(node.input) + [""] * (8 - len(node.input))
        if op == "LSTM" and inputs[7]:
            raise ValueError(f"from_onnx: {what} has peephole weights (input P, {inputs[7]!r}), which rnnfast's "
                             f"LSTM does not have")
        for role, k in (("W", 1), ("R", 2)):
            if inputs[k] not in constants:
                raise ValueError(f"from_onnx: {what}'s {role} ({inputs[k]!r}) is computed in the graph, not a "
                                 f"constant: rnnfast imports stored weights only")
        W, R = constants[inputs[1]], constants[inputs[2]]
        B = constants.get(inputs[3]) if inputs[3] else None
        if inputs[3] and B is None:
            raise ValueError(f"from_onnx: {what}'s B ({inputs[3]!r}) is computed in the graph, not a constant")
        self.dtype = np.float64 if W.dtype == np.float64 else np.float32
        self.hidden = R.shape[-1]
        self.input_size = W.shape[-1]
        gates = CELLS[{"RNN": "rnn_tanh", "LSTM": "lstm", "GRU": "gru"}[op]].onnx_gate_order
        H = self.hidden

        def to_torch(a):  # (G*H, ...) blocks in ONNX's order -> torch's
            blocks = {g: a[k * H:(k + 1) * H] for k, g in enumerate(gates)}
            return np.concatenate([blocks[g] for g in range(len(gates))])

        G = len(gates)
        self.weights = []
        for d in range(self.directions):
            b_ih = b_hh = None
            if B is not None:
                b_ih, b_hh = to_torch(B[d, :G * H]), to_torch(B[d, G * H:])
            self.weights.append((to_torch(W[d]), to_torch(R[d]), b_ih, b_hh))

    def follows(self, previous, producers):
        """Whether this node's input X is `previous`'s output Y through glue alone, with matching sizes."""
        same = (self.op, self.directions, self.hidden, self.layout, getattr(self, "nonlinearity", None)) == (
            previous.op, previous.directions, previous.hidden, previous.layout, getattr(previous, "nonlinearity", None))
        if not same or self.input_size != previous.directions * previous.hidden:
            return False
        name = self.node.input[0]
        while name in producers and producers[name].op_type in _GLUE:
            name = producers[name].input[0]
        return name == previous.node.output[0] if previous.node.output else False


def _batch_first(layer, producers, graph_inputs):
    """Whether the stack reads batch-first input: layout=1, or (as rnnfast.onnx.export writes a
    batch_first module) its X is a graph input of (B, T, I) transposed to (T, B, I)."""
    if layer.layout == 1:
        return True
    glue = producers.get(layer.node.input[0])
    return (glue is not None and glue.op_type == "Transpose" and glue.input[0] in graph_inputs
            and list(_attributes(glue).get("perm", [])) == [1, 0, 2])


def _module(stack, batch_first):
    """One rnnfast module for a chain of layers."""
    first = stack[0]
    kw = dict(num_layers=len(stack), bidirectional=first.directions == 2, batch_first=batch_first,
              bias=any(w[2] is not None for layer in stack for w in layer.weights),
              dtype="float64" if first.dtype == np.float64 else "float32")
    if first.op == "RNN":
        kw["nonlinearity"] = first.nonlinearity
    m = _OPS[first.op](first.input_size, first.hidden, **kw)
    state = {}
    for k, layer in enumerate(stack):
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(layer.weights):
            s = f"_l{k}" + ("_reverse" if d else "")
            state["weight_ih" + s], state["weight_hh" + s] = w_ih, w_hh
            if kw["bias"]:
                zeros = np.zeros(w_hh.shape[0], w_hh.dtype)
                state["bias_ih" + s] = zeros if b_ih is None else b_ih
                state["bias_hh" + s] = zeros if b_hh is None else b_hh
    m.load_state_dict(state)
    return m.eval()


def from_onnx(model_proto):
    """The rnnfast modules of an ONNX ModelProto's RNN / LSTM / GRU nodes, in eval mode: one module
    when the nodes chain into one stack (each layer's input is the previous layer's output through
    glue only), else a list of modules in the graph's order. Call each with the graph's runtime
    inputs: x (T, B, I), or (B, T, I) where the nodes have layout=1 or read a graph input through a
    (1, 0, 2) Transpose (then batch_first=True); hx from initial_h / initial_c (L*D, B, H); lengths
    from sequence_lens."""
    graph = model_proto.graph
    constants = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    layers = [_Layer(node, constants) for node in graph.node if node.op_type in _OPS]
    if not layers:
        raise ValueError("from_onnx: the graph has no RNN, LSTM or GRU node")
    stacks = [[layers[0]]]
    for layer in layers[1:]:
        if layer.follows(stacks[-1][-1], producers):
            stacks[-1].append(layer)
        else:
            stacks.append([layer])
    graph_inputs = {i.name for i in graph.input}
    modules = [_module(s, _batch_first(s[0], producers, graph_inputs)) for s in stacks]
    return modules[0] if len(modules) == 1 else modules


def load(path):
    """from_onnx of the ONNX file at `path` (needs the onnx package)."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("rnnfast.onnx.load needs the onnx package: pip install onnx") from exc
    return from_onnx(onnx.load(path))
