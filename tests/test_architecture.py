"""ARCHITECTURE.md matches the code, and the rules between the layers hold (a source check)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "ARCHITECTURE.md").read_text()
SOURCES = [p for d in ("cpp/src", "cpp/python", "cpp/include/rnnfast", "python/rnnfast", "python/rnnfast/reference")
           for p in (ROOT / d).iterdir()
           if p.suffix in (".h", ".cpp", ".py", ".pyi") or p.name == "py.typed"]


def test_every_source_file_is_described():
    named = set(re.findall(r"`([\w.]+)`", DOC))
    missing = sorted(p.relative_to(ROOT).as_posix() for p in SOURCES if p.name not in named)
    assert not missing, f"not in ARCHITECTURE.md: {missing}"


def test_every_file_the_document_names_exists():
    names = {p.name for p in SOURCES}
    for name in re.findall(r"`(\w+\.(?:h|cpp|py|pyi))`", DOC):
        assert name in names or (ROOT / "tests" / name).exists() or list(ROOT.glob(f"*/{name}")), name


def test_kernels_and_public_headers_never_include_pybind11():
    for p in list((ROOT / "cpp/src").iterdir()) + list((ROOT / "cpp/include/rnnfast").iterdir()):
        assert "pybind11" not in p.read_text(), p.name


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")


def test_the_reference_imports_nothing_of_rnnfast():
    # Its parts import each other (`.cells`, ..., or `from . import cells`), NumPy and the standard
    # library's types: nothing else, of rnnfast or anything.
    package = ROOT / "python/rnnfast/reference"
    allowed = {"." + p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {".", "numpy", "types"}
    assert len(allowed) >= 7, allowed
    for path in package.glob("*.py"):
        imports = list(imported_modules(path))
        assert imports and all(m in allowed for m in imports), (path.name, imports)


def test_only_the_stack_calls_the_layer_kernels():
    """Front ends go through _stack; functional (the one-layer functions the stack calls, and the
    reference's counterpart) is the only other caller of _core's layer functions."""
    allowed = {"_stack.py", "functional.py", "selfcheck.py"}  # selfcheck: the functional path against the reference
    for p in (ROOT / "python/rnnfast").rglob("*.py"):
        text = p.read_text()
        if p.name not in allowed:
            assert not re.search(r"\blayer_(forward|backward)\(", text), p.name
        if p.name != "functional.py":
            assert "_core.layer_" not in text, p.name
