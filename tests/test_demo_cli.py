"""`python -m rnnfast` driven as a user drives it: a quick run that trains, saves and samples, texts
that cannot train, encodings, options that conflict with a checkpoint, runs that train nothing, the
help, and the hint for small texts; the demo's model sampling through the cells, and
`python -m rnnfast.selfcheck`."""
import re
import subprocess
import sys

import numpy as np
import pytest

import rnnfast

TEXT = "The cat sat on the mat. A dog ran in the fog. " * 40  # 1,840 characters, 22 distinct


def run(tmp_path, *args, ok=True):
    r = subprocess.run([sys.executable, "-m", "rnnfast", "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    return r


def text_file(tmp_path, content, name="text.txt", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A quick LSTM (hidden 32) trained on TEXT."""
    folder = tmp_path_factory.mktemp("ckpt")
    run(folder, "--quick", "--text", text_file(folder, TEXT))
    return folder / "rnnfast_charlm.npz"


def test_python_m_rnnfast_quick_trains_saves_and_samples(tmp_path):
    def quick(*extra):
        return run(tmp_path, "--quick", *extra).stdout

    out = quick()
    first, last = map(float, re.search(r"validation loss ([0-9.]+) -> ([0-9.]+)", out).groups())
    assert last < first, out
    assert "sample after training" in out and (tmp_path / "rnnfast_charlm.npz").is_file()
    assert "sample" in quick("--sample-only", "--length", "20")
    quick("--resume", str(tmp_path / "rnnfast_charlm.npz"))
    assert rnnfast.checkpoint.read_metadata(tmp_path / "rnnfast_charlm.npz")["epochs_done"] == 2


def test_an_empty_text_says_so(tmp_path):
    r = run(tmp_path, "--quick", "--text", text_file(tmp_path, ""), ok=False)
    assert "is empty" in r.stderr and "input_size" not in r.stderr
    assert not (tmp_path / "rnnfast_charlm.npz").exists()


def test_a_too_short_text_says_how_long_it_must_be(tmp_path):
    r = run(tmp_path, "--text", text_file(tmp_path, "abcdefghij"), ok=False)
    assert re.search(r"has 10 characters: too short to train 32 streams .* at least \d+ .*--batch", r.stderr)


def test_a_text_that_is_not_utf8_names_the_byte_and_the_option(tmp_path):
    latin1 = text_file(tmp_path, "Caf\u00e9 au lait. " * 200, encoding="latin-1")  # 0xe9 at offset 3
    r = run(tmp_path, "--quick", "--text", latin1, ok=False)
    assert latin1 in r.stderr and "byte 0xe9 at offset 3" in r.stderr and "--encoding" in r.stderr
    r = run(tmp_path, "--quick", "--text", latin1, "--encoding", "latin-1")
    assert "\ufffd" not in r.stdout and "\u00e9" in rnnfast.checkpoint.read_metadata(
        tmp_path / "rnnfast_charlm.npz")["vocab"]


@pytest.mark.parametrize("name", ["no-such-codec", "rot13", "base64"])
def test_an_encoding_that_does_not_decode_text_is_refused(tmp_path, name):
    r = run(tmp_path, "--quick", "--text", text_file(tmp_path, TEXT), "--encoding", name, ok=False)
    assert f"--encoding {name}: not a text encoding" in r.stderr


def test_windows_line_ends_read_as_newlines(tmp_path):
    r = run(tmp_path, "--quick", "--text", text_file(tmp_path, TEXT.replace(". ", ".\r\n")))
    assert "\r" not in rnnfast.checkpoint.read_metadata(tmp_path / "rnnfast_charlm.npz")["vocab"]


@pytest.mark.parametrize("batch", ["1", "2", "3", "32"])
def test_the_shortest_text_that_trains_is_the_one_the_message_names(tmp_path, batch):
    r = run(tmp_path, "--quick", "--batch", batch, "--text", text_file(tmp_path, "ab"), ok=False)
    need = int(re.search(r"at least (\d+)", r.stderr).group(1))
    run(tmp_path, "--quick", "--batch", batch, "--seq-len", "1", "--text", text_file(tmp_path, ("ab" * need)[:need]))
    r = run(tmp_path, "--quick", "--batch", batch, "--text", text_file(tmp_path, ("ab" * need)[:need - 1]), ok=False)
    assert "too short" in r.stderr


@pytest.mark.parametrize("option,value,held", [("--cell", "gru", "lstm"), ("--hidden", "64", "32"),
                                               ("--layers", "2", "1")])
@pytest.mark.parametrize("mode", ["--resume", "--sample-only"])
def test_options_that_conflict_with_the_checkpoint_are_refused(tmp_path, checkpoint, option, value, held, mode):
    where = ["--resume", str(checkpoint)] + (["--sample-only"] if mode == "--sample-only" else [])
    r = run(tmp_path, "--quick", "--text", text_file(tmp_path, TEXT), *where, option, value, ok=False)
    assert f"{option} {value} conflicts with the checkpoint {checkpoint}" in r.stderr
    assert f"{option[2:]} {held}" in r.stderr
    before = checkpoint.read_bytes()
    run(tmp_path, "--quick", "--text", text_file(tmp_path, TEXT), *where, option, held)  # the same value is fine
    assert checkpoint.read_bytes() == before  # the run writes to its own --out


def test_a_run_that_trains_nothing_writes_no_checkpoint(tmp_path, checkpoint):
    r = run(tmp_path, "--quick", "--epochs", "0", "--text", text_file(tmp_path, TEXT))
    assert "none written" in r.stdout and not (tmp_path / "rnnfast_charlm.npz").exists()
    kept = tmp_path / "rnnfast_charlm.npz"
    kept.write_bytes(checkpoint.read_bytes())
    run(tmp_path, "--quick", "--epochs", "0", "--resume", str(kept), "--text", text_file(tmp_path, TEXT))
    assert kept.read_bytes() == checkpoint.read_bytes()


def test_every_option_has_one_help_line_with_its_default_once(tmp_path):
    out = run(tmp_path, "--help").stdout
    options = out[re.search(r"\n(options|optional arguments):", out).start():]  # the heading before Python 3.10
    entries = re.split(r"\n  (?=-)", options)[1:]  # one per option, with its wrapped help lines
    assert len(entries) == 24, entries
    for entry in entries:
        head, _, help_text = entry.partition("  ")
        if "\n" in head:  # a long option name: the help starts on the next line
            head, _, help_text = entry.partition("\n")
        assert help_text.strip(), f"no help for {head!r}"
        assert entry.count("default") <= 1, entry


def test_a_small_text_gets_a_hint_about_epochs(tmp_path):
    small = text_file(tmp_path, TEXT * 3)  # 5,520 characters: 32 streams of 155 steps, 3 chunks of 64
    r = run(tmp_path, "--text", small, "--length", "5", "--hidden", "16")
    hint = re.search(r"hint: .* 12 epochs of it are (\d+) Adam steps .* try --epochs (\d+)", r.stdout)
    assert hint and int(hint.group(1)) == 36 and int(hint.group(2)) >= 100, r.stdout
    assert "hint:" not in run(tmp_path, "--quick").stdout  # the built-in corpus


# ---- the demo's model and the other command ---------------------------------------------------

def test_demo_cells_reproduce_the_trained_layer():
    from rnnfast import demo
    for cell in ("lstm", "gru", "rnn"):
        model = demo.CharModel("abcd", cell, 5, 2, seed=0)
        ids = np.array([0, 3, 1, 2])
        y, _ = model.rnn.eval()(rnnfast.one_hot(ids[:, None], 4))
        # greedy sampling through the cells must follow the layer's own next-character choice
        greedy = model.sample("".join("abcd"[i] for i in ids), 1, 0.0, np.random.default_rng(0))
        assert greedy[-1] == "abcd"[int(np.argmax(model.head.eval()(y[-1, 0])))]


def test_selfcheck_still_runs():
    r = subprocess.run([sys.executable, "-m", "rnnfast.selfcheck"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "agree" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("option,says", [("--weight-drop", "weight drop"), ("--zoneout", "zoneout"),
                                         ("--recurrent-dropout", "recurrent dropout")])
def test_regularisers_train_and_are_checked(tmp_path, option, says):
    r = run(tmp_path, "--quick", option, "0.3")
    assert f"{says} 0.3" in r.stdout and "validation loss" in r.stdout
    bad = run(tmp_path, "--quick", option, "1", ok=False)
    assert f"{option} must be in [0, 1)" in bad.stderr


def test_projections_train_resume_sample_and_are_checked(tmp_path):
    r = run(tmp_path, "--quick", "--proj", "12", "--text", text_file(tmp_path, TEXT))
    assert "32 (projected to 12)" in r.stdout and "sample after training" in r.stdout
    ckpt = tmp_path / "rnnfast_charlm.npz"
    assert int(rnnfast.checkpoint.read_metadata(ckpt)["proj"]) == 12
    again = run(tmp_path, "--quick", "--sample-only", "--resume", str(ckpt), "--length", "20",
                "--temperature", "0")
    sample = again.stdout.split("sample")[-1]
    assert "The " in sample
    assert run(tmp_path, "--quick", "--sample-only", "--resume", str(ckpt), "--length", "20",
               "--temperature", "0").stdout.split("sample")[-1] == sample  # greedy: the same text again
    quantized = run(tmp_path, "--quick", "--sample-only", "--resume", str(ckpt), "--precision", "int8", "--length",
                    "20", "--temperature", "0").stdout
    assert "sample (int8)" in quantized and "The " in quantized.split("sample (int8)")[-1]
    conflict = run(tmp_path, "--quick", "--resume", str(ckpt), "--proj", "8", "--text", text_file(tmp_path, TEXT),
                   ok=False)
    assert "--proj 8 conflicts with the checkpoint" in conflict.stderr
    for args, says in [(("--proj", "32"), "must be smaller than the hidden size (32)"),
                       (("--cell", "gru", "--proj", "8"), "projections are an LSTM's")]:
        assert says in run(tmp_path, "--quick", *args, ok=False).stderr


@pytest.mark.parametrize("cell", ["lnlstm", "lngru"])
def test_layer_normalised_cells_train_resume_and_sample(tmp_path, cell):
    r = run(tmp_path, "--quick", "--cell", cell, "--zoneout", "0.1", "--text", text_file(tmp_path, TEXT))
    assert f"model: {cell.upper()} " in r.stdout and "sample after training" in r.stdout
    ckpt = tmp_path / "rnnfast_charlm.npz"
    again = run(tmp_path, "--quick", "--sample-only", "--resume", str(ckpt), "--length", "20", "--temperature", "0")
    assert "sample" in again.stdout
    quantized = run(tmp_path, "--quick", "--sample-only", "--resume", str(ckpt), "--precision", "bfloat16",
                    "--length", "20").stdout
    assert "sample (bfloat16)" in quantized


def on_a_terminal(code):
    """What a Python snippet writes on a pseudo-terminal of 120 columns (stdout and stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    p = subprocess.Popen([sys.executable, "-c", code], stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    out = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        out += data
    os.close(main)
    assert p.wait(timeout=60) == 0, out
    return out.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_the_progress_bar_is_tqdm_s_on_a_terminal_where_tqdm_is_installed():
    try:
        import tqdm  # noqa: F401
        have_tqdm = True
    except ImportError:
        have_tqdm = False
    out = on_a_terminal("from rnnfast.demo import Progress\nbar = Progress(4, 'epoch 1')\n"
                        "for _ in range(4): bar.update(100, 2.5)\n")
    assert "loss 2.500" in out and "chars/s" in out
    assert ("4/4" in out and "chunk/s" in out) if have_tqdm else "epoch 1 [" in out


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_quantized_weights_sample_and_report_their_validation_loss(tmp_path, precision):
    out = run(tmp_path, "--quick", "--precision", precision).stdout
    float_loss = float(re.search(r"validation loss [0-9.]+ -> ([0-9.]+)", out).group(1))
    loss, change = re.search(rf"validation loss with {precision} weights ([0-9.]+) nats/char \(([-+0-9.]+)%", out).groups()
    assert abs(float(loss) / float_loss - 1) * 100 == pytest.approx(abs(float(change)), abs=0.05)
    assert abs(float(change)) < 5  # a broken path would be far off; the measured change is in docs/precision.md
    assert f"sample after training ({precision})" in out
    assert f"sample ({precision})" in run(tmp_path, "--quick", "--sample-only", "--precision", precision).stdout
