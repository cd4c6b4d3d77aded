"""int8 inference (rnnfast.quantize(module, "int8")): the quantization rule, the integer products on
every path against the NumPy reference (exactly), the layers against the reference of the int8
math, the same bits across threads and across the paths that share their gate math, and the
quantized modules against float32."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, functional as F, reference as R
from rnnfast.functional import Int8Weight
from rnnfast.quantized import to_int8
from quantized_cases import CELLS, each_isa, layer_case, reference_layer, relative_error  # noqa: F401

def test_input_rows_take_two_digits():
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((40, 300)) * rng.uniform(0.01, 100, (40, 1))).astype(np.float32)
    q, scale, q2, scale2 = R.quantize_input_rows(a)
    assert np.array_equal(q, R.quantize_rows(a)[0]) and np.array_equal(scale2, scale / np.float32(254))
    one = q * scale[:, None].astype(np.float64)
    two = one + q2 * scale2[:, None].astype(np.float64)
    assert (np.abs(one - a).max(axis=1) / scale <= 0.5001).all()  # half a step of the first digit
    assert (np.abs(two - a).max(axis=1) / scale <= 0.5 / 254 + 1e-5).all()  # half of the second's


def test_weight_quantization_is_the_reference_rule():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((50, 70)) * rng.uniform(0.01, 3, (50, 1))).astype(np.float32)
    w[7] = 0  # a row of zeros: zeros and scale 0
    q, scale = to_int8(w)
    rq, rscale = R.quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert np.array_equal(q, rq) and np.array_equal(scale, rscale)
    assert not q[7].any() and scale[7] == 0
    assert np.abs(q).max() == 127 and (np.abs(q).max(axis=1)[np.arange(50) != 7] == 127).all()
    assert np.abs(q * scale[:, None] - w).max() <= 0.5001 * scale.max()  # within half a step
    ties = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]], np.float32)  # scale 1: rint's ties go to even
    assert R.quantize_rows(ties)[0].tolist() == [[127, 0, 2, 2, 0, -2]]


def _activation_rows(rng):
    """Rows that probe the quantization rule: random scales and lengths around the vector widths,
    exact ties of the first digit, rows of zeros, below and at 2^-100, denormals, a lone large value."""
    rows = []
    for n in (1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 65, 300):
        rows += [rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30) for _ in range(40)]
    ties = np.arange(-127, 128) + 0.5  # scale 1 (127 is the row's largest): k + 1/2 exactly
    rows.append(np.concatenate([[127.0], ties[:-1]]))
    tiny = rng.standard_normal(33)
    rows += [tiny * 0, tiny * 2.0 ** -110, tiny * 1e-40, np.full(5, 2.0 ** -100), np.full(5, 2.0 ** -101),
             np.concatenate([[1e30], tiny]), np.concatenate([[2.0 ** -99], tiny * 1e-40])]
    return [np.asarray(r, np.float32) for r in rows]


def test_activation_digits_are_the_reference_on_every_path(each_isa):
    # Each path's quantize_row against the reference's rule, bit for bit: both digits and both
    # scales. (With FMA, a * (127 / m) + magic contracted into one instruction skips the product's
    # rounding; the digits then differ now and then.)
    rows = _activation_rows(np.random.default_rng(11))
    for isa in each_isa:
        _core.set_isa(isa)
        for a in rows:
            got = _core.quantize_activations(a[None, :])
            want = R.quantize_input_rows(a[None, :])
            for g, w, name in zip(got, want, ("q", "scale", "q2", "scale2")):
                assert g.dtype == w.dtype and np.array_equal(g, w), (isa, name, a.size, a[:3])


def test_tiny_rows_count_as_zero():
    for row in ([2.0 ** -101, -2.0 ** -105], [1e-40, 0.0], [0.0, 0.0]):
        q, scale, q2, scale2 = R.quantize_input_rows(np.array([row], np.float32))
        assert not q.any() and not q2.any() and scale[0] == 0 and scale2[0] == 0
    q, scale = R.quantize_rows(np.array([[2.0 ** -100, -2.0 ** -101]], np.float32))
    assert q.tolist() == [[127, -64]] and scale[0] == np.float32(2.0 ** -100) / np.float32(127)


def _int8(w):
    return Int8Weight(*to_int8(w))


@pytest.mark.parametrize("T", [1, 3])  # T = 1 packs each panel as it goes, T = 3 all panels up front
@pytest.mark.parametrize("I,H,B", [(7, 9, 5), (33, 17, 1), (64, 48, 13), (300, 40, 20), (130, 70, 3)])
def test_products_are_the_exact_integer_sums_on_every_path(T, I, H, B, each_isa):
    # A relu RNN's first step from h = 0 without biases is relu(P), P the int8 product of x_0 and
    # W_ih: float32(S) * (scale_x * scale_w) with S the exact integer sum. Negated inputs quantize
    # to the negated digits (rint is symmetric) and give -S, so relu(P) - relu(-P) is P, bit for
    # bit, on every path and thread count. Inputs are integers times a power of two with 127 in each
    # row: q is those integers, and their second digits zero. The weights hold -128 too (a loaded
    # state_dict may), which vpmaddubsw's paths must multiply exactly.
    rng = np.random.default_rng(I + H)
    ints = rng.integers(-127, 128, (T, B, I))
    ints[:, :, rng.integers(I)] = 127
    x = (ints * 2.0 ** rng.integers(-8, 8, (1, B, 1))).astype(np.float32)
    w_ih = (rng.standard_normal((H, I)) * 0.3).astype(np.float32)
    w_hh = (rng.standard_normal((H, H)) * 0.3).astype(np.float32)
    q_ih, s_ih = to_int8(w_ih)
    q_ih[rng.random(q_ih.shape) < 0.1] = -128
    q_ih[0] = -128  # a whole row: the largest sums
    want = R.int8_product(x[0], q_ih, s_ih)
    for isa in each_isa:
        _core.set_isa(isa)
        for threads in (1, 2):
            run = lambda sign: F.layer_forward("rnn_relu", sign * x, None, None, Int8Weight(q_ih, s_ih), _int8(w_hh),
                                               None, None, training=False, threads=threads)[0][0]
            got = run(1) - run(-1)
            assert np.array_equal(got, want), (isa, threads, np.abs(got - want).max())


def _kernel(mode, x, w, b, h0, c0, reverse=False, lengths=None, threads=0):
    y, h_n, c_n, _ = F.layer_forward(mode, x, h0, c0, _int8(w[0]), _int8(w[1]), b[0], b[1], reverse=reverse,
                                     lengths=lengths, training=False, threads=threads)
    return y, h_n, c_n


def _reference(*case, **kw):
    return reference_layer(R.int8_stack_forward, *case, **kw)


# The second: rows in short blocks after the whole ones (T * B = 35 and B = 5 on 8, 6 and 4 rows a
# block), and products whose panels are whole next to ones with a partial vector (G * H = 21, 63, 84
# on 16 and 8 lanes).
@pytest.mark.parametrize("mode", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("shape, steps", [((12, 6, 20, 24), [12, 1, 7, 12, 3, 9]), ((7, 5, 20, 21), [7, 1, 4, 7, 2])])
def test_sequence_matches_the_reference(mode, reverse, with_lengths, shape, steps, each_isa):
    x, w, b, h0, c0 = layer_case(mode, *shape, seed=3)
    lengths = np.array(steps) if with_lengths else None
    want = _reference(mode, x, w, b, h0, c0, reverse, lengths)
    for isa in each_isa:
        _core.set_isa(isa)
        got = _kernel(mode, x, w, b, h0, c0, reverse, lengths)
        # The same integer sums; the states differ by float32 rounding (sums in another order), and
        # a state a float32 ulp apart can quantize one step apart (1/127 of its row's largest).
        for g, e in zip(got, want):
            if e is not None:
                assert np.abs(g - e).max() <= 1e-3, (isa, np.abs(g - e).max())
        if with_lengths:
            for bi, L in enumerate(lengths):
                assert not got[0][L:, bi].any()  # padded steps stay exactly zero


# The last: an LSTM or GRU whose W_hh is over 2 MiB in float32 but not in int8, so batch mode on 2
# threads (unit mode on 3: 3 rows a thread, fewer than 4).
SHAPES = [(30, 1, 40, 40), (8, 33, 50, 70), (1, 3, 16, 130), (4, 64, 32, 256), (3, 9, 24, 448)]


@pytest.mark.parametrize("mode", CELLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_same_bits_for_any_thread_count(mode, shape, each_isa):
    x, w, b, h0, c0 = layer_case(mode, *shape, seed=5)
    for isa in each_isa:
        _core.set_isa(isa)
        one = _kernel(mode, x, w, b, h0, c0, threads=1)
        for n in (2, 3):
            for a, c in zip(one, _kernel(mode, x, w, b, h0, c0, threads=n)):
                assert a is None or np.array_equal(a, c), (isa, n)


# The integer sums are exact on every path, and the builds of one vector width share their float32
# gate math: vpmaddubsw (avx512, avx2), vpdpbusd (avx512_vnni, avx512_bf16, avx2_vnni) and AMX tiles
# (avx512_amx) give the same bits. (Other widths have other gate math bits.)
@pytest.mark.parametrize("family", [("avx512", "avx512_vnni", "avx512_bf16", "avx512_amx"), ("avx2", "avx2_vnni")])
@pytest.mark.parametrize("mode", CELLS)
def test_paths_of_one_width_give_the_same_bits(family, mode, each_isa):
    paths = [i for i in family if i in each_isa]
    if len(paths) < 2:
        pytest.skip(f"this CPU runs {len(paths)} of {family}: nothing to compare")
    for shape in SHAPES:
        x, w, b, h0, c0 = layer_case(mode, *shape, seed=5)
        runs = []
        for isa in paths:
            _core.set_isa(isa)
            runs.append(_kernel(mode, x, w, b, h0, c0))
        for isa, other in zip(paths[1:], runs[1:]):
            for a, c in zip(runs[0], other):
                assert a is None or np.array_equal(a, c), (paths[0], isa, shape)


def test_weights_and_scales_are_read_again_when_they_change():
    x, w, b, h0, c0 = layer_case("lstm", 10, 4, 16, 32, seed=7)
    ws = F.LayerWorkspace()
    w_ih, w_hh = _int8(w[0]), _int8(w[1])
    first = F.layer_forward("lstm", x, h0, c0, w_ih, w_hh, *b, training=False, workspace=ws)[0]
    w_hh.values[3, 5] += 1  # in-place edits of the cached weights
    second = F.layer_forward("lstm", x, h0, c0, w_ih, w_hh, *b, training=False, workspace=ws)[0]
    fresh = F.layer_forward("lstm", x, h0, c0, w_ih, w_hh, *b, training=False)[0]
    assert not np.array_equal(first, second) and np.array_equal(second, fresh)
    w_ih.scale[:] *= 2
    third = F.layer_forward("lstm", x, h0, c0, w_ih, w_hh, *b, training=False, workspace=ws)[0]
    assert np.array_equal(third, F.layer_forward("lstm", x, h0, c0, w_ih, w_hh, *b, training=False)[0])
    assert not np.array_equal(third, second)


def test_int8_weights_are_for_float32_inference():
    x, w, b, h0, c0 = layer_case("gru", 3, 2, 4, 5, seed=0)
    with pytest.raises(ValueError, match="int8 weights are for inference"):
        F.layer_forward("gru", x, h0, None, _int8(w[0]), _int8(w[1]), *b, training=True)
    with pytest.raises(TypeError, match="float32 eval"):
        F.layer_forward("gru", x.astype(np.float64), h0.astype(np.float64), None, _int8(w[0]), _int8(w[1]),
                        *[v.astype(np.float64) for v in b], training=False)
    with pytest.raises(ValueError, match="scales"):
        _core.layer_forward(3, x, to_int8(w[0])[0], to_int8(w[1])[0], b[0], b[1], h0, None, y=np.empty((3, 2, 5), np.float32),
                            reverse=False, lengths=None, training=False)
    with pytest.raises(ValueError, match="w_hh_scale: expected shape"):
        F.layer_forward("gru", x, h0, None, _int8(w[0]), Int8Weight(to_int8(w[1])[0], np.ones(3, np.float32)), *b,
                        training=False)
    with pytest.raises(TypeError, match="both be Int8Weight .* or both arrays, got ndarray and Int8Weight"):
        F.layer_forward("gru", x, h0, None, w[0], _int8(w[1]), *b, training=False)
    with pytest.raises(TypeError, match="w_ih: of dtype float32 where w_hh is of dtype int8; all weights must be float, or "
                                        "all int8 weights"):
        _core.layer_forward(3, x, w[0], to_int8(w[1])[0], b[0], b[1], h0, None, y=np.empty((3, 2, 5), np.float32),
                            reverse=False, lengths=None, training=False)
    with pytest.raises(ValueError, match="recurrent_mask: int8 weights run eval forwards, which take no recurrent"):
        F.layer_forward("gru", x, h0, None, _int8(w[0]), _int8(w[1]), *b, training=False,
                        recurrent_mask=np.ones((2, 5), np.float32))


def test_int8_sizes_stop_where_the_int32_sums_would_overflow(each_isa):
    I = 131_073  # 131,073 * 127 * 128 > 2^31
    x = np.zeros((1, 1, I), np.float32)
    w_ih = Int8Weight(np.zeros((1, I), np.int8), np.ones(1, np.float32))
    w_hh = Int8Weight(np.zeros((1, 1), np.int8), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="at most 131072"):
        F.layer_forward("rnn_tanh", x, None, None, w_ih, w_hh, None, None, training=False)
    K = I - 1
    # The largest |S| there is: all weights -128, x = -1 (q = -127; the unsigned q + 128 = 1 on the
    # VNNI paths). And the largest unsigned sum: weights 127, x = +1 (q + 128 = 255, so the VNNI
    # accumulator holds 255 * 127 * K > 2^31 and wraps; S - 128 * sum(w) = 127 * 127 * K fits).
    for weight, value in ((-128, -1.0), (127, 1.0)):
        ok = Int8Weight(np.full((1, K), weight, np.int8), np.ones(1, np.float32))
        x = np.full((1, 1, K), value, np.float32)
        want = np.float32(127 * value * weight * K) * (np.float32(1) / np.float32(127))  # float32(S) * scale_x
        for isa in each_isa:
            _core.set_isa(isa)
            y = F.layer_forward("rnn_relu", x, None, None, ok, w_hh, None, None, training=False)[0]
            assert y[0, 0, 0] == want, (isa, weight)


# ---- the modules ---------------------------------------------------------------------------

def _outputs(out, lstm):
    y, h = out
    return [y] + (list(h) if lstm else [h])


def test_quantized_module_is_the_reference_of_the_int8_math():
    m = rnnfast.GRU(24, 32, num_layers=2, bidirectional=True, seed=4).eval()
    x = np.random.default_rng(3).standard_normal((15, 3, 24)).astype(np.float32)
    y, h = rnnfast.quantize(m, "int8")(x)
    want_y, want_h = R.int8_stack_forward("gru", x, None, m.state_dict(), num_layers=2, bidirectional=True)
    assert np.abs(y - want_y).max() <= 1e-3 and np.abs(h - want_h).max() <= 1e-3


def test_loaded_weights_of_minus_128_are_the_reference_on_every_path(each_isa):
    # rnnfast quantizes into [-127, 127]; a state_dict from elsewhere may hold -128.
    q = rnnfast.quantize(rnnfast.LSTM(20, 24, num_layers=2, seed=2), "int8")
    sd = q.state_dict()
    rng = np.random.default_rng(5)
    for k in sd:
        if sd[k].dtype == np.int8:
            sd[k][rng.random(sd[k].shape) < 0.2] = -128
    q.load_state_dict(sd)
    pairs = {k: (v, sd[k + "_scale"]) if v.dtype == np.int8 else v for k, v in sd.items() if not k.endswith("_scale")}
    x = rng.standard_normal((11, 4, 20)).astype(np.float32)
    want_y, (want_h, want_c) = R.int8_stack_forward("lstm", x, None, pairs, num_layers=2)
    for isa in each_isa:
        _core.set_isa(isa)
        y, (h, c) = q(x)
        for g, e in ((y, want_y), (h, want_h), (c, want_c)):
            assert np.abs(g - e).max() <= 1e-3, (isa, np.abs(g - e).max())


def test_quantize_leaves_the_original_and_is_inference_only(tmp_path):
    m = rnnfast.LSTM(16, 24, num_layers=2, seed=3)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    q = rnnfast.quantize(m, "int8")
    assert m.training and all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(RuntimeError, match="int8 module is inference-only"):
        q.backward(np.zeros((3, 2, 24), np.float32))
    with pytest.raises(RuntimeError, match="inference-only"):
        q.train()
    sd = q.state_dict()
    assert sd["weight_hh_l1"].dtype == np.int8 and sd["weight_hh_l1_scale"].dtype == np.float32
    assert sd["weight_hh_l1_scale"].shape == (96,) and sd["bias_hh_l1"].dtype == np.float32
    weight_bytes = sum(v.nbytes for k, v in sd.items() if k.startswith("weight_"))
    float_bytes = sum(v.nbytes for k, v in m.state_dict().items() if k.startswith("weight_"))
    assert weight_bytes <= 0.3 * float_bytes  # int8 values and a scale a row
    x = np.random.default_rng(4).standard_normal((9, 2, 16)).astype(np.float32)
    y0 = q(x)[0]
    other = rnnfast.quantize(rnnfast.LSTM(16, 24, num_layers=2, seed=99), "int8")
    other.load_state_dict(sd)
    assert np.array_equal(other(x)[0], y0)
    with pytest.raises(TypeError, match="int8 arrays"):
        other.load_state_dict(m.state_dict() | {k: v for k, v in sd.items() if k.endswith("_scale")})
    with pytest.raises(TypeError, match="int8 arrays"):
        other.load_state_dict({k: v.astype(np.int16) if v.dtype == np.int8 else v for k, v in sd.items()})
    path = tmp_path / "q.npz"
    rnnfast.save(path, q)
    third = rnnfast.quantize(rnnfast.LSTM(16, 24, num_layers=2, seed=7), "int8")
    rnnfast.load(path, third)
    assert np.array_equal(third(x)[0], y0)


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_quantized_error_from_torch_weights_at_a_bench_shape(cls):
    torch = pytest.importorskip("torch")
    # torch's default initialisation, N(0, 1) inputs, as the accuracy figures in RESULTS.md.
    torch.manual_seed(0)
    t = getattr(torch.nn, cls.__name__)(256, 256, num_layers=3)
    m = cls(256, 256, num_layers=3).eval()
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((100, 4, 256)).astype(np.float32)
    lstm = cls is rnnfast.LSTM
    f, q = _outputs(m(x), lstm), _outputs(rnnfast.quantize(m, "int8")(x), lstm)
    assert max(relative_error(a, e) for a, e in zip(q, f)) <= 2e-2


# ---- rnnfast.torch.quantize ----------------------------------------------------------------

@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_torch_quantize_matches_the_numpy_quantized_module(cls):
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    torch.manual_seed(0)
    t = getattr(torch.nn, cls)(12, 20, num_layers=2, bidirectional=True, batch_first=True)
    q = rt.quantize(t, "int8")
    assert isinstance(q, torch.nn.Module) and t.weight_ih_l0.dtype == torch.float32  # t left as it was
    numpy_q = rnnfast.quantize(rt.from_torch(t).to_numpy(), "int8")
    x = torch.randn(5, 9, 12)
    lengths = [9, 4, 1, 9, 6]
    y, h = q(x, lengths=lengths)
    assert np.array_equal(y.numpy(), numpy_q(x.numpy(), lengths=lengths)[0])
    with torch.no_grad():
        ref = t(x)[0]
    assert relative_error(q(x)[0].numpy(), ref.numpy()) <= 2e-2
    sd = q.state_dict()
    assert sd["weight_hh_l1_reverse"].dtype == torch.int8 and sd["weight_hh_l1_reverse_scale"].dtype == torch.float32
    other = rt.quantize(getattr(torch.nn, cls)(12, 20, num_layers=2, bidirectional=True, batch_first=True), "int8")
    other.load_state_dict(sd)
    assert torch.equal(other(x)[0], q(x)[0])
    with pytest.raises(TypeError, match="torch.int8"):
        other.load_state_dict(rt.quantize(t, "bfloat16").state_dict())
    with pytest.raises(TypeError, match="must stay a CPU torch.float32"):
        rt.quantize(t, "int8").double()  # the scales would turn float64 (.float() leaves int8 and float32 alone)
    import pickle
    again = pickle.loads(pickle.dumps(q))
    assert torch.equal(again(x)[0], q(x)[0])


# ---- ONNX ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bidirectional,batch_first", [(False, False), (True, True)])
def test_onnx_export_of_an_int8_lstm_runs_in_onnxruntime(bidirectional, batch_first, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import rnnfast.onnx
    m = rnnfast.LSTM(24, 32, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, seed=0).eval()
    q = rnnfast.quantize(m, "int8")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 20, 24) if batch_first else (20, 3, 24)).astype(np.float32)
    D = 2 if bidirectional else 1
    hx = tuple(rng.standard_normal((2 * D, 3, 32)).astype(np.float32) * 0.5 for _ in range(2))
    lengths = np.array([20, 7, 13])
    proto = rnnfast.onnx.export(q, tmp_path / "q.onnx", (x, hx, lengths))
    assert [n.op_type for n in proto.graph.node if n.domain == "com.microsoft"] == ["DynamicQuantizeLSTM"] * 2
    # The weights as uint8 with zero point 128 (int8 weights saturate ONNX Runtime's kernel for CPUs
    # without VNNI): each value w + 128, so that less the zero point they are the module's weights.
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for w in ("W_l0", "R_l1"):
        assert inits[w].dtype == np.uint8 and (inits[w.replace("_l", "_zero_point_l")] == 128).all()
    w_ih = q.state_dict()["weight_ih_l0"]  # (4H, I) int8, in torch's gate order
    assert w_ih.dtype == np.int8
    assert sorted(inits["W_l0"][0].ravel().astype(int) - 128) == sorted(w_ih.ravel().astype(int))
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x, "h0": hx[0], "c0": hx[1], "lengths": lengths})
    want_q, want_f = _outputs(q(x, hx, lengths), True), _outputs(m(x, hx, lengths), True)
    for g, wq, wf in zip(got, want_q, want_f):
        # ONNX Runtime quantizes the activations its own way (per tensor, uint8): near, not the same.
        assert relative_error(g, wf) <= 2e-2 and relative_error(g, wq) <= 2e-2
    pad = got[0][1, 7:] if batch_first else got[0][7:, 1]
    assert not pad.any()


def test_onnx_export_refuses_other_int8_modules_and_says_why():
    pytest.importorskip("onnx")
    import rnnfast.onnx
    q = rnnfast.quantize(rnnfast.GRU(4, 8), "int8")
    with pytest.raises(TypeError, match="int8 GRU.*DynamicQuantizeLSTM.*LSTM's only"):
        rnnfast.onnx.export(q, "unused.onnx", np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="float32"):
        rnnfast.onnx.export(rnnfast.quantize(rnnfast.LSTM(4, 8), "int8"), "unused.onnx", np.zeros((3, 2, 4), np.float32),
                            dtype="float64")


def test_onnx_export_of_a_torch_int8_lstm(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import rnnfast.onnx
    import rnnfast.torch as rt
    torch.manual_seed(0)
    q = rt.quantize(torch.nn.LSTM(10, 16), "int8")
    x = torch.randn(8, 2, 10)
    rnnfast.onnx.export(q, tmp_path / "t.onnx", x.numpy())
    got = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})
    assert relative_error(got[0], q(x)[0].numpy()) <= 2e-2
