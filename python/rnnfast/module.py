"""What every rnnfast module shares: named parameters with gradients, train/eval, state dicts
with torch.nn's semantics, and a lock so one module can be used from several threads."""
from __future__ import annotations

import functools
import threading

import numpy as np

from ._validate import key_mismatch


def serialized(method):
    """Runs a method under the instance's lock: a module used from several threads is safe, its
    calls simply take turns (the kernels themselves run without the GIL)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Lockable:
    """A per-instance lock (for `serialized` methods) that copy.deepcopy and pickle recreate."""

    def __init__(self):
        self._lock = threading.RLock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()


class Module(Lockable):
    """Subclasses set `dtype` and call `_init_params({name: shape}, rng, bound)`."""

    def __init__(self):
        super().__init__()
        self.training = True
        self._params = {}
        self.grads = {}

    def _init_params(self, shapes, rng, bound):
        """Parameters drawn from U(-bound, bound) in the order given (torch.nn's), zero grads."""
        self._params = {k: rng.uniform(-bound, bound, size=s).astype(self.dtype) for k, s in shapes.items()}
        self.grads = {k: np.zeros_like(p) for k, p in self._params.items()}

    def state_dict(self) -> dict:
        """Copies of the parameters under torch.nn's names."""
        return {k: p.copy() for k, p in self._params.items()}

    @serialized
    def load_state_dict(self, state) -> None:
        """Copies every parameter in place (arrays from `parameters()` stay valid); all-or-nothing:
        nothing changes if any entry is missing, unexpected, not real or of the wrong shape."""
        missing = [k for k in self._params if k not in state]
        unexpected = [k for k in state if k not in self._params]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: {key_mismatch(missing, unexpected)}")
        new = {}
        for k, p in self._params.items():
            arr = np.asarray(state[k])
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {k}: expected a real array, got dtype {arr.dtype}")
            if arr.shape != p.shape:
                raise ValueError(f"load_state_dict: {k}: expected shape {p.shape}, got {arr.shape}")
            new[k] = self._loaded(k, arr)
        for k, arr in new.items():
            np.copyto(self._params[k], arr)

    def _loaded(self, name, arr):
        """A state dict's entry as the parameter `name` holds it (or an error saying why not)."""
        return arr.astype(self.dtype)

    def parameters(self) -> dict:
        """The live parameter arrays (update them in place, e.g. in an optimiser)."""
        return self._params

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    # ---- the saved forward: backward runs through the last training forward --------------------
    # An eval forward in between (a validation pass) leaves it, as torch does; but a backward still
    # in eval mode after one raises, rather than silently taking the older training forward.
    _saved = None
    _eval_since_saved = False

    def _after_forward(self, saved) -> None:
        """At a forward's end: a training forward's `saved` replaces the last (an eval's is ignored)."""
        if self.training:
            self._saved, self._eval_since_saved = saved, False
        else:
            self._eval_since_saved = True

    def _saved_forward(self):
        if self._saved is None:
            raise RuntimeError("backward: no saved forward; call forward in train mode first "
                               "(an eval-mode forward saves nothing)")
        if self._eval_since_saved and not self.training:
            raise RuntimeError("backward: the module is in eval mode, and its last forward ran in eval mode "
                               "(which saves nothing); to back-propagate through the last train-mode forward, "
                               "call .train() first, or run the forward again in train mode")
        return self._saved

    def eval(self):
        return self.train(False)
