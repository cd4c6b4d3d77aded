"""The reference's cells: gate math for one time step, (B, G*H) projections in, state out.

backward(dstate, cache) -> (dgi, dgh, dstate_prev, dparams), where dstate_prev leaves out the
path through gh (the scan adds dgh @ w_hh to it; 0 where h_{t-1} reaches h_t only that way, so
that h may have another size than the cell's units) and dparams are the gradients of the
cell's own parameters (`params`; none but the layer-normalised LSTM's)."""
import numpy as np


def _sigmoid(a):
    # Written with tanh so that large |a| neither overflows nor warns in float32.
    return 0.5 * (1.0 + np.tanh(0.5 * a))


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
