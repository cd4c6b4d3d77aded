"""Getting sequences into the layers: one-hot codes, padded batches with `lengths`, step masks.

Time-major (T, B, ...) by default, as the layers; batch_first=True gives (B, T, ...). A padded
batch goes to `layer(x, lengths=lengths)`, and `lengths_mask` turns the same lengths into the
(T, B) mask the losses take, so the padding counts nowhere.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from . import _validate as v

__all__ = ["one_hot", "pad_sequences", "lengths_mask", "Batch", "Batches"]


def one_hot(ids, n, dtype="float32") -> np.ndarray:
    """Integer ids (...) in [0, n) -> (..., n) array with a single 1 per position."""
    n = v.positive_int(n, "n")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.dtype == np.bool_:
        raise TypeError(f"ids: expected integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise IndexError(f"ids: values must lie in [0, {n}), got min {ids.min()} max {ids.max()}")
    out = np.zeros(ids.shape + (n,), v.dtype_of(dtype))
    np.put_along_axis(out, ids[..., None].astype(np.intp), 1, axis=-1)
    return out


def pad_sequences(sequences, batch_first=False, pad_value=0):
    """A list of arrays (L_i, ...) with equal trailing shapes -> (padded, lengths).

    padded is (T, B, ...) (or (B, T, ...)) with T = max L_i, filled with pad_value past each end,
    in the sequences' common dtype; lengths is int64 (B,). Empty sequences are refused (the layers
    need at least one step per entry).
    """
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences: expected at least one sequence")
    trailing = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim < 1 or s.shape[0] == 0:
            raise ValueError(f"sequences[{i}]: expected at least one step, got shape {s.shape}")
        if s.shape[1:] != trailing:
            raise ValueError(f"sequences[{i}]: expected trailing shape {trailing} like sequences[0], got {s.shape[1:]}")
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    dtype = np.result_type(*seqs)
    out = np.full((int(lengths.max()), len(seqs)) + trailing, pad_value, dtype=dtype)
    for b, s in enumerate(seqs):
        out[: s.shape[0], b] = s
    return (np.ascontiguousarray(out.swapaxes(0, 1)) if batch_first else out), lengths


def lengths_mask(lengths, steps=None, batch_first=False) -> np.ndarray:
    """Boolean (T, B) mask (or (B, T)): True at the valid steps t < lengths[b]. T defaults to max(lengths)."""
    lens = np.asarray(lengths)
    if lens.ndim != 1 or lens.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected a 1-D integer array, got dtype {lens.dtype} shape {lens.shape}")
    T = int(lens.max(initial=0)) if steps is None else int(steps)
    mask = np.arange(T)[:, None] < lens[None, :]
    return np.ascontiguousarray(mask.T) if batch_first else mask


class Batch(NamedTuple):
    """x: padded inputs; lengths (B,); y: targets (None without targets); index: the entries' positions
    in the dataset."""
    x: np.ndarray
    lengths: np.ndarray
    y: Optional[np.ndarray]
    index: np.ndarray


class Batches:
    """Mini-batches of variable-length sequences, each padded to its own longest entry.

    `sequences`: a list of arrays (L_i, ...). `targets` (optional): one per sequence, either a label
    (scalars -> y (B,)) or a per-step sequence, padded like x with `target_pad_value` (default
    -100, cross_entropy's ignore_index, for integer targets; 0 for float ones: mask them with
    `lengths_mask`). Each pass over the object is an epoch; with shuffle=True the order is
    reshuffled every epoch from a generator seeded once with `seed`, so a run is reproducible.
    """

    def __init__(self, sequences, batch_size, targets=None, shuffle=False, seed=None, batch_first=False,
                 pad_value=0, target_pad_value=None, drop_last=False):
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError("sequences: expected at least one sequence")
        self.batch_size = v.positive_int(batch_size, "batch_size")
        if targets is not None:
            targets = list(targets)
            if len(targets) != len(self.sequences):
                raise ValueError(f"targets: expected one per sequence ({len(self.sequences)}), got {len(targets)}")
        self.targets = targets
        self.shuffle, self.batch_first, self.drop_last = bool(shuffle), bool(batch_first), bool(drop_last)
        self.pad_value, self.target_pad_value = pad_value, target_pad_value
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n, b = len(self.sequences), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _targets(self, index):
        ys = [np.asarray(self.targets[i]) for i in index]
        if all(y.ndim == 0 for y in ys):
            return np.array(ys)
        for i, y in zip(index, ys):
            if y.ndim == 0 or y.shape[0] != len(self.sequences[i]):
                raise ValueError(f"targets[{i}]: expected a label or {len(self.sequences[i])} steps like "
                                 f"sequences[{i}], got shape {y.shape}")
        pad = self.target_pad_value
        if pad is None:
            pad = -100 if np.result_type(*ys).kind in "iu" else 0
        return pad_sequences(ys, self.batch_first, pad)[0]

    def __iter__(self):
        order = self._rng.permutation(len(self.sequences)) if self.shuffle else np.arange(len(self.sequences))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                return
            x, lengths = pad_sequences([self.sequences[i] for i in index], self.batch_first, self.pad_value)
            y = None if self.targets is None else self._targets(index)
            yield Batch(x, lengths, y, index)
