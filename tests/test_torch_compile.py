"""rnnfast.torch under torch.compile and torch.export, inference: the layers are the custom operator
rnnfast::layer_inference, so a model of embedding -> rnnfast LSTM (2 layers, bidirectional,
batch_first) -> rnnfast GRU -> linear compiles with no graph break and exports, with the eager
model's bits. (Training through rnnfast layers still breaks a compiled graph at each layer.)"""
import pytest

torch = pytest.importorskip("torch")
import rnnfast.torch as rt  # noqa: E402
from rnnfast._torch_ops import layer_inference  # noqa: E402


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.lstm = rt.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = rt.GRU(32, 12, batch_first=True)
        self.head = torch.nn.Linear(12, 5)

    def forward(self, ids):
        y, _ = self.lstm(self.emb(ids))
        y, _ = self.gru(y)
        return self.head(y)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Tagger().eval()


def test_no_graph_break_in_inference(model):
    ids = torch.randint(0, 20, (3, 7))
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(ids)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor's own use of torch.jit
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_inference_gives_the_eager_bits(model, backend):
    ids = torch.randint(0, 20, (3, 7))
    with torch.no_grad():
        want = model(ids)
        torch._dynamo.reset()
        got = torch.compile(model, backend=backend)(ids)
    assert torch.equal(got, want)


def test_exported_model_runs_and_matches_even_after_its_module_is_gone(model):
    ids = torch.randint(0, 20, (3, 7))
    with torch.no_grad():
        want = model(ids)
        exported = torch.export.export(model, (ids,))
    assert torch.equal(exported.module()(ids), want)
    assert "rnnfast.layer_inference" in str(exported.graph)
    module = exported.module()
    del model  # the graph's handles now find no Stack: the operator makes a new one, with the same bits
    import gc
    gc.collect()
    with torch.no_grad():
        assert torch.equal(module(ids), want)


def test_export_with_gradients_on_says_what_to_do(model):
    with pytest.raises(RuntimeError, match="export under torch.no_grad"):
        torch.export.export(model, (torch.randint(0, 20, (3, 7)),))


@pytest.mark.parametrize("cell,directions", [("lstm", 2), ("gru", 1), ("rnn_relu", 2)])
def test_the_operator_s_registration_and_fake_shapes(cell, directions):
    """torch.library.opcheck: the fake implementation's shapes, strides and dtypes against the real
    one, and the registration's consistency, with lengths, h0 and zoneout's eval p."""
    T, B, I, H = 4, 3, 5, 6
    G = {"lstm": 4, "gru": 3, "rnn_relu": 1}[cell]
    weights = []
    for _ in range(directions):
        weights += [torch.randn(G * H, I), torch.randn(G * H, H), torch.randn(G * H), torch.randn(G * H)]
    x, h0 = torch.randn(T, B, I), torch.randn(directions, B, H)
    c0 = torch.randn(directions, B, H) if cell == "lstm" else None
    lengths = torch.tensor([4, 2, 3])
    torch.library.opcheck(layer_inference, (x, h0, c0, weights, lengths, 0, cell, 0, directions, 0.25),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
