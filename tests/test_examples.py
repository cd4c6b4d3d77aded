"""The training examples' --quick modes run to the end (the full modes are run by hand: see the README)."""
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# script -> a line its output must contain
EXPECTED = {
    "addition.py": "held-out exact match",
    "digits.py": "BiRNN(lstm)  test accuracy",
    "fill_in_the_blank.py": "BiRNN(lstm), both ways",
    "long_memory.py": "gradient reaching step 0",
    "forecast.py": "last-value baseline",
    "regularisers.py": "recurrent_dropout=0.25",
}


def test_the_examples_are_there():
    assert not [name for name in EXPECTED if not (EXAMPLES / name).is_file()]


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_quick_mode_runs(script, tmp_path):
    if script == "digits.py":
        pytest.importorskip("sklearn", reason="digits.py needs scikit-learn")
    args = [sys.executable, str(EXAMPLES / script), "--quick"]
    if script == "long_memory.py":
        args += ["--out", str(tmp_path)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert EXPECTED[script] in r.stdout, r.stdout
    if script == "regularisers.py":  # a result line per run: best loss, its epoch, the last loss
        rows = [line.split() for line in r.stdout.splitlines() if "nats/char" in line]
        assert len(rows) == 4 and all(float(row[-6]) > 0 and float(row[-3]) > 0 for row in rows), r.stdout
