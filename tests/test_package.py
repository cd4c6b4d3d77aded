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
    assert out.split("\n")[:3] == ["False False False", "rnnfast.reference rnnfast.onnx rnnfast.functional",
                                   "False False True"]


def test_rnnfast_torch_after_a_plain_import():
    pytest.importorskip("torch")
    assert run("import rnnfast\nprint(rnnfast.torch.LSTM(2, 3).hidden_size)").strip() == "3"


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        import rnnfast
        rnnfast.nothing_here
