"""The reference's stacked and bidirectional layers, in PyTorch's layout."""
from types import SimpleNamespace

import numpy as np

from .cells import _CELLS, _LayerNormLSTMCell
from .scan import _layer_backward, _layer_forward, _matmul

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
