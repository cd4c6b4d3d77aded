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

The reference is in parts, each readable alone: `cells` (the gate math of one step), `scan` (a
cell over time, a layer with lengths, zoneout's masks), `layers` (the public single-layer
functions), `stack` (stacked and bidirectional layers) and `reduced` (bfloat16 and int8 inference).
"""
from .layers import (gru_backward, gru_forward, layernorm_gru_backward, layernorm_gru_forward,
                     layernorm_lstm_backward, layernorm_lstm_forward, lstm_backward, lstm_forward, rnn_backward,
                     rnn_forward)
from .reduced import (bfloat16_stack_forward, int8_input_product, int8_product, int8_stack_forward,
                      quantize_input_rows, quantize_rows, round_to_bfloat16)
from .scan import zoneout_masks
from .stack import stack_backward, stack_forward

__all__ = [
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
    "layernorm_lstm_forward", "layernorm_lstm_backward", "layernorm_gru_forward", "layernorm_gru_backward",
    "stack_forward", "stack_backward",
    "zoneout_masks",
    "round_to_bfloat16", "bfloat16_stack_forward",
    "quantize_rows", "quantize_input_rows", "int8_product", "int8_input_product", "int8_stack_forward",
]
