"""rnnfast.onnx.load / from_onnx: ONNX graphs of RNN / LSTM / GRU nodes back into rnnfast modules.

Round trips through rnnfast.onnx.export give the same weights and the same bits; torch.onnx's
exports of torch.nn modules load and match torch; graphs written node by node check layout=1,
float64, unchained nodes and every refusal."""
import warnings

import numpy as np
import pytest

import rnnfast

from conftest import MODULES

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def run(m, x, hx=None, lengths=None):
    y, h = m(x, hx, lengths=lengths)
    return [y] + (list(h) if isinstance(h, tuple) else [h])


@pytest.mark.parametrize("mode", list(MODULES))
@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, True), (3, True, False)])
def test_round_trip_through_export(tmp_path, mode, layers, bidirectional, batch_first):
    cls, extra = MODULES[mode]
    m = cls(4, 6, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, seed=3, **extra).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4) if batch_first else (5, 3, 4)).astype(np.float32)
    shape = (layers * (2 if bidirectional else 1), 3, 6)
    hx = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(2 if mode == "lstm" else 1))
    hx = hx if mode == "lstm" else hx[0]
    lengths = np.array([5, 2, 4])
    path = str(tmp_path / "m.onnx")
    rnnfast.onnx.export(m, path, (x, hx, lengths))
    back = rnnfast.onnx.load(path)
    assert type(back) is cls and repr(back) == repr(m) and not back.training
    assert back.state_dict().keys() == m.state_dict().keys()
    for k, v in m.state_dict().items():
        assert np.array_equal(back.state_dict()[k], v), k
    for a, b in zip(run(m, x, hx, lengths), run(back, x, hx, lengths)):
        assert np.array_equal(a, b)


class TestTorchExports:
    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize("name,kw", [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})])
    def test_torch_onnx_export_loads_and_matches_torch(self, tmp_path, name, kw):
        torch = self.torch
        torch.manual_seed(0)
        t = getattr(torch.nn, name)(4, 5, num_layers=2, bidirectional=True, **kw).eval()
        x = torch.randn(6, 3, 4)
        path = str(tmp_path / "t.onnx")
        with warnings.catch_warnings():  # the TorchScript exporter, deprecated, is the one that writes these nodes
            warnings.simplefilter("ignore")
            torch.onnx.export(t, (x,), path, dynamo=False)
        back = rnnfast.onnx.load(path)
        assert type(back).__name__ == name and back.num_layers == 2 and back.bidirectional
        with torch.no_grad():
            want = t(x)
        got = back(x.numpy())
        for a, b in zip([got[0]] + list(got[1] if name == "LSTM" else [got[1]]),
                        [want[0]] + list(want[1] if name == "LSTM" else [want[1]])):
            assert np.max(np.abs(a - b.numpy())) < 1e-5


# ---- graphs written node by node ------------------------------------------------------------

def node_graph(op, H=3, I=2, D=1, dtype=np.float32, inputs_extra=(), initializers=(), **attrs):
    """A graph of one recurrent node with random W, R, B (ONNX's layout) over input X."""
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[op]
    rng = np.random.default_rng(1)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(rng.uniform(-0.5, 0.5, shape).astype(dtype), name)
             for name, shape in (("W", (D, G * H, I)), ("R", (D, G * H, H)), ("B", (D, 2 * G * H)))]
    inits += list(initializers)
    layout = attrs.get("layout", 0)
    x = helper.make_tensor_value_info("X", elem, ["B", "T", I] if layout else ["T", "B", I])
    y = helper.make_tensor_value_info("Y", elem, None)
    node = helper.make_node(op, ["X", "W", "R", "B", *inputs_extra], ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_layout_1_is_batch_first_and_float64_stays_float64():
    m = rnnfast.onnx.from_onnx(node_graph("GRU", dtype=np.float64, layout=1, linear_before_reset=1))
    assert m.batch_first and m.dtype == np.float64
    time_major = rnnfast.onnx.from_onnx(node_graph("GRU", dtype=np.float64, linear_before_reset=1))
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    assert np.array_equal(m(x)[0], time_major(x.swapaxes(0, 1))[0].swapaxes(0, 1))


def test_onnxruntime_agrees_with_the_imported_module():
    ort = pytest.importorskip("onnxruntime")
    proto = node_graph("LSTM", H=4, I=3, D=2, direction="bidirectional")
    x = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)
    (Y,) = ort.InferenceSession(proto.SerializeToString()).run(None, {"X": x})  # (T, D, B, H)
    y = rnnfast.onnx.from_onnx(proto)(x)[0]
    assert np.max(np.abs(y - Y.transpose(0, 2, 1, 3).reshape(5, 2, 8))) < 1e-5


def test_unchained_nodes_give_a_list_of_modules():
    """Two RNN nodes that both read the graph's input X: two modules, in the graph's order."""
    proto, other = node_graph("RNN"), node_graph("RNN", H=5)
    proto.graph.node.append(helper.make_node("RNN", ["X", "W2", "R2", "B2"], ["Y2"], hidden_size=5))
    for t in other.graph.initializer:
        t.name += "2"
        proto.graph.initializer.append(t)
    modules = rnnfast.onnx.from_onnx(proto)
    assert [m.hidden_size for m in modules] == [3, 5]


@pytest.mark.parametrize("op,attrs,extra,says", [
    ("GRU", {}, (), "linear_before_reset=0"),
    ("LSTM", {}, ("", "", "", "P"), "peephole"),
    ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"]}, (), "activations"),
    ("RNN", {"activations": ["Sigmoid"]}, (), "activations"),
    ("LSTM", {"clip": 3.0}, (), "clip"),
    ("LSTM", {"input_forget": 1}, (), "input_forget"),
    ("RNN", {"direction": "reverse"}, (), "reverse direction alone"),
])
def test_what_rnnfast_does_not_compute_is_refused_by_name(op, attrs, extra, says):
    inits = [numpy_helper.from_array(np.zeros((1, 9), np.float32), "P")] if "P" in extra else []
    with pytest.raises(ValueError, match=says):
        rnnfast.onnx.from_onnx(node_graph(op, inputs_extra=extra, initializers=inits, **attrs))


def test_a_graph_without_recurrent_nodes_or_with_computed_weights_is_refused():
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])
    empty = helper.make_model(helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g", [x],
                                                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])]))
    with pytest.raises(ValueError, match="no RNN, LSTM or GRU node"):
        rnnfast.onnx.from_onnx(empty)
    proto = node_graph("RNN")
    proto.graph.node[0].input[1] = "W_computed"
    with pytest.raises(ValueError, match="computed in the graph"):
        rnnfast.onnx.from_onnx(proto)
