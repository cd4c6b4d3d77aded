"""NumPy reference for the rnnfast cells: forward pass and backpropagation through time.

This is the oracle the C++ core is tested against, and the plain statement of
what it computes. It is written to be read, not to be fast: one Python loop
over time steps, a named line per gate, and sequences with `lengths` run one
batch entry at a time. It imports nothing but NumPy.

Shape convention (the letters are the same everywhere in rnnfast)::

    T time steps, B batch, I input size, H hidden size,
    G gates: 1 for RNN, 4 for LSTM (rows i, f, g, o), 3 for GRU (rows r, z, n),
    P the size of h in an LSTM with projections (P < H; P = H without them).

    x           (T, B, I)   time-major input
    h0, c0      (B, H)      initial states
    w_ih        (G*H, I)
    w_hh        (G*H, H)
    b_ih, b_hh  (G*H,)      or None: a layer without bias
    y           (T, B, H)   y[t] is the hidden state after step t
    h_n, c_n    (B, H)      final states
    w_hr        (P, H)      an LSTM with projections (torch's proj_size P < H): h_t = W_hr (o_t *
                            tanh(c_t)), so h0, h_n, y and w_hh's columns are P where they are H above

Gradients carry a `d` prefix and the shape of what they differentiate. All
arithmetic is done in the dtype of x (float32 or float64); the other arrays
are cast to it. Gate orders and formulas are PyTorch's.

Direction and lengths follow PyTorch's pack_padded_sequence(enforce_sorted=False)
-> RNN -> pad_packed_sequence(total_length=T):

    - reverse=True runs t = T-1, ..., 0 (the backward half of a bidirectional
      layer); y is still indexed by real time t;
    - lengths[b] = L (1 <= L <= T) marks steps 0..L-1 of entry b as valid:
      y[t, b] = 0 for t >= L; h_n[b] is the state after the entry's own last
      step; a reverse run of entry b starts from h0[b] at t = L-1;
    - dy at padded positions has no effect and dx there is zero.

Design: a cell is pure gate math on the two projections::

    gi = x_t @ w_ih.T + b_ih        gh = h_{t-1} @ w_hh.T + b_hh      (B, G*H)

(the layer-normalised cells: LN(x_t @ w_ih.T) * ln_ih_weight + b_ih, likewise gh) and
returns, in its backward, the gradients of gi and gh and of its own parameters (the
layer-normalised LSTM's ln_cell_weight and ln_cell_bias). One scan
(`_scan_forward` / `_scan_backward`) runs any cell over time and does all the
matrix products. A cell's state is a tuple whose first entry is h: (h,), or
(h, c) for the LSTM.
"""
from types import SimpleNamespace

import numpy as np

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
    "layernorm_lstm_forward", "layernorm_lstm_backward", "layernorm_gru_forward", "layernorm_gru_backward",
    "stack_forward", "stack_backward",
    "zoneout_masks",
    "round_to_bfloat16", "bfloat16_stack_forward",
    "quantize_rows", "quantize_input_rows", "int8_product", "int8_stack_forward",
]


def _sigmoid(a):
    # Written with tanh so that large |a| neither overflows nor warns in float32.
    return 0.5 * (1.0 + np.tanh(0.5 * a))


# ----------------------------------------------------------------------------
# Cells: gate math for one time step, (B, G*H) projections in, state out.
# backward(dstate, cache) -> (dgi, dgh, dstate_prev, dparams), where dstate_prev
# leaves out the path through gh (the scan adds dgh @ w_hh to it; 0 where h_{t-1}
# reaches h_t only that way, so that h may have another size than the cell's units) and dparams
# are the gradients of the cell's own parameters (`params`; none but the
# layer-normalised LSTM's).
# ----------------------------------------------------------------------------

_LN_EPS = 1e-5


def _layer_norm(v, gain, bias=None):
    """Layer normalisation of each row of v (B, N): LN(v) * gain + bias, where
    LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over the row's N entries, var
    biased. Returns the result and what _layer_norm_backward needs."""
    centred = v - v.mean(axis=1, keepdims=True)
    inv_std = 1 / np.sqrt((centred * centred).mean(axis=1, keepdims=True) + _LN_EPS)
    normed = centred * inv_std
    return normed * gain + (0 if bias is None else bias), (normed, inv_std, gain)


def _layer_norm_backward(dout, cache):
    """(dv, dgain, dbias) of _layer_norm, from dL/d(its result)."""
    normed, inv_std, gain = cache
    dnormed = dout * gain
    dv = inv_std * (dnormed - dnormed.mean(axis=1, keepdims=True)
                    - normed * (dnormed * normed).mean(axis=1, keepdims=True))
    return dv, (dout * normed).sum(axis=0), dout.sum(axis=0)


class _RNNCell:
    """h = f(gi + gh), f = tanh or relu."""
    gates = 1
    params = ()

    def __init__(self, nonlinearity):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def forward(self, gi, gh, state):
        pre = gi + gh
        h = np.tanh(pre) if self.nonlinearity == "tanh" else np.maximum(pre, 0)
        return (h,), h

    def backward(self, dstate, h):
        (dh,) = dstate
        if self.nonlinearity == "tanh":
            dpre = dh * (1 - h * h)
        else:
            dpre = dh * (h > 0)
        return dpre, dpre, (np.zeros_like(dh),), ()


class _LSTMCell:
    """Gates i, f, g, o; c = f*c_prev + i*g; h = o*tanh(c)."""
    gates = 4
    params = ()

    def _squash(self, c):  # what h reads of c, s = tanh(c), and what its backward needs
        return np.tanh(c), None

    def _squash_backward(self, ds, squash_cache):  # -> (dc, the cell's parameters' gradients)
        return ds, ()

    def forward(self, gi, gh, state):
        h_prev, c_prev = state
        pre_i, pre_f, pre_g, pre_o = np.split(gi + gh, 4, axis=1)
        ingate = _sigmoid(pre_i)
        forgetgate = _sigmoid(pre_f)
        cellgate = np.tanh(pre_g)
        outgate = _sigmoid(pre_o)
        c = forgetgate * c_prev + ingate * cellgate
        squashed, squash_cache = self._squash(c)
        h = outgate * squashed
        return (h, c), (ingate, forgetgate, cellgate, outgate, c_prev, squashed, squash_cache)

    def backward(self, dstate, cache):
        dh, dc = dstate
        ingate, forgetgate, cellgate, outgate, c_prev, squashed, squash_cache = cache
        dc_out, dparams = self._squash_backward(dh * outgate * (1 - squashed * squashed), squash_cache)
        dc = dc + dc_out
        dpre_i = dc * cellgate * ingate * (1 - ingate)
        dpre_f = dc * c_prev * forgetgate * (1 - forgetgate)
        dpre_g = dc * ingate * (1 - cellgate * cellgate)
        dpre_o = dh * squashed * outgate * (1 - outgate)
        dgates = np.concatenate([dpre_i, dpre_f, dpre_g, dpre_o], axis=1)
        return dgates, dgates, (0, dc * forgetgate), dparams


class _LayerNormLSTMCell(_LSTMCell):
    """The LSTM with h = o*tanh(LN(c) * ln_cell_weight + ln_cell_bias), LN over c's H entries (the
    layer-normalised LSTM's cell; its products are normalised by the scan)."""

    def __init__(self, ln_cell_weight, ln_cell_bias):
        self.params = (ln_cell_weight, ln_cell_bias)

    def _squash(self, c):
        normalised, norm_cache = _layer_norm(c, *self.params)
        return np.tanh(normalised), norm_cache

    def _squash_backward(self, ds, norm_cache):  # through tanh's input LN(c) * gain + bias
        dc, dgain, dbias = _layer_norm_backward(ds, norm_cache)
        return dc, (dgain, dbias)


class _GRUCell:
    """Gates r, z, n; n = tanh(gi_n + r*gh_n); h = (1-z)*n + z*h_prev."""
    gates = 3
    params = ()

    def forward(self, gi, gh, state):
        (h_prev,) = state
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        resetgate = _sigmoid(gi_r + gh_r)
        updategate = _sigmoid(gi_z + gh_z)
        newgate = np.tanh(gi_n + resetgate * gh_n)
        h = (1 - updategate) * newgate + updategate * h_prev
        return (h,), (resetgate, updategate, newgate, gh_n, h_prev)

    def backward(self, dstate, cache):
        (dh,) = dstate
        resetgate, updategate, newgate, gh_n, h_prev = cache
        dpre_n = dh * (1 - updategate) * (1 - newgate * newgate)
        dpre_z = dh * (h_prev - newgate) * updategate * (1 - updategate)
        dpre_r = dpre_n * gh_n * resetgate * (1 - resetgate)
        dgi = np.concatenate([dpre_r, dpre_z, dpre_n], axis=1)
        dgh = np.concatenate([dpre_r, dpre_z, dpre_n * resetgate], axis=1)
        return dgi, dgh, (dh * updategate,), ()


_CELLS = {
    "rnn_tanh": lambda: _RNNCell("tanh"),
    "rnn_relu": lambda: _RNNCell("relu"),
    "lstm": _LSTMCell,
    "gru": _GRUCell,
}


# ----------------------------------------------------------------------------
# Scan: one cell over time for a batch whose entries all have the same length.
# ----------------------------------------------------------------------------

def _mix32(x):
    """A 32-bit integer hash (on uint32 arrays; products wrap modulo 2**32)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def zoneout_masks(seed, p, T, B, H, dtype=np.float32):
    """The (T, B, H) zoneout masks that the kernels draw from `seed` (an int in [0, 2**64)) with
    probability p: unit u of entry b at time t keeps its state (1) when::

        mix(u * 0x9E3779B1 ^ row) < floor(p * 2**32),  row = mix(lo ^ mix((t * B + b) ^ hi)),

    lo and hi the seed's low and high 32 bits, p as a value of `dtype`, all in uint32."""
    lo, hi = np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)
    rows = np.arange(T * B, dtype=np.uint64).astype(np.uint32)  # t * B + b, modulo 2**32
    row = _mix32(lo ^ _mix32(rows ^ hi))
    units = np.arange(H, dtype=np.uint32) * np.uint32(0x9E3779B1)
    threshold = np.uint64(np.floor(float(np.dtype(dtype).type(p)) * 2.0 ** 32))
    keep = _mix32(units[None, :] ^ row[:, None]).astype(np.uint64) < threshold
    return keep.reshape(T, B, H).astype(dtype)


def _zoneout_at(zoneout, t):
    """Zoneout's share of h_{t-1} in h_t: the step's masks (training), a constant p (eval), or None."""
    if zoneout is None:
        return None
    return zoneout[t] if np.ndim(zoneout) else zoneout


def _matmul(a, w):
    return a @ w.T


def _scan_forward(cell, x, state, weights, reverse, zoneout=None, recurrent_mask=None, products=None, w_hr=None,
                  norms=None):
    w_ih, w_hh, b_ih, b_hh = weights
    # The products x_t W_ih^T, h_{t-1} W_hh^T and (projections) r_t W_hr^T, or what a reduced
    # precision makes of them.
    product_x, product_h, product_r = products or (_matmul, _matmul, _matmul)
    T = x.shape[0]
    y = np.empty((T,) + state[0].shape, dtype=x.dtype)
    # Per step as they ran: t, what W_hh multiplied, the cell's cache, zoneout's m, what W_hr
    # multiplied, the layer norms' caches.
    steps = []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h_prev = state[0]
        h_read = h_prev if recurrent_mask is None else recurrent_mask * h_prev  # recurrent dropout
        gi = product_x(x[t], w_ih)
        gh = product_h(h_read, w_hh)
        norm_caches = None
        if norms is not None:  # the layer-normalised cells: LN(W_ih x_t) * ln_ih_weight, likewise gh
            (gi, norm_i), (gh, norm_h) = _layer_norm(gi, norms[0]), _layer_norm(gh, norms[1])
            norm_caches = (norm_i, norm_h)
        gi, gh = gi + b_ih, gh + b_hh
        state, cell_cache = cell.forward(gi, gh, state)
        unprojected = state[0]
        if w_hr is not None:  # LSTM projections: h_t = W_hr (o_t * tanh(c_t)), of size P
            state = (product_r(unprojected, w_hr),) + state[1:]
        m = _zoneout_at(zoneout, t)
        if m is not None:  # zoneout: h_t = m h_{t-1} + (1 - m) h~_t (an LSTM's c as the cell made it)
            state = (m * h_prev + (1 - m) * state[0],) + state[1:]
        steps.append((t, h_read, cell_cache, m, unprojected, norm_caches))
        y[t] = state[0]
    return y, state, steps


def _scan_backward(cell, dy, dstate, x, weights, steps, recurrent_mask=None, w_hr=None, norms=None):
    """BPTT over one run's steps: dx, dstate0 and the gradients of weights, then of w_hr, norms and
    the cell's params (those that exist, in that order)."""
    w_ih, w_hh, _, _ = weights
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    db_ih = np.zeros(w_ih.shape[0], dtype=x.dtype)
    db_hh = np.zeros(w_hh.shape[0], dtype=x.dtype)
    dnorms = [np.zeros_like(g) for g in (norms or ())]
    dparams = [np.zeros_like(p) for p in cell.params]
    for t, h_read, cell_cache, m, unprojected, norm_caches in reversed(steps):
        dh = dstate[0] + dy[t]  # y[t] is h after step t
        dnew = dh if m is None else (1 - m) * dh  # zoneout: h~_t gets (1 - m) of dh, h_{t-1} m of it
        if w_hr is not None:  # h~_t = W_hr r_t
            dw_hr += dnew.T @ unprojected
            dnew = dnew @ w_hr
        dgi, dgh, dstate, dcell = cell.backward((dnew,) + dstate[1:], cell_cache)
        for total, d in zip(dparams, dcell):
            total += d
        if m is not None:
            dstate = (dstate[0] + m * dh,) + dstate[1:]
        db_ih += dgi.sum(axis=0)
        db_hh += dgh.sum(axis=0)
        if norm_caches is not None:  # back through LN(product) * gain to the products
            dgi, dgain_i, _ = _layer_norm_backward(dgi, norm_caches[0])
            dgh, dgain_h, _ = _layer_norm_backward(dgh, norm_caches[1])
            dnorms[0] += dgain_i
            dnorms[1] += dgain_h
        dh_read = dgh @ w_hh
        if recurrent_mask is not None:  # the product read recurrent_mask * h_{t-1}
            dh_read = recurrent_mask * dh_read
        dstate = (dstate[0] + dh_read,) + dstate[1:]
        dx[t] = dgi @ w_ih
        dw_ih += dgi.T @ x[t]
        dw_hh += dgh.T @ h_read
    return dx, dstate, ((dw_ih, dw_hh, db_ih, db_hh) + (() if w_hr is None else (dw_hr,)) + tuple(dnorms)
                        + tuple(dparams))


# ----------------------------------------------------------------------------
# Layer: the scan over the whole batch, or one entry at a time with lengths.
# ----------------------------------------------------------------------------

def _check_lengths(lengths, T, B):
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be {B} integers, got shape {lengths.shape} "
                         f"of dtype {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}], got {lengths.tolist()}")
    return lengths


def _layer_forward(cell, x, state0, weights, reverse, lengths, zoneout=None, recurrent_mask=None, products=None,
                   w_hr=None, norms=None):
    x = np.asarray(x)
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be a float (T, B, I) array, got shape {x.shape} "
                         f"of dtype {x.dtype}")
    T, B, I = x.shape
    w_ih, w_hh, b_ih, b_hh = weights
    has_bias = b_ih is not None
    if (b_hh is not None) != has_bias:
        raise ValueError("b_ih and b_hh must both be given or both be None")
    # H from w_hh's columns, or with projections from w_hr's (P, H); P is h's size (H without them).
    if w_hr is not None and (not isinstance(cell, _LSTMCell) or np.ndim(w_hr) != 2
                             or not 0 < np.shape(w_hr)[0] < np.shape(w_hr)[1]):
        raise ValueError(f"w_hr (projections, LSTM only): expected shape (P, H) with 0 < P < H, got "
                         f"{np.shape(w_hr)} for {type(cell).__name__}")
    H = (np.shape(w_hh)[-1] if np.ndim(w_hh) else 0) if w_hr is None else np.shape(w_hr)[1]
    P = H if w_hr is None else np.shape(w_hr)[0]
    GH = cell.gates * H
    if np.shape(w_hh) != (GH, P):  # first: H and P are read from it (and w_hr)
        raise ValueError(f"w_hh must have shape (G*H, {'P' if w_hr is not None else 'H'}) = {(GH, P)} for "
                         f"G = {cell.gates} gates, got {np.shape(w_hh)}")
    expected = {"w_ih": (GH, I), "w_hh": (GH, P), "b_ih": (GH,), "b_hh": (GH,)}
    if not has_bias:
        b_ih = b_hh = np.zeros(GH, dtype=x.dtype)
    weights = tuple(np.asarray(w, dtype=x.dtype) for w in (w_ih, w_hh, b_ih, b_hh))
    for (name, shape), w in zip(expected.items(), weights):
        if w.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {w.shape}")
    if w_hr is not None:
        w_hr = np.asarray(w_hr, dtype=x.dtype)
    if norms is not None:
        norms = tuple(np.asarray(g, dtype=x.dtype) for g in norms)
        if any(g.shape != (GH,) for g in norms):
            raise ValueError(f"ln_ih_weight and ln_hh_weight must have shape {(GH,)}, got {[g.shape for g in norms]}")
    if any(np.shape(p) != (H,) for p in cell.params):
        raise ValueError(f"ln_cell_weight and ln_cell_bias must have shape {(H,)}, "
                         f"got {[np.shape(p) for p in cell.params]}")
    state_shapes = ((B, P), (B, H))[:len(state0)]
    state0 = tuple(np.zeros(shape, x.dtype) if s is None else np.asarray(s, dtype=x.dtype)
                   for s, shape in zip(state0, state_shapes))
    for s, shape in zip(state0, state_shapes):
        if s.shape != shape:
            raise ValueError(f"initial states must have shape {shape}, got {s.shape}")
    lengths = _check_lengths(lengths, T, B)

    # A run is a batch selection that shares one length: the whole batch, or
    # one entry per run when lengths are given.
    if lengths is None:
        runs = [(slice(None), T)]
    else:
        runs = [(slice(b, b + 1), int(lengths[b])) for b in range(B)]
    y = np.zeros((T, B, P), dtype=x.dtype)
    state_n = tuple(np.empty_like(s) for s in state0)
    run_caches = []
    if zoneout is not None and np.ndim(zoneout):
        zoneout = np.asarray(zoneout, dtype=x.dtype)
        if zoneout.shape != (T, B, P):
            raise ValueError(f"zoneout masks must have shape {(T, B, P)}, got {zoneout.shape}")
    if recurrent_mask is not None:
        recurrent_mask = np.asarray(recurrent_mask, dtype=x.dtype)
        if recurrent_mask.shape != (B, P):
            raise ValueError(f"recurrent_mask must have shape {(B, P)}, got {recurrent_mask.shape}")
    for sel, L in runs:
        zone_run = zoneout[:L, sel] if zoneout is not None and np.ndim(zoneout) else zoneout
        mask_run = None if recurrent_mask is None else recurrent_mask[sel]
        y_run, state_run, steps = _scan_forward(
            cell, x[:L, sel], tuple(s[sel] for s in state0), weights, reverse, zone_run, mask_run, products, w_hr,
            norms)
        y[:L, sel] = y_run
        for s_n, s_run in zip(state_n, state_run):
            s_n[sel] = s_run
        run_caches.append((sel, L, steps, mask_run))
    cache = SimpleNamespace(cell=cell, x=x, weights=weights, w_hr=w_hr, norms=norms, has_bias=has_bias,
                            state_shapes=state_shapes, runs=run_caches)
    return y, state_n, cache


def _layer_backward(dy, dstate_n, cache):
    x, weights = cache.x, cache.weights
    T, B, _ = x.shape
    P = cache.state_shapes[0][1]
    dy = np.zeros((T, B, P), x.dtype) if dy is None else np.asarray(dy, dtype=x.dtype)
    dstate_n = tuple(np.zeros(shape, x.dtype) if d is None
                     else np.asarray(d, dtype=x.dtype) for d, shape in zip(dstate_n, cache.state_shapes))
    dx = np.zeros_like(x)
    dstate0 = tuple(np.zeros_like(d) for d in dstate_n)
    extras = (() if cache.w_hr is None else (cache.w_hr,)) + (cache.norms or ()) + tuple(cache.cell.params)
    dweights = tuple(np.zeros_like(w) for w in weights + extras)
    for sel, L, steps, mask_run in cache.runs:
        dx_run, dstate_run, dweights_run = _scan_backward(
            cache.cell, dy[:L, sel], tuple(d[sel] for d in dstate_n), x[:L, sel],
            weights, steps, mask_run, cache.w_hr, cache.norms)
        dx[:L, sel] = dx_run
        for d0, d_run in zip(dstate0, dstate_run):
            d0[sel] = d_run
        for dw, dw_run in zip(dweights, dweights_run):
            dw += dw_run
    if not cache.has_bias:
        dweights = dweights[:2] + (None, None) + dweights[4:]
    return dx, dstate0, dweights


# ----------------------------------------------------------------------------
# Public single-layer functions.
# ----------------------------------------------------------------------------

def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False,
                lengths=None, zoneout=None, recurrent_mask=None):
    """Elman RNN, h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu.

    Returns y (T, B, H), h_n (B, H) and a cache for rnn_backward. `zoneout` (every cell):
    (T, B, H) masks m, 1 where a unit keeps its state, h_t = m h_{t-1} + (1 - m) h~_t with
    h~_t the cell's new state (training); or a number p, h_t = p h_{t-1} + (1 - p) h~_t (eval).
    `recurrent_mask` (every cell; recurrent dropout): a (B, H) array r, and W_hh multiplies
    r * h_{t-1} instead of h_{t-1} at every step (the state itself is carried unmasked).
    """
    y, (h_n,), cache = _layer_forward(_RNNCell(nonlinearity), x, (h0,),
                                      (w_ih, w_hh, b_ih, b_hh), reverse, lengths, zoneout, recurrent_mask)
    return y, h_n, cache


def rnn_backward(dy, dh_n, cache):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh (db_* None without bias)."""
    dx, (dh0,), dweights = _layer_backward(dy, (dh_n,), cache)
    return (dx, dh0) + dweights


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, lengths=None, zoneout=None,
                 recurrent_mask=None, w_hr=None):
    """LSTM with gate rows i, f, g, o.

    i, f, o = sigmoid(.), g = tanh(.) of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;
    c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t).
    Returns y (T, B, H), h_n, c_n (B, H) and a cache for lstm_backward.

    Projections (torch's proj_size): w_hr (P, H) with P < H makes h_t = W_hr (o*tanh(c_t)), of size
    P: then w_hh is (4H, P), h0, h_n and y have P columns (zoneout's masks and recurrent_mask too),
    c0 and c_n H.
    """
    y, (h_n, c_n), cache = _layer_forward(_LSTMCell(), x, (h0, c0),
                                          (w_ih, w_hh, b_ih, b_hh), reverse, lengths, zoneout,
                                          recurrent_mask, w_hr=w_hr)
    return y, h_n, c_n, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh (db_* None without bias), and dw_hr after
    them when the forward had projections."""
    dx, (dh0, dc0), dweights = _layer_backward(dy, (dh_n, dc_n), cache)
    return (dx, dh0, dc0) + dweights


def layernorm_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, ln_cell_weight,
                           ln_cell_bias, reverse=False, lengths=None, zoneout=None, recurrent_mask=None):
    """The layer-normalised LSTM (for rnnfast.LayerNormLSTM, planned: issue 25). With LN(v) = (v - mean(v)) /
    sqrt(var(v) + 1e-5) over a row's entries (biased variance):

        a_ih = LN(W_ih x_t) * ln_ih_weight + b_ih      a_hh = LN(W_hh h_{t-1}) * ln_hh_weight + b_hh
        i, f, g, o = gates of a_ih + a_hh (as the LSTM)
        c_t = f*c_{t-1} + i*g;  h_t = o*tanh(LN(c_t) * ln_cell_weight + ln_cell_bias)

    LN over the 4H entries of a product's row, and over c_t's H. ln_ih_weight, ln_hh_weight (4H,);
    ln_cell_weight, ln_cell_bias (H,). Returns y, h_n, c_n and a cache for layernorm_lstm_backward.
    """
    dtype = np.asarray(x).dtype
    cell = _LayerNormLSTMCell(np.asarray(ln_cell_weight, dtype), np.asarray(ln_cell_bias, dtype))
    y, (h_n, c_n), cache = _layer_forward(cell, x, (h0, c0), (w_ih, w_hh, b_ih, b_hh), reverse, lengths,
                                          zoneout, recurrent_mask, norms=(ln_ih_weight, ln_hh_weight))
    return y, h_n, c_n, cache


def layernorm_lstm_backward(dy, dh_n, dc_n, cache):
    """Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh (db_* None without bias), dln_ih_weight,
    dln_hh_weight, dln_cell_weight, dln_cell_bias."""
    dx, (dh0, dc0), dweights = _layer_backward(dy, (dh_n, dc_n), cache)
    return (dx, dh0, dc0) + dweights


def layernorm_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_hh_weight, reverse=False, lengths=None,
                          zoneout=None, recurrent_mask=None):
    """The layer-normalised GRU (for rnnfast.LayerNormGRU, planned: issue 25): a_ih = LN(W_ih x_t) * ln_ih_weight + b_ih
    and a_hh = LN(W_hh h_{t-1}) * ln_hh_weight + b_hh (LN over a row's 3H entries, as in
    layernorm_lstm_forward; gains (3H,)) take the places of the GRU's two projections:
    r = sigmoid(a_ih_r + a_hh_r), z = sigmoid(a_ih_z + a_hh_z), n = tanh(a_ih_n + r * a_hh_n),
    h_t = (1 - z) n + z h_{t-1}. Returns y, h_n and a cache for layernorm_gru_backward."""
    y, (h_n,), cache = _layer_forward(_GRUCell(), x, (h0,), (w_ih, w_hh, b_ih, b_hh), reverse, lengths, zoneout,
                                      recurrent_mask, norms=(ln_ih_weight, ln_hh_weight))
    return y, h_n, cache


def layernorm_gru_backward(dy, dh_n, cache):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh (db_* None without bias), dln_ih_weight,
    dln_hh_weight."""
    dx, (dh0,), dweights = _layer_backward(dy, (dh_n,), cache)
    return (dx, dh0) + dweights


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, lengths=None, zoneout=None,
                recurrent_mask=None):
    """GRU with gate rows r, z, n.

    r, z = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*);
    n = tanh(W_in x_t + b_in + r*(W_hn h_{t-1} + b_hn)); h_t = (1-z)*n + z*h_{t-1}.
    Returns y (T, B, H), h_n (B, H) and a cache for gru_backward.
    """
    y, (h_n,), cache = _layer_forward(_GRUCell(), x, (h0,),
                                      (w_ih, w_hh, b_ih, b_hh), reverse, lengths, zoneout, recurrent_mask)
    return y, h_n, cache


def gru_backward(dy, dh_n, cache):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh (db_* None without bias)."""
    dx, (dh0,), dweights = _layer_backward(dy, (dh_n,), cache)
    return (dx, dh0) + dweights


# ----------------------------------------------------------------------------
# Stacked and bidirectional layers, PyTorch's layout.
# ----------------------------------------------------------------------------

# The layer-normalised cells' stack modes, and the plain cells they normalise.
_LAYERNORM = {"layernorm_lstm": "lstm", "layernorm_gru": "gru"}
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "ln_ih_weight", "ln_hh_weight",
          "ln_cell_weight", "ln_cell_bias")


def _param_names(layer, direction):
    """Every parameter name a layer of a stack may have, PyTorch's way: weight_ih_l{k}[_reverse], ..."""
    suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
    return SimpleNamespace(**{name: name + suffix for name in _NAMES})


def _gradient_names(names, cache):
    """The names of a layer's gradients, in _layer_backward's order."""
    return ([names.weight_ih, names.weight_hh, names.bias_ih, names.bias_hh]
            + [names.weight_hr] * (cache.w_hr is not None)
            + [names.ln_ih_weight, names.ln_hh_weight] * (cache.norms is not None)
            + [names.ln_cell_weight, names.ln_cell_bias] * bool(cache.cell.params))


def stack_forward(mode, x, hx, params, num_layers=1, bidirectional=False, lengths=None,
                  dropout_masks=None, products=None):
    """A multi-layer, optionally bidirectional RNN as torch.nn.RNN/LSTM/GRU runs it.

    mode: "rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm" or "layernorm_gru" (whose
    layers also have ln_ih_weight_l{k}, ln_hh_weight_l{k} and, the LSTM's, ln_cell_weight_l{k} and
    ln_cell_bias_l{k}); D = 2 if bidirectional else 1.
    x (T, B, I). hx: h0 (L*D, B, H), or (h0, c0) for "lstm", ordered layer 0
    forward, layer 0 backward, layer 1 forward, ...; None means zeros.
    params: PyTorch's keys weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    bias_hh_l{k}, with suffix _reverse for the backward direction; absent
    bias keys mean no bias. An LSTM with weight_hr_l{k} (P, H) has projections (lstm_forward's
    w_hr): then its layers' outputs and h0, h_n have P columns where the others have H.
    Layer k > 0 reads layer k-1's output [forward, backward] (T, B, D*P) (P = H
    without projections), multiplied by dropout_masks[k-1] (T, B, D*P) when masks are given.
    products: for the reduced precisions, products(name) is the function (a, w) -> a w^T that the
    weight called name (weight_ih, weight_hh, weight_hr) multiplies with (None: the plain product).
    Returns y (T, B, D*P), hn with the structure of hx, and a cache.
    """
    if mode not in _CELLS and mode not in _LAYERNORM:
        raise ValueError(f"mode must be one of {sorted(_CELLS) + sorted(_LAYERNORM)}, got {mode!r}")
    normalised = mode in _LAYERNORM
    norm_keys = [k for k in params if k.startswith("ln_")]
    if norm_keys and not normalised:
        raise ValueError(f"{sorted(norm_keys)}: layer-norm parameters are for the layernorm_* modes, not {mode!r}")
    projected = [k for k in params if k.startswith("weight_hr_")]
    if normalised and projected:
        raise ValueError("weight_hr: projections are defined for the plain LSTM only, not with layer normalisation")
    cell = _CELLS[_LAYERNORM.get(mode, mode)]()
    is_lstm = cell.gates == 4
    D = 2 if bidirectional else 1
    x = np.asarray(x)
    T, B, _ = x.shape
    if projected and len(projected) != num_layers * D:
        raise ValueError(f"weight_hr: every layer and direction has projections or none does, got {sorted(projected)}")
    H = np.shape(params["weight_hr_l0"] if projected else params["weight_hh_l0"])[-1]
    P = np.shape(params["weight_hr_l0"])[0] if projected else H  # h's size
    if dropout_masks is not None and len(dropout_masks) != num_layers - 1:
        raise ValueError(f"dropout_masks must hold num_layers - 1 = {num_layers - 1} "
                         f"masks, got {len(dropout_masks)}")

    if hx is None:
        states0 = (None, None) if is_lstm else (None,)
    else:
        states0 = tuple(hx) if is_lstm else (hx,)
    shapes = ((num_layers * D, B, P), (num_layers * D, B, H))[:len(states0)]
    states0 = tuple(np.zeros(shape, x.dtype) if s is None
                    else np.asarray(s, dtype=x.dtype) for s, shape in zip(states0, shapes))
    for s, shape in zip(states0, shapes):
        if s.shape != shape:
            raise ValueError(f"hx arrays must have shape {shape}, got {s.shape}")
    states_n = tuple(np.empty_like(s) for s in states0)

    layer_input = x
    layer_caches = []
    for k in range(num_layers):
        outputs = []
        for d in range(D):
            n = _param_names(k, d)
            weights = (params[n.weight_ih], params[n.weight_hh], params.get(n.bias_ih), params.get(n.bias_hh))
            if mode == "layernorm_lstm":
                cell = _LayerNormLSTMCell(*(np.asarray(params[m], x.dtype) for m in (n.ln_cell_weight, n.ln_cell_bias)))
            y, state_n, cache = _layer_forward(
                cell, layer_input, tuple(s[k * D + d] for s in states0), weights,
                reverse=(d == 1), lengths=lengths,
                products=None if products is None else (products(n.weight_ih), products(n.weight_hh),
                                                        products(n.weight_hr) if projected else _matmul),
                w_hr=params.get(n.weight_hr),
                norms=(params[n.ln_ih_weight], params[n.ln_hh_weight]) if normalised else None)
            outputs.append(y)
            for s_n, s in zip(states_n, state_n):
                s_n[k * D + d] = s
            layer_caches.append(cache)
        layer_input = np.concatenate(outputs, axis=-1)
        if dropout_masks is not None and k < num_layers - 1:
            layer_input = layer_input * np.asarray(dropout_masks[k], dtype=x.dtype)

    hn = states_n if is_lstm else states_n[0]
    cache = SimpleNamespace(is_lstm=is_lstm, num_layers=num_layers, D=D, P=P,
                            params=params, layers=layer_caches,
                            dropout_masks=dropout_masks, state_shapes=shapes,
                            dtype=x.dtype)
    return layer_input, hn, cache


def stack_backward(dy, dhn, cache):
    """Returns dx (T, B, I), dhx with the structure of hx, and grads: a dict
    with the keys and shapes of params.

    dy (T, B, D*P); dhn has the structure of hn, and it or its entries may be
    None (zeros).
    """
    L, D, P = cache.num_layers, cache.D, cache.P
    n_states = 2 if cache.is_lstm else 1
    if dhn is None:
        dhn = (None,) * n_states
    elif not cache.is_lstm:
        dhn = (dhn,)
    dstates_n = tuple(np.zeros(shape, cache.dtype) if d is None
                      else np.asarray(d, dtype=cache.dtype) for d, shape in zip(dhn, cache.state_shapes))
    dstates0 = tuple(np.zeros_like(d) for d in dstates_n)
    grads = {}

    d_output = dy  # gradient of the current layer's output, None means zeros
    for k in reversed(range(L)):
        d_input = 0
        for d in range(D):
            layer_cache = cache.layers[k * D + d]
            dy_dir = None if d_output is None else d_output[..., d * P:(d + 1) * P]
            dx, dstate0, dweights = _layer_backward(
                dy_dir, tuple(ds[k * D + d] for ds in dstates_n), layer_cache)
            d_input = d_input + dx
            for ds0, ds in zip(dstates0, dstate0):
                ds0[k * D + d] = ds
            for name, dw in zip(_gradient_names(_param_names(k, d), layer_cache), dweights):
                if name in cache.params:
                    grads[name] = dw
        d_output = d_input
        if cache.dropout_masks is not None and k > 0:
            d_output = d_output * np.asarray(cache.dropout_masks[k - 1], dtype=cache.dtype)

    dhx = dstates0 if cache.is_lstm else dstates0[0]
    return d_output, dhx, grads


# ----------------------------------------------------------------------------
# bfloat16 inference (rnnfast.quantize(module, "bfloat16")).
# ----------------------------------------------------------------------------

def round_to_bfloat16(a):
    """float32 values rounded to the nearest bfloat16 (the upper 16 bits of a float32; ties to
    even), returned as float32. NaN stays NaN."""
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    high, low = bits >> 16, bits & 0xFFFF
    up = (low > 0x8000) | ((low == 0x8000) & (high % 2 == 1))
    rounded = ((high + up) << 16).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, rounded)


def bfloat16_stack_forward(mode, x, hx, params, num_layers=1, bidirectional=False, lengths=None):
    """stack_forward with bfloat16 weights: every weight matrix (weight_*) rounded to bfloat16, and
    every matrix product's activations (x_t, h_{t-1}, an LSTM's o_t tanh(c_t) with projections)
    rounded to bfloat16 before it multiplies them. Sums, biases, layer norms (their gains too), gate
    math and states in x's dtype (float32). Returns (y, hn) as stack_forward."""
    rounded = {k: round_to_bfloat16(v) if k.startswith("weight_") else v for k, v in params.items()}
    y, hn, _ = stack_forward(mode, np.asarray(x, np.float32), hx, rounded, num_layers, bidirectional, lengths,
                             products=lambda name: _bfloat16_product)
    return y, hn


def _bfloat16_product(a, w):
    return round_to_bfloat16(a) @ w.T


# ----------------------------------------------------------------------------
# int8 inference (rnnfast.quantize(module, "int8")).
# ----------------------------------------------------------------------------

def _row_max(a):
    """Each row's largest magnitude, where a row below 2**-100 counts as zero (so 127 / m stays
    finite, and denormals give the same digits whether or not the CPU reads them as zero)."""
    m = np.abs(a).max(axis=1)
    return np.where(m >= np.float32(2.0 ** -100), m, np.float32(0))


def quantize_rows(a):
    """Symmetric int8 per row of a 2-d array, in float32: with m = max abs(a) over the row,
    q = rint(a * (127 / m)) (ties to even) and scale = m / 127, so that a ~ q * scale. A row of zeros
    (or below 2**-100) gives q = 0 and scale 0. Returns (q as int8, scale as float32)."""
    a = np.asarray(a, dtype=np.float32)
    m = _row_max(a)
    inv = np.divide(np.float32(127), m, out=np.zeros_like(m), where=m > 0)
    q = np.clip(np.rint(a * inv[:, None]), -127, 127).astype(np.int8)
    return q, m / np.float32(127)


def quantize_input_rows(a):
    """An input row in two int8 digits, as the input projections take it: q, scale from
    quantize_rows, and what q leaves, r = a * (127 / m) - q in [-1/2, 1/2], as q2 = rint(254 r)
    with scale2 = scale / 254, so that a ~ q * scale + q2 * scale2. Returns (q, scale, q2, scale2)."""
    a = np.asarray(a, dtype=np.float32)
    m = _row_max(a)
    inv = np.divide(np.float32(127), m, out=np.zeros_like(m), where=m > 0)
    scaled = a * inv[:, None]
    q = np.clip(np.rint(scaled), -127, 127)
    q2 = np.clip(np.rint((scaled - q) * np.float32(254)), -127, 127)
    scale = m / np.float32(127)
    return q.astype(np.int8), scale, q2.astype(np.int8), scale / np.float32(254)


def _dequantized_sum(q_a, scale_a, q_w, scale_w):
    """The exact integer sums S = q_a q_w^T, then float32(S) * (scale_a * scale_w)."""
    S = q_a.astype(np.int64) @ np.asarray(q_w).astype(np.int64).T
    return S.astype(np.float32) * (scale_a[:, None] * np.asarray(scale_w, np.float32)[None, :])


def int8_product(a, q_w, scale_w):
    """What an int8 product gives for activations a (rows) and int8 weights q_w (one row per output
    column) with their scales: a's rows quantized (quantize_rows), the exact integer sums
    S = q_a q_w^T, then float32(S) * (scale_a * scale_w)."""
    return _dequantized_sum(*quantize_rows(a), q_w, scale_w)


def int8_input_product(a, q_w, scale_w):
    """An input projection's int8 product: a's rows in two digits (quantize_input_rows), each
    digit's product as int8_product's, added."""
    q, scale, q2, scale2 = quantize_input_rows(a)
    return _dequantized_sum(q, scale, q_w, scale_w) + _dequantized_sum(q2, scale2, q_w, scale_w)


def _int8_pair(name, weight):
    """A weight as (q, scale): an int8 pair as given (a tuple or list of two: an int8 array (N, K)
    and (N,) scales), or anything else, a float weight (a 2-row nested list too), quantized here."""
    if isinstance(weight, (tuple, list)) and len(weight) == 2 and np.asarray(weight[0]).dtype == np.int8:
        q, scale = (np.asarray(a) for a in weight)
        if q.ndim != 2 or scale.shape != q.shape[:1]:
            raise ValueError(f"{name}: expected int8 weights (N, K) and N scales, got {q.shape} and {scale.shape}")
        return q, scale
    return quantize_rows(np.asarray(weight, np.float32))


def int8_stack_forward(mode, x, hx, params, num_layers=1, bidirectional=False, lengths=None):
    """stack_forward with int8 weights: each weight of params is a float array, quantized per row
    here (quantize_rows), or a pair (q, scale) (a tuple or a list) of int8 weights (any value in
    [-128, 127]) and their rows' float32 scales. Each product is an int8 product:
    int8_input_product for x_t (two digits), int8_product for h_{t-1} and, with projections, for
    o_t tanh(c_t) (one). Biases, layer norms, gate math and states in float32. Returns (y, hn) as
    stack_forward."""
    quantized = {k: _int8_pair(k, v) for k, v in params.items() if k.startswith("weight_")}

    def products(name):
        q_w, scale_w = quantized[name]
        int8 = int8_input_product if "_ih_" in name else int8_product
        return lambda a, w: int8(a, q_w, scale_w)
    # The stack reads the weights' shapes from params; the products read q and scale.
    shapes = dict(params) | {k: q.astype(np.float32) for k, (q, _) in quantized.items()}
    y, hn, _ = stack_forward(mode, np.asarray(x, np.float32), hx, shapes, num_layers, bidirectional, lengths,
                             products=products)
    return y, hn
