"""The benchmark scripts run, and the correctness checks they make before timing pass.

Their timings are not looked at here (speed lives in the benchmarks, not in tests): these tests
only keep `python benchmarks/bench.py` and `benchmarks/products.py` working for users.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args):
    r = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def test_bench_quick_checks_every_row_against_the_reference(tmp_path):
    out = run("bench.py", "--quick", "--no-torch", "--repeats", "1", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    rows = res["rows"]
    assert len(rows) == 4 * 2 * 2  # cells (rnn_tanh, lstm, lstm_proj, gru) x quick shapes x (inference, training)
    assert all(r["status"] == "ok" and r["max_rel_err"] <= res["rtol"] for r in rows), rows
    assert res["machine"]["fp32_peak_gflops"] > 0
    assert (tmp_path / "results.md").read_text() in out  # the report printed is the one written


def test_products_are_checked_before_they_are_timed():
    out = run("products.py", "--rows", "70", "--inner", "33", "--outer", "50", "--rounds", "1", "--threads", "2",
              "--pause", "0.01")
    err = float(out.split("max rel err against float64 ")[1].split()[0])
    assert err <= 1e-5
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["y", "dW", "dx"]


def test_contention_checks_its_rows_and_ends_its_competitor():
    out = run("contention.py", "--cells", "lstm,gru", "--shapes", "5,2,8", "--modes", "training", "--no-demo",
              "--no-torch", "--rounds", "1", "--seconds", "0.05", "--pause", "0")
    rows = [ln for ln in out.splitlines() if ln.startswith("| lstm") or ln.startswith("| gru")]
    assert len(rows) == 2 and "FAILED" not in out and "lowest kept" in out, out
    pid = int(out.split("(process ")[1].split(")")[0])
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), \
        "the competitor outlived the benchmark"


def test_cell_steps_match_torch_before_they_are_timed():
    out = run("cell_steps.py", "--sizes", "8,33", "--batches", "1,3", "--rounds", "1", "--calls", "2")
    rows = [ln.split() for ln in out.splitlines()[2:]]
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        (c, h, b) for c in ("rnn_tanh", "lstm", "gru") for h in ("8", "33") for b in ("1", "3"))
    assert all(float(r[3]) > 0 for r in rows)
    errs = [float(r[6]) for r in rows]
    if importlib.util.find_spec("torch"):
        assert all(e <= 1e-5 for e in errs)
    else:
        assert all(e != e for e in errs)  # NaN: nothing to compare with


def test_gaps_checks_its_rows_and_times_each_gap_and_setting():
    out = run("gaps.py", "lstm,4,2,8", "gru,3,1,5", "--gaps", "0,1", "--calls", "2", "--rounds", "1", "--threads", "2")
    rows = [ln.split() for ln in out.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [(c, g) for c in ("lstm,4,2,8", "gru,3,1,5") for g in ("0", "1")], out
    assert all(len(r) == 7 and all(float(v) > 0 for v in r[2:]) for r in rows), out


def test_gaps_refuses_a_row_that_differs_from_the_reference(monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        import bench
        import gaps
    finally:
        sys.path.remove(str(BENCH))
    right = bench.reference_step
    monkeypatch.setattr(bench, "reference_step", lambda *a: (right(*a)[0] * 1.01, None, None))
    with pytest.raises(SystemExit, match="against the reference"):
        gaps.checked_call("lstm", (3, 2, 8))


def test_ab_builds_alternates_the_two_builds_it_is_given(tmp_path):
    rows = ["lstm,3,2,8,eval", "gru,3,2,8,train", "lnlstm,3,2,8,train", "lngru,3,2,8,eval"]
    out = run("ab_builds.py", "-", "-", *rows, "--rounds", "2", "--budget", "0.01", "--threads", "1")
    report = out.splitlines()
    for which, line in zip(("old:", "new:"), report[:2]):  # which extension module each build ran
        assert line.startswith(which) and "_core" in line and "(modified " in line
    lines = {ln.split()[0]: ln.split() for ln in report[3:]}
    assert sorted(lines) == sorted(rows)
    for row in rows:  # old ms, new ms, median ratio, then one ratio per round
        assert len(lines[row]) == 1 + 3 + 2 and all(float(v.strip("()")) > 0 for v in lines[row][1:])
    # A folder is put first on the worker's path: a broken package there is what gets imported.
    (tmp_path / "rnnfast").mkdir()
    (tmp_path / "rnnfast" / "__init__.py").write_text("raise ImportError('not a real build')\n")
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", str(tmp_path), rows[0], "--rounds", "1",
                        "--budget", "0.01"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "not a real build" in r.stderr
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", "-", "lstm,3,2,8,fast"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cell,T,B,H,mode" in r.stderr


def test_ab_builds_side_by_side_runs_both_builds_at_once(tmp_path):
    import pytest
    row = "lstm,3,2,8,eval"
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", "-", row, "--rounds", "2", "--budget", "0.01",
                        "--side-by-side"], capture_output=True, text=True, timeout=300)
    if r.returncode == 2 and "two physical cores" in r.stderr:
        pytest.skip("fewer than two physical cores to pin the builds to")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 threads, side by side" in r.stdout
    line = next(ln.split() for ln in r.stdout.splitlines() if ln.strip().startswith(row))
    assert len(line) == 1 + 3 + 2 and all(float(v.strip("()")) > 0 for v in line[1:])
    # One build failing fails the run.
    (tmp_path / "rnnfast").mkdir()
    (tmp_path / "rnnfast" / "__init__.py").write_text("raise ImportError('not a real build')\n")
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), str(tmp_path), "-", row, "--rounds", "1",
                        "--budget", "0.01", "--side-by-side"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not a real build" in r.stderr
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", "-", row, "--side-by-side", "--threads", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "one thread per build" in r.stderr


def test_ab_builds_interleaved_asks_each_build_for_one_call_in_turn(tmp_path):
    rows = ["lstm,3,2,8,eval", "gru,3,2,8,train"]
    out = run("ab_builds.py", "-", "-", *rows, "--interleaved", "--rounds", "4", "--pause", "0")
    assert "4 calls of each, all threads, interleaved" in out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip().split(" ")[0] in rows}
    assert sorted(lines) == sorted(rows)
    for row in rows:  # old ms, new ms, median ratio, the ratios' quartiles
        assert len(lines[row]) == 1 + 3 + 2 and all(float(v.strip("()")) > 0 for v in lines[row][1:])
    # A build whose worker fails fails the run, with the worker's error.
    (tmp_path / "rnnfast").mkdir()
    (tmp_path / "rnnfast" / "__init__.py").write_text("raise ImportError('not a real build')\n")
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", str(tmp_path), rows[0], "--interleaved"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not a real build" in r.stderr
    r = subprocess.run([sys.executable, str(BENCH / "ab_builds.py"), "-", "-", rows[0], "--interleaved",
                        "--side-by-side"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not allowed" in r.stderr


def test_activation_accuracy_tool_reports_both_functions_within_the_bound():
    r = subprocess.run([sys.executable, str(BENCH.parent / "tools" / "activation_accuracy.py"), "--step", "40009"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    errs = {ln.split()[1].rstrip(":"): float(ln.split()[5]) for ln in r.stdout.splitlines()}
    assert set(errs) == {"sigmoid", "tanh"}
    assert all(0 < e <= 1e-6 for e in errs.values()), errs  # 0 would mean nothing was compared


def load_tool(name):
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_checks_products_and_layers_before_timing(capsys):
    import rnnfast
    sweep = load_tool("sweep")
    times = sweep.time_products(rnnfast._core, 37, 21, 50)  # raises when a product is wrong
    assert len(times) == 3 and all(t > 0 for t in times[:2])
    for row in ("lstm,4,3,9,eval", "gru,2,5,7,train", "rnn,3,2,17,eval"):
        sweep.check_row(sweep.parse_row(row))  # raises when the layer differs from the reference
    # The report: one line per product and row, a column per variant, medians over the quiet rounds.
    # A worker's figures: peaks before and after (GFLOP/s), others' share of the cores, then seconds:
    # 6 products (the first 2 * 3200 * 1024 * 4096 flops: 26.8 GFLOP in 1 s, 27% of 100) and the row.
    variants = [sweep.parse_variant(v) for v in ("a=256,20", "b=default,default,4x6", "c=default,default")]
    rows = ["lstm,4,3,9,eval"]
    quiet = [100.0, 98.0, 0.01] + [1.0] * 6 + [0.002]
    taken = [100.0, 98.0, 0.40] + [0.5] * 6 + [0.001]  # another process took 40% of the cores
    low_peak = [50.0, 100.0, 0.0] + [2.0] * 6 + [0.004]  # the peak fell by half during the timings
    assert sweep.is_quiet(quiet) and not sweep.is_quiet(taken) and not sweep.is_quiet(low_peak)
    sweep.report(variants, {"a": [quiet, quiet], "b": [quiet, taken, low_peak], "c": [taken, taken]}, rows)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "lstm,4,3,9,eval" in out and out.count("GFLOP/s") >= 1
    assert len([ln for ln in lines if ln.startswith("(")]) == 6
    assert [ln.split()[2:] for ln in lines if ln.startswith("quiet rounds")] == [["2/2", "1/3", "0/2"]]
    first = next(ln for ln in lines if ln.startswith("(3200x1024)x(1024x4096) y")).split()[-3:]
    assert first == ["27%", "27%", "54%*"]  # b: its busy rounds left out; c: none quiet, marked
    assert "* no quiet round" in out


def test_sweep_refuses_malformed_variants():
    import argparse
    import pytest
    sweep = load_tool("sweep")
    assert sweep.parse_variant("kc=512,default") == (
        "kc", {"KC": "512", "MC_BLOCKS": "default", "PLAIN_MR": "default", "PLAIN_NV": "default",
               "EMBEDDED_ROWS": "default"})
    assert sweep.parse_variant("t8x2=default,20,8x2") == (
        "t8x2", {"KC": "default", "MC_BLOCKS": "20", "PLAIN_MR": "8", "PLAIN_NV": "2", "EMBEDDED_ROWS": "default"})
    assert sweep.parse_variant("e0=default,default,default,0") == (
        "e0", {"KC": "default", "MC_BLOCKS": "default", "PLAIN_MR": "default", "PLAIN_NV": "default",
               "EMBEDDED_ROWS": "0"})
    for bad in ("kc=5x,20", "=512,20", "a b=512,20", "t=512,20,8", "t=512,20,8x", "t=512,20,8x2,x", "t=512,20,0x6",
                "t=512,20,9x2", "t=512,20,8x2,9", "t=512,20,8x2,1,1", "t=512", "t=512,20,defaultx6",
                "t=512,20,8xdefault"):
        with pytest.raises(argparse.ArgumentTypeError):
            sweep.parse_variant(bad)


def test_mca_report_finds_single_block_fma_loops(tmp_path):
    mca = load_tool("mca_report")
    fmas = "".join(f"\tvfmadd231ps\t%zmm2, %zmm1, %zmm{i}\n" for i in range(3, 19))
    asm = tmp_path / "k.s"
    asm.write_text("f:\n.L2:\n\tvmovups\t(%r8), %zmm1\n\tvbroadcastss\t(%rcx), %zmm2\n" + fmas +
                   "\taddq\t$4, %rcx\n\tcmpq\t%r8, %r9\n\tjne\t.L2\n"          # a loop: found
                   "g:\n.L5:\n" + fmas + "\tcall\th\n\tjne\t.L5\n"               # calls out: not the kernel
                   ".L7:\n" + fmas + "\tjne\t.L2\n")                             # jumps elsewhere: no loop
    found = mca.loops(str(asm))
    assert [f for f, _ in found] == ["f"]
    assert sum(ln.startswith("vfmadd") for ln in found[0][1]) == 16
    assert all("%zmm31" in ln for ln in mca.fma_only(["vfmadd231ps\t(%rcx,%r11,4), %zmm1, %zmm3"]))


def test_mca_report_knows_the_main_micro_kernel_by_its_name():
    """The gate's loops are micro_block's (gemm.h) full tiles; a kernel renamed would go unseen."""
    mca = load_tool("mca_report")
    src = (BENCH.parent / "cpp" / "src" / "gemm.h").read_text()
    assert "void micro_block(" in src
    name = "micro_block<float, 8, 2, GateCols<float>, (Tail)2, Packed<float, 2, float> >"
    assert mca.main_tile(name, 16, (8, 2)) == "float 8 x 2 tile"
    assert mca.main_tile(name.replace("float", "double"), 16, (8, 2)) == "double 8 x 2 tile"
    assert mca.main_tile(name, 8, (8, 2)) is None  # a short block's loop
    assert mca.main_tile("micro_block<float, 4, 2, PlainCols<float>, (Tail)0, Packed<float, 2, float> >", 8,
                         (8, 2)) is None
    assert mca.main_tile("LstmCell<float>::forward", 16, (8, 2)) is None
    assert mca.main_tile("micro_block<float, 8, 2, PlainCols<float>, (Tail)2, Packed<float, 2, Bf16Pair> >", 16,
                         (8, 2)) is None  # bfloat16 pairs widened: not the float products' loop
    demangled = ("void rnnfast::isa_avx512::micro_block<float, 8, 2, rnnfast::isa_avx512::GateCols<float>, "
                 "(rnnfast::isa_avx512::Tail)2, rnnfast::isa_avx512::Packed<float, 2, float> >(long, long)")
    assert mca.main_tile(demangled, 16, (8, 2)) == "float 8 x 2 tile"
    assert mca.main_tile(demangled.replace("float> >(", "Bf16Pair> >("), 16, (8, 2)) is None


def test_front_ends_check_both_give_the_same_bits_before_timing():
    pytest.importorskip("torch")
    rows = ["gru,4,3,8,2,2,train", "lstm,3,2,8,1,1,eval"]
    out = run("front_ends.py", *rows, "--rounds", "1", "--budget", "0.01")
    assert "checked equal (bits) before timing" in out
    for row in rows:
        assert row in out


def test_bit_identity_tool_finds_one_changed_bit(tmp_path):
    """The same build twice: no difference; one value moved by one ulp: found and named."""
    tool = BENCH.parent / "tools" / "bit_identity.py"
    dump = tmp_path / "a.npz"
    r = subprocess.run([sys.executable, str(tool), "--dump", str(dump), "--quick"], capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import numpy as np
    arrays = dict(np.load(dump))
    key = sorted(arrays)[len(arrays) // 2]
    changed = arrays[key].copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.inf, dtype=changed.dtype)
    arrays[key] = changed
    np.savez(tmp_path / "b.npz", **arrays)
    same = subprocess.run([sys.executable, str(tool), str(dump), str(dump)], capture_output=True, text=True)
    assert same.returncode == 0 and "0 differ" in same.stdout
    moved = subprocess.run([sys.executable, str(tool), str(dump), str(tmp_path / "b.npz")], capture_output=True,
                           text=True)
    assert moved.returncode == 1 and f"differs: {key}" in moved.stdout
    # --threads: one build's 1-thread arrays against its 2-thread ones
    threads = subprocess.run([sys.executable, str(tool), "--threads", str(dump)], capture_output=True, text=True)
    assert threads.returncode == 0 and " 0 differ" in threads.stdout, threads.stdout
    one_thread_key = key.replace("/t2/", "/t1/", 1)
    threads = subprocess.run([sys.executable, str(tool), "--threads", str(tmp_path / "b.npz")], capture_output=True,
                             text=True)
    assert threads.returncode == 1 and f"differs: {one_thread_key}" in threads.stdout, threads.stdout


def test_variants_are_checked_against_the_plain_module_before_timing():
    out = run("variants.py", "lstm,4,3,8,weight_drop=0.5", "gru,3,2,8,weight_drop=0.2", "--rounds", "1",
              "--budget", "0.01")
    assert "checked against the plain module first" in out and "gru,3,2,8,weight_drop=0.2" in out


def test_zoneout_and_recurrent_dropout_rows_are_checked_before_timing():
    out = run("variants.py", "rnn,4,3,8,zoneout=0.3", "gru,3,2,8,recurrent_dropout=0.4", "--rounds", "1",
              "--budget", "0.01")
    assert "rnn,4,3,8,zoneout=0.3" in out and "gru,3,2,8,recurrent_dropout=0.4" in out


def test_precision_checks_the_quantized_models_before_timing():
    out = run("precision.py", "lstm,4,3,16", "gru,3,2,8", "lstm_proj,3,2,8", "lngru,3,2,8", "--rounds", "1",
              "--budget", "0.01", "--pause", "0")
    assert "rnnfast bf16" in out and "lstm,4,3,16" in out and "gru,3,2,8" in out
    assert "lstm_proj,3,2,8" in out and "lngru,3,2,8" in out
