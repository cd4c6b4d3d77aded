"""Parity with torch.nn.RNN / LSTM / GRU for the same weights (skipped where torch is absent).

Outputs, h_n / c_n and the gradients of x, hx and every parameter, over num_layers x bidirectional
x batch_first x lengths x bias, in float64 (1e-9 relative) and float32 (1e-4)."""
import itertools

import numpy as np
import pytest

import rnnfast

from conftest import assert_close

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-9, np.float32: 1e-4}
CELLS = {
    "rnn_tanh": (lambda **k: torch.nn.RNN(nonlinearity="tanh", **k), lambda **k: rnnfast.RNN(nonlinearity="tanh", **k)),
    "rnn_relu": (lambda **k: torch.nn.RNN(nonlinearity="relu", **k), lambda **k: rnnfast.RNN(nonlinearity="relu", **k)),
    "lstm": (torch.nn.LSTM, rnnfast.LSTM),
    "gru": (torch.nn.GRU, rnnfast.GRU),
}
GRID = list(itertools.product([1, 2, 3], [False, True], [False, True], [False, True], [True, False]))


def torch_run(tm, x, hx, lengths, batch_first, dy, dhx):
    """Forward (packing when lengths are given) and backward of sum(y*dy) + sum(h_n*dh_n) [+ c_n]."""
    xt = torch.tensor(x, requires_grad=True)
    hxt = tuple(torch.tensor(h, requires_grad=True) for h in hx)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                                      enforce_sorted=False)
    y, hn = tm(inp, hxt if len(hxt) == 2 else hxt[0])
    if lengths is not None:
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    hn = hn if isinstance(hn, tuple) else (hn,)
    loss = (y * torch.tensor(dy)).sum() + sum((h * torch.tensor(d)).sum() for h, d in zip(hn, dhx))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    return y.detach().numpy(), [h.detach().numpy() for h in hn], xt.grad.numpy(), [h.grad.numpy() for h in hxt], grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("layers,bidirectional,batch_first,with_lengths,bias", GRID,
                         ids=["L%d-bi%d-bf%d-len%d-bias%d" % tuple(map(int, g)) for g in GRID])
def test_matches_torch(mode, layers, bidirectional, batch_first, with_lengths, bias, dtype):
    T, B, I, H = 5, 4, 3, 6
    rng = np.random.default_rng(layers * 16 + bidirectional * 8 + batch_first * 4 + with_lengths * 2 + bias)
    make_torch, make_ours = CELLS[mode]
    torch.manual_seed(0)
    kw = dict(input_size=I, hidden_size=H, num_layers=layers, bias=bias, batch_first=batch_first,
              bidirectional=bidirectional)
    tm = make_torch(**kw).to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = make_ours(dtype=dtype, **kw)
    ours.load_state_dict({k: p.detach().numpy() for k, p in tm.state_dict().items()})
    D = 2 if bidirectional else 1
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    n_states = 2 if mode == "lstm" else 1
    hx = [rng.standard_normal((layers * D, B, H)).astype(dtype) for _ in range(n_states)]
    dhx = [rng.standard_normal((layers * D, B, H)).astype(dtype) for _ in range(n_states)]
    lengths = np.array([3, 5, 1, 4]) if with_lengths else None
    dy = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H)).astype(dtype)
    ty, thn, tdx, tdhx, tgrads = torch_run(tm, x, hx, lengths, batch_first, dy, dhx)

    as_hx = tuple(hx) if mode == "lstm" else hx[0]
    y, hn = ours(x, as_hx, lengths=lengths)
    dx, dh = ours.backward(dy, tuple(dhx) if mode == "lstm" else dhx[0])
    tol = TOL[dtype]
    assert_close(y, ty, tol, "y")
    for a, b in zip(hn if mode == "lstm" else (hn,), thn):
        assert_close(a, b, tol, "h_n/c_n")
    assert_close(dx, tdx, tol, "dx")
    for a, b in zip(dh if mode == "lstm" else (dh,), tdhx):
        assert_close(a, b, tol, "dhx")
    assert set(ours.grads) == set(tgrads)
    for k in tgrads:
        assert_close(ours.grads[k], tgrads[k], tol, k)
