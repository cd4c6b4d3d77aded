"""The Python snippets of the README and of the documentation's pages (docs/*.md) run as written,
each in a fresh interpreter in an empty folder, and print what their comments say they print (a
snippet whose optional package is missing is skipped)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SNIPPETS, IDS = [], []
for page in PAGES:
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
        SNIPPETS.append(code)
        IDS.append(f"{page.stem}-{i}")
NEEDS = {"torch": "torch", "onnxruntime": "onnxruntime"}


def expected_prints(code):
    """The `# comment` after each print(...) line whose comment looks like a printed value."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.*)$", code, re.M)]


@pytest.mark.parametrize("code", SNIPPETS, ids=IDS)
def test_snippet_runs_and_prints_what_it_says(code, tmp_path):
    for word, module in NEEDS.items():
        if re.search(rf"^\s*import .*\b{word}\b", code, re.M) and importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert out.strip(), "the snippet prints nothing"
    for want in expected_prints(code):
        value = want.split(";")[0].strip()
        if re.match(r"^[(\[{'\"0-9TF]", value):  # a printed value, not a remark
            assert value in out, (value, out)


def test_the_readme_stays_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.stem not in ("index", "api", "measurements", "architecture"):  # the last two: their sources are linked
            assert f"docs/{page.name}" in readme, page.name
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_every_documentation_page_is_in_the_repository():
    """A page that .gitignore hides (say, a name a benchmark writes) would be missing from a clone."""
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True)
    if git.returncode != 0:
        pytest.skip("not a git checkout")
    for page in (ROOT / "docs").iterdir():
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(page)])
        assert ignored.returncode != 0 or page.name == "_build", f"{page.name} is ignored by git"
