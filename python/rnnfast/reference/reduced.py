"""The reference's reduced-precision inference: bfloat16 (rnnfast.quantize(module, "bfloat16"))
and int8 (rnnfast.quantize(module, "int8")): the stack with its products rounded or quantized."""
import numpy as np

from .stack import stack_forward


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
