"""rnnfast.save / rnnfast.load: exact round trips, damaged or mismatched files refused whole, atomic writes."""
import os

import numpy as np
import pytest

import rnnfast
from rnnfast import optim

def _trained_model(seed=0):
    emb, lstm, head = rnnfast.Embedding(6, 3, seed=seed), rnnfast.LSTM(3, 4, seed=seed), rnnfast.Linear(4, 6, seed=seed)
    opt = optim.Adam([emb, lstm, head], lr=0.01)
    ids = np.random.default_rng(seed).integers(0, 6, (5, 2))
    for _ in range(2):
        y, _ = lstm(emb(ids))
        _, dlogits = rnnfast.cross_entropy(head(y), ids)
        emb.backward(lstm.backward(head.backward(dlogits))[0])
        opt.step()
        opt.zero_grad()
    return [emb, lstm, head], opt


def _same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_is_exact(tmp_path):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt, metadata={"vocab": "abc\n", "epochs": 3, "lr": 0.5, "ok": True})
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left behind
    fresh, fresh_opt = _trained_model(1)
    meta = rnnfast.load(path, *fresh, optimizer=fresh_opt)
    assert meta == {"vocab": "abc\n", "epochs": 3, "lr": 0.5, "ok": True}
    assert all(_same(a.state_dict(), b.state_dict()) for a, b in zip(mods, fresh))
    assert _same(opt.state_dict(), fresh_opt.state_dict())
    assert rnnfast.checkpoint.read_metadata(path)["epochs"] == 3
    rnnfast.load(path, *fresh)  # weights only: the optimiser state in the file is ignored


def _states(mods):
    return [m.state_dict() for m in mods]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage", "empty"])
def test_damaged_checkpoint_raises_and_leaves_modules_unchanged(tmp_path, damage):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt)
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":  # inside the first parameter's data: only the zip's CRC notices
        start = data.index(b"\x93NUMPY", data.index(b"0.weight")) + 200
        data = data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1:]
    elif damage == "garbage":
        data = b"not a checkpoint at all" * 10
    else:
        data = b""
    path.write_bytes(data)
    fresh, fresh_opt = _trained_model(1)
    before, opt_before = _states(fresh), fresh_opt.state_dict()
    with pytest.raises(ValueError, match="cannot be read|not an rnnfast checkpoint"):
        rnnfast.load(path, *fresh, optimizer=fresh_opt)
    assert all(_same(a, b) for a, b in zip(before, _states(fresh)))
    assert _same(opt_before, fresh_opt.state_dict())


def test_checkpoint_that_does_not_fit_is_refused_whole(tmp_path):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods, optimizer=opt)
    emb, lstm = rnnfast.Embedding(6, 3, seed=5), rnnfast.LSTM(3, 4, seed=5)
    wider = rnnfast.Linear(4, 7, seed=5)  # the last module does not fit: the first two must stay as they were
    before = _states([emb, lstm, wider])
    with pytest.raises(ValueError, match="module 2 .*weight"):
        rnnfast.load(path, emb, lstm, wider)
    assert all(_same(a, b) for a, b in zip(before, _states([emb, lstm, wider])))
    with pytest.raises(ValueError, match="holds modules"):
        rnnfast.load(path, lstm, emb, wider)
    with pytest.raises(ValueError, match="holds Adam"):
        rnnfast.load(path, *mods, optimizer=optim.SGD(mods, lr=0.1))
    with pytest.raises(FileNotFoundError):
        rnnfast.load(tmp_path / "missing.npz", *mods)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __format__=np.array("rnnfast-checkpoint/1"), __modules__=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="cannot be read"):  # allow_pickle=False
        rnnfast.load(pickled)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    mods, opt = _trained_model(0)
    path = tmp_path / "model.npz"
    rnnfast.save(path, *mods)
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        rnnfast.save(path, *mods, optimizer=opt)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["model.npz"]
    with pytest.raises(TypeError, match="metadata"):
        rnnfast.save(path, *mods, metadata={"bad": object()})
    assert path.read_bytes() == good
