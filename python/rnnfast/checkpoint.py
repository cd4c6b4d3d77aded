"""Checkpoints: modules, optimiser state and metadata in one .npz file.

Layout (every entry a plain NumPy array, nothing pickled):
    __format__            "rnnfast-checkpoint/1"
    __modules__           the modules' class names, in the order given to save
    <i>.<name>            module i's state_dict entries (torch.nn's names)
    __optimizer__         the optimiser's class name (only when one was saved)
    optimizer.<key>       its flat state_dict
    meta.<key>            metadata: strings, numbers, booleans or numeric arrays

Writing is atomic: the file is written beside its destination under a temporary name, flushed to
disk, then renamed over the destination, so a crash leaves the old checkpoint or the new one,
never half of one. Loading reads and checks everything (the zip's CRC-32 of every entry, names,
classes, shapes, dtypes) before it changes anything: on any error nothing is loaded.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["save", "load", "read_metadata"]

FORMAT = "rnnfast-checkpoint/1"


def _is_module(m):
    return callable(getattr(m, "state_dict", None)) and callable(getattr(m, "load_state_dict", None))


def _meta_array(key, value):
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"metadata: keys must be non-empty strings without '/', got {key!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufU":
        raise TypeError(f"metadata[{key!r}]: expected a string, number, boolean or numeric array, "
                        f"got {type(value).__name__}")
    return arr


def save(path, *modules, optimizer=None, metadata=None) -> None:
    """Writes `modules` (in order), `optimizer`'s state and `metadata` (a dict) to `path` atomically."""
    for i, m in enumerate(modules):
        if not _is_module(m):
            raise TypeError(f"save: argument {i + 1} ({type(m).__name__}) has no state_dict/load_state_dict")
    arrays = {"__format__": np.array(FORMAT), "__modules__": np.array([type(m).__name__ for m in modules], dtype=str)}
    for i, m in enumerate(modules):
        arrays.update({f"{i}.{k}": np.asarray(p) for k, p in m.state_dict().items()})
    if optimizer is not None:
        arrays["__optimizer__"] = np.array(type(optimizer).__name__)
        arrays.update({f"optimizer.{k}": np.asarray(a) for k, a in optimizer.state_dict().items()})
    for key, value in (metadata or {}).items():
        arrays[f"meta.{key}"] = _meta_array(key, value)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes the file private; give it the mode a plain open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read(path) -> dict:
    """Every entry of the file, fully read (so that the CRC of each is checked), or ValueError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    try:
        with open(path, "rb") as f:  # our own handle, so that it is closed on any error
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError(f"checkpoint {path!r}: not an rnnfast checkpoint (a single .npy array)")
            with z:
                arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if str(exc).startswith("checkpoint "):
            raise
        raise ValueError(f"checkpoint {path!r} cannot be read (truncated or corrupted?): {exc}") from None
    except Exception as exc:  # zipfile, zlib, numpy header and EOF errors alike mean the same to the caller
        raise ValueError(f"checkpoint {path!r} cannot be read (truncated or corrupted?): "
                         f"{type(exc).__name__}: {exc}") from None
    fmt = arrays.get("__format__")
    if fmt is None or fmt.dtype.kind != "U" or str(fmt) != FORMAT or "__modules__" not in arrays:
        raise ValueError(f"checkpoint {path!r}: not an rnnfast checkpoint (expected format {FORMAT!r})")
    return arrays


def _metadata(arrays) -> dict:
    out = {}
    for k, a in arrays.items():
        if k.startswith("meta."):
            out[k[5:]] = a.item() if a.ndim == 0 else a
    return out


def read_metadata(path) -> dict:
    """The metadata saved with the checkpoint (0-d entries as Python scalars), without loading anything."""
    return _metadata(_read(path))


def _check_state(where, expected, got):
    """Raises ValueError unless `got` has exactly `expected`'s keys with the same shapes and kinds."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: missing entries {missing}, unexpected entries {unexpected}")
    for k, want in expected.items():
        have = got[k]
        same_kind = (have.dtype.kind == "U") == (want.dtype.kind == "U") and have.dtype.kind in "fiuU"
        if have.shape != want.shape or not same_kind:
            raise ValueError(f"{where}: {k}: expected shape {want.shape} ({want.dtype}), "
                             f"got shape {have.shape} ({have.dtype})")


def load(path, *modules, optimizer=None) -> dict:
    """Loads `path` into `modules` (the same classes, in the order they were saved) and, if given,
    `optimizer`; returns the metadata. All-or-nothing: a file that cannot be read, or whose content
    does not fit the modules, raises ValueError and leaves every module and the optimiser as it was.
    An optimiser state in the file is ignored when no optimizer is passed."""
    arrays = _read(path)
    where = f"checkpoint {os.fspath(path)!r}"
    saved_names = [str(s) for s in arrays["__modules__"].reshape(-1)]
    names = [type(m).__name__ for m in modules]
    if saved_names != names:
        raise ValueError(f"{where}: holds modules {saved_names}, got {names}")
    states = []
    for i, m in enumerate(modules):
        prefix = f"{i}."
        got = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
        _check_state(f"{where}, module {i} ({names[i]})", m.state_dict(), got)
        states.append(got)
    opt_state = None
    if optimizer is not None:
        kind = arrays.get("__optimizer__")
        if kind is None:
            raise ValueError(f"{where}: holds no optimiser state")
        if str(kind) != type(optimizer).__name__:
            raise ValueError(f"{where}: holds {kind!s} state, got a {type(optimizer).__name__}")
        opt_state = {k[len("optimizer."):]: a for k, a in arrays.items() if k.startswith("optimizer.")}
        _check_state(f"{where}, optimiser", optimizer.state_dict(), opt_state)

    backups = [m.state_dict() for m in modules]
    opt_backup = None if optimizer is None else optimizer.state_dict()
    try:
        for m, state in zip(modules, states):
            m.load_state_dict(state)
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
    except BaseException:  # checked above, so not expected; still, leave everything as it was
        for m, state in zip(modules, backups):
            m.load_state_dict(state)
        if optimizer is not None:
            optimizer.load_state_dict(opt_backup)
        raise
    return _metadata(arrays)
