"""Stacked / bidirectional layers against the reference, BiRNN merges, and single-step cells."""
import numpy as np
import pytest

import rnnfast
from rnnfast import reference as ref

from conftest import MODES, assert_close, numeric_grad
from test_modules import MAKERS


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["f64", "f32"])
def test_stacked_bidirectional_lengths_match_reference(mode, dtype, rtol):
    L, T, B, I, H = 3, 6, 4, 5, 7
    rng = np.random.default_rng(7)
    m = MAKERS[mode](input_size=I, hidden_size=H, num_layers=L, bidirectional=True, dtype=dtype, seed=0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    states = [rng.standard_normal((2 * L, B, H)).astype(dtype) for _ in range(2 if mode == "lstm" else 1)]
    dstates = [rng.standard_normal((2 * L, B, H)).astype(dtype) for _ in states]
    hx = tuple(states) if mode == "lstm" else states[0]
    dhn = tuple(dstates) if mode == "lstm" else dstates[0]
    lengths = np.array([6, 2, 5, 1])
    y, hn = m(x, hx, lengths=lengths)
    yr, hnr, cache = ref.stack_forward(mode, x, hx, m.state_dict(), L, True, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dhx = m.backward(dy, dhn)
    dxr, dhxr, gr = ref.stack_backward(dy, dhn, cache)
    assert_close(y, yr, rtol, "y")
    assert_close(dx, dxr, rtol, "dx")
    for a, b in zip(np.asarray(hn if mode == "lstm" else [hn]), np.asarray(hnr if mode == "lstm" else [hnr])):
        assert_close(a, b, rtol, "h_n")
    for a, b in zip(np.asarray(dhx if mode == "lstm" else [dhx]), np.asarray(dhxr if mode == "lstm" else [dhxr])):
        assert_close(a, b, rtol, "dhx")
    for k in gr:
        assert_close(m.grads[k], gr[k], rtol, k)
    assert not np.any(dx[2:, 1]) and not np.any(y[1:, 3])  # padded positions


@pytest.mark.parametrize("merge", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_birnn_merges_forward_and_backward(merge, cell):
    T, B, I, H = 4, 3, 2, 3
    rng = np.random.default_rng(1)
    net = rnnfast.BiRNN(cell, I, H, num_layers=2, merge=merge, dtype="float64", seed=4)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([4, 2, 3])
    R = rng.standard_normal((T, B, net.output_size))
    y, _ = net(x, lengths=lengths)
    full, _ = net.rnn(x, lengths=lengths)
    fwd, bwd = full[..., :H], full[..., H:]
    expected = {"concat": full, "sum": fwd + bwd, "mul": fwd * bwd, "ave": (fwd + bwd) / 2}[merge]
    assert np.array_equal(y, expected)
    net.zero_grad()
    net(x, lengths=lengths)
    dx, _ = net.backward(R)
    loss = lambda: float(np.sum(net(x, lengths=lengths)[0] * R))
    assert_close(dx, numeric_grad(loss, x), 1e-6, "dx")
    w = net.parameters()["weight_hh_l0_reverse"]
    assert_close(net.grads["weight_hh_l0_reverse"], numeric_grad(loss, w), 1e-6, "weight_hh_l0_reverse")


CELLS = {
    "rnn_tanh": (lambda **k: rnnfast.RNNCell(**k), "rnn_tanh"),
    "rnn_relu": (lambda **k: rnnfast.RNNCell(nonlinearity="relu", **k), "rnn_relu"),
    "lstm": (lambda **k: rnnfast.LSTMCell(**k), "lstm"),
    "gru": (lambda **k: rnnfast.GRUCell(**k), "gru"),
}


@pytest.mark.parametrize("mode", MODES)
def test_cells_reproduce_the_layer_step_by_step(mode):
    T, B, I, H = 5, 3, 4, 6
    rng = np.random.default_rng(2)
    cell = CELLS[mode][0](input_size=I, hidden_size=H, dtype="float64", seed=3)
    layer = MAKERS[mode](input_size=I, hidden_size=H, dtype="float64")
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x, dy = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    y, _ = layer(x)
    state, hs = None, []
    for t in range(T):
        state = cell(x[t], state)
        hs.append(state[0] if mode == "lstm" else state)
    assert_close(np.stack(hs), y, 1e-13, "y")
    assert cell.recorded_steps == T
    dx_layer, _ = layer.backward(dy)
    grad = None
    dxs = []
    for t in reversed(range(T)):  # walk the recorded steps back, adding dy_t to the carried gradient
        if mode == "lstm":
            grad = (dy[t], np.zeros((B, H))) if grad is None else (grad[0] + dy[t], grad[1])
        else:
            grad = dy[t] if grad is None else grad + dy[t]
        dx_t, grad = cell.backward(grad)
        dxs.append(dx_t)
    assert_close(np.stack(dxs[::-1]), dx_layer, 1e-12, "dx")
    for k, g in cell.grads.items():
        assert_close(g, layer.grads[k + "_l0"], 1e-12, k)
    assert cell.recorded_steps == 0
    with pytest.raises(RuntimeError):
        cell.backward(grad)


def test_cell_sizes_and_eval_records_nothing():
    c = rnnfast.LSTMCell(3, 5)
    assert c.state_size == (5, 5) and c.output_size == 5
    assert rnnfast.GRUCell(3, 5).state_size == 5
    c.eval()
    h, cc = c(np.zeros((2, 3), np.float32))
    assert h.shape == (2, 5) and c.recorded_steps == 0


def test_free_running_feedback_is_trainable():
    """x_{t+1} = h_t (the model feeds its own output back): gradients through the loop are exact."""
    T, B, H = 5, 2, 4
    rng = np.random.default_rng(5)
    cell = rnnfast.GRUCell(H, H, dtype="float64", seed=1)
    x0, R = rng.standard_normal((B, H)), rng.standard_normal((T, B, H))

    def run():
        h, x, outs = None, x0, []
        for t in range(T):
            h = cell(x, h)
            outs.append(h)
            x = h  # free running
        return outs

    def loss():
        cell.reset()
        return float(sum(np.sum(o * R[t]) for t, o in enumerate(run())))

    cell.zero_grad()
    cell.reset()
    run()
    d_state, d_input = np.zeros((B, H)), np.zeros((B, H))
    for t in reversed(range(T)):
        # h_t feeds the loss, the next step's state and the next step's input
        dx, d_state = cell.backward(R[t] + d_state + d_input)
        d_input = dx
    grads = {k: g.copy() for k, g in cell.grads.items()}
    assert_close(d_input, numeric_grad(loss, x0), 1e-6, "dx0")
    for k in ("weight_hh", "bias_ih"):
        assert_close(grads[k], numeric_grad(loss, cell.parameters()[k]), 1e-6, k)


@pytest.mark.parametrize("mode", MODES)
def test_cells_match_torch(mode):
    torch = pytest.importorskip("torch")
    B, I, H = 3, 4, 5
    make = {"rnn_tanh": lambda: torch.nn.RNNCell(I, H), "rnn_relu": lambda: torch.nn.RNNCell(I, H, nonlinearity="relu"),
            "lstm": lambda: torch.nn.LSTMCell(I, H), "gru": lambda: torch.nn.GRUCell(I, H)}[mode]
    tc = make().double()
    cell = CELLS[mode][0](input_size=I, hidden_size=H, dtype="float64")
    cell.load_state_dict({k: v.detach().numpy() for k, v in tc.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, I))
    states = [rng.standard_normal((B, H)) for _ in range(2 if mode == "lstm" else 1)]
    grads = [rng.standard_normal((B, H)) for _ in states]
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    out = tc(xt, tuple(st) if mode == "lstm" else st[0])
    out = out if isinstance(out, tuple) else (out,)
    sum((o * torch.tensor(g)).sum() for o, g in zip(out, grads)).backward()
    ours = cell(x, tuple(states) if mode == "lstm" else states[0])
    ours = ours if isinstance(ours, tuple) else (ours,)
    for a, b in zip(ours, out):
        assert_close(a, b.detach().numpy(), 1e-12, "state")
    dx, dstate = cell.backward(tuple(grads) if mode == "lstm" else grads[0])
    assert_close(dx, xt.grad.numpy(), 1e-12, "dx")
    for a, b in zip(dstate if mode == "lstm" else (dstate,), st):
        assert_close(a, b.grad.numpy(), 1e-12, "dstate")
    for k, p in tc.named_parameters():
        assert_close(cell.grads[k], p.grad.numpy(), 1e-12, k)


def test_reference_stack_accepts_no_initial_state():
    m = rnnfast.LSTM(3, 4, num_layers=2, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = m(x)
    yr, _, _ = ref.stack_forward("lstm", x, None, m.state_dict(), num_layers=2)
    assert_close(y, yr, 1e-12, "y")
