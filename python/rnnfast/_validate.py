"""Argument checks for the public API: clear messages that name the argument and say what was
expected and what came, raised before any kernel runs."""
from __future__ import annotations

import numbers
import os

import numpy as np

_DTYPES = {"float32": np.float32, "float64": np.float64}


def dtype_of(dtype) -> np.dtype:
    """'float32' / 'float64' or the NumPy types -> np.dtype."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
        return np.dtype(_DTYPES[dtype])
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32', 'float64' or a NumPy float type, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def probability(value, name: str) -> float:
    """A drop probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def nonlinearity(value) -> str:
    """RNN's nonlinearity name, "tanh" or "relu"."""
    if value not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {value!r}")
    return value


def float_array(value, name: str, dtype: np.dtype) -> np.ndarray:
    """Any floating array-like -> ndarray of `dtype`; integer, bool, complex or object -> TypeError."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and other things NumPy cannot hold
        raise TypeError(f"{name}: expected a floating-point array, got {type(value).__name__} ({exc})") from None
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def shaped(value, name: str, dtype: np.dtype, shape: tuple, what: str = "") -> np.ndarray:
    """A floating array of exactly `shape`."""
    arr = float_array(value, name, dtype)
    if arr.shape != tuple(shape):
        hint = f" {what}" if what else ""
        raise ValueError(f"{name}: expected shape {tuple(shape)}{hint}, got {arr.shape}")
    return arr


def proj_size(value, hidden_size: int, mode: str) -> int:
    """An LSTM's proj_size: 0 (none) or an int in [1, hidden_size); torch.nn's messages."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"proj_size should be of type int, got: {type(value).__name__}")
    if value < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if value and mode != "lstm":
        raise ValueError(f"proj_size argument is only supported for LSTM, not {mode}")
    if value >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
    return int(value)


def states(value, name: str, owner: str, has_cell: bool, shape: tuple, dtype: np.dtype, what: str = "",
           cell_shape: tuple = None, cell_what: str = None):
    """A recurrent state argument (an initial state or its gradient): None, one array h, or with a
    cell state (LSTM) a pair (h, c); h of `shape`, c of `cell_shape` (default: `shape`; an LSTM
    with projections has fewer units in h). Returns (h, c) as contiguous arrays of `dtype` (the
    kernels read rows back to back), None where absent."""
    if value is None:
        return None, None
    if has_cell != isinstance(value, (tuple, list)) or (has_cell and len(value) != 2):
        want = "a tuple (h, c)" if has_cell else "one array h"
        raise TypeError(f"{name}: {owner} expects {want}, got {type(value).__name__}")
    shapes = (shape, shape if cell_shape is None else cell_shape)
    whats = (what, what if cell_what is None else cell_what)
    parts = [np.ascontiguousarray(shaped(p, f"{name}[{i}]" if has_cell else name, dtype, shapes[i], whats[i]))
             for i, p in enumerate(value if has_cell else (value,))]
    return (parts[0], parts[1]) if has_cell else (parts[0], None)


def lengths_array(lengths, batch: int, steps: int) -> np.ndarray:
    """lengths -> contiguous int64 (B,) with 1 <= length <= T."""
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one per batch entry), got {arr.shape}")
    if arr.size and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(f"lengths: values must lie in [1, {steps}] (T = {steps}), got min {arr.min()} max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound known
        return 1 << 62


def check_allocation(nbytes: int, what: str) -> None:
    """MemoryError, before anything is allocated, for a request larger than this machine's memory
    (sizes are Python ints here, so nothing can overflow)."""
    limit = physical_memory_bytes()
    if nbytes > limit:
        raise MemoryError(f"{what} would need {nbytes / 2**30:.3g} GiB, more than this machine's "
                          f"{limit / 2**30:.3g} GiB")


def key_mismatch(missing, unexpected) -> str:
    """What a state dict's keys lack and have too many of, naming only the halves that are not empty."""
    parts = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {unexpected}"] if unexpected else [])
    return ", ".join(parts)
