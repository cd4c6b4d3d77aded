"""rnnfast.torch.quantize: rnnfast.quantize's inference-only modules as torch.nn.Modules.

The module holds the quantized NumPy module (rnnfast.quantized.Quantized) and shares its arrays
with torch buffers, so that torch's state_dict, load_state_dict and pickling see the weights as
torch.bfloat16 tensors (the same bits as the NumPy module's uint16 patterns) or torch.int8 ones
(with their float32 `_scale` buffers), and the biases as float32 ones, and the forward is the NumPy
module's."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .quantized import Quantized as _NumpyQuantized
from .quantized import _is_weight

_WEIGHT_DTYPES = {"bfloat16": torch.bfloat16, "int8": torch.int8}


class Quantized(torch.nn.Module):
    """torch.nn.RNN / LSTM / GRU's forward (float32 tensors, batch_first, PackedSequence, `lengths`,
    hx; an LSTM's proj_size; rnnfast.torch's layer-normalised modules) on rnnfast's reduced-precision
    kernels, for inference: an input that requires a gradient is refused, and the outputs carry none."""

    def __init__(self, numpy_module: _NumpyQuantized):
        super().__init__()
        self._numpy = numpy_module
        self.precision = numpy_module.precision
        for name in ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias"):
            setattr(self, name, getattr(numpy_module, name))
        self.proj_size = getattr(numpy_module, "proj_size", 0)
        for name, array in numpy_module.parameters().items():
            self.register_buffer(name, _tensor(array))  # shares the array's memory

    def extra_repr(self):
        return (f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}"
                + (f", proj_size={self.proj_size}" if self.proj_size else "") + f", {self.precision}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name in self._numpy.parameters():
            value = state_dict.get(prefix + name)
            want = _WEIGHT_DTYPES[self.precision]
            if _is_weight(name) and value is not None and value.dtype != want:
                raise TypeError(f"load_state_dict: {name}: expected {self.precision} weights ({want}, as this "
                                f"module's state_dict() holds), got {value.dtype}; for float weights, load them "
                                f"into the float module and quantize it")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def __setstate__(self, state):  # a pickled copy: its NumPy module must read its own buffers
        super().__setstate__(state)
        self._relink()

    def _apply(self, fn, recurse=True):  # .to(), .float(), .cuda(), ...: the buffers may be new tensors
        out = super()._apply(fn, recurse)
        self._relink()
        return out

    def _relink(self):
        """Points the NumPy module at the buffers; refuses buffers of another dtype or device."""
        for name, buf in self._buffers.items():
            want = _WEIGHT_DTYPES[self.precision] if _is_weight(name) else torch.float32
            if buf.dtype != want or buf.device.type != "cpu":
                raise TypeError(f"rnnfast.torch: a {self.precision} module's {name} must stay a CPU {want} tensor, "
                                f"now {buf.dtype} on {buf.device} (quantize the float module again instead)")
            self._numpy.parameters()[name] = _array_of(buf)

    def forward(self, input, hx=None, lengths=None):
        """output, h_n (LSTM: output, (h_n, c_n)), as torch.nn's module in eval mode."""
        packed = isinstance(input, PackedSequence)
        tensors = [input.data if packed else input] + list(hx if isinstance(hx, tuple) else [hx])
        if any(t is not None and t.requires_grad for t in tensors):
            raise RuntimeError(f"rnnfast.torch: a {self.precision} module is inference-only (its outputs carry no "
                               "gradient); detach the input, or train the float module")
        if packed:
            padded, lens = pad_packed_sequence(input, batch_first=self.batch_first)
            x, lengths = padded, lens.numpy()
        else:
            x = input
        batched = x.dim() == 3
        if not batched:  # (T, I): one sequence
            x = x.unsqueeze(1 if not self.batch_first else 0)
            hx = None if hx is None else (tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple)
                                          else hx.unsqueeze(1))
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.cpu().numpy()
        states = None if hx is None else (tuple(_array(h) for h in hx) if isinstance(hx, tuple) else _array(hx))
        y, h = self._numpy.forward(_array(x), states, lengths)
        out = torch.from_numpy(y)
        h = tuple(torch.from_numpy(s) for s in h) if isinstance(h, tuple) else torch.from_numpy(h)
        if packed:
            out = pack_padded_sequence(out, torch.from_numpy(np.asarray(lengths)), batch_first=self.batch_first,
                                       enforce_sorted=False)
        elif not batched:
            out = out.squeeze(1 if not self.batch_first else 0)
            h = tuple(s.squeeze(1) for s in h) if isinstance(h, tuple) else h.squeeze(1)
        return out, h


def _tensor(array):
    """A NumPy parameter as a tensor sharing its memory: uint16 bit patterns as torch.bfloat16."""
    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _array_of(buf):
    """The inverse of _tensor, sharing memory too."""
    if buf.dtype == torch.bfloat16:
        return buf.view(torch.int16).numpy().view(np.uint16)
    return buf.numpy()


def _array(t):
    if t.dtype != torch.float32:
        raise TypeError(f"rnnfast.torch: a quantized module takes float32 tensors, got {t.dtype}")
    return t.detach().cpu().numpy()
