// One table of kernel entry points per instruction set; kernels_isa.cpp fills one per build flavour
// and dispatch.cpp picks the best the CPU runs.
#pragma once
#include <type_traits>

#include "rnnfast/layer.h"
#include "rnnfast/toolkit.h"

namespace rnnfast {

// The kernels of one scalar type T (float or double) in one instruction set.
template <class T> struct Kernels {
    void (*layer_forward)(const LayerForward<T>&);
    void (*layer_backward)(const LayerBackward<T>&);
    Index (*forward_scratch)(const LayerShape&, bool training, int threads);
    Index (*backward_scratch)(const LayerShape&, int threads, bool consume_saved);
    Index (*weight_cache)(const LayerShape&, bool backward);
    void (*linear_forward)(const LinearForward<T>&);
    void (*linear_backward)(const LinearBackward<T>&);
    Index (*linear_scratch)(Index N, Index F, Index O, int threads);
    void (*embedding_forward)(const EmbeddingForward<T>&);
    void (*embedding_backward)(const EmbeddingBackward<T>&);
    double (*cross_entropy)(const CrossEntropy<T>&);
};

struct KernelTable {
    const char* name;
    Kernels<float> f32;
    Kernels<double> f64;
    Index (*saved_size)(const LayerShape&);  // the same for both scalar types (counts values)
    void (*activation)(int f, const float* in, float* out, Index n);
    void (*quantize_activations)(const float* in, Index rows, Index n, std::int8_t* q, float* scale, std::int8_t* q2,
                                 float* scale2);
    double (*fma_peak_gflops)(int threads);

    template <class T> const Kernels<T>& of() const {
        if constexpr (std::is_same_v<T, float>) return f32;
        else return f64;
    }
};

extern const KernelTable kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
#define RNNFAST_X86 1
extern const KernelTable kernels_avx2;
extern const KernelTable kernels_avx2_vnni;
extern const KernelTable kernels_avx512;
extern const KernelTable kernels_avx512_vnni;
extern const KernelTable kernels_avx512_bf16;
extern const KernelTable kernels_avx512_amx;
#ifdef RNNFAST_AVX2_W16
extern const KernelTable kernels_avx2_w16;  // test-only: AVX-512's kernels on AVX2 (CMakeLists.txt)
#endif
#endif

}  // namespace rnnfast
