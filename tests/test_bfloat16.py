"""bfloat16 inference (rnnfast.quantize(module, "bfloat16")): the rounding, the kernels on every
path against the NumPy reference of the bfloat16 math, the same bits across threads and across
the paths that share a vector width, and the quantized modules against float32."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, functional as F, reference as R
from rnnfast.quantized import from_bfloat16, to_bfloat16
from quantized_cases import CELLS, each_isa, layer_case, reference_layer, relative_error  # noqa: F401

def test_rounding_is_to_nearest_even():
    f32 = lambda bits: np.array(bits, np.uint32).view(np.float32)
    cases = {0x3F808000: 0x3F80,  # a tie, even below: down
             0x3F818000: 0x3F82,  # a tie, odd below: up
             0x3F808001: 0x3F81,  # above the tie: up
             0x3F807FFF: 0x3F80,  # below: down
             0x7F7FFFFF: 0x7F80,  # the largest float32 rounds to infinity, as it must
             0x80000001: 0x8000}  # a negative denormal: -0
    for bits, want in cases.items():
        assert to_bfloat16(f32([bits]))[0] == want, hex(bits)
        assert R.round_to_bfloat16(f32([bits])).view(np.uint32)[0] >> 16 == want, hex(bits)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    back = from_bfloat16(to_bfloat16(special))
    assert np.isnan(back[0]) and np.array_equal(back[1:], special[1:]) and np.signbit(back[4])
    a = np.random.default_rng(0).standard_normal(200000).astype(np.float32) * np.float32(100)
    assert np.array_equal(from_bfloat16(to_bfloat16(a)), R.round_to_bfloat16(a))
    rel = np.abs(from_bfloat16(to_bfloat16(a)) - a) / np.abs(a)
    assert rel.max() <= 2.0 ** -8  # bfloat16 keeps 8 significant bits: unit roundoff 2^-8


def test_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(1).standard_normal(100000).astype(np.float32) * np.float32(10)
    want = torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(to_bfloat16(a), want)


def _kernel(mode, x, w, b, h0, c0, reverse=False, lengths=None, threads=0):
    y, h_n, c_n, _ = F.layer_forward(mode, x, h0, c0, to_bfloat16(w[0]), to_bfloat16(w[1]), b[0], b[1],
                                     reverse=reverse, lengths=lengths, training=False, threads=threads)
    return y, h_n, c_n


def _reference(*case, **kw):
    return reference_layer(R.bfloat16_stack_forward, *case, **kw)


@pytest.mark.parametrize("mode", CELLS)
@pytest.mark.parametrize("I,H", [(7, 9), (33, 17), (64, 48)])
def test_one_step_is_the_reference_to_float32_sums(mode, I, H, each_isa):
    # One step from h0: both sides round the same float32 inputs, so only the order of the float32
    # sums differs (every product of two bfloat16 values is exact): a wrong rounding would show.
    x, w, b, h0, c0 = layer_case(mode, 1, 5, I, H, seed=I)
    want, _, _ = _reference(mode, x.astype(np.float64).astype(np.float32), w, b, h0, c0)
    for isa in each_isa:
        _core.set_isa(isa)
        y, _, _ = _kernel(mode, x, w, b, h0, c0)
        assert np.abs(y - want).max() <= 2e-6 * max(1.0, np.abs(want).max()), isa


@pytest.mark.parametrize("mode", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_matches_the_reference(mode, reverse, with_lengths, each_isa):
    T, B, I, H = 12, 6, 20, 24
    x, w, b, h0, c0 = layer_case(mode, T, B, I, H, seed=3)
    lengths = np.array([12, 1, 7, 12, 3, 9]) if with_lengths else None
    want = _reference(mode, x, w, b, h0, c0, reverse, lengths)
    for isa in each_isa:
        _core.set_isa(isa)
        got = _kernel(mode, x, w, b, h0, c0, reverse, lengths)
        # States feed back: a state a float32 ulp apart can round to the other bfloat16 (2^-8
        # apart) on one side, so allow a few such flips' worth.
        for g, e in zip(got, want):
            if e is not None:
                assert np.abs(g - e).max() <= 2e-4, isa
        if with_lengths:
            for bi, L in enumerate(lengths):
                assert not got[0][L:, bi].any()  # padded steps stay exactly zero


@pytest.mark.parametrize("mode", CELLS)
# The last shape: an LSTM or GRU whose W_hh is over 2 MiB in float32 but not in bfloat16, so batch
# mode on 2 threads (unit mode on 3: 3 rows a thread, fewer than 4).
@pytest.mark.parametrize("shape", [(30, 1, 40, 40), (8, 33, 50, 70), (1, 3, 16, 130), (4, 64, 32, 256), (3, 9, 24, 448)])
def test_same_bits_for_any_thread_count_and_for_vdpbf16ps(mode, shape, each_isa):
    x, w, b, h0, c0 = layer_case(mode, *shape, seed=5)
    runs = {}
    for isa in each_isa:
        _core.set_isa(isa)
        one = _kernel(mode, x, w, b, h0, c0, threads=1)
        for n in (2, 3):
            for a, c in zip(one, _kernel(mode, x, w, b, h0, c0, threads=n)):
                assert a is None or np.array_equal(a, c), (isa, n)
        runs[isa] = one
    # vdpbf16ps (avx512_bf16) and the pairs widened to float32 (avx512) sum the same exact products
    # in the same order, and the two builds share their gate math: the same bits. (The test build
    # avx2_w16 has the same products but its activations are AVX2's, whose bits differ.)
    wide = [runs[i] for i in ("avx512_bf16", "avx512") if i in runs]
    for other in wide[1:]:
        for a, c in zip(wide[0], other):
            assert a is None or np.array_equal(a, c)


def test_weights_are_packed_again_when_they_change():
    x, w, b, h0, c0 = layer_case("lstm", 10, 4, 16, 32, seed=7)
    ws = F.LayerWorkspace()
    w16 = [to_bfloat16(w[0]), to_bfloat16(w[1])]
    first = F.layer_forward("lstm", x, h0, c0, *w16, *b, training=False, workspace=ws)[0]
    w16[1][3, 5] ^= 0x10  # an in-place edit of the cached weights
    second = F.layer_forward("lstm", x, h0, c0, *w16, *b, training=False, workspace=ws)[0]
    fresh = F.layer_forward("lstm", x, h0, c0, *w16, *b, training=False)[0]
    assert not np.array_equal(first, second) and np.array_equal(second, fresh)


def test_bfloat16_weights_are_for_float32_inference():
    x, w, b, h0, c0 = layer_case("gru", 3, 2, 4, 5, seed=0)
    w16 = [to_bfloat16(w[0]), to_bfloat16(w[1])]
    with pytest.raises(ValueError, match="inference"):
        F.layer_forward("gru", x, h0, None, *w16, *b, training=True)
    with pytest.raises(TypeError, match="float32 eval"):
        F.layer_forward("gru", x.astype(np.float64), h0.astype(np.float64), None, *w16, *[v.astype(np.float64) for v in b],
                        training=False)


def test_quantize_leaves_the_original_and_is_inference_only(tmp_path):
    m = rnnfast.LSTM(16, 24, num_layers=2, seed=3)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    q = rnnfast.quantize(m, "bfloat16")
    assert m.training and all(np.array_equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(RuntimeError, match="inference-only"):
        q.backward(np.zeros((3, 2, 24), np.float32))
    with pytest.raises(RuntimeError, match="inference-only"):
        q.train()
    with pytest.raises(ValueError, match=r"\['int8', 'bfloat16'\]"):
        rnnfast.quantize(m, "float16")
    sd = q.state_dict()
    assert sd["weight_hh_l1"].dtype == np.uint16 and sd["bias_hh_l1"].dtype == np.float32
    x = np.random.default_rng(4).standard_normal((9, 2, 16)).astype(np.float32)
    y0 = q(x)[0]
    other = rnnfast.quantize(rnnfast.LSTM(16, 24, num_layers=2, seed=99), "bfloat16")
    other.load_state_dict(sd)
    assert np.array_equal(other(x)[0], y0)
    with pytest.raises(TypeError, match="uint16"):
        other.load_state_dict(m.state_dict())
    path = tmp_path / "q.npz"
    rnnfast.save(path, q)
    third = rnnfast.quantize(rnnfast.LSTM(16, 24, num_layers=2, seed=7), "bfloat16")
    rnnfast.load(path, third)
    assert np.array_equal(third(x)[0], y0)


def test_quantized_error_from_torch_weights_at_a_bench_shape():
    torch = pytest.importorskip("torch")
    # torch's default initialisation, N(0, 1) inputs, as the accuracy figures in RESULTS.md.
    torch.manual_seed(0)
    t = torch.nn.LSTM(256, 256, num_layers=2)
    m = rnnfast.LSTM(256, 256, num_layers=2).eval()
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((100, 4, 256)).astype(np.float32)
    yf, (hf, cf) = m(x)
    yq, (hq, cq) = rnnfast.quantize(m, "bfloat16")(x)
    assert max(relative_error(yq, yf), relative_error(hq, hf), relative_error(cq, cf)) <= 1e-2


# ---- rnnfast.torch.quantize ----------------------------------------------------------------

@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_torch_quantize_matches_the_numpy_quantized_module(cls):
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    torch.manual_seed(0)
    t = getattr(torch.nn, cls)(12, 20, num_layers=2, bidirectional=True, batch_first=True)
    q = rt.quantize(t, "bfloat16")
    assert isinstance(q, torch.nn.Module) and t.weight_ih_l0.dtype == torch.float32  # t left as it was
    numpy_q = rnnfast.quantize(rt.from_torch(t).to_numpy(), "bfloat16")
    x = torch.randn(5, 9, 12)
    lengths = [9, 4, 1, 9, 6]
    y, h = q(x, lengths=lengths)
    want_y, want_h = numpy_q(x.numpy(), lengths=lengths)
    assert np.array_equal(y.numpy(), want_y)
    with torch.no_grad():
        ref = t(x)[0]
    assert relative_error(q(x)[0].numpy(), ref.numpy()) <= 1e-2
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out, _ = q(packed)
    unpacked, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)
    assert np.array_equal(unpacked.numpy(), want_y)
    single, _ = q(x[0])  # one unbatched sequence
    assert np.array_equal(single.numpy(), q(x[:1])[0][0].numpy())


def test_torch_quantize_state_dict_and_refusals():
    torch = pytest.importorskip("torch")
    import rnnfast.torch as rt
    q = rt.quantize(rt.LSTM(8, 16), "bfloat16")
    sd = q.state_dict()
    assert sd["weight_hh_l0"].dtype == torch.bfloat16 and sd["bias_hh_l0"].dtype == torch.float32
    float_module = rt.LSTM(8, 16)
    q = rt.quantize(float_module, "bfloat16")
    sd = q.state_dict()
    bits = sd["weight_hh_l0"].view(torch.int16).numpy().view(np.uint16)  # bfloat16 of the float weights
    want = rnnfast.quantized.to_bfloat16(float_module.weight_hh_l0.detach().numpy())
    assert np.array_equal(bits, want)
    other = rt.quantize(rt.LSTM(8, 16), "bfloat16")
    other.load_state_dict(sd)
    x = torch.randn(6, 3, 8)
    assert torch.equal(other(x)[0], q(x)[0])
    with pytest.raises(TypeError, match="bfloat16"):
        other.load_state_dict(rt.LSTM(8, 16).state_dict())
    with pytest.raises(RuntimeError, match="inference-only"):
        q(x.requires_grad_())
    with pytest.raises(ValueError, match="bfloat16"):
        rt.quantize(rt.GRU(8, 16), "fp8")
    with pytest.raises(TypeError, match="must stay a CPU torch.bfloat16"):
        rt.quantize(rt.LSTM(8, 16), "bfloat16").float()  # would turn the weights into float32 copies
    import pickle
    again = pickle.loads(pickle.dumps(q))
    x = torch.randn(6, 3, 8)
    assert torch.equal(again(x)[0], q(x)[0])


def test_onnx_export_refuses_a_quantized_module_and_says_why():
    pytest.importorskip("onnx")
    import rnnfast.onnx
    q = rnnfast.quantize(rnnfast.GRU(4, 8), "bfloat16")
    with pytest.raises(TypeError, match="bfloat16 GRU.*float weights"):
        rnnfast.onnx.export(q, "unused.onnx", np.zeros((3, 2, 4), np.float32))
