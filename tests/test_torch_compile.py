"""rnnfast.torch under torch.compile and torch.export: the layers are the custom operators
rnnfast::layer_inference (eval) and rnnfast::layer_train with rnnfast::layer_train_backward
(training), so a model of embedding -> rnnfast LSTM (2 layers, bidirectional, batch_first) ->
rnnfast GRU -> linear compiles with no graph break, in eval and in training, and exports (eval),
with the eager model's bits."""
import pytest

torch = pytest.importorskip("torch")
import rnnfast.torch as rt  # noqa: E402
from rnnfast._torch_ops import layer_inference, layer_train, layer_train_backward  # noqa: E402


class Tagger(torch.nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.lstm = rt.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True, dropout=dropout)
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


# ---- training ------------------------------------------------------------------------------

def _step(model, module, ids):
    """One training step's loss output and every parameter's gradient."""
    module.zero_grad()
    out = model(ids)
    out.square().sum().backward()
    return out.detach().clone(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_no_graph_break_in_training(dropout):
    torch.manual_seed(0)
    model = Tagger(dropout).train()
    explained = torch._dynamo.explain(model)(torch.randint(0, 20, (3, 7)))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_training_gives_the_eager_gradients(backend):
    torch.manual_seed(0)
    model = Tagger().train()
    ids = torch.randint(0, 20, (3, 7))
    want_out, want = _step(model, model, ids)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    for _ in range(2):  # the second step runs the compiled graphs alone
        out, got = _step(compiled, model, ids)
        assert torch.equal(out, want_out)
        for name, g in got.items():
            if name.startswith(("lstm.", "gru.")):  # rnnfast's kernels: the eager bits
                assert torch.equal(g, want[name]), name
            else:  # torch's own layers: inductor may sum in another order
                torch.testing.assert_close(g, want[name], rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor's own use of torch.jit
def test_inductor_with_fallback_random_draws_the_eager_masks():
    """docs/pytorch.md: with torch._inductor.config.fallback_random, inductor's draws are eager's."""
    import torch._inductor.config as inductor_config
    lstm = rt.LSTM(4, 5, num_layers=2, dropout=0.3, weight_drop=0.3, zoneout=0.1).train()
    x = torch.randn(6, 3, 4)
    torch.manual_seed(0)
    want = lstm(x)[0]
    torch._dynamo.reset()
    with inductor_config.patch(fallback_random=True):  # the config's own patch: restored as it was
        compiled = torch.compile(lstm, backend="inductor")
        torch.manual_seed(0)
        got = compiled(x)[0]
    torch._dynamo.reset()
    assert torch.equal(got, want)


@pytest.mark.parametrize("which", ["h_n", "c_n"])
def test_compiled_training_with_a_loss_on_a_final_state_alone(which):
    """The other outputs get no gradient: they reach the operator's backward as None."""
    lstm = rt.LSTM(4, 5, num_layers=2, bidirectional=True).train()
    x = torch.randn(6, 3, 4, requires_grad=True)
    pick = (lambda out: out[1][0]) if which == "h_n" else (lambda out: out[1][1])
    want = torch.autograd.grad(pick(lstm(x)).pow(2).sum(), [x, *lstm.parameters()])
    torch._dynamo.reset()
    compiled = torch.compile(lstm, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(pick(compiled(x)).pow(2).sum(), [x, *lstm.parameters()])
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_compiled_training_with_initial_states_and_a_second_backward():
    torch.manual_seed(1)
    lstm = rt.LSTM(5, 6, num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 5, requires_grad=True)
    h0 = torch.randn(4, 3, 6, requires_grad=True)
    c0 = torch.randn(4, 3, 6, requires_grad=True)

    def grads(model):
        for t in (x, h0, c0, *lstm.parameters()):
            t.grad = None
        y, (h_n, c_n) = model(x, (h0, c0))
        loss = y.sum() + h_n.square().sum() + c_n.sum()
        loss.backward(retain_graph=True)
        first = [t.grad.clone() for t in (x, h0, c0, *lstm.parameters())]
        loss.backward()  # a retained graph: the saved forward is still there
        return first, [t.grad.clone() for t in (x, h0, c0, *lstm.parameters())]

    want = grads(lstm)
    torch._dynamo.reset()
    got = grads(torch.compile(lstm, backend="aot_eager"))
    for w, g in zip(want, got):
        assert all(torch.equal(a, b) for a, b in zip(w, g))


@pytest.mark.parametrize("cell,directions", [("lstm", 2), ("gru", 1), ("rnn_tanh", 2)])
def test_the_training_operators_registration_and_fake_shapes(cell, directions):
    """opcheck of rnnfast::layer_train (with its autograd formula) and of its backward operator."""
    T, B, I, H = 4, 3, 5, 6
    G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[cell]
    weights = []
    for _ in range(directions):
        weights += [torch.randn(G * H, I, dtype=torch.float64, requires_grad=True),
                    torch.randn(G * H, H, dtype=torch.float64, requires_grad=True)]
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(directions, B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(directions, B, H, dtype=torch.float64) if cell == "lstm" else None
    lengths = torch.tensor([4, 2, 3])
    torch.library.opcheck(layer_train, (x, h0, c0, weights, lengths, 0, cell, 0, directions, True, 0.0, None, [], []))
    draws = (0.2, torch.tensor([11, 12][:directions]), [torch.rand(G * H, H, dtype=torch.float64)] * directions,
             [torch.rand(B, H, dtype=torch.float64)] * directions)  # zoneout, weight drop, recurrent dropout
    torch.library.opcheck(layer_train, (x, h0, c0, weights, lengths, 0, cell, 0, directions, True, *draws))
    # Without save (training mode under no_grad): nothing to differentiate.
    torch.library.opcheck(layer_train, (x.detach(), h0.detach(), c0, [w.detach() for w in weights], lengths, 0, cell,
                                        0, directions, False, *draws))
    with torch.no_grad():
        saved = layer_train(x, h0, c0, weights, lengths, 0, cell, 0, directions, True, 0.0, None, [], [])[3]
    dy = torch.randn(T, B, directions * H, dtype=torch.float64)
    dh_n = torch.randn(directions, B, H, dtype=torch.float64)
    dc_n = torch.randn(directions, B, H, dtype=torch.float64) if cell == "lstm" else None
    torch.library.opcheck(layer_train_backward, (x.detach(), [w.detach() for w in weights], lengths, saved, dy,
                                                 dh_n, dc_n, 0, cell, 0, directions, 0.0, None, [], []))


def test_the_training_operator_s_gradients_are_the_eager_layer_s():
    # The operators' own formula, outside any compiler, against rnnfast.torch's eager layer.
    torch.manual_seed(2)
    gru = rt.GRU(5, 7, bidirectional=True, dtype=torch.float64)
    x = torch.randn(6, 2, 5, dtype=torch.float64, requires_grad=True)
    weights = list(gru.parameters())
    y, h_n, _, _ = layer_train(x, None, None, weights, None, gru._stack_handle, "gru", 0, 2, True, 0.0, None, [], [])
    got = torch.autograd.grad(y.sum() + h_n.sum(), [x, *weights])
    y2, h2 = gru(x)
    want = torch.autograd.grad(y2.sum() + h2.sum(), [x, *weights])
    assert torch.equal(y, y2) and all(torch.equal(a, b) for a, b in zip(got, want))


def test_a_second_derivative_through_the_training_operator_says_it_is_not_supported():
    # (Compiled graphs refuse double backward in torch itself; the operator says why it cannot.)
    torch.manual_seed(3)
    gru = rt.GRU(4, 5)
    x = torch.randn(3, 2, 4, requires_grad=True)
    y = layer_train(x, None, None, list(gru.parameters()), None, gru._stack_handle, "gru", 0, 1, True, 0.0, None, [],
                    [])[0]
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        g.sum().backward()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("training", [False, True])
def test_lengths_compile_without_a_graph_break_and_give_the_eager_bits(backend, training):
    torch.manual_seed(4)
    lstm = rt.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True).train(training)
    x = torch.randn(3, 6, 4, requires_grad=training)
    lengths = torch.tensor([6, 2, 4])

    def run(model):
        with torch.set_grad_enabled(training):
            y, (h_n, c_n) = model(x, lengths=lengths)
            if not training:
                return [y, h_n, c_n]
            return [y, h_n, c_n, *torch.autograd.grad((y.square().sum() + h_n.sum() + c_n.sum()),
                                                      [x, *lstm.parameters()])]

    with torch.set_grad_enabled(training):
        explained = torch._dynamo.explain(lambda x, l: lstm(x, lengths=l)[0])(x, lengths)
    assert explained.graph_break_count == 0, explained.break_reasons
    want = run(lstm)
    torch._dynamo.reset()
    got = run(torch.compile(lstm, backend=backend))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not got[0][1, 2:].any()  # padded steps stay zeros


def test_compiled_dropout_between_layers_with_lengths_keeps_padded_steps_zero():
    torch.manual_seed(5)
    gru = rt.GRU(4, 5, num_layers=2, dropout=0.5).train()
    lengths = [6, 2, 4]
    torch._dynamo.reset()
    y, _ = torch.compile(gru, backend="aot_eager")(torch.randn(6, 3, 4), lengths=lengths)
    assert not y[2:, 1].any() and not y[4:, 2].any() and y[:2, 1].all()


@pytest.mark.parametrize("training", [False, True])
def test_compiled_lengths_are_checked_as_they_run_with_the_eager_messages(training):
    rnn = rt.RNN(4, 5).train(training)
    torch._dynamo.reset()
    compiled = torch.compile(rnn, backend="aot_eager", fullgraph=True)
    x = torch.randn(6, 2, 4)
    with pytest.raises(ValueError, match=r"lengths: values must lie in \[1, 6\] \(T = 6\), got min 1 max 9"):
        compiled(x, lengths=torch.tensor([9, 1]))
    with pytest.raises(TypeError, match="lengths: expected integers, got dtype float32"):
        compiled(x, lengths=torch.tensor([5.5, 1.0]))
    with pytest.raises(TypeError, match="lengths: expected integers, got dtype bool"):
        compiled(x, lengths=torch.tensor([True, True]))


@pytest.mark.parametrize("training", [False, True])
def test_compiled_whole_float_lengths_are_taken_as_eagerly_in_one_graph(training):
    """Eager code takes lengths of whole floats; so does the compiled model, with fullgraph=True."""
    gru = rt.GRU(4, 5, num_layers=2).train(training)
    x = torch.randn(6, 3, 4, requires_grad=training)
    torch._dynamo.reset()
    compiled = torch.compile(gru, backend="aot_eager", fullgraph=True)
    got = compiled(x, lengths=torch.tensor([6.0, 2.0, 4.0]))[0]
    want = gru(x, lengths=torch.tensor([6, 2, 4]))[0]
    assert torch.equal(got, want)
    if training:
        assert torch.equal(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0])


@pytest.mark.parametrize("kw", [dict(weight_drop=0.3), dict(recurrent_dropout=0.3), dict(zoneout=0.2),
                                dict(weight_drop=0.3, recurrent_dropout=0.2, zoneout=0.1, dropout=0.4)])
def test_compiled_training_with_the_regularisers(kw):
    # The draws come from torch's generator in the same order compiled (aot_eager) as eagerly, so
    # the same seed gives the same masks, outputs and gradients.
    torch.manual_seed(0)
    lstm = rt.LSTM(4, 5, num_layers=2, bidirectional=True, **kw).train()
    x = torch.randn(6, 3, 4, requires_grad=True)

    def step(model):
        torch.manual_seed(7)
        y, (h_n, _) = model(x)
        return [y, h_n, *torch.autograd.grad(y.square().sum() + h_n.sum(), [x, *lstm.parameters()])]

    explained = torch._dynamo.explain(lambda x: lstm(x)[0])(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    want = step(lstm)
    torch._dynamo.reset()
    got = step(torch.compile(lstm, backend="aot_eager"))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    plain = rt.LSTM(4, 5, num_layers=2, bidirectional=True)
    plain.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        assert not torch.equal(plain(x)[0], want[0])  # the draws did something


def test_compiled_training_mode_under_no_grad_gives_the_eager_bits():
    torch.manual_seed(0)
    gru = rt.GRU(4, 5, num_layers=2, weight_drop=0.3, zoneout=0.2, recurrent_dropout=0.1).train()
    x = torch.randn(6, 3, 4)
    with torch.no_grad():
        explained = torch._dynamo.explain(lambda x: gru(x)[0])(x)
        torch.manual_seed(1)
        want = gru(x)[0]
        torch._dynamo.reset()
        torch.manual_seed(1)
        got = torch.compile(gru, backend="aot_eager")(x)[0]
    assert explained.graph_break_count == 0, explained.break_reasons
    assert torch.equal(got, want)
