"""rnnfast.onnx.export: onnxruntime runs the exported graph and gives rnnfast's outputs (y, h_n, c_n)
to 1e-5, over cells x layers x directions x lengths (with and without initial states, time- and
batch-first). Skipped where onnx or onnxruntime is absent."""
import itertools

import numpy as np
import pytest

import rnnfast

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import rnnfast.onnx  # noqa: E402

from conftest import assert_close  # noqa: E402

TOL = 1e-5  # float32: onnxruntime runs RNN / LSTM / GRU nodes in float32 only
GRID = list(itertools.product(["rnn_tanh", "rnn_relu", "lstm", "gru"], [1, 2], [False, True], [False, True]))


def make(cell, **kw):
    if cell.startswith("rnn_"):
        return rnnfast.RNN(nonlinearity=cell[4:], **kw)
    return {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell](**kw)


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("cell,layers,bidirectional,with_lengths", GRID,
                         ids=[f"{c}-L{n}-bi{int(b)}-len{int(k)}" for c, n, b, k in GRID])
def test_onnxruntime_matches_rnnfast(cell, layers, bidirectional, with_lengths, tmp_path):
    i = GRID.index((cell, layers, bidirectional, with_lengths))
    with_hx, batch_first, bias = i % 2 == 0, i % 3 == 1, i % 5 != 4
    I, H, D = 3, 5, 2 if bidirectional else 1
    m = make(cell, input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidirectional,
             batch_first=batch_first, bias=bias, seed=i).eval()
    rng = np.random.default_rng(i)

    def problem(T, B):
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
        states = [rng.standard_normal((layers * D, B, H)).astype(np.float32) for _ in range(1 + (cell == "lstm"))]
        lengths = rng.integers(1, T + 1, size=B) if with_lengths else None
        if with_lengths:
            lengths[0] = T
        return x, states, lengths

    x, states, lengths = problem(7, 4)
    hx = (tuple(states) if cell == "lstm" else states[0]) if with_hx else None
    path = tmp_path / "model.onnx"
    proto = rnnfast.onnx.export(m, path, (x, hx, lengths))
    assert [n.op_type for n in proto.graph.node].count({"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN")) == layers
    assert [p.name for p in proto.graph.input] == ["input"] + (["h0", "c0"][:len(states)] if with_hx else []) + (
        ["lengths"] if with_lengths else [])

    for T, B in [(7, 4), (3, 6)]:  # the graph's T and B are symbolic: another shape runs too
        if (T, B) != (7, 4):
            x, states, lengths = problem(T, B)
            hx = (tuple(states) if cell == "lstm" else states[0]) if with_hx else None
        feeds = {"input": x}
        if with_hx:
            feeds.update(zip(["h0", "c0"], states))
        if with_lengths:
            feeds["lengths"] = lengths.astype(np.int64)
        got = run_onnx(path, feeds)
        y, hn = m(x, hx, lengths=lengths)
        expected = [y, *(hn if cell == "lstm" else (hn,))]
        assert len(got) == len(expected)
        for name, a, e in zip(["output", "h_n", "c_n"], got, expected):
            assert_close(a, e, TOL, name)
        if with_lengths:  # onnxruntime's own semantics, stated: 0 past each length
            ty = got[0].swapaxes(0, 1) if batch_first else got[0]
            for b, n in enumerate(lengths):
                assert np.all(ty[n:, b] == 0)


def test_float64_modules_export_as_float32_for_onnxruntime(tmp_path):
    m = rnnfast.GRU(4, 6, num_layers=2, bidirectional=True, dtype="float64", seed=0).eval()
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    rnnfast.onnx.export(m, tmp_path / "f64.onnx", x)  # float64 graph: valid ONNX, which onnxruntime cannot run
    proto = rnnfast.onnx.export(m, tmp_path / "f32.onnx", x, dtype="float32")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    y, hn = m(x)
    got = run_onnx(tmp_path / "f32.onnx", {"input": x.astype(np.float32)})
    assert_close(got[0], y, TOL, "output")
    assert_close(got[1], hn, TOL, "h_n")


def test_graph_is_standard_onnx(tmp_path):
    m = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    x = np.zeros((2, 5, 3), np.float32)
    proto = rnnfast.onnx.export(m, tmp_path / "m.onnx", (x, None, [5, 2]), opset=14)
    assert proto.opset_import[0].version == 14
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"), full_check=True)
    lstm = [n for n in proto.graph.node if n.op_type == "LSTM"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm[0].attribute}
    assert attrs == {"hidden_size": 4, "direction": b"bidirectional"}
    assert lstm[1].input[0] == "y_l0" and lstm[0].input[4] == "sequence_lens"
    W = onnx.numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == "W_l0"))
    w = m.parameters()["weight_ih_l0"]  # torch's (i, f, g, o) -> ONNX's (i, o, f, c)
    np.testing.assert_array_equal(W[0], np.concatenate([w[0:4], w[12:16], w[4:8], w[8:12]]))
    assert m.training  # export changes nothing in the module


def test_gru_is_exported_with_linear_before_reset(tmp_path):
    proto = rnnfast.onnx.export(rnnfast.GRU(3, 4, seed=0), tmp_path / "g.onnx", np.zeros((2, 1, 3), np.float32))
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    assert {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}["linear_before_reset"] == 1


def test_rnnfast_torch_modules_export(tmp_path):
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    torch.manual_seed(0)
    m = rt.LSTM(3, 4, num_layers=2, bidirectional=True).eval()
    x = torch.randn(6, 2, 3)
    rnnfast.onnx.export(m, tmp_path / "t.onnx", x.numpy())
    with torch.no_grad():
        y, (hn, cn) = m(x)
    got = run_onnx(tmp_path / "t.onnx", {"input": x.numpy()})
    for a, e, name in zip(got, (y, hn, cn), ("output", "h_n", "c_n")):
        assert_close(a, e.numpy(), TOL, name)


def test_bad_arguments(tmp_path):
    m = rnnfast.LSTM(3, 4)
    with pytest.raises(ValueError, match="I = 3"):
        rnnfast.onnx.export(m, tmp_path / "m.onnx", np.zeros((5, 2, 7), np.float32))
    with pytest.raises(ValueError, match="lengths"):
        rnnfast.onnx.export(m, tmp_path / "m.onnx", (np.zeros((5, 2, 3), np.float32), None, [6, 1]))
    with pytest.raises(ValueError, match="opset"):
        rnnfast.onnx.export(m, tmp_path / "m.onnx", np.zeros((5, 2, 3), np.float32), opset=13)
    with pytest.raises(TypeError, match="expected rnnfast.RNN, LSTM or GRU"):
        rnnfast.onnx.export(rnnfast.BiRNN("lstm", 3, 4), tmp_path / "m.onnx", np.zeros((5, 2, 3), np.float32))
