"""The data helpers: one_hot, lengths_mask and Batches (padding, shuffling, targets)."""
import math

import numpy as np
import pytest

import rnnfast

def test_one_hot_and_lengths_mask():
    oh = rnnfast.one_hot(np.array([[2, 0], [1, 2]]), 3)
    assert oh.shape == (2, 2, 3) and oh.dtype == np.float32
    assert np.array_equal(oh.argmax(-1), [[2, 0], [1, 2]]) and np.array_equal(oh.sum(-1), np.ones((2, 2)))
    with pytest.raises(IndexError):
        rnnfast.one_hot([3], 3)
    with pytest.raises(TypeError):
        rnnfast.one_hot([0.5], 3)
    assert np.array_equal(rnnfast.lengths_mask([2, 3]), [[True, True], [True, True], [False, True]])
    assert rnnfast.lengths_mask([2, 3], steps=4, batch_first=True).shape == (2, 4)


def test_batches_pad_shuffle_and_targets():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 2)) for n in (3, 5, 1, 4, 2)]
    labels = [0, 1, 2, 3, 4]
    it = rnnfast.Batches(seqs, 2, targets=labels, shuffle=True, seed=7)
    assert len(it) == 3
    epoch1, epoch2 = list(it), list(it)
    seen = np.concatenate([b.index for b in epoch1])
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert not all(np.array_equal(a.index, b.index) for a, b in zip(epoch1, epoch2))  # reshuffled per epoch
    again = list(rnnfast.Batches(seqs, 2, targets=labels, shuffle=True, seed=7))
    assert all(np.array_equal(a.index, b.index) for a, b in zip(epoch1, again))  # same seed, same order
    for b in epoch1:
        assert b.x.shape == (b.lengths.max(), len(b.index), 2)
        assert np.array_equal(b.y, b.index) and np.array_equal(b.lengths, [len(seqs[i]) for i in b.index])
        for j, i in enumerate(b.index):
            assert np.array_equal(b.x[: len(seqs[i]), j], seqs[i]) and not b.x[len(seqs[i]):, j].any()
    steps = [np.arange(len(s)) for s in seqs]
    b = next(iter(rnnfast.Batches(seqs, 5, targets=steps, batch_first=True)))
    assert b.x.shape == (5, 5, 2) and b.y.shape == (5, 5) and b.y[2, 1] == -100 and b.y[1, 4] == 4
    assert len(rnnfast.Batches(seqs, 2, drop_last=True)) == 2


def test_padded_batch_with_lengths_and_mask_equals_one_by_one():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 3)) for n in (4, 7, 2)]
    tgts = [rng.integers(0, 4, n) for n in (4, 7, 2)]
    gru, head = rnnfast.GRU(3, 6, dtype="float64", seed=0), rnnfast.Linear(6, 4, dtype="float64", seed=0)
    b = next(iter(rnnfast.Batches(seqs, 3, targets=tgts)))
    y, _ = gru(b.x, lengths=b.lengths)
    batch_loss, _ = rnnfast.cross_entropy(head(y), b.y, reduction="sum")  # padding targets are -100
    one_by_one = sum(rnnfast.cross_entropy(head(gru(s[:, None].copy())[0])[:, 0], t, reduction="sum")[0]
                     for s, t in zip(seqs, tgts))
    assert math.isclose(batch_loss, one_by_one, rel_tol=1e-12)
