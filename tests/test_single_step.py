"""A single step (T = 1: every call of a cell, a layer's call at T = 1) packs each panel of the
weights as it uses it, with no cache (PanelsPackedAsUsed in packing.h); longer calls use the kept packing. The
panels are the same, so the products are the same bits: a step at T = 1 against the first step of
T = 2 with the same input. B = 24 and 168 rows are whole micro-kernel blocks (6 rows on AVX2 and
SSE, 8 on AVX-512) in both calls, so the input projection cuts them the same way. At B = 168 on
2 threads (84 rows each: a short block of 4 on AVX-512) a step runs in batch mode, each thread
packing every panel; on 3 threads (56 rows each) in unit mode."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref

from conftest import MODES, RTOL, assert_close, make_layer

pytestmark = pytest.mark.usefixtures("every_isa")


def forward(mode, p, x, training):
    lstm = mode == "lstm"
    return F.layer_forward(mode, x, p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                           training=training, workspace=F.LayerWorkspace())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,I,H", [(24, 5, 3), (24, 70, 130), (24, 1100, 70), (24, 24, 260), (168, 70, 130)],
                         ids=["tiny", "odd_sizes", "k_blocks", "unit_mode", "batch_mode"])
def test_single_step_is_the_first_step_of_two(mode, B, I, H, dtype):
    """Odd sizes leave part-filled vectors and k past the last whole block of W; I = 1100 takes
    several k-blocks of W_ih (3 of 512 on AVX2 and SSE, 2 on AVX-512: 1024 and 76). The step and the two
    steps run in batch or unit mode by the rules in sequence.h (cell, size, rows, thread count):
    the bits must not care. Outputs and states, eval and training, 1 to 3 threads (all but `tiny`
    are large enough to use them); the step against the reference too."""
    p = make_layer(mode, 2, B, I, H, dtype, seed=I)
    before = rnnfast.get_num_threads()
    try:
        for threads in (1, 2, 3):
            rnnfast.set_num_threads(threads)
            for training in (False, True):
                y1, h1, c1, _ = forward(mode, p, p["x"][:1], training)
                y2, *_ = forward(mode, p, p["x"], training)
                np.testing.assert_array_equal(y1[0], y2[0])
                np.testing.assert_array_equal(h1, y2[0])
                if mode == "lstm":
                    want = ref.lstm_forward(p["x"][:1], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                                            p["b_hh"])
                    assert_close(c1, want[2], RTOL[dtype], "c_n")
                elif mode == "gru":
                    want = ref.gru_forward(p["x"][:1], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
                else:
                    want = ref.rnn_forward(p["x"][:1], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                           nonlinearity=mode[4:])
                assert_close(y1, want[0], RTOL[dtype], "y")
    finally:
        rnnfast.set_num_threads(before)


@pytest.mark.parametrize("mode", MODES)
def test_single_step_bits_do_not_depend_on_threads(mode, dtype):
    """B = 134: on 2 threads a step runs in batch mode, 67 rows a thread, whose last block is short
    and merged with the one before (6 + 1 rows go as 4 + 3 on AVX2 and SSE, 8 + 3 as 6 + 5 on
    AVX-512); on 1 and 3 threads in unit mode, all rows in one range. Outputs and states, eval and
    training: the same bits. (No T = 2 here: its projection would cut 268 rows on another grid.)"""
    p = make_layer(mode, 1, 134, 70, 130, dtype, seed=3)
    before = rnnfast.get_num_threads()
    try:
        for training in (False, True):
            outs = []
            for threads in (1, 2, 3):
                rnnfast.set_num_threads(threads)
                outs.append(forward(mode, p, p["x"], training)[:3])
            for other in outs[1:]:
                for a, b in zip(outs[0], other):
                    if a is not None:
                        np.testing.assert_array_equal(a, b)
    finally:
        rnnfast.set_num_threads(before)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,H", [(1, 200), (3, 160), (24, 70), (24, 260), (168, 70), (134, 70)])
def test_single_step_backward_is_the_first_step_of_two(mode, B, H):
    """The backward of a step at T = 1: the same bits for 1 to 3 threads (every case here is large
    enough to use them; B = 168 and 134 run in batch mode on 2 threads, 134 with 67 rows a thread,
    a merged short block) and against the reference. At B = 24 and 168, also against T = 2 whose second step gets no gradient (dy[1] = 0, no dh_n,
    dc_n): the same dh0 (the step's recurrent product, from panels packed as it goes against the
    cache's), dc0 and dx. (At B = 1 and 3 the forward's input projection cuts its 1 or 3 rows
    differently from the 2 or 6 of T = 2, so the steps differ in the last bits there.)"""
    p = make_layer(mode, 2, B, 6 * B, H, np.float32, seed=H + B)
    dy = p["dy"].copy()
    dy[1] = 0
    lstm = mode == "lstm"
    steps = []
    before = rnnfast.get_num_threads()
    try:
        for threads in (1, 2, 3):
            rnnfast.set_num_threads(threads)
            *_, ctx1 = forward(mode, p, p["x"][:1], True)
            one = F.layer_backward(ctx1, dy[:1])
            steps.append(one)
            if B in (24, 168):
                *_, ctx2 = forward(mode, p, p["x"], True)
                two = F.layer_backward(ctx2, dy)
                np.testing.assert_array_equal(one[1], two[1])  # dh0
                if lstm:
                    np.testing.assert_array_equal(one[2], two[2])  # dc0
                np.testing.assert_array_equal(one[0][0], two[0][0])  # dx of the step
    finally:
        rnnfast.set_num_threads(before)
    for other in steps[1:]:
        for a, b in zip(steps[0], other):
            np.testing.assert_array_equal(a, b)
    args = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if lstm:
        _, _, _, rctx = ref.lstm_forward(p["x"][:1], p["h0"], p["c0"], *args)
        want = ref.lstm_backward(dy[:1], None, None, rctx)
    elif mode == "gru":
        want = ref.gru_backward(dy[:1], None, ref.gru_forward(p["x"][:1], p["h0"], *args)[2])
    else:
        want = ref.rnn_backward(dy[:1], None, ref.rnn_forward(p["x"][:1], p["h0"], *args, nonlinearity=mode[4:])[2])
    for name, a, b in zip(["dx", "dh0"], steps[0], want):
        assert_close(a, b, RTOL[np.float32], name)


def test_a_single_step_leaves_the_cache_for_longer_calls():
    """A step uses no cache and returns the caller's as it came; the longer calls around it keep
    seeing every weight change."""
    p = make_layer("lstm", 4, 5, 7, 40, np.float32, seed=1)
    cache = F.LayerWorkspace()
    call = lambda x: F.layer_forward("lstm", x, None, None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                     training=False, workspace=cache)[0]
    call(p["x"])
    kept = cache.forward
    assert kept.size > 0
    filled = kept.copy()
    p["w_hh"][3, 4] += 0.5
    step = call(p["x"][:1])
    assert cache.forward is kept
    np.testing.assert_array_equal(kept, filled)
    fresh = F.layer_forward("lstm", p["x"], None, None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                            training=False)[0]
    np.testing.assert_array_equal(call(p["x"]), fresh)
    # Not bit for bit: the step's B rows and the sequence's T * B rows fall into other micro-kernel
    # blocks of the input projection, whose short blocks split k (gemm.h's Tail::grid).
    np.testing.assert_allclose(step[0], fresh[0], rtol=RTOL[np.float32], atol=1e-6)
