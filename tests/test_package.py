"""The package as users import it: submodules as attributes after a plain `import rnnfast`, the
heavy ones loaded on first use (PEP 562)."""
import subprocess
import sys

import pytest


def run(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_submodules_are_attributes_loaded_on_first_use():
    out = run("import sys, rnnfast\n"
              "print('torch' in sys.modules, 'onnx' in sys.modules, 'rnnfast.reference' in sys.modules)\n"
              "print(rnnfast.reference.lstm_forward.__module__, rnnfast.onnx.export.__module__,"
              " rnnfast.functional.layer_forward.__module__)\n"
              "print('torch' in sys.modules, 'onnx' in sys.modules, 'onnx' in dir(rnnfast))\n")
    first, modules, after = out.split("\n")[:3]
    assert (first, after) == ("False False False", "False False True")
    reference, onnx, functional = modules.split()
    assert reference.startswith("rnnfast.reference") and (onnx, functional) == ("rnnfast.onnx", "rnnfast.functional")


def test_rnnfast_torch_after_a_plain_import():
    pytest.importorskip("torch")
    assert run("import rnnfast\nprint(rnnfast.torch.LSTM(2, 3).hidden_size)").strip() == "3"


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        import rnnfast
        rnnfast.nothing_here


def test_without_torch_rnnfast_torch_is_no_attribute():
    out = run("import sys\nsys.modules['torch'] = None  # as if torch were not installed\nimport rnnfast\n"
              "print(hasattr(rnnfast, 'torch'))\n"
              "try:\n    rnnfast.torch\nexcept AttributeError as e:\n    print(e)\n")
    first, second = out.splitlines()[:2]
    assert first == "False" and "rnnfast.torch needs a package that is not installed" in second


def test_a_numpy_module_pickled_before_the_stack_loads_and_runs():
    import numpy as np
    import rnnfast
    m = rnnfast.GRU(3, 5, num_layers=2, bidirectional=True, seed=1)
    state = m.__getstate__()
    for k in ("_stack", "_names", "_cell", "proj_size"):  # proj_size: absent before projections
        del state[k]
    state.update(_workspace={}, _packed={})  # what such a module held then
    old = rnnfast.GRU.__new__(rnnfast.GRU)
    old.__setstate__(state)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    assert np.array_equal(old(x)[0], m(x)[0])
    assert np.array_equal(old.backward(np.ones((4, 2, 10), np.float32))[0],
                          m.backward(np.ones((4, 2, 10), np.float32))[0])
