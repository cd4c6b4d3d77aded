"""The packed-weights cache: W_hh and W_ih are packed once per weight change and kept on the
module, and no change of the weights, however it is made, is ever missed.

Each check compares a module whose cache was filled by earlier calls with a new module (empty
cache) holding the same weights: the results must be the same bits."""
import copy
import pickle

import numpy as np
import pytest

import rnnfast
from rnnfast.functional import LayerWorkspace, layer_forward

MAKERS = {"rnn_tanh": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
# B*G*H*H is large enough for the kernels to use several threads; B = 7 keeps the layers in unit
# mode at 2 threads, where each thread reads only its own panels (batch mode, from 4 rows a thread,
# where every thread reads every panel, has its own test below).
T, B, I, H = 5, 7, 6, 70


@pytest.fixture(autouse=True)
def two_threads():
    before = rnnfast.get_num_threads()
    rnnfast.set_num_threads(2)
    yield
    rnnfast.set_num_threads(before)


def fresh_like(m):
    twin = type(m)(I, H, num_layers=m.num_layers, bidirectional=m.bidirectional)
    twin.load_state_dict(m.state_dict())
    return twin.train(m.training)


def run(m, x, dy):
    """Outputs and, in train mode, every gradient of one forward (+ backward) from zeroed grads."""
    m.zero_grad()
    y, _ = m(x)
    if not m.training:
        return [y]
    dx, _ = m.backward(dy)
    return [y, dx] + [m.grads[k].copy() for k in sorted(m.grads)]


def same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, I), dtype=np.float32), rng.standard_normal((T, B, 2 * H), dtype=np.float32)


EDITS = {
    # each edits a weight matrix in place, where different threads own the rows
    "first row": lambda w: w.__setitem__((0, 0), w[0, 0] + 0.25),
    "last row": lambda w: w.__setitem__((-1, -1), w[-1, -1] - 0.25),
    "middle column": lambda w: w.__setitem__((slice(None), w.shape[1] // 2), 0.0),
    "all": lambda w: w.__imul__(0.5),
}


@pytest.mark.parametrize("weight", ["weight_hh", "weight_ih"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("mode", list(MAKERS))
def test_in_place_edit_is_seen(mode, edit, training, weight):
    m = MAKERS[mode](I, H, bidirectional=True, seed=1).train(training)
    x, dy = data()
    before = run(m, x, dy)
    run(m, x, dy)  # the caches are filled and used
    for k in (weight + "_l0", weight + "_l0_reverse"):
        EDITS[edit](m.parameters()[k])
    after = run(m, x, dy)
    same(after, run(fresh_like(m), x, dy))
    assert not np.array_equal(after[0], before[0])


@pytest.mark.parametrize("mode", list(MAKERS))
def test_load_state_dict_and_optimiser_steps_are_seen(mode):
    m = MAKERS[mode](I, H, num_layers=2, seed=2)
    x, dy = data(1)
    dy = dy[:, :, :H]
    run(m, x, dy)
    m.load_state_dict(MAKERS[mode](I, H, num_layers=2, seed=3).state_dict())
    same(run(m, x, dy), run(fresh_like(m), x, dy))
    opt = rnnfast.optim.Adam([m], lr=0.05)
    for _ in range(3):
        run(m, x, dy)
        opt.step()
        same(run(m, x, dy), run(fresh_like(m), x, dy))


def test_thread_count_and_isa_changes_between_calls():
    m = rnnfast.LSTM(I, H, seed=4)
    x, dy = data(2)
    dy = dy[:, :, :H]
    isa = rnnfast._core.isa()
    try:
        for threads, path in [(1, isa), (2, isa), (3, isa), (2, "scalar"), (2, isa)]:
            rnnfast.set_num_threads(threads)
            rnnfast._core.set_isa(path)
            # first and last rows: owned by the first and the last thread, whatever their number
            m.parameters()["weight_hh_l0"][[threads, -threads]] += 0.125
            m.parameters()["weight_ih_l0"][-threads] -= 0.125
            same(run(m, x, dy), run(fresh_like(m), x, dy))
    finally:
        rnnfast._core.set_isa(isa)


def head(buf):
    """Where a cache's tag lies in its buffer: the kernels use the buffer from its first 64-byte
    boundary on (16 values of header, then the copy of the weights, then the panels)."""
    return (-buf.ctypes.data) % 64 // buf.itemsize


def test_spoiled_or_foreign_cache_is_refilled():
    """A cache whose tags and contents were overwritten, or that holds another layer's weights, is
    refilled, never trusted. (New caches start zeroed: memory that happened to hold a valid tag
    over stale panels would be trusted, which is why the binding zero-fills what it allocates.)"""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((3 * H, I)) * 0.1, rng.standard_normal((3 * H, H)) * 0.1
    y_plain, *_ = layer_forward("gru", x, None, None, w_ih, w_hh, None, None, training=False)
    cache = LayerWorkspace()
    layer_forward("gru", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
    for fill in (0.0, np.nan, 7.0):
        cache.forward[head(cache.forward) + 16:] = fill  # tag kept, copy and panels spoiled
        y, *_ = layer_forward("gru", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
        np.testing.assert_array_equal(y, y_plain)
    other = rng.standard_normal((3 * H, H)) * 0.1  # another layer's weights through the same cache
    y_other, *_ = layer_forward("gru", x, None, None, w_ih, other, None, None, training=False)
    y, *_ = layer_forward("gru", x, None, None, w_ih, other, None, None, training=False, workspace=cache)
    np.testing.assert_array_equal(y, y_other)


def test_spoiled_copy_with_a_valid_tag_repacks():
    """The tag says the layout; the copy decides what is repacked: a copy that no longer matches
    the weights (here: set to values the weights do not hold) makes every thread repack."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)) * 0.1, rng.standard_normal((4 * H, H)) * 0.1
    expect, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False)
    cache = LayerWorkspace()
    for fill in (np.nan, 3.0):
        layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
        h = head(cache.forward) + 16
        cache.forward[h:h + w_hh.size] = fill
        y, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
        np.testing.assert_array_equal(y, expect)


def test_cache_moved_off_its_alignment_is_refilled():
    """A cache's contents copied into a buffer that sits elsewhere against a 64-byte boundary are
    read shifted by the kernels (which start at the first boundary): never trusted, refilled in
    place, and the results stay the same bits."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)) * 0.1, rng.standard_normal((4 * H, H)) * 0.1
    expect, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False)
    cache = LayerWorkspace()
    layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
    filled = cache.forward.copy()
    heads = set()
    room = np.empty(filled.size + 8)
    for shift in range(8):  # float64: 8 values to a 64-byte line
        moved = room[shift:shift + filled.size]
        moved[:] = filled
        heads.add(head(moved))
        cache.forward = moved
        y, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False, workspace=cache)
        assert cache.forward is moved  # reused, not replaced
        np.testing.assert_array_equal(y, expect)
    assert len(heads) == 8


def test_cell_steps_see_weight_changes():
    cell = rnnfast.GRUCell(I, H, seed=7).eval()
    x = np.random.default_rng(8).standard_normal((B, I), dtype=np.float32)
    h = cell(x)
    cell.parameters()["weight_hh"][:] *= -1
    twin = rnnfast.GRUCell(I, H).eval()
    twin.load_state_dict(cell.state_dict())
    np.testing.assert_array_equal(cell(x, h), twin(x, h))


def test_copies_do_not_share_a_cache():
    m = rnnfast.RNN(I, H, seed=9).eval()
    x, _ = data(3)
    m(x)
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert all(w.forward is None for w in c._stack._workspaces)
        c.parameters()["weight_hh_l0"][:] = 0
        assert not np.array_equal(c(x)[0], m(x)[0])


@pytest.mark.parametrize("mode", list(MAKERS))
def test_edits_are_seen_in_batch_mode(mode):
    """B large enough for the barrier-free batch mode (every thread reads every panel)."""
    rng = np.random.default_rng(10)
    x, dy = rng.standard_normal((4, 100, I), dtype=np.float32), rng.standard_normal((4, 100, H), dtype=np.float32)
    m = MAKERS[mode](I, H, seed=11)
    run(m, x, dy)
    for edit in ("last row", "first row"):
        EDITS[edit](m.parameters()["weight_hh_l0"])
        EDITS[edit](m.parameters()["weight_ih_l0"])
        same(run(m, x, dy), run(fresh_like(m), x, dy))


def test_the_former_cache_argument_still_works_with_a_warning():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)) * 0.1, rng.standard_normal((4 * H, H)) * 0.1
    expect, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False)
    cache = LayerWorkspace()
    with pytest.warns(DeprecationWarning, match="now called `workspace`"):
        y, *_ = layer_forward("lstm", x, None, None, w_ih, w_hh, None, None, training=False, cache=cache)
    np.testing.assert_array_equal(y, expect)
    assert cache.forward is not None
