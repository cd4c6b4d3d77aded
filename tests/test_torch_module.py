"""rnnfast.torch: drop-in torch.nn modules (skipped where torch is absent).

gradcheck in float64; outputs and gradients equal torch.nn's for the same weights (1e-9 in float64)
over cells x layers x directions x input kinds (tensor, lengths=, packed sorted / unsorted,
unbatched); dropout masks equal torch.nn's for the same seed; the same training run (embedding ->
recurrent layer -> linear, Adam, 20 steps, float32) gives the same losses as torch.nn (1e-5)."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

import rnnfast

torch = pytest.importorskip("torch")
import rnnfast.torch as rt  # noqa: E402
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence  # noqa: E402

CELLS = {"rnn_tanh": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "lstm": ("LSTM", {}), "gru": ("GRU", {})}
F64 = torch.float64


def pair(cell, *args, **kwargs):
    """(torch.nn module, rnnfast.torch module) with the same weights."""
    name, extra = CELLS[cell]
    tm = getattr(torch.nn, name)(*args, **extra, **kwargs)
    ours = getattr(rt, name)(*args, **extra, **kwargs)
    ours.load_state_dict(tm.state_dict())
    return tm, ours


def states(cell, L, B, H, dtype, gen, batched=True):
    shape = (L, B, H) if batched else (L, H)
    h = [torch.randn(shape, dtype=dtype, generator=gen, requires_grad=True) for _ in range(1 + (cell == "lstm"))]
    return h, (tuple(h) if cell == "lstm" else h[0])


def as_tuple(h):
    return h if isinstance(h, tuple) else (h,)


# ---- gradcheck --------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional,with_lengths", [(False, False), (True, True), (True, False), (False, True)])
def test_gradcheck(cell, bidirectional, with_lengths):
    gen = torch.Generator().manual_seed(3)
    T, B, I, H, L = 4, 3, 2, 3, 2
    torch.manual_seed(0)
    m = getattr(rt, CELLS[cell][0])(I, H, num_layers=L, bidirectional=bidirectional, dtype=F64, **CELLS[cell][1])
    x = torch.randn(T, B, I, dtype=F64, generator=gen, requires_grad=True)
    h, hx = states(cell, L * m.num_directions, B, H, F64, gen)
    lengths = [4, 2, 3] if with_lengths else None

    def f(x, *inputs):
        y, hn = m(x, tuple(inputs[:len(h)]) if cell == "lstm" else inputs[0], lengths=lengths)
        return (y,) + as_tuple(hn)

    assert torch.autograd.gradcheck(f, (x, *h, *m.parameters()), eps=1e-6, atol=1e-7, rtol=1e-6)


# ---- parity with torch.nn -----------------------------------------------------------------------
KINDS = ["tensor", "lengths", "packed", "packed_sorted", "unbatched"]
GRID = list(itertools.product(CELLS, [1, 2], [False, True], KINDS))


@pytest.mark.parametrize("cell,layers,bidirectional,kind", GRID,
                         ids=[f"{c}-L{n}-bi{int(b)}-{k}" for c, n, b, k in GRID])
def test_matches_torch_nn(cell, layers, bidirectional, kind):
    i = GRID.index((cell, layers, bidirectional, kind))
    batch_first, with_hx, bias = i % 2 == 1, i % 3 != 0, i % 5 != 0
    T, B, I, H = 5, 4, 3, 4
    gen = torch.Generator().manual_seed(i)
    torch.manual_seed(i)
    tm, ours = pair(cell, I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
                    dtype=F64)
    D = 2 if bidirectional else 1
    batched = kind != "unbatched"
    x = torch.randn(((B, T, I) if batch_first else (T, B, I)) if batched else (T, I), dtype=F64, generator=gen,
                    requires_grad=True)
    h, hx = states(cell, layers * D, B, H, F64, gen, batched)
    lengths = torch.tensor([3, 5, 1, 3] if kind == "packed" or kind == "lengths" else [5, 4, 3, 1])

    def run(m):
        hxm = hx if with_hx else None
        if kind in ("packed", "packed_sorted"):
            inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=kind == "packed_sorted")
            y, hn = m(inp, hxm)
            assert isinstance(y, PackedSequence)
            for a, b in zip(y[1:], inp[1:]):
                assert (a is None and b is None) or torch.equal(a, b)
            data = y.data
        elif kind == "lengths":
            if m is tm:
                inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
                y, hn = m(inp, hxm)
                y = pad_packed_sequence(y, batch_first=batch_first, total_length=T)[0]
            else:
                y, hn = m(x, hxm, lengths=lengths)
            data = y
        else:
            data, hn = m(x, hxm)
        w = torch.randn(data.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
        loss = (data * w).sum() + sum((s * (k + 2)).pow(2).sum() for k, s in enumerate(as_tuple(hn)))
        wrt = [x] + (h if with_hx else []) + list(m.parameters())
        return [data.detach()] + [s.detach() for s in as_tuple(hn)] + list(torch.autograd.grad(loss, wrt))

    expected, actual = run(tm), run(ours)
    assert len(expected) == len(actual)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, k
        assert torch.allclose(a, e, rtol=0, atol=1e-9 * max(1.0, e.abs().max().item())), (k, (a - e).abs().max())


@pytest.mark.parametrize("kind", ["tensor", "packed", "lengths"])
def test_dropout_masks_are_torch_nn_s(kind):
    """Same seed, same masks: train-mode outputs and gradients equal torch.nn's with dropout."""
    torch.manual_seed(0)
    tm, ours = pair("lstm", 3, 4, num_layers=3, dropout=0.4, bidirectional=True, dtype=F64)
    x = torch.randn(6, 5, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([6, 3, 6, 1, 4])
    out = []
    for m in (tm, ours):
        torch.manual_seed(7)
        if kind == "lengths" and m is ours:
            y, (hn, cn) = m(x, lengths=lengths)
        elif kind == "tensor":
            y, (hn, cn) = m(x)
        else:
            y, (hn, cn) = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
            y = y.data if kind == "packed" else pad_packed_sequence(y, total_length=6)[0]
        out.append((y.detach(), torch.autograd.grad(y.sum() + cn.sum(), [x, *m.parameters()])))
    assert torch.allclose(out[0][0], out[1][0], rtol=0, atol=1e-12)
    for a, e in zip(out[1][1], out[0][1]):
        assert torch.allclose(a, e, rtol=0, atol=1e-11)


# ---- a training run, torch.nn vs rnnfast.torch -------------------------------------------------
class Tagger(torch.nn.Module):
    """Embedding -> recurrent layer (2 layers, dropout) -> Linear, over packed variable-length batches."""

    def __init__(self, rnn_cls, cell):
        super().__init__()
        self.emb = torch.nn.Embedding(12, 6)
        self.rnn = rnn_cls(6, 16, num_layers=2, dropout=0.2, bidirectional=True, **CELLS[cell][1])
        self.out = torch.nn.Linear(32, 12)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.emb(tokens), lengths, enforce_sorted=False)
        y, _ = self.rnn(packed)
        return self.out(pad_packed_sequence(y, total_length=tokens.shape[0])[0])


def train_losses(module_ns, cell, steps=20):
    torch.manual_seed(0)
    model = Tagger(getattr(module_ns, CELLS[cell][0]), cell)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens = torch.randint(0, 12, (9, 8), generator=data)
        lengths = torch.randint(2, 10, (8,), generator=data)
        target = torch.cat([torch.zeros_like(tokens[:1]), tokens[:-1]])  # a task with memory: the previous token
        mask = torch.arange(9)[:, None] < lengths[None, :]
        logits = model(tokens, lengths)
        loss = torch.nn.functional.cross_entropy(logits[mask], target[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_training_run_matches_torch_nn(cell):
    ref, ours = train_losses(torch.nn, cell), train_losses(rt, cell)
    assert ours[-1] < ours[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=0)


# ---- API details ------------------------------------------------------------------------------
def test_import_rnnfast_does_not_import_torch():
    code = ("import sys, rnnfast; assert 'torch' not in sys.modules; "
            "import rnnfast.torch; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_parameters_and_init_are_torch_nn_s():
    for cell in CELLS:
        kw = dict(num_layers=2, bidirectional=True, bias=True)
        name, extra = CELLS[cell]
        torch.manual_seed(5)
        tm = getattr(torch.nn, name)(3, 4, **extra, **kw)
        torch.manual_seed(5)
        ours = getattr(rt, name)(3, 4, **extra, **kw)
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in tm.named_parameters()]
        for (n, a), (_, b) in zip(ours.named_parameters(), tm.named_parameters()):
            assert isinstance(a, torch.nn.Parameter) and torch.equal(a, b), n
        assert repr(ours) == repr(tm)
        assert ours.mode == tm.mode


def test_conversions_round_trip():
    torch.manual_seed(0)
    tm = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64).eval()
    ours = rt.from_torch(tm)
    assert isinstance(ours, rt.GRU) and not ours.training and ours.batch_first
    back = ours.to_torch()
    assert isinstance(back, torch.nn.GRU)
    for k, v in tm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    npm = ours.to_numpy()
    assert isinstance(npm, rnnfast.GRU) and npm.dtype == np.float64
    x = torch.randn(2, 5, 3, dtype=F64)
    y_np, h_np = npm(x.numpy(), lengths=[5, 3])
    y, hn = ours(x, lengths=[5, 3])
    np.testing.assert_allclose(y.detach().numpy(), y_np, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hn.detach().numpy(), h_np, rtol=0, atol=1e-12)
    again = rt.from_numpy(npm)
    assert isinstance(again, rt.GRU)
    for k, v in ours.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    rnn = rt.from_torch(torch.nn.RNN(3, 4, nonlinearity="relu"))
    assert rnn.nonlinearity == "relu" and rnn.weight_ih_l0.dtype == torch.float32
    assert rt.from_torch(torch.nn.LSTM(3, 4, proj_size=2)).proj_size == 2  # tests/test_projections.py for more
    with pytest.raises(TypeError, match="expected torch.nn.RNN, LSTM or GRU"):
        rt.from_torch(torch.nn.Linear(3, 4))


def test_no_grad_and_eval_give_the_same_numbers():
    torch.manual_seed(0)
    m = rt.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.5).eval()
    x = torch.randn(5, 2, 3)
    y, (hn, cn) = m(x, lengths=[5, 2])
    with torch.no_grad():
        y2, (hn2, cn2) = m(x, lengths=[5, 2])
    assert y.requires_grad and not y2.requires_grad
    assert torch.equal(y.detach(), y2) and torch.equal(hn.detach(), hn2) and torch.equal(cn.detach(), cn2)
    assert torch.all(y2[2:, 1] == 0)  # padded steps give 0


def test_in_place_change_before_backward_is_refused():
    m = rt.GRU(3, 4)
    y, _ = m(torch.randn(5, 2, 3))
    with torch.no_grad():
        m.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_devices_and_dtypes_are_checked():
    with pytest.raises(ValueError, match="CPU only"):
        rt.LSTM(3, 4, device="cuda")
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        rt.GRU(3, 4, dtype=torch.float16)
    m = rt.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="CPU only, but input is on meta"):
        m(torch.empty(5, 2, 3, device="meta"))
    with pytest.raises(ValueError, match="does not match weight dtype"):
        m(torch.randn(5, 2, 3, dtype=F64))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 4\), got \[1, 3, 4\]"):  # torch.nn's
        m(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size"):
        m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\)"):
        rt.GRU(3, 4)(torch.randn(5, 2, 3), torch.zeros(1, 3, 4))
    with pytest.raises(RuntimeError, match="input_size"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(TypeError, match="tuple"):
        m(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="lengths"):
        m(torch.randn(5, 2, 3), lengths=[6, 1])
    with pytest.raises(TypeError, match="float32 or float64"):
        m.half()(torch.randn(5, 2, 3).half())


@pytest.mark.parametrize("cell", list(CELLS))
def test_same_bits_as_the_numpy_modules(cell):
    """rnnfast.torch and rnnfast's NumPy modules run one stack: outputs, input gradients and every
    parameter gradient are the same bits (2 layers, bidirectional, lengths, float32)."""
    name, extra = CELLS[cell]
    T, B, I, H = 6, 5, 7, 9
    ours = getattr(rt, name)(I, H, num_layers=2, bidirectional=True, **extra)
    numpy_module = ours.to_numpy()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    dy = rng.standard_normal((T, B, 2 * H), dtype=np.float32)
    lengths = np.array([6, 3, 1, 6, 2])
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y_t, _ = ours(xt, lengths=torch.from_numpy(lengths))
    y_t.backward(torch.from_numpy(dy))
    y_n, _ = numpy_module(x, lengths=lengths)
    dx_n, _ = numpy_module.backward(dy)
    assert np.array_equal(y_t.detach().numpy(), y_n)
    assert np.array_equal(xt.grad.numpy(), dx_n)
    for pname, p in ours.named_parameters():
        assert np.array_equal(p.grad.numpy(), numpy_module.grads[pname]), pname


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_second_backward_with_retain_graph_gives_the_same_gradients(cell):
    """The first backward consumes the saved forward; a second one (retain_graph=True) runs the
    layer's forward again from the saved inputs and gives the same gradients, bit for bit."""
    torch.manual_seed(0)
    _, ours = pair(cell, 5, 8, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(7, 3, 5, dtype=F64, requires_grad=True)
    y, _ = ours(x)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=F64).reshape(y.shape)).sum()
    first = torch.autograd.grad(loss, [x, *ours.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *ours.parameters()], retain_graph=True)
    third = torch.autograd.grad(loss, [x, *ours.parameters()])
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(RuntimeError):  # torch's own: the graph was freed
        torch.autograd.grad(loss, [x])


def in_threads(fn, inputs, repeats):
    """fn(input) on a thread per input, `repeats` times each, all at once: the last results in order."""
    import threading
    results, errors = [None] * len(inputs), []

    def work(i):
        try:
            for _ in range(repeats):
                results[i] = fn(inputs[i])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_one_module_from_two_threads_at_once():
    """Two threads share one module (its workspaces): a call that finds one busy runs on its own,
    and every result is the same bits as run alone."""
    torch.manual_seed(1)
    _, ours = pair("lstm", 32, 64, num_layers=2, bidirectional=True)
    xs = [torch.randn(40, 8, 32, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    with torch.no_grad():
        alone = [ours(x)[0] for x in xs]

    def call(x):
        with torch.no_grad():
            return ours(x)[0]

    results = in_threads(call, xs, repeats=5)
    for got, want in zip(results, alone):
        assert torch.equal(got, want)


def test_training_one_module_from_two_threads_at_once():
    """Forward and backward of one module from two threads: the recycled saved workspaces go to one
    forward each, so every gradient is the same bits as computed alone."""
    torch.manual_seed(2)
    _, ours = pair("gru", 16, 32, num_layers=2, bidirectional=True)
    params = list(ours.parameters())
    xs = [torch.randn(30, 6, 16, generator=torch.Generator().manual_seed(10 + i)) for i in range(4)]

    def grads(x):
        y, _ = ours(x)
        return torch.autograd.grad((y * y).sum(), params)

    alone = [grads(x) for x in xs]
    for got, want in zip(in_threads(grads, xs, repeats=6), alone):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_a_module_pickled_before_the_stack_loads_and_runs():
    """A whole-module pickle from an rnnfast whose modules had no stack (torch.save(model))."""
    import pickle
    _, ours = pair("lstm", 4, 6, num_layers=2)
    x = torch.randn(5, 3, 4)
    state = ours.__getstate__()
    state = {k: v for k, v in state.items() if k != "_stack"}
    state["_cell"] = "lstm"  # a name, as it was then
    old = rt.LSTM.__new__(rt.LSTM)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    with torch.no_grad():
        assert torch.equal(again(x)[0], ours(x)[0])
