// The bfloat16 and int8 products on AMX tiles (the avx512_amx build: Intel's Advanced Matrix
// Extensions, from Sapphire Rapids on), in place of the micro-kernel: C (16 rows x 16 columns,
// float32) += A (16 rows x 16 pairs) . B (16 pairs x 16 columns), one instruction; with int8, C
// in int32 and quads for pairs (int8.h: unsigned activations, and the panels' column sums).
//
// The operands are the micro-kernel's own: a panel vector's rows of pairs are a B tile at a stride
// of the panel's row (NV vectors), and the activation pairs' rows an A tile at their row stride.
// So that every tile is whole, the packed k runs in multiples of 16 pairs (zero past K; see
// kPairRowsAlign) and the activation buffers have 15 rows to spare past their last (garbage rows
// give garbage C rows, which are never stored). A tile sums each pair before it adds it to the
// accumulator (measured: 2^24 + 1 + 1 gives 2^24 + 2), so these products are not the bits of the
// other paths: they are the reference's sums to float32 rounding, and the same bits for any thread
// count (each C row is its A row's alone, k in a fixed order). Integer sums are exact: the int8
// products are the other paths' bits.
#pragma once
#ifdef RNNFAST_AMX
#include <immintrin.h>

#include <cassert>
#include <type_traits>

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Tiles 0-1: C for the panel's two vectors; 2: A; 3-4: B for the two vectors. Every tile 16 rows
// of 64 bytes. Loaded by each thread before its products (the configuration is a thread's).
inline void configure_tiles() {
    struct alignas(64) Config {
        std::uint8_t palette, start_row, reserved[14];
        std::uint16_t colsb[16];
        std::uint8_t rows[16];
    } cfg{};
    cfg.palette = 1;
    for (int t = 0; t < 5; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}

// A tile load from memory that this thread's code wrote just before (a staged base, C, the bias):
// GCC's _tile_loadd declares no memory read, so without the barrier those stores could be
// reordered after it or dropped as dead.
#define RNNFAST_TILE_LOAD(tile, base, stride) \
    do {                                     \
        asm volatile("" ::: "memory");       \
        _tile_loadd(tile, base, stride);     \
    } while (0)

// The float accumulator tiles start from the product's base (zero, the bias row, or C itself) and
// the pairs' sums are added onto it, so a C element is the same sum whichever way its tile goes:
// a whole tile (16 rows, 16 valid columns) is loaded from C or the bias row (at a row stride of 0)
// and stored to C directly; a tile at the edge goes through a staging buffer that holds only its
// valid rows and lanes. Staging every tile was slower (RESULTS.md, "AMX: the float tiles start
// from their base"). Tile indices are immediates, hence the two-way switches.
template <class T>
void start_float_tile(int vi, bool whole, Init init, const T* c, Index ldc, const T* bias, Index rows, int n,
                      T* stage) {
    assert(init != Init::bias || bias);
    if (init == Init::zero) {
        if (vi == 0) _tile_zero(0);
        else _tile_zero(1);
        return;
    }
    if (!whole) {
        const vec<T> b0 = init == Init::bias ? load_n(bias, n) : splat<T>(0);
        for (Index r = 0; r < 16; ++r) {
            vec<T> base = splat<T>(0);
            if (r < rows) base = init == Init::load ? load_n(c + r * ldc, n) : b0;
            store(stage + r * 16, base);
        }
        if (vi == 0) RNNFAST_TILE_LOAD(0, stage, 64);
        else RNNFAST_TILE_LOAD(1, stage, 64);
        return;
    }
    const T* src = init == Init::bias ? bias : c;
    const Index stride = init == Init::bias ? 0 : ldc * Index(sizeof(T));
    if (vi == 0) RNNFAST_TILE_LOAD(0, src, stride);
    else RNNFAST_TILE_LOAD(1, src, stride);
}

// The k loop of one 16-row block against one panel: C tiles 0 and 1 += A tile . B tiles.
template <bool kInt8, int NV, class VA, class V>
__attribute__((always_inline)) inline void tile_products(const VA* a, Index lda, const V* b, Index kc) {
    static_assert(NV == 2, "two C tiles, two B tiles");
    asm volatile("" ::: "memory");  // the operands' stores before the loads (RNNFAST_TILE_LOAD)
    for (Index j = 0; j < kc; j += 16) {
        _tile_loadd(2, a + j, lda * sizeof(VA));
        _tile_loadd(3, b + (j * NV) * 16, NV * 64);
        _tile_loadd(4, b + (j * NV + 1) * 16, NV * 64);
        if constexpr (kInt8) {
#ifdef RNNFAST_AMX_INT8
            _tile_dpbusd(0, 2, 3);
            _tile_dpbusd(1, 2, 4);
#endif
        } else {
            _tile_dpbf16ps(0, 2, 3);
            _tile_dpbf16ps(1, 2, 4);
        }
    }
}

// gemm_block's work on AMX: rows [m0, m1) x panels [p0, p1) of K-block kb, pairs (quads) k0.. of A.
// int8: integer sums from zero, each row dequantized (its scale, the panels' column sums) onto the
// base through a staging buffer; bfloat16: sums onto the base (start_float_tile), whole tiles
// stored straight to C.
template <class T, int NV, class Cols, class Panels, class VA>
void amx_block(Index m0, Index m1, Mat<VA> A, Index k0, const Panels& P, Index kb, Cols cols, Index p0, Index p1,
               T* C, Index ldc, Init init, const T* bias) {
    static_assert(NV == 2 && simd<T>::W == 16 && sizeof(T) == 4, "a panel is two tiles of 16 float columns");
    using V = typename Panels::Value;
    constexpr bool kInt8 = std::is_same_v<V, Int8Quad>;
    static_assert(sizeof(VA) == 4 && sizeof(V) == 4, "a tile row is 16 words of operands");
    const Index kc = P.kc(kb), nvec = cols.nvec();
    configure_tiles();
    alignas(64) std::conditional_t<kInt8, std::int32_t, float> out[16 * 16];
    for (Index p = p0; p < p1; ++p) {
        const V* b = P.block(kb, p);
        for (Index m = m0; m < m1; m += 16) {
            const VA* a = A.p + m * A.rs + k0;
            const Index rows = m1 - m < 16 ? m1 - m : 16;
            if constexpr (kInt8) {
                _tile_zero(0);
                _tile_zero(1);
                tile_products<kInt8, NV>(a, A.rs, b, kc);
                for (int vi = 0; vi < NV; ++vi) {
                    const Index v = p * NV + vi;
                    if (v >= nvec) break;
                    if (vi == 0) _tile_stored(0, out, 64);
                    else _tile_stored(1, out, 64);
                    const Index c0 = cols.col(v);
                    const int n = cols.valid(v);
                    const vec<T> b0 = init == Init::bias ? load_n(bias + c0, n) : splat<T>(0);
                    for (Index r = 0; r < rows; ++r) {
                        T* c = C + (m + r) * ldc + c0;
                        const vec<T> base = init == Init::load ? load_n(c, n) : b0;
                        const ivec sums = *reinterpret_cast<const ivec*>(out + r * 16);
                        const ivec correction = offset_sums(b + (kc * NV + vi) * 16);
                        store_n(c, dequantize<T>(sums, correction, A.scale[m + r], load_n(P.scale + c0, n), base), n);
                    }
                }
            } else {
                for (int vi = 0; vi < NV; ++vi) {
                    const Index v = p * NV + vi;
                    const Index c0 = v < nvec ? cols.col(v) : 0;
                    const int n = v < nvec ? cols.valid(v) : 0;
                    start_float_tile<T>(vi, rows == 16 && n == 16, v < nvec ? init : Init::zero, C + m * ldc + c0,
                                        ldc, bias ? bias + c0 : nullptr, rows, n, out);
                }
                tile_products<kInt8, NV>(a, A.rs, b, kc);
                for (int vi = 0; vi < NV; ++vi) {
                    const Index v = p * NV + vi;
                    if (v >= nvec) break;
                    const Index c0 = cols.col(v);
                    const int n = cols.valid(v);
                    T* c = C + m * ldc + c0;
                    const Index stride = ldc * Index(sizeof(T));
                    if (rows == 16 && n == 16) {
                        if (vi == 0) _tile_stored(0, c, stride);
                        else _tile_stored(1, c, stride);
                        continue;
                    }
                    if (vi == 0) _tile_stored(0, out, 64);
                    else _tile_stored(1, out, 64);
                    for (Index r = 0; r < rows; ++r) store_n(c + r * ldc, load(out + r * 16), n);
                }
            }
        }
    }
    _tile_release();  // back to the initial state: no tile data for the OS to save at a switch
}

#undef RNNFAST_TILE_LOAD

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
#endif
