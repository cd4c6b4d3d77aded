// One table of kernel entry points per instruction set; kernels_isa.cpp fills one per build flavour
// and dispatch.cpp picks the best the CPU runs.
#pragma once
#include "rnnfast/rnnfast.h"

namespace rnnfast {

struct KernelTable {
    const char* name;
    void (*forward_f32)(const LayerForward<float>&);
    void (*forward_f64)(const LayerForward<double>&);
    void (*backward_f32)(const LayerBackward<float>&);
    void (*backward_f64)(const LayerBackward<double>&);
    index (*saved_size)(const LayerShape&);
    index (*forward_scratch_f32)(const LayerShape&, bool training, int threads);
    index (*forward_scratch_f64)(const LayerShape&, bool training, int threads);
    index (*backward_scratch_f32)(const LayerShape&, int threads, bool consume_saved);
    index (*backward_scratch_f64)(const LayerShape&, int threads, bool consume_saved);
    index (*weight_cache_f32)(const LayerShape&, bool backward);
    index (*weight_cache_f64)(const LayerShape&, bool backward);
    void (*linear_forward_f32)(const LinearForward<float>&);
    void (*linear_forward_f64)(const LinearForward<double>&);
    void (*linear_backward_f32)(const LinearBackward<float>&);
    void (*linear_backward_f64)(const LinearBackward<double>&);
    index (*linear_scratch_f32)(index N, index F, index O, int threads);
    index (*linear_scratch_f64)(index N, index F, index O, int threads);
    void (*embedding_forward_f32)(const EmbeddingForward<float>&);
    void (*embedding_forward_f64)(const EmbeddingForward<double>&);
    void (*embedding_backward_f32)(const EmbeddingBackward<float>&);
    void (*embedding_backward_f64)(const EmbeddingBackward<double>&);
    double (*cross_entropy_f32)(const CrossEntropy<float>&);
    double (*cross_entropy_f64)(const CrossEntropy<double>&);
    void (*activation)(int f, const float* in, float* out, index n);
    double (*fma_peak_gflops)(int threads);
};

extern const KernelTable kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
#define RNNFAST_X86 1
extern const KernelTable kernels_avx2;
extern const KernelTable kernels_avx512;
#ifdef RNNFAST_AVX2_W16
extern const KernelTable kernels_avx2_w16;  // test-only: AVX-512's kernels on AVX2 (CMakeLists.txt)
#endif
#endif

}  // namespace rnnfast
