"""rnnfast/_core.pyi names exactly what the extension has, with the same parameter names, and
ships with py.typed in the installed package."""
import ast
import inspect
import re
from pathlib import Path

import rnnfast
from rnnfast import _core

PACKAGE = Path(rnnfast.__file__).parent


def stub_functions():
    tree = ast.parse((PACKAGE / "_core.pyi").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    others = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    others |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    return functions, others


def test_the_stub_and_py_typed_are_installed():
    assert (PACKAGE / "py.typed").is_file() and (PACKAGE / "_core.pyi").is_file()


def test_the_stub_names_every_binding_and_nothing_else():
    functions, others = stub_functions()
    real = {n for n in dir(_core) if not n.startswith("_")}
    assert real == set(functions) | others


def test_the_stub_has_each_function_s_parameters_in_order():
    functions, _ = stub_functions()
    for name, node in functions.items():
        doc = getattr(_core, name).__doc__ or ""
        signature = doc.splitlines()[0]  # pybind11: "name(arg: type, ...) -> type"
        real = [p for p in re.findall(r"(\w+): ", signature.split("->")[0]) if p != "self"]
        stub = [a.arg for a in node.args.args + node.args.kwonlyargs]
        assert real == stub, name
    assert inspect.isclass(_core.LayerWorkspace)
