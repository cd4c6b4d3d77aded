"""The reference's public single-layer functions."""
import numpy as np

from .cells import _GRUCell, _LSTMCell, _LayerNormLSTMCell, _RNNCell
from .scan import _layer_backward, _layer_forward


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
