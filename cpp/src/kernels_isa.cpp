// The kernels for one instruction set. CMake compiles this file once per ISA with its flags,
// RNNFAST_VBYTES (vector bytes), RNNFAST_ISA_NS (a namespace that keeps the copies apart) and
// RNNFAST_TABLE (the table's name).
#include "cross_entropy.h"
#include "dispatch.h"
#include "embedding.h"
#include "linear.h"
#include "sequence.h"

#include <vector>

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> void forward(const LayerForward<T>& a) {
    with_cell<T>(a.s.cell, [&](auto d) { d.forward(a); });
}
template <class T> void backward(const LayerBackward<T>& a) {
    with_cell<T>(a.s.cell, [&](auto d) { d.backward(a); });
}
template <class T> Index forward_scratch(const LayerShape& s, bool training, int threads) {
    Index n = 0;
    with_cell<T>(s.cell, [&](auto d) { n = d.forward_scratch(s, training, threads); });
    return n;
}
Index saved_size(const LayerShape& s) {  // the layout does not depend on T's size or the ISA
    Index n = 0;
    with_cell<float>(s.cell, [&](auto d) { n = d.saved_size(s); });
    return n;
}
template <class T> Index backward_scratch(const LayerShape& s, int threads, bool consume_saved) {
    Index n = 0;
    with_cell<T>(s.cell, [&](auto d) { n = d.backward_scratch(s, threads, consume_saved); });
    return n;
}

template <class T> Index weight_cache(const LayerShape& s, bool backward) {
    Index n = 0;
    with_cell<T>(s.cell, [&](auto d) { n = d.weight_cache(s, backward); });
    return n;
}

template <class T> void linear_fwd(const LinearForward<T>& a) { LinearDriver<T>::forward(a); }
template <class T> void linear_bwd(const LinearBackward<T>& a) { LinearDriver<T>::backward(a); }
template <class T> Index linear_scratch(Index N, Index F, Index O, int threads) {
    return LinearDriver<T>::scratch(N, F, O, threads);
}

template <class T> void embedding_fwd(const EmbeddingForward<T>& a) { EmbeddingDriver<T>::forward(a); }
template <class T> void embedding_bwd(const EmbeddingBackward<T>& a) { EmbeddingDriver<T>::backward(a); }
template <class T> double cross_entropy_rows(const CrossEntropy<T>& a) { return CrossEntropyDriver<T>::run(a); }

void activation(int f, const float* in, float* out, Index n) {
    constexpr int W = simd<float>::W;
    for (Index i = 0; i < n; i += W) {
        const int m = n - i < W ? int(n - i) : W;
        vec<float> v = load_n(in + i, m);
        store_n(out + i, f == 0 ? vsigmoid(v) : vtanh(v), m);
    }
}

// Rows of activations in int8 digits as the int8 products take them (quantize_row), for tests
// against the reference: q, q2 signed (the unsigned offset taken back out), scales per row. Under
// the forward's FTZ/DAZ mode, as the layers quantize.
void quantize_activations(const float* in, Index rows, Index n, std::int8_t* q, float* scale, std::int8_t* q2,
                          float* scale2) {
    const FlushDenormals ftz;
    const Index quads = (n + 3) / 4;
    std::vector<ActivationQuad> first(quads), second(quads);
    const int offset = kUnsignedActivations ? 128 : 0;
    for (Index r = 0; r < rows; ++r) {
        scale[r] = quantize_row(first.data(), in + r * n, n, quads, second.data(), scale2 + r);
        const auto* b1 = reinterpret_cast<const std::uint8_t*>(first.data());
        const auto* b2 = reinterpret_cast<const std::uint8_t*>(second.data());
        for (Index k = 0; k < n; ++k) {
            q[r * n + k] = std::int8_t(int(b1[k]) - offset);
            q2[r * n + k] = std::int8_t(int(b2[k]) - offset);
        }
    }
}

float peak_sink;

// An empty asm that claims to change v: the compiler must keep every FMA chain, in a register.
// (Not for vectors wider than the ISA's registers, as in the test-only avx2_w16 build.)
#if defined(__x86_64__) && (RNNFAST_VBYTES < 64 || defined(__AVX512F__))
#define RNNFAST_OPAQUE(v) __asm__ volatile("" : "+v"(v))
#elif defined(__aarch64__)
#define RNNFAST_OPAQUE(v) __asm__ volatile("" : "+w"(v))
#else
#define RNNFAST_OPAQUE(v) (void)0
#endif

// The machine's float32 FMA rate: each thread runs 12 independent vector FMA chains (enough to
// cover the FMA latency on every core we know) on registers only. Returns GFLOP/s, all threads.
double fma_peak_gflops(int threads) {
    using V = vec<float>;
    const Index iters = 10000000;
    double seconds = 0;
#pragma omp parallel num_threads(threads) reduction(max : seconds)
    {
        V a0 = splat(0.1f), a1 = splat(0.2f), a2 = splat(0.3f), a3 = splat(0.4f), a4 = splat(0.5f),
          a5 = splat(0.6f), a6 = splat(0.7f), a7 = splat(0.8f), a8 = splat(0.9f), a9 = splat(1.0f),
          a10 = splat(1.1f), a11 = splat(1.2f);
        const V m = splat(0.999999f), c = splat(1e-7f);
#ifdef _OPENMP
#pragma omp barrier
        const double t0 = omp_get_wtime();
#endif
        for (Index it = 0; it < iters; ++it) {
#define RNNFAST_STEP(v) v = v * m + c; RNNFAST_OPAQUE(v);
            RNNFAST_STEP(a0) RNNFAST_STEP(a1) RNNFAST_STEP(a2) RNNFAST_STEP(a3) RNNFAST_STEP(a4)
            RNNFAST_STEP(a5) RNNFAST_STEP(a6) RNNFAST_STEP(a7) RNNFAST_STEP(a8) RNNFAST_STEP(a9)
            RNNFAST_STEP(a10) RNNFAST_STEP(a11)
#undef RNNFAST_STEP
        }
#ifdef _OPENMP
        seconds = omp_get_wtime() - t0;
#endif
        const V sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
#pragma omp critical
        peak_sink += sum[0];
    }
    const double flops = 2.0 * 12 * simd<float>::W * double(iters) * threads;
    return seconds > 0 ? flops / seconds * 1e-9 : 0.0;
}
#undef RNNFAST_OPAQUE

// Each entry by name, its type following from T: a float kernel cannot land in a double slot.
template <class T> constexpr Kernels<T> kernels() {
    Kernels<T> k{};
    k.layer_forward = forward<T>;
    k.layer_backward = backward<T>;
    k.forward_scratch = forward_scratch<T>;
    k.backward_scratch = backward_scratch<T>;
    k.weight_cache = weight_cache<T>;
    k.linear_forward = linear_fwd<T>;
    k.linear_backward = linear_bwd<T>;
    k.linear_scratch = linear_scratch<T>;
    k.embedding_forward = embedding_fwd<T>;
    k.embedding_backward = embedding_bwd<T>;
    k.cross_entropy = cross_entropy_rows<T>;
    return k;
}

constexpr KernelTable table() {
    KernelTable t{};
    t.name = RNNFAST_ISA_NAME;
    t.f32 = kernels<float>();
    t.f64 = kernels<double>();
    t.saved_size = saved_size;
    t.activation = activation;
    t.quantize_activations = quantize_activations;
    t.fma_peak_gflops = fma_peak_gflops;
    return t;
}

// Every entry filled: one left out would be a null pointer, called only when its kernel runs.
template <class T> constexpr bool complete(const Kernels<T>& k) {
    return k.layer_forward && k.layer_backward && k.forward_scratch && k.backward_scratch && k.weight_cache &&
           k.linear_forward && k.linear_backward && k.linear_scratch && k.embedding_forward &&
           k.embedding_backward && k.cross_entropy;
}
constexpr bool complete(const KernelTable& t) {
    return t.name && complete(t.f32) && complete(t.f64) && t.saved_size && t.activation && t.quantize_activations &&
           t.fma_peak_gflops;
}
static_assert(complete(table()), "every entry of the kernel table is filled");

}  // namespace RNNFAST_ISA_NS

extern const KernelTable RNNFAST_TABLE;
constexpr KernelTable RNNFAST_TABLE = RNNFAST_ISA_NS::table();  // constant-initialised: ready before any dynamic init

}  // namespace rnnfast
