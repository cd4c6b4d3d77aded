"""The small LSTM problem shared by the tests of refused input and of backward misuse."""
import numpy as np

import rnnfast

T, B, I, H = 4, 3, 5, 6


def lstm(**kw):
    return rnnfast.LSTM(I, H, seed=0, **kw)


def x_ok(dtype=np.float32):
    return np.random.default_rng(0).standard_normal((T, B, I)).astype(dtype)
