"""Optimisers with torch.optim's update rules (single-tensor CPU path), and gradient clipping.

An optimiser steps the parameters of one module or a list of modules (anything with
`parameters()` -> {name: live array} and `grads` -> {name: array}: the recurrent layers, the
cells, BiRNN, Linear, Embedding). It looks the arrays up by name at every step, so a module's
`load_state_dict` (which may swap its arrays) never leaves the optimiser updating stale ones.
The update runs in the parameters' dtype, in place.

State: `state_dict()` is flat (names -> NumPy arrays, nothing pickled), so `rnnfast.save` can
write it to .npz: the class name, the step count, the hyperparameters and one buffer per
parameter and kind, named "state.<module index>.<parameter name>.<buffer>" (torch's buffer names:
momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq). As in torch, `load_state_dict` restores
the hyperparameters too (lr, momentum, nesterov, amsgrad included), and with them which buffers
there are.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ._validate import key_mismatch

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm"]


def _modules(modules) -> list:
    mods = list(modules) if isinstance(modules, (list, tuple)) else [modules]
    if not mods:
        raise ValueError("modules: expected a module or a non-empty list of modules")
    for m in mods:
        if not (callable(getattr(m, "parameters", None)) and isinstance(getattr(m, "grads", None), dict)):
            raise TypeError(f"modules: {type(m).__name__} has no parameters() and grads dict")
    return mods


def _number(value, name, low=0.0, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < low or (low_open and value == low):
        raise ValueError(f"{name}: expected a value {'>' if low_open else '>='} {low}, got {value}")
    return float(value)


class Optimizer:
    """Base class: the modules, a step counter, per-parameter buffers and their (de)serialisation."""

    _HPARAMS: tuple = ()  # numbers (a pair for Adam's betas)
    _FLAGS: tuple = ()    # booleans, saved as 0 or 1

    def __init__(self, modules):
        self.modules = _modules(modules)
        self.step_count = 0
        self.state = self._zero_buffers(self._buffer_names(self._hparams()))

    def _hparams(self) -> dict:
        return {h: getattr(self, h) for h in self._HPARAMS + self._FLAGS}

    def _buffer_names(self, hp: dict) -> tuple:
        """The buffers each parameter needs under hyperparameters `hp` (momentum, amsgrad, ...)."""
        return ()

    def _zero_buffers(self, names) -> dict:
        return {key: {b: np.zeros_like(p) for b in names} for key, p, _ in self._items()}

    def _items(self):
        """(key, live parameter, its gradient) for every parameter of every module."""
        for i, m in enumerate(self.modules):
            grads = m.grads
            for name, p in m.parameters().items():
                yield f"{i}.{name}", p, grads[name]

    def zero_grad(self) -> None:
        for m in self.modules:
            m.zero_grad()

    def step(self) -> None:
        for key, p, g in self._items():
            self._update(p, g, self.state[key])
        self.step_count += 1

    def _update(self, p, g, buffers) -> None:
        raise NotImplementedError

    # ---- state --------------------------------------------------------------------------
    def _hparam_arrays(self) -> dict:
        return {f"hparam.{h}": np.asarray(v, dtype=np.float64) for h, v in self._hparams().items()}

    def state_dict(self) -> dict:
        out = {"type": np.array(type(self).__name__), "step": np.array(self.step_count, dtype=np.int64)}
        out.update(self._hparam_arrays())
        for key, bufs in self.state.items():
            for b, arr in bufs.items():
                out[f"state.{key}.{b}"] = arr.copy()
        return out

    def load_state_dict(self, state) -> None:
        """Replaces step count, hyperparameters and buffers, as torch does: the state decides which
        buffers there are (a state saved with momentum brings its momentum buffers into an SGD
        made without), and checks them as the constructor does. All-or-nothing. A state saved
        before the flags were lacks them: amsgrad then shows in its buffers, and nesterov stays
        this optimiser's."""
        name = type(self).__name__
        if "type" in state:
            kind = np.asarray(state["type"])
            if kind.dtype.kind != "U" or str(kind) != name:
                raise ValueError(f"{name}.load_state_dict: the state is of {kind!s}")

        def real(k, shape, kinds="fiu"):
            arr = np.asarray(state[k])
            if arr.dtype.kind not in kinds or arr.shape != shape:
                raise ValueError(f"{name}.load_state_dict: {k}: expected a real array of shape {shape}, "
                                 f"got dtype {arr.dtype} shape {arr.shape}")
            return arr

        hp = self._hparams()
        expected = {"type": (), "step": ()}
        for h in self._HPARAMS:
            expected[f"hparam.{h}"] = np.shape(hp[h])
            if f"hparam.{h}" in state:
                value = real(f"hparam.{h}", np.shape(hp[h]))
                hp[h] = float(value) if value.ndim == 0 else tuple(float(x) for x in value)
        for h in self._FLAGS:
            if f"hparam.{h}" not in state:
                hp[h] = self._flag_missing_from(state, h)
                continue
            expected[f"hparam.{h}"] = ()
            value = real(f"hparam.{h}", (), "fiub")
            if value not in (0, 1):
                raise ValueError(f"{name}.load_state_dict: hparam.{h}: expected 0 or 1, got {value}")
            hp[h] = bool(value)
        try:
            hp = self._checked(hp)
        except ValueError as e:
            raise ValueError(f"{name}.load_state_dict: {e}") from None
        buffers = self._buffer_names(hp)
        expected.update({f"state.{key}.{b}": p.shape for key, p, _ in self._items() for b in buffers})
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise KeyError(f"{name}.load_state_dict: {key_mismatch(missing, unexpected)}")
        checked = {k: real(k, shape, "iu" if k == "step" else "fiu") for k, shape in expected.items()
                   if k.startswith(("step", "state."))}
        if int(checked["step"]) < 0:
            raise ValueError(f"{name}.load_state_dict: step must be >= 0, got {int(checked['step'])}")
        new_state = self._zero_buffers(buffers)
        for key, bufs in new_state.items():
            for b, arr in bufs.items():
                np.copyto(arr, checked[f"state.{key}.{b}"], casting="unsafe")
        self.step_count = int(checked["step"])
        for h, v in hp.items():
            setattr(self, h, v)
        self.state = new_state

    def _checked(self, hp: dict) -> dict:
        """The hyperparameters, checked (ValueError for what the constructor refuses) and as floats,
        a tuple of floats, or bools."""
        raise NotImplementedError

    def _flag_missing_from(self, state, flag: str) -> bool:
        """A flag a state saved before flags were saved lacks: this optimiser's own."""
        return getattr(self, flag)

    def __repr__(self):
        hp = ", ".join(f"{h}={v!r}" for h, v in self._hparams().items())
        return f"{type(self).__name__}({len(self.modules)} module(s), {hp})"


class SGD(Optimizer):
    """torch.optim.SGD: d = g + weight_decay*p; with momentum, buf = momentum*buf + (1-dampening)*d
    (buf = d at the first step) and d = d + momentum*buf (Nesterov) or d = buf; p -= lr*d."""

    _HPARAMS = ("lr", "momentum", "dampening", "weight_decay")
    _FLAGS = ("nesterov",)

    def __init__(self, modules, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        hp = self._checked(dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                nesterov=nesterov))
        for h, value in hp.items():
            setattr(self, h, value)
        super().__init__(modules)

    def _checked(self, hp):
        out = {h: _number(hp[h], h) for h in self._HPARAMS}
        out["nesterov"] = bool(hp["nesterov"])
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening = 0")
        return out

    def _buffer_names(self, hp):
        return ("momentum_buffer",) if hp["momentum"] != 0 else ()

    def _update(self, p, g, buffers):
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            buf = buffers["momentum_buffer"]
            if self.step_count == 0:
                np.copyto(buf, d)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        p -= self.lr * d


class Adam(Optimizer):
    """torch.optim.Adam (weight decay added to the gradient, L2 style; amsgrad optional)."""

    _HPARAMS = ("lr", "betas", "eps", "weight_decay")
    _FLAGS = ("amsgrad",)
    _decoupled = False

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        hp = self._checked(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))
        for h, value in hp.items():
            setattr(self, h, value)
        super().__init__(modules)

    def _checked(self, hp):
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        out = dict(lr=_number(hp["lr"], "lr"), betas=tuple(_number(b, "betas") for b in betas),
                   eps=_number(hp["eps"], "eps"), weight_decay=_number(hp["weight_decay"], "weight_decay"),
                   amsgrad=bool(hp["amsgrad"]))
        if not all(b < 1 for b in out["betas"]):
            raise ValueError(f"betas: expected values in [0, 1), got {betas!r}")
        return out

    def _flag_missing_from(self, state, flag):
        if flag == "amsgrad":  # it shows in the buffers
            return any(k.endswith(".max_exp_avg_sq") for k in state)
        return super()._flag_missing_from(state, flag)

    def _buffer_names(self, hp):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hp["amsgrad"] else ())

    def _update(self, p, g, buffers):
        beta1, beta2 = self.betas
        step = self.step_count + 1
        if self._decoupled:
            p *= 1 - self.lr * self.weight_decay
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m, v = buffers["exp_avg"], buffers["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # torch's lerp_(g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * g * g
        if self.amsgrad:
            np.maximum(buffers["max_exp_avg_sq"], v, out=buffers["max_exp_avg_sq"])
            v = buffers["max_exp_avg_sq"]
        step_size = self.lr / (1 - beta1 ** step)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step)
        denom += self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr*weight_decay before the step."""

    _decoupled = True

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(modules, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm(modules, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Scales every gradient of `modules` by max_norm / (total_norm + 1e-6) when that is below 1
    (torch.nn.utils.clip_grad_norm_) and returns the total norm before clipping, a float.

    The norm is taken over all gradients together, as if concatenated, in float64 (no overflow for
    float32 gradients). A non-finite norm (inf or NaN gradients) leaves the gradients untouched and
    is returned as it is, or raises FloatingPointError with error_if_nonfinite=True; torch would
    instead scale them into NaN. Check it and skip the optimiser step:
    `if not math.isfinite(norm): opt.zero_grad()`.
    """
    max_norm = _number(max_norm, "max_norm")
    norm_type = float(norm_type)
    if not (norm_type == math.inf or norm_type > 0):
        raise ValueError(f"norm_type: expected a positive number or inf, got {norm_type}")
    grads = [g for m in _modules(modules) for g in m.grads.values()]
    if norm_type == math.inf:
        total = float(np.max([np.max(np.abs(g), initial=0.0) for g in grads], initial=0.0))  # NaN propagates
    else:
        acc = 0.0
        for g in grads:  # einsum, not np.dot: a BLAS call would wake BLAS threads that then compete with the kernels
            g64 = g.astype(np.float64, copy=False).reshape(-1)
            acc += float(np.einsum("i,i->", g64, g64) if norm_type == 2 else np.sum(np.abs(g64) ** norm_type))
        total = acc ** (1.0 / norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise FloatingPointError(f"clip_grad_norm: the total gradient norm is {total}; gradients left as they are")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= coef
    return total
