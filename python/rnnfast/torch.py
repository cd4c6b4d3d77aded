"""rnnfast's kernels as torch.nn modules: drop-in RNN, LSTM and GRU for PyTorch code on the CPU.

    import rnnfast.torch
    lstm = rnnfast.torch.LSTM(8, 32, num_layers=2, bidirectional=True)  # torch.nn.LSTM's arguments
    y, (h_n, c_n) = lstm(x)                        # tensors or a PackedSequence, as torch.nn.LSTM
    lstm = rnnfast.torch.from_torch(torch_lstm)    # and back: lstm.to_torch()

Importing this module imports torch; `import rnnfast` alone never does.

Design. Each layer (both directions) is one `torch.autograd.Function`, `_Layer`, over the same
stack of layers the NumPy modules run (`rnnfast._stack`: the directions side by side when there are
threads for both, each layer and direction with its kept workspace and weight cache). Tensors reach
the kernels as NumPy views (`.detach().numpy()`: no copy when contiguous) and results come back
through `torch.from_numpy` (no copy); the kernels run without the GIL. Dropout between layers is
torch's own `F.dropout`, drawn in the layout torch.nn draws it in (over the packed data when
lengths are given), so for the same `torch.manual_seed` the masks are torch.nn's. Without autograd
(eval under `torch.no_grad()` or `torch.inference_mode()`, or nothing requiring grad) the layers
run the kernels' inference path, saving nothing, as the custom operator `rnnfast::layer_inference`
(`rnnfast._torch_ops`): there torch.compile sees one graph node per layer (no graph break) and
torch.export exports the model. Training under torch.compile runs each layer as the operator
rnnfast::layer_train with its backward operator as autograd formula: no graph break (the
regularisers' draws included) and the eager gradients' bits; with dropout or the regularisers,
under the aot_eager backend, or inductor with `torch._inductor.config.fallback_random` (else
inductor draws its masks with its own generator).

Shapes: x (T, B, I) or (B, T, I) with batch_first, or (T, I) unbatched; h0, c0 (L*D, B, H) with L
layers and D = 2 for bidirectional; y (T, B, D*H). `lengths` (B,) as in `rnnfast.RNN.forward`.
"""
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _validate
from . import modules as _np_modules
from ._registry import CELLS, REGULARISERS, CellKind, parameter_shapes
from ._stack import LayerMasks, Stack
from ._torch_ops import DOUBLE_BACKWARD, layer_inference, layer_train, numpy_view as _np, register, run_inference
from ._torch_ops import run_layer as _run_layer

__all__ = ["RNN", "LSTM", "GRU", "LayerNormLSTM", "LayerNormGRU", "RNNBase", "from_torch", "from_numpy", "quantize"]

_DTYPES = (torch.float32, torch.float64)


class _Layer(torch.autograd.Function):
    """One layer, both directions: (x, h0, c0, *weights) -> (y, h_n[, c_n]) through rnnfast's kernels.

    Its backward consumes the saved forward (the gate gradients overwrite it, as in the NumPy
    modules), since torch cannot say whether another backward will follow. One that does
    (retain_graph=True) finds it spent and runs the layer's forward again from the saved inputs
    (same bits) before going back through it."""

    @staticmethod
    def forward(ctx, stack, layer, lengths, masks, x, h0, c0, *weights):
        ctx.set_materialize_grads(False)  # absent output gradients stay None: the kernels take None
        y, h_n, c_n, contexts = _run_layer(stack, layer, x, h0, c0, weights, lengths, True, masks)
        ctx.stack, ctx.layer, ctx.lengths, ctx.masks, ctx.contexts = stack, layer, lengths, masks, contexts
        ctx.has_h0, ctx.has_c0 = h0 is not None, c0 is not None
        ctx.save_for_backward(x, h0, c0, *weights)  # so that in-place changes before backward raise, as in torch.nn
        out = (torch.from_numpy(y), torch.from_numpy(h_n))
        return out + (torch.from_numpy(c_n),) if c_n is not None else out

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n=None):
        with torch.no_grad():
            grads = _Layer._gradients(ctx, dy, dh_n, dc_n)
        # Grad mode is on here only under create_graph=True. rnnfast's kernels give first
        # derivatives only: the gradients get a graph whose backward says so, should anything
        # differentiate them again.
        if torch.is_grad_enabled():
            tensors = [g for g in grads if g is not None]
            marked = iter(_FirstDerivativeOnly.apply(torch.empty(0, requires_grad=True), *tensors))
            grads = tuple(None if g is None else next(marked) for g in grads)
        return grads

    @staticmethod
    def _gradients(ctx, dy, dh_n, dc_n):
        x, h0, c0, *weights = ctx.saved_tensors  # checks the version counters
        stack, contexts = ctx.stack, ctx.contexts
        if any(c.spent for c in contexts):  # a second backward through this graph
            contexts = _run_layer(stack, ctx.layer, x, h0, c0, weights, ctx.lengths, True, ctx.masks)[3]
        D, S = stack.directions, weights[1].shape[1]  # S: h's size
        T, B, _ = x.shape
        dy = np.zeros((T, B, D * S), contexts[0].x.dtype) if dy is None else _np(dy)
        dx, dh0, dc0, dw = stack.backprop_layer(contexts, dy, None if dh_n is None else _np(dh_n),
                                                None if dc_n is None else _np(dc_n), None, retain_graph=False)
        ctx.contexts = contexts
        stack.recycle(ctx.layer, contexts)
        dweights = [torch.from_numpy(g) for group in dw for g in group if g is not None]
        grad_h0 = torch.from_numpy(dh0) if ctx.has_h0 else None
        grad_c0 = torch.from_numpy(dc0) if ctx.has_c0 else None
        return (None, None, None, None, torch.from_numpy(dx), grad_h0, grad_c0, *dweights)


class _FirstDerivativeOnly(torch.autograd.Function):
    """The identity on rnnfast's gradients under create_graph=True, whose own backward (a second
    derivative through an rnnfast layer) raises. Its first argument, an empty tensor that requires
    grad, puts its outputs in the graph even when nothing else there does."""

    @staticmethod
    def forward(ctx, anchor, *grads):
        return tuple(g.view_as(g) for g in grads)

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(DOUBLE_BACKWARD)


def _layer(stack, handle, layer, x, h0, c0, weights, lengths, masks):
    """Through autograd when a gradient is wanted (`_Layer`; under torch.compile the custom operator
    rnnfast::layer_train, whose autograd formula is rnnfast::layer_train_backward); otherwise the
    kernels' inference path, which a compiler or exporter sees as the custom operator
    rnnfast::layer_inference (one graph node), unless a regulariser drew masks (training under
    no_grad: rnnfast::layer_train under torch.compile)."""
    tensors = [x, h0, c0, *weights]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        if torch.compiler.is_exporting():
            raise RuntimeError("rnnfast.torch: torch.export traces rnnfast's layers through their inference "
                               "operator only: export under torch.no_grad() (a graph that trains through them "
                               "cannot be exported yet)")
        if torch.compiler.is_compiling():
            return _traced_training(stack, handle, layer, x, h0, c0, weights, lengths, masks)
        out = _Layer.apply(stack, layer, lengths, masks, x, h0, c0, *weights)
        return out if stack.cell.has_cell_state else (out[0], out[1], None)
    drawn = masks.w_hh is not None or masks.zoneout_seeds is not None or masks.recurrent is not None
    if drawn and torch.compiler.is_compiling():  # training under no_grad: the draws are the graph's tensors
        return _traced_training(stack, handle, layer, x, h0, c0, weights, lengths, masks, save=False)
    if not drawn:
        traced = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        y, h_n, c_n = (layer_inference if traced else run_inference)(
            x, h0, c0, list(weights), _lengths_tensor(lengths), handle, stack.cell.name, layer, stack.directions,
            float(masks.zoneout or 0.0))
        return y, h_n, c_n if stack.cell.has_cell_state else None
    y, h_n, c_n, _ = _run_layer(stack, layer, x, h0, c0, weights, lengths, False, masks)
    return torch.from_numpy(y), torch.from_numpy(h_n), None if c_n is None else torch.from_numpy(c_n)


def _traced_training(stack, handle, layer, x, h0, c0, weights, lengths, masks, save=True):
    """A training layer under torch.compile: the operator rnnfast::layer_train, its draws tensors."""
    y, h_n, c_n, _ = layer_train(x, h0, c0, list(weights), _lengths_tensor(lengths), handle, stack.cell.name, layer,
                                 stack.directions, save, float(masks.zoneout or 0.0), masks.zoneout_seeds,
                                 masks.w_hh or [], masks.recurrent or [])
    return y, h_n, c_n if stack.cell.has_cell_state else None


def _lengths_tensor(lengths):
    """The lengths as the operators take them: None, or a tensor (B,) (eagerly a view of the checked
    int64 array; under torch.compile the caller's tensor, which the operators check)."""
    return lengths if lengths is None or isinstance(lengths, torch.Tensor) else torch.from_numpy(lengths)


def _dropout(y, p, lengths, sorted_indices):
    """torch.nn's inter-layer dropout: over the packed data when there are lengths, so that the same
    seed draws the same mask as torch.nn on the same PackedSequence. Under torch.compile (lengths a
    tensor, where packing would break the graph) over the padded output, whose padded steps are
    zeros and stay zeros: the same distribution, though not torch.nn's draws (nor are a compiled
    graph's draws eager's)."""
    if lengths is None or isinstance(lengths, torch.Tensor):
        return F.dropout(y, p, training=True)
    T = y.shape[0]
    lens = torch.from_numpy(lengths)
    if sorted_indices is not None:
        y, lens = y.index_select(1, sorted_indices), lens[sorted_indices]
    packed = pack_padded_sequence(y, lens, enforce_sorted=True)
    dropped = PackedSequence(F.dropout(packed.data, p, training=True), packed.batch_sizes)
    y = pad_packed_sequence(dropped, total_length=T)[0]
    return y if sorted_indices is None else y.index_select(1, torch.argsort(sorted_indices))


def _repack(y, lengths, like):
    """y (T, B, D*H) in the batch order of pad_packed_sequence(like) -> a PackedSequence with like's
    batch_sizes, sorted_indices and unsorted_indices (what torch.nn returns)."""
    lens = torch.from_numpy(lengths)
    if like.sorted_indices is not None:
        y, lens = y.index_select(1, like.sorted_indices), lens[like.sorted_indices]
    data = pack_padded_sequence(y, lens, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNNBase(torch.nn.Module):
    """Shared machinery of RNN, LSTM and GRU: torch.nn.RNNBase's attributes, parameters and checks."""

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0, proj_size=0):
        super().__init__()
        name = type(self).__name__
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"rnnfast.torch.{name}: runs on the CPU only, got device={device!r} "
                             f"(use torch.nn.{name} on {torch.device(device).type})")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"rnnfast.torch.{name}: dtype must be torch.float32 or torch.float64, got {dtype}")
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{arg} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{arg} must be greater than zero")
        for arg, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"{arg} should be of type bool, got: {type(value).__name__}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=3)
        self._cell = CELLS[cell]
        self.mode = self._cell.torch_mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        self.weight_drop = _validate.probability(weight_drop, "weight_drop")
        self.zoneout = _validate.probability(zoneout, "zoneout")
        self.recurrent_dropout = _validate.probability(recurrent_dropout, "recurrent_dropout")
        self.proj_size = _validate.proj_size(proj_size, hidden_size, cell)
        self._flat_weights_names = []
        for pname, shape in parameter_shapes(self._cell, input_size, hidden_size, num_layers, self.num_directions,
                                             bias, self.proj_size):  # torch.nn's names, shapes and registration order
            self.register_parameter(pname, torch.nn.Parameter(torch.empty(shape, dtype=dtype)))
            self._flat_weights_names.append(pname)
        self._stack = Stack(self._cell, num_layers, self.num_directions)
        self._stack_handle = register(self._stack)  # for the inference operator
        self.reset_parameters()

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def reset_parameters(self):
        """torch.nn's init: every parameter U(-1/sqrt(H), 1/sqrt(H)), in registration order; the
        layer-normalised cells' gains 1 and cell bias 0 (after the draws, which stay torch.nn's)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            torch.nn.init.uniform_(weight, -stdv, stdv)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(0.0 if name.startswith("ln_cell_bias") else 1.0)

    def flatten_parameters(self):
        """A no-op, there for code written for torch.nn (cuDNN's packed weights do not apply here)."""

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        n = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        w = self._flat_weights
        return [w[i:i + n] for i in range(0, len(w), n)]

    def extra_repr(self):  # torch.nn's, item for item
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for k, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False),
                           ("proj_size", 0), *((own, 0.0) for own in REGULARISERS)):  # the regularisers rnnfast's
            if getattr(self, k) != default:
                s += f", {k}={getattr(self, k)}"
        return s

    # ---- forward ---------------------------------------------------------------------------
    def _check_tensor(self, t, what, dtype):
        name = type(self).__name__
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise RuntimeError(f"rnnfast.torch.{name} runs on the CPU only, but {what} is on {t.device}: "
                               f"move it with .cpu(), or use torch.nn.{name} on {t.device.type}")
        if t.dtype != dtype:
            raise ValueError(f"RNN {what} dtype ({t.dtype}) does not match weight dtype ({dtype}). "
                             f"Convert {what}: {what}.to({dtype}), or convert model: model.to({t.dtype})")

    def _check_hx(self, hx, B, batched, dtype):
        rows = self.num_layers * self.num_directions
        shapes = ((rows, B, self.proj_size or self.hidden_size), (rows, B, self.hidden_size))  # h's, c's
        names = ("hx", "cx") if self._cell.has_cell_state else ("hx",)
        if hx is None:
            return (None,) * 2
        if self._cell.has_cell_state:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
            states = tuple(hx)
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{type(self).__name__}: hx must be a tensor, got a {type(hx).__name__}")
            states = (hx,)
        out = []
        for name, h, shape in zip(names, states, shapes):
            self._check_tensor(h, name, dtype)
            want = 3 if batched else 2
            if h.dim() != want:
                raise RuntimeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, {name} should "
                                   f"also be {want}-D but got {h.dim()}-D tensor")
            h = h if batched else h.unsqueeze(1)
            if tuple(h.shape) != shape:
                which = "" if len(names) == 1 else f"[{names.index(name)}]"
                raise RuntimeError(f"Expected hidden{which} size {shape}, got {list(h.shape)}")
            out.append(h)
        return tuple(out) + (None,) * (2 - len(out))

    def _time_major(self, input, lengths, dtype):
        """input -> (x (T, B, I), lengths as int64 (B,) or None, the batch order packing sorts by, batched)."""
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths: give either a PackedSequence or lengths, not both")
            self._check_tensor(input.data, "input", dtype)
            x, lens = pad_packed_sequence(input)  # in the caller's batch order, like hx
            return x, lens.numpy().astype(np.int64), input.sorted_indices, True
        self._check_tensor(input, "input", dtype)
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        batched = input.dim() == 3
        x = input.unsqueeze(1) if not batched else input.transpose(0, 1) if self.batch_first else input
        if lengths is None:
            return x, None, None, batched
        if torch.compiler.is_compiling():
            return x, self._traced_lengths(lengths, batched, x.shape[1]), None, batched
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.cpu().numpy()
        lengths = _validate.lengths_array(np.reshape(lengths, -1) if not batched else lengths, x.shape[1], x.shape[0])
        return x, lengths, torch.sort(torch.from_numpy(lengths), descending=True)[1], batched  # as packing sorts

    @staticmethod
    def _traced_lengths(lengths, batched, B):
        """lengths under torch.compile: a tensor (B,) of any dtype, its shape checked here (shapes are
        known while tracing) and its values by the operators as they run, with the eager checks and
        messages (whole floats taken, like eager code; a check of values here would break the graph)."""
        lengths = torch.as_tensor(lengths)
        lengths = lengths.reshape(-1) if not batched else lengths
        if tuple(lengths.shape) != (B,):
            raise ValueError(f"lengths: expected shape ({B},) (one per batch entry), got {tuple(lengths.shape)}")
        return lengths.contiguous()

    def forward(self, input, hx=None, lengths=None):
        """torch.nn's forward: output, h_n (LSTM: output, (h_n, c_n)); a PackedSequence in gives one out.

        `lengths` (B,) with a padded tensor gives what packing with enforce_sorted=False, this module
        and pad_packed_sequence(total_length=T) give, without packing."""
        weights = self._flat_weights
        dtype = weights[0].dtype
        for n, w in zip(self._flat_weights_names, weights):
            self._check_tensor(w, n, dtype)
        if dtype not in _DTYPES:
            raise TypeError(f"rnnfast.torch.{type(self).__name__}: parameters must be float32 or float64, "
                            f"got {dtype}")
        x, lengths, sorted_indices, batched = self._time_major(input, lengths, dtype)
        T, B, I = x.shape
        if I != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {I}")
        if T == 0 or B == 0:
            raise ValueError(f"{type(self).__name__}: input has no time steps or no batch entries: {(T, B, I)}")
        h0, c0 = self._check_hx(hx, B, batched, dtype)
        L, D = self.num_layers, self.num_directions
        per = len(weights) // (L * D)  # parameters per layer and direction

        def run(layer, inp, h0_rows, c0_rows):
            mine = weights[layer * D * per:(layer + 1) * D * per]
            masks = LayerMasks(w_hh=self._weight_drop_masks(mine[1::per]), zoneout=self.zoneout or None,
                               zoneout_seeds=self._zoneout_seeds(D), recurrent=self._recurrent_masks(B, D))
            y, hn, cn = _layer(self._stack, self._stack_handle, layer, inp, h0_rows, c0_rows, mine, lengths,
                               masks)
            return y, (hn, cn)

        def between(layer, y):
            if self.training and self.dropout > 0:
                return _dropout(y, self.dropout, lengths, sorted_indices).contiguous()
            return y

        y, states = self._stack.layers(x.contiguous(), h0, c0, run, between)
        h_n = torch.cat([hn for hn, _ in states]) if L > 1 else states[0][0]
        c_n = (torch.cat([cn for _, cn in states]) if L > 1 else states[0][1]) if self._cell.has_cell_state else None
        if isinstance(input, PackedSequence):
            out = _repack(y, lengths, input)
        elif not batched:
            out, h_n, c_n = y.squeeze(1), h_n.squeeze(1), None if c_n is None else c_n.squeeze(1)
        else:
            out = y.transpose(0, 1) if self.batch_first else y
        return (out, (h_n, c_n)) if self._cell.has_cell_state else (out, h_n)

    # The regularisers' draws: NumPy arrays and ints eagerly; under torch.compile tensors, which the
    # graph draws and hands to the operator rnnfast::layer_train.
    def _weight_drop_masks(self, w_hh):
        """In training with weight drop, one mask per direction's W_hh, drawn from torch's generator
        (entries kept with probability 1 - p, scaled by 1 / (1 - p)); else None."""
        if not (self.training and self.weight_drop > 0):
            return None
        keep = 1.0 - self.weight_drop
        masks = [torch.empty_like(w, requires_grad=False).bernoulli_(keep).div_(keep) for w in w_hh]
        return masks if torch.compiler.is_compiling() else [m.numpy() for m in masks]

    def _recurrent_masks(self, batch, directions):
        """In training with recurrent dropout, one (B, S) mask per direction from torch's generator
        (units kept with probability 1 - p, scaled by 1 / (1 - p); S: h's size, proj_size with
        projections); else None."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        keep = 1.0 - self.recurrent_dropout
        shape, dtype = (batch, self.proj_size or self.hidden_size), self.weight_ih_l0.dtype
        masks = [torch.empty(shape, dtype=dtype).bernoulli_(keep).div_(keep) for _ in range(directions)]
        return masks if torch.compiler.is_compiling() else [m.numpy() for m in masks]

    def _zoneout_seeds(self, directions):
        """In training with zoneout, one seed per direction from torch's generator, from which the
        kernels draw the (T, B, H) masks; else None."""
        if not (self.training and self.zoneout > 0):
            return None
        seeds = [torch.randint(0, 2 ** 63 - 1, ()) for _ in range(directions)]  # the same draws either way
        return torch.stack(seeds) if torch.compiler.is_compiling() else [int(s) for s in seeds]

    def train(self, mode=True):
        if not mode:
            self._stack.drop_spares()  # recycled training workspaces: of no use in eval
        return super().train(mode)

    def __setstate__(self, state):  # a module pickled by an rnnfast without the stack gets one
        super().__setstate__(state)
        for name in REGULARISERS:  # absent from a module pickled before it existed
            self.__dict__.setdefault(name, 0.0)
        if not isinstance(self.__dict__.get("_cell"), CellKind):
            self._cell = CELLS[state["_cell"]]
        if "_stack" not in self.__dict__:
            self._stack = Stack(self._cell, self.num_layers, self.num_directions)
        self._stack_handle = register(self._stack)

    # ---- conversions -----------------------------------------------------------------------
    def _kwargs(self):
        return _constructor_kwargs(self)

    def to_torch(self):
        """The torch.nn module with the same arguments, weights and train/eval mode."""
        if self._cell.layer_norm:
            raise ValueError(f"to_torch: torch.nn has no {type(self).__name__}")
        for own, what in REGULARISERS.items():
            if getattr(self, own):
                raise ValueError(f"to_torch: torch.nn has no {what} (this module has {own}={getattr(self, own)})")
        with warnings.catch_warnings():  # the dropout warning was given when this module was made
            warnings.simplefilter("ignore")
            m = getattr(torch.nn, type(self).__name__)(self.input_size, self.hidden_size,
                                                       dtype=self.weight_ih_l0.dtype, **self._kwargs())
        m.load_state_dict(self.state_dict())
        return m.train(self.training)

    def to_numpy(self):
        """The rnnfast NumPy module (rnnfast.RNN / LSTM / GRU) with the same arguments and weights."""
        dt = {torch.float32: "float32", torch.float64: "float64"}[self.weight_ih_l0.dtype]
        kw = self._kwargs()
        if kw["dropout"] >= 1:
            raise ValueError("to_numpy: rnnfast's NumPy modules take dropout < 1")
        m = getattr(_np_modules, type(self).__name__)(self.input_size, self.hidden_size, dtype=dt, **kw)
        m.load_state_dict({k: _np(v) for k, v in self.state_dict().items()})
        return m.train(self.training)


class RNN(RNNBase):
    """Elman RNN, h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu: torch.nn.RNN's API."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, weight_drop, zoneout, recurrent_dropout)


class LSTM(RNNBase):
    """LSTM with torch.nn.LSTM's API and gate order (i, f, g, o), projections (proj_size) included."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, weight_drop, zoneout, recurrent_dropout, proj_size)


class GRU(RNNBase):
    """GRU with torch.nn.GRU's API and gate order (r, z, n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, weight_drop, zoneout, recurrent_dropout)


class LayerNormLSTM(RNNBase):
    """rnnfast.LayerNormLSTM (the layer-normalised LSTM) with torch.nn.LSTM's API: parameters
    torch.nn.LSTM's and ln_ih_weight_l{k}, ln_hh_weight_l{k}, ln_cell_weight_l{k}, ln_cell_bias_l{k}."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("layernorm_lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, weight_drop, zoneout, recurrent_dropout)


class LayerNormGRU(RNNBase):
    """rnnfast.LayerNormGRU (the layer-normalised GRU) with torch.nn.GRU's API: parameters
    torch.nn.GRU's and ln_ih_weight_l{k}, ln_hh_weight_l{k}."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, weight_drop=0.0, zoneout=0.0,
                 recurrent_dropout=0.0):
        super().__init__("layernorm_gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, weight_drop, zoneout, recurrent_dropout)


def _constructor_kwargs(module):
    """The constructor arguments (besides sizes, device and dtype) that rebuild `module`: any of
    torch.nn's, rnnfast.torch's or rnnfast's NumPy RNN / LSTM / GRU."""
    kw = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
              bidirectional=module.bidirectional)
    if getattr(module, "nonlinearity", None) is not None:
        kw["nonlinearity"] = module.nonlinearity
    for own in REGULARISERS:  # rnnfast's own (torch.nn has none of them)
        if getattr(module, own, 0.0):
            kw[own] = getattr(module, own)
    if getattr(module, "proj_size", 0):
        kw["proj_size"] = module.proj_size
    return kw


def _build(cls_name, input_size, hidden_size, dtype, kw, state, training):
    with warnings.catch_warnings():  # the source module was made with the same arguments
        warnings.simplefilter("ignore")
        m = globals()[cls_name](input_size, hidden_size, dtype=dtype, **kw)
    m.load_state_dict(state)
    return m.train(training)


def from_torch(module):
    """torch.nn.RNN / LSTM / GRU -> the rnnfast.torch module with the same arguments, weights (copied,
    to the CPU) and train/eval mode."""
    kinds = (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)
    if not isinstance(module, kinds):
        raise TypeError(f"from_torch: expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    dtype = module.weight_ih_l0.dtype
    if dtype not in _DTYPES:
        raise TypeError(f"from_torch: parameters must be float32 or float64, got {dtype}")
    kw = _constructor_kwargs(module)
    name = next(k.__name__ for k in kinds if isinstance(module, k))
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return _build(name, module.input_size, module.hidden_size, dtype, kw, state, module.training)


def from_numpy(module):
    """rnnfast.RNN / LSTM / GRU / LayerNormLSTM / LayerNormGRU (NumPy) -> the rnnfast.torch module with
    the same arguments and weights."""
    if not isinstance(module, (_np_modules.RNN, _np_modules.LSTM, _np_modules.GRU, _np_modules.LayerNormLSTM,
                               _np_modules.LayerNormGRU)):
        raise TypeError(f"from_numpy: expected rnnfast.RNN, LSTM, GRU, LayerNormLSTM or LayerNormGRU, got "
                        f"{type(module).__name__}")
    kw = _constructor_kwargs(module)
    dtype = torch.float64 if module.dtype == np.float64 else torch.float32
    state = {k: torch.from_numpy(v) for k, v in module.state_dict().items()}
    return _build(type(module).__name__, module.input_size, module.hidden_size, dtype, kw, state, module.training)


def quantize(module, dtype):
    """torch.nn.RNN / LSTM / GRU or an rnnfast.torch module -> an inference-only torch.nn.Module with
    its weights in reduced precision (`dtype`: "int8" or "bfloat16"), as
    rnnfast.quantize does for the NumPy modules. `module` is left as it was."""
    from ._torch_quantized import Quantized
    from .quantized import quantize as quantize_numpy
    if isinstance(module, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
        module = from_torch(module)
    if not isinstance(module, RNNBase):
        raise TypeError(f"quantize: expected torch.nn.RNN, LSTM or GRU or an rnnfast.torch module, "
                        f"got {type(module).__name__}")
    if module.weight_ih_l0.dtype != torch.float32:
        raise TypeError(f"quantize: expected a float32 module, got {module.weight_ih_l0.dtype}")
    return Quantized(quantize_numpy(module.to_numpy(), dtype))
