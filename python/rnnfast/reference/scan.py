"""The reference's scan: one cell over time for a batch whose entries all have the same length,
and a layer: the scan over the whole batch, or one entry at a time with lengths; and zoneout's
masks as the kernels draw them (zoneout_masks)."""
from types import SimpleNamespace

import numpy as np

from .cells import _LSTMCell, _layer_norm, _layer_norm_backward


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
