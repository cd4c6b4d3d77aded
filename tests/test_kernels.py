"""The C++ kernels (rnnfast.functional) against the NumPy reference, forward and every gradient."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from rnnfast import reference as ref

from conftest import MODES, RTOL, assert_close, make_layer


pytestmark = pytest.mark.usefixtures("every_isa")  # each test on each instruction set the CPU has


def run(lib, mode, p, reverse, lengths, with_dh):
    """Forward + backward of one layer through `lib` (reference or functional): outputs, then grads."""
    dh = p["dh_n"] if with_dh else None
    dc = p["dc_n"] if with_dh else None
    args = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if mode == "lstm":
        y, h_n, c_n, ctx = lib.lstm_forward(p["x"], p["h0"], p["c0"], *args, reverse=reverse, lengths=lengths)
        grads = lib.lstm_backward(p["dy"], dh, dc, ctx)
        return (y, h_n, c_n), grads
    if mode == "gru":
        y, h_n, ctx = lib.gru_forward(p["x"], p["h0"], *args, reverse=reverse, lengths=lengths)
        return (y, h_n), lib.gru_backward(p["dy"], dh, ctx)
    y, h_n, ctx = lib.rnn_forward(p["x"], p["h0"], *args, nonlinearity=mode[4:], reverse=reverse, lengths=lengths)
    return (y, h_n), lib.rnn_backward(p["dy"], dh, ctx)


def check(mode, p, reverse=False, lengths=None, with_dh=True):
    rtol = RTOL[p["x"].dtype.type]
    outs, grads = run(F, mode, p, reverse, lengths, with_dh)
    routs, rgrads = run(ref, mode, p, reverse, lengths, with_dh)
    for name, a, b in zip(["y", "h_n", "c_n"], outs, routs):
        assert_close(a, b, rtol, name)
    names = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"] if mode == "lstm" else \
        ["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"]
    for name, a, b in zip(names, grads, rgrads):
        if b is None:
            assert a is None, name
        else:
            assert_close(a, b, rtol, name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_dh", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 4, 3), (5, 1, 3, 17), (6, 4, 7, 33), (4, 5, 33, 8)],
                         ids=lambda s: "T%dB%dI%dH%d" % s)
def test_matches_reference(mode, reverse, with_dh, shape, dtype):
    check(mode, make_layer(mode, *shape, dtype, seed=sum(shape)), reverse=reverse, with_dh=with_dh)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_match_reference(mode, reverse, dtype):
    p = make_layer(mode, 7, 5, 6, 19, dtype, seed=3)
    check(mode, p, reverse=reverse, lengths=np.array([7, 1, 4, 7, 2]))


@pytest.mark.parametrize("mode", MODES)
def test_no_bias(mode, dtype):
    check(mode, make_layer(mode, 4, 3, 5, 9, dtype, seed=5, bias=False), reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_larger_shapes_use_every_code_path(mode):
    """Sizes past one vector, one panel and one k-block (KC: 512 values on AVX2 and the portable
    path) in the input projection (I), dx (G*H for LSTM and GRU) and dW (T*B), several
    threads' worth."""
    p = make_layer(mode, 40, 13, 530, 180, np.float64, seed=11)
    check(mode, p, lengths=np.array([40, 27, 1, 40, 40, 13, 1, 40, 39, 40, 2, 26, 40]))


@pytest.mark.parametrize("mode", MODES)
def test_products_past_two_k_blocks_of_avx512(mode):
    """AVX-512 takes k-blocks of up to 1024 values (gemm.h): I = 1030 in the input projection and
    T * B = 1110 in dW cross one, so that a second block adds to the first (k-blocks of nearly one
    size: 2 x 515, 2 x 555)."""
    p = make_layer(mode, 30, 37, 1030, 40, np.float64, seed=13)
    check(mode, p, lengths=np.array([30, 1, 29] + [30] * 30 + [7, 30, 2, 30]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B", [123, 163])
def test_row_counts_just_past_a_chunk_of_rows(mode, B):
    """The products take rows in chunks of 20 micro-kernel blocks (120 rows on AVX2 and the
    portable path, 160 on AVX-512) with a short block or two at the end: B = 123 and 163 put that
    end just past a chunk in the recurrent products (one thread, all rows in one call), I > 512 past
    one k-block in the input projection, and G * H = 123 (GRU), 164 (LSTM) in dW's rows."""
    p = make_layer(mode, 2, B, 530, 41, np.float64, seed=B)
    before = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(1)
        check(mode, p, reverse=True)
    finally:
        rnnfast.set_num_threads(before)


def test_every_row_count_near_the_block_and_chunk_edges():
    """One thread, so each product takes all its rows in one call: B = H = n rows in the recurrent
    products (exact blocks, merged short rests), T * B in the input projection and H in dW (grid
    blocks), for n around one block and around one and two chunks of 20 blocks (6 or 8 rows a
    block). Every row must be computed once: a skipped or doubled row fails the reference."""
    sizes = list(range(1, 18)) + list(range(117, 131)) + list(range(157, 171)) + list(range(238, 243))
    before = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(1)
        for n in sizes:
            check("rnn_tanh", make_layer("rnn_tanh", 2, n, 5, n, np.float64, seed=n))
    finally:
        rnnfast.set_num_threads(before)


@pytest.mark.parametrize("mode", MODES)
def test_thread_count_does_not_change_bits(mode):
    p = make_layer(mode, 6, 9, 40, 130, np.float32, seed=2)
    assert_same_bits_for_threads(mode, p, np.array([6, 3, 6, 1, 6, 6, 2, 6, 5]), (1, 2, 3, 1))


def assert_same_bits_for_threads(mode, p, lengths, counts, check_reference=False, reverse=False):
    before = rnnfast.get_num_threads()
    try:
        results = []
        for threads in counts:
            rnnfast.set_num_threads(threads)
            if check_reference:
                check(mode, p, reverse=threads == 3, lengths=lengths)
            outs, grads = run(F, mode, p, reverse, lengths, True)
            results.append([a for a in outs + tuple(grads) if a is not None])
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert np.array_equal(a, b)
    finally:
        rnnfast.set_num_threads(before)


def test_backward_runs_twice_on_one_forward_with_retain_graph():
    p = make_layer("lstm", 4, 3, 5, 6, np.float64)
    y, h, c, ctx = F.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    first = F.lstm_backward(p["dy"], None, None, ctx, retain_graph=True)
    second = F.lstm_backward(p["dy"], None, None, ctx, retain_graph=True)
    third = F.lstm_backward(p["dy"], None, None, ctx)  # the last one may consume it
    for a, b, c in zip(first, second, third):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    with pytest.raises(RuntimeError, match="already used by a backward"):
        F.lstm_backward(p["dy"], None, None, ctx)


def layer_grads(mode, p, lengths, reverse, retain_graph, threads):
    """Forward + backward of one layer with the given retain_graph: every output and gradient."""
    lstm = mode == "lstm"
    y, h_n, c_n, ctx = F.layer_forward(mode, p["x"], p["h0"], p["c0"] if lstm else None, p["w_ih"], p["w_hh"],
                                       p["b_ih"], p["b_hh"], reverse=reverse, lengths=lengths, threads=threads)
    size = F.backward_scratch_size(mode, *p["x"].shape, p["w_hh"].shape[1], p["x"].dtype, threads, retain_graph)
    scratch = np.full(size, np.nan, p["x"].dtype)  # nothing may be read before it is written
    grads = F.layer_backward(ctx, p["dy"], p["dh_n"], p["dc_n"] if lstm else None, scratch=scratch, threads=threads,
                             retain_graph=retain_graph)
    return [a for a in (y, h_n, c_n) + tuple(grads) if a is not None]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,H", [(7, 130), (100, 40)], ids=["unit_mode", "batch_mode"])
def test_consuming_backward_gives_the_same_bits_as_retaining(mode, B, H):
    """Gate gradients written over the saved gates (the default) against a separate workspace
    (retain_graph=True), at 1 to 3 threads, both directions, with lengths: bit for bit; and the
    consuming backward's workspace is smaller by the gate gradients' T*B*G*H values (GRU: the n
    block of dG_hh's too), which are the saved workspace's now, and does not grow with T."""
    T, I = 5, 24
    p = make_layer(mode, T, B, I, H, np.float32, seed=B)
    lengths = np.random.default_rng(B).integers(1, T + 1, size=B)
    for threads in (1, 2, 3):
        for reverse in (False, True):
            kept = layer_grads(mode, p, lengths, reverse, True, threads)
            spent = layer_grads(mode, p, lengths, reverse, False, threads)
            for a, b in zip(kept, spent):
                assert np.array_equal(a, b)
    G = {"lstm": 4, "gru": 3}.get(mode, 1)
    retained = F.backward_scratch_size(mode, T, B, I, H, np.float32, 2, retain_graph=True)
    consumed = F.backward_scratch_size(mode, T, B, I, H, np.float32, 2)
    assert retained - consumed >= T * B * (G + (G == 3)) * H
    assert F.backward_scratch_size(mode, 100 * T, B, I, H, np.float32, 2) == consumed


def test_activations_accurate_over_the_float_range():
    """The kernels' float32 sigmoid/tanh against float64 math: <= 1e-6 relative, saturating cleanly."""
    x = np.concatenate([np.linspace(-100, 100, 200001), np.geomspace(1e-30, 1e-2, 2000),
                        -np.geomspace(1e-30, 1e-2, 2000), [0.0, 1e30, -1e30, 3e38, -3e38]]).astype(np.float32)
    xd = x.astype(np.float64)
    tanh = rnnfast._core.activation(1, x)
    sig = rnnfast._core.activation(0, x)
    assert np.all(np.abs(tanh - np.tanh(xd)) <= 1e-6 * np.abs(np.tanh(xd)) + 1e-45)
    exact_sig = 1.0 / (1.0 + np.exp(-np.clip(xd, -700, 700)))
    ok = np.abs(sig - exact_sig) <= 1e-6 * exact_sig
    ok |= exact_sig < 1e-37  # float32 cannot hold those relative to 1e-6 anyway
    assert np.all(ok)
    assert np.all(np.abs(tanh) <= 1) and np.all((sig >= 0) & (sig <= 1))
    nan = rnnfast._core.activation(1, np.array([np.nan], np.float32))
    assert np.isnan(nan[0])
    assert np.isnan(rnnfast._core.activation(0, np.array([np.nan, -np.nan], np.float32))).all()
    zeros = rnnfast._core.activation(1, np.array([0.0, -0.0], np.float32))
    assert list(np.signbit(zeros)) == [False, True]  # tanh keeps the sign of zero, as torch does


def test_callers_floating_point_mode_is_untouched():
    """The kernels flush denormals inside their threads only: NumPy still sees gradual underflow."""
    tiny = np.float32(1e-38)
    assert tiny * np.float32(0.01) > 0  # a denormal before
    p = make_layer("gru", 3, 2, 4, 5, np.float32)
    F.gru_backward(p["dy"], None, F.gru_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])[2])
    assert tiny * np.float32(0.01) > 0  # and after


@pytest.mark.parametrize("mode", MODES)
def test_batch_parallel_mode_gives_the_same_bits(mode):
    """B large enough for the barrier-free batch mode at 2 and 3 threads against one thread,
    lengths and all. Rows are split evenly, so each thread cuts its own rows into micro-kernel
    blocks: with 6 rows a block (AVX2), 98 = 15 * 6 + 4 + 4 on one thread, 49 = 7 * 6 + 4 + 3 on
    two, 32 = 4 * 6 + 4 + 4 and 33 = 4 * 6 + 5 + 4 on three; a row's bits may not depend on it."""
    p = make_layer(mode, 4, 98, 8, 40, np.float32, seed=3)
    lengths = np.random.default_rng(4).integers(1, 5, size=98)
    assert_same_bits_for_threads(mode, p, lengths, (1, 2, 3), check_reference=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B", [8, 9, 12, 13])
def test_batch_mode_from_four_rows_a_thread_gives_the_same_bits(mode, B):
    """Batch mode starts at 4 rows a thread (W_hh up to 2 MiB on 2 threads, up to 256 KiB on
    more): B = 8 and 9 are batch mode on 2 threads (4 + 4, 4 + 5 rows), unit mode on 3; B = 12 and
    13 batch mode on 2 and 3 (4 + 4 + 4, 4 + 4 + 5 on 3). A thread's 4 or 5 rows are one short
    block with k in plain order, so 1, 2 and 3 threads give the same bits, in both directions (2
    again last: after 3 threads have filled the weight caches), with lengths; against the reference
    too. B is tied to the 4 rows (kExactRows in gemm.h): if that changed, so must these B."""
    p = make_layer(mode, 5, B, 12, 70, np.float32, seed=B)
    lengths = np.random.default_rng(B).integers(1, 6, size=B)
    for reverse in (False, True):
        assert_same_bits_for_threads(mode, p, lengths, (1, 2, 3, 2), check_reference=not reverse, reverse=reverse)


@pytest.mark.parametrize("mode", MODES)
def test_batch_mode_up_to_2_mib_of_w_hh_gives_the_same_bits(mode):
    """W_hh of 1-2 MiB in float32 (an LSTM's or GRU's at H = 300: 1.37 and 1.03 MiB; an RNN's at
    H = 600: 1.37 MiB): batch mode on 2 threads (9 rows: 4 + 5), unit mode on 3 (3 rows a thread,
    fewer than 4), neither on 1: the same bits for all three, forward and backward, both
    directions, with lengths."""
    p = make_layer(mode, 3, 9, 16, 600 if mode.startswith("rnn") else 300, np.float32, seed=11)
    lengths = np.random.default_rng(11).integers(1, 4, size=9)
    for reverse in (False, True):
        assert_same_bits_for_threads(mode, p, lengths, (1, 2, 3), check_reference=not reverse, reverse=reverse)


@pytest.mark.parametrize("B,H", [(7, 64), (100, 40), (18, 40)])
@pytest.mark.parametrize("mode", MODES)
def test_eval_forward_in_chunks_matches_reference(mode, B, H):
    """Eval runs the input projection in chunks of about 512 rows (here 74, 6 and 29 steps per
    chunk, the last one short); on 2 and 3 threads the time loop is in unit mode at B = 7 (fewer
    than 4 rows a thread) and in batch mode at B = 100 and 18. In batch mode each thread projects
    its own rows where they fill the float tile at least half (50 or 33-34 rows), else the team
    projects each chunk and meets between chunks (9 rows a thread, on the 6-row and the 8-row
    tile; 6 rows on the 8-row one). Outputs against the reference, and the same bits for 1, 2 and
    3 threads."""
    T = 130 if B == 7 else 31
    p = make_layer(mode, T, B, 9, H, np.float64, seed=5)
    lengths = np.random.default_rng(6).integers(1, T + 1, size=B)
    args = (p["x"], p["h0"], p["c0"] if mode == "lstm" else None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    before = rnnfast.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            rnnfast.set_num_threads(threads)
            for reverse in (False, True):
                y, h, c, _ = F.layer_forward(mode, *args, reverse=reverse, lengths=lengths, training=False)
                ry, rh, rc, _ = F.layer_forward(mode, *args, reverse=reverse, lengths=lengths, training=True)
                assert_close(y, ry, 1e-12, "y")  # eval's chunks against training's one projection
                if threads == 1:
                    if mode == "lstm":
                        want = ref.lstm_forward(*args, reverse=reverse, lengths=lengths)[:3]
                    elif mode == "gru":
                        want = ref.gru_forward(*[a for a in args if a is not None], reverse=reverse,
                                               lengths=lengths)[:2]
                    else:
                        want = ref.rnn_forward(*[a for a in args if a is not None], nonlinearity=mode[4:],
                                               reverse=reverse, lengths=lengths)[:2]
                    for got, w in zip((y, h, c), want):
                        assert_close(got, w, RTOL[np.float64], "eval output")
                outs.append([a for a in (y, h, c) if a is not None])
        for i in range(2, len(outs)):  # outs alternate forward / reverse: compare with 1 thread's
            for a, b in zip(outs[i % 2], outs[i]):
                assert np.array_equal(a, b)
    finally:
        rnnfast.set_num_threads(before)


def test_a_caller_scratch_of_the_wrong_size_is_not_used():
    """A scratch sized for another thread count (or dtype) is left alone: the call runs on its own."""
    p = make_layer("gru", 5, 4, 6, 9, np.float32, seed=3)
    _, _, _, ctx = F.layer_forward("gru", p["x"], p["h0"], None, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    want = F.layer_backward(ctx, p["dy"], p["dh_n"], retain_graph=True)
    wrong = np.full(3, np.nan, np.float32)
    got = F.layer_backward(ctx, p["dy"], p["dh_n"], scratch=wrong, retain_graph=True)
    for a, b in zip(want, got):
        assert (a is None and b is None) or np.array_equal(a, b)
    assert np.isnan(wrong).all()
