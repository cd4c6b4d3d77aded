"""rnnfast: fast CPU recurrent neural networks (RNN, LSTM, GRU) with BPTT, on NumPy arrays.

The math runs in C++ (OpenMP + SIMD, the instruction set picked at import); `rnnfast.reference`
holds a plain NumPy version of the same math, the oracle the tests check the kernels against.
"""
import os as _os
import warnings as _warnings

# GNU OpenMP (libgomp) reads how long its idle threads spin (waiting for the next parallel region,
# or at its join) once: when it loads, with _core below. Its default of 300,000 pauses is longer
# than a scheduler's time slice on current x86 cores (benchmarks/RESULTS.md, "On a shared machine"):
# on a machine another process shares, a thread spinning for a partner that waits for that very
# core then stalls a region for a whole slice (rnnfast's own barriers spin briefly, then sleep:
# cpp/src/team_barrier.h). 10,000 pauses still cover the gap between back-to-back regions. A spin
# count or wait policy the user set is kept, and the environment is restored at once, so child
# processes see the user's own. Without effect where libgomp was loaded before (by another
# extension) or the build uses another OpenMP runtime.
if "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ:
    from . import _core
else:
    _os.environ["GOMP_SPINCOUNT"] = "10000"
    try:
        from . import _core
    finally:
        del _os.environ["GOMP_SPINCOUNT"]
from .birnn import BiRNN
from .cells import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM, RNNBase
from . import optim
from .checkpoint import load, save
from .data import Batch, Batches, lengths_mask, one_hot, pad_sequences
from .losses import cross_entropy, mse_loss
from .nn import Embedding, Linear
from .optim import clip_grad_norm
from .quantized import quantize
from .tbptt import TBPTTResult, tbptt

__version__ = "0.1.0"

__all__ = ["quantize", "RNN", "LSTM", "GRU", "LayerNormLSTM", "LayerNormGRU", "BiRNN", "RNNCell", "LSTMCell", "GRUCell", "RNNBase", "set_num_threads", "get_num_threads", "set_dynamic_threads", "get_dynamic_threads", "isa", "set_isa", "available_isas",
           "__version__",
           # training toolkit
           "Linear", "Embedding", "cross_entropy", "mse_loss", "optim", "clip_grad_norm", "tbptt", "TBPTTResult",
           "one_hot", "pad_sequences", "lengths_mask", "Batch", "Batches", "save", "load"]


# Public submodules not imported above, loaded on first use as attributes (PEP 562): after a plain
# `import rnnfast`, `rnnfast.onnx.export(...)` works, and importing rnnfast imports neither torch
# nor onnx until they are asked for.
_LAZY_SUBMODULES = ("onnx", "torch", "reference", "functional", "selfcheck", "demo", "corpus")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib
        try:
            return importlib.import_module(f"{__name__}.{name}")  # also binds it as an attribute
        except ImportError as e:  # an optional dependency is missing: hasattr() says False, the message says which
            raise AttributeError(f"rnnfast.{name} needs a package that is not installed here: {e}") from e
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def set_num_threads(n: int) -> None:
    """Threads the kernels use (results are identical for any count)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return _core.get_num_threads()


def set_dynamic_threads(on: bool) -> None:
    """Dynamic threads (on by default; RNNFAST_DYNAMIC_THREADS=0 turns them off at import): when
    other processes take the cores, calls move to fewer threads and later try more again, so that
    rnnfast slows by about its fair share instead of waiting at every barrier for a thread the
    scheduler took away. Results are the same bits for any thread count; only the speed changes.
    Off: every call uses get_num_threads() threads (where its work is large enough to share)."""
    if not isinstance(on, bool):
        raise ValueError(f"set_dynamic_threads: expected True or False, got {on!r}")
    _core.set_dynamic_threads(on)


def get_dynamic_threads() -> bool:
    return _core.get_dynamic_threads()


def isa() -> str:
    """The instruction set the kernels use: 'avx512', 'avx2' or 'scalar' (RNNFAST_ISA overrides; a
    value the CPU or the build lacks is ignored with a RuntimeWarning at import).

    A build with -DRNNFAST_AVX2_W16=ON also has the test-only 'avx2_w16' (tools/avx2_w16.sh). On a
    CPU with AVX512-VNNI there is also 'avx512_vnni' (picked before 'avx512': its int8 products
    (rnnfast.quantize) use vpdpbusd); with AVX512-BF16 'avx512_bf16' (bfloat16 products on
    vdpbf16ps, with the same results; picked before 'avx512_vnni' on AMD Zen 5 only, where it is
    expected to be the faster); with AMX 'avx512_amx' (picked first: int8 and bfloat16 products on
    tiles). All are avx512 for float32. Likewise 'avx2_vnni' (AVX-VNNI,
    picked before 'avx2') is avx2 with int8 products on vpdpbusd.
    """
    return _core.isa()


def set_isa(name: str) -> None:
    """Forces the kernels' instruction set: any name available_isas() lists (see isa()), or a test
    build's 'avx2_w16'; ValueError if the CPU or the build lacks it."""
    _core.set_isa(name)


def available_isas() -> list:
    """The instruction sets this CPU can run, in the order it is offered them: the first is the
    default (the kernels keep a table of the CPUs for which the order differs)."""
    return list(_core.available_isas())


def _warn_if_isa_env_ignored() -> None:
    """RNNFAST_ISA names a path the CPU or the build lacks: the kernels use the best one instead,
    and say so (a misspelt or unavailable value would otherwise go unnoticed)."""
    wanted = _os.environ.get("RNNFAST_ISA")
    if wanted and wanted != _core.isa():
        _warnings.warn(f"RNNFAST_ISA={wanted!r} is not available here (this CPU or this build lacks it; "
                       f"available: {', '.join(available_isas())}): using {_core.isa()!r}",
                       RuntimeWarning, stacklevel=2)


_warn_if_isa_env_ignored()
