// The int8 products (int8.h) in place of the float micro-kernel: rows of activation quads against
// panels of weight quads, summed in int32 and dequantized as they are stored. An integer sum is
// exact in any order, so there are no tails to keep on a grid: rows go in blocks of MR, the last
// block as many as are left.
#pragma once
#include <type_traits>

#include "packing.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Rows per block: MR x NV int32 accumulators, with room left for the operands and (without VNNI)
// the sign and pair products: 16 of AVX-512's 32 registers; of AVX2's 16, 12 with AVX-VNNI, else 8.
constexpr int kInt8MR = RNNFAST_VBYTES == 64 ? 8 : kUnsignedActivations ? 6 : 4;

// C rows [0, MR) x one panel (`quads` rows of weight quads, then the trailer of column sums).
// WholeVectors: as gemm.h's micro.
template <class T, int MR, int NV, bool WholeVectors = false>
__attribute__((always_inline)) inline void int8_micro(Index quads, const ActivationQuad* a, Index rs,
                                                      const float* row_scale, const Int8Quad* b, T* c, Index ldc,
                                                      const Index* cols, const int* valid, const float* column_scale,
                                                      Init init, const T* bias) {
    constexpr int W = simd<T>::W;
    ivec acc[MR][NV];
    for (int m = 0; m < MR; ++m)
        for (int vi = 0; vi < NV; ++vi) acc[m][vi] = ivec{};
    for (Index k = 0; k < quads; ++k) {
        decltype(quad_weights(ivec{})) bv[NV];
        for (int vi = 0; vi < NV; ++vi) bv[vi] = quad_weights(load_quads(b + (k * NV + vi) * W));
        for (int m = 0; m < MR; ++m) {
            const auto am = quad_splat(a[m * rs + k]);
            for (int vi = 0; vi < NV; ++vi) acc[m][vi] = quad_madd(acc[m][vi], bv[vi], am);
        }
    }
    for (int vi = 0; vi < NV; ++vi) {
        const ivec correction = kUnsignedActivations ? offset_sums(b + (quads * NV + vi) * W) : ivec{};
        const vec<T> ws = load_lanes<WholeVectors>(column_scale + cols[vi], valid[vi]);
        const vec<T> b0 = init == Init::bias ? load_lanes<WholeVectors>(bias + cols[vi], valid[vi]) : splat<T>(0);
        for (int m = 0; m < MR; ++m) {
            T* cm = c + m * ldc + cols[vi];
            const vec<T> base = init == Init::load ? load_lanes<WholeVectors>(cm, valid[vi]) : b0;
            store_lanes<WholeVectors>(cm, dequantize<T>(acc[m][vi], correction, row_scale[m], ws, base), valid[vi]);
        }
    }
}

// gemm_block's work with int8 panels: rows [m0, m1) x panels [p0, p1) (one K block: all of k).
template <class T, int NV, class Cols, class Panels>
void int8_block(Index m0, Index m1, Mat<ActivationQuad> A, const Panels& P, Cols cols, Index p0, Index p1, T* C,
                Index ldc, Init init, const T* bias) {
    constexpr int MR = kInt8MR;
    const Index quads = P.kc(0);
    for (Index p = p0; p < p1; ++p) {
        const Int8Quad* b = P.block(0, p);
        const PanelColumns<NV> columns = panel_columns<NV>(cols, p);
        const Index* col = columns.col;
        const int* valid = columns.valid;
        const bool whole_panel = whole_vectors<T>(columns);
        Index m = m0;
        // Rows [m, m + R): the first digit's product onto the base, then the second's (if any) onto
        // it while the tile and the panel are in cache (a pass of its own would read and write all
        // of C again).
        auto rows = [&](auto rows_tag, auto whole_tag) __attribute__((always_inline)) {
            constexpr int R = decltype(rows_tag)::value;
            constexpr bool WholeVectors = decltype(whole_tag)::value;
            T* c = C + m * ldc;
            int8_micro<T, R, NV, WholeVectors>(quads, A.p + m * A.rs, A.rs, A.scale + m, b, c, ldc, col, valid, P.scale,
                                               init, bias);
            if (A.second)
                int8_micro<T, R, NV, WholeVectors>(quads, A.second + m * A.rs, A.rs, A.second_scale + m, b, c, ldc, col,
                                                   valid, P.scale, Init::load, nullptr);
        };
        for (; m + MR <= m1; m += MR) {
            if (whole_panel) rows(std::integral_constant<int, MR>{}, std::true_type{});
            else rows(std::integral_constant<int, MR>{}, std::false_type{});
        }
        switch (m1 - m) {
#define RNNFAST_ROWS(R)                                                              \
    case R:                                                                          \
        if constexpr (R < MR) rows(std::integral_constant<int, R>{}, std::false_type{}); \
        break;
            RNNFAST_ROWS(1) RNNFAST_ROWS(2) RNNFAST_ROWS(3) RNNFAST_ROWS(4) RNNFAST_ROWS(5) RNNFAST_ROWS(6)
            RNNFAST_ROWS(7)
#undef RNNFAST_ROWS
            default: break;
        }
    }
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
