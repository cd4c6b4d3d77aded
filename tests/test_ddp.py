"""examples/ddp_train.py under torchrun with two processes on 127.0.0.1 (DDP, gloo) ends with the
same parameters as one process trained on the combined batches (1e-5, in float64: in float32 Adam
can magnify the rounding of the gradient average to that size). Skipped where torch,
torch.distributed or gloo is absent; every launch is bounded in time."""
import importlib.util
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "ddp_train.py"
STEPS = 12
TIMEOUT_S = 240


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, cwd):
    """Runs a command in its own process group; on timeout the whole group (torchrun and its workers) is killed."""
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: gloo talks over the loopback interface only
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(map(str, args))} ran past {TIMEOUT_S} s:\n{out}")
    assert proc.returncode == 0, out
    return out


def test_two_processes_match_one_on_the_combined_batch(tmp_path):
    common = [str(SCRIPT), "--steps", str(STEPS), "--batch", "16", "--hidden", "12", "--dtype", "float64"]
    single = run([sys.executable, *common, "--save", str(tmp_path / "one.pt")], tmp_path)
    assert "1 process(es)" in single
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
              "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    double = run([*launch, *common, "--save", str(tmp_path / "two.pt")], tmp_path)
    assert "2 process(es)" in double and "held-out accuracy" in double

    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() and any(k.startswith("rnn.weight_hh_l1_reverse") for k in one)
    for k in one:
        a, b = one[k], two[k]
        assert torch.allclose(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item())), (k, (a - b).abs().max())
    torch.manual_seed(0)  # and training moved them: not two copies of the initial state
    initial = example().Classifier(12).double().state_dict()
    assert all((one[k] - initial[k]).abs().max() > 1e-3 for k in one)


def example():
    spec = importlib.util.spec_from_file_location("ddp_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
