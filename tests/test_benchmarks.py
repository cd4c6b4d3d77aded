"""The benchmark scripts run, and the correctness checks they make before timing pass.

Their timings are not looked at here (speed lives in the benchmarks, not in tests): these tests
only keep `python benchmarks/bench.py` and `benchmarks/products.py` working for users.
"""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args):
    r = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def test_bench_quick_checks_every_row_against_the_reference(tmp_path):
    out = run("bench.py", "--quick", "--no-torch", "--repeats", "1", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    rows = res["rows"]
    assert len(rows) == 3 * 2 * 2  # cells x quick shapes x (inference, training)
    assert all(r["status"] == "ok" and r["max_rel_err"] <= res["rtol"] for r in rows), rows
    assert res["machine"]["fp32_peak_gflops"] > 0
    assert (tmp_path / "results.md").read_text() in out  # the report printed is the one written


def test_products_are_checked_before_they_are_timed():
    out = run("products.py", "--rows", "70", "--inner", "33", "--outer", "50", "--rounds", "1", "--threads", "2")
    err = float(out.split("max rel err against float64 ")[1].split()[0])
    assert err <= 1e-5
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["y", "dW", "dx"]
