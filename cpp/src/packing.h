// The B operand of the products, packed: panels of NV vectors (NV * W columns) by KC rows, read
// contiguously by the micro-kernel. Column maps say which output column each packed vector holds:
// PlainCols for an ordinary product, GateCols for the recurrent weights, where vector v holds gate
// (v % G) of unit tile (v / G), so that one panel carries every gate of its hidden units. Packed
// holds a whole packing (kept, or made once per call); PanelsPackedAsUsed packs each panel just
// before it is read (a single step, which reads each panel once). With bfloat16 weights a panel's
// rows are pairs of k (bfloat16.h), packed from the weights' bit patterns (Bf16Rows); with int8
// weights quads of k (int8.h), and each panel ends in a trailer row of its columns' sums (Int8Rows).
#pragma once
#include <cassert>
#include <type_traits>

#include "bfloat16.h"
#include "int8.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> struct Mat {  // element (r, c) is p[r * rs + c * cs]
    using Operand = T;  // what its packed panels hold
    const T* p;
    Index rs, cs;
    const float* scale = nullptr;  // int8 activations (ActivationQuad rows): each row's scale
    // int8 inputs in two digits (ForwardOperands::input): the second digit's rows (the same strides)
    // and scales, whose product the int8 products add to the first's (int8_block).
    const T* second = nullptr;
    const float* second_scale = nullptr;
    T at(Index r, Index c) const { return p[r * rs + c * cs]; }
};

template <class T> struct PlainCols {
    Index N;
    static constexpr int W = simd<T>::W;
    Index nvec() const { return (N + W - 1) / W; }
    Index col(Index v) const { return v * W; }
    int valid(Index v) const { return v * W + W <= N ? W : int(N - v * W); }
};

template <class T> struct GateCols {
    Index G, H;
    static constexpr int W = simd<T>::W;
    Index tiles() const { return (H + W - 1) / W; }
    Index nvec() const { return G * tiles(); }
    Index col(Index v) const { return (v % G) * H + (v / G) * W; }
    int valid(Index v) const { return (v / G) * W + W <= H ? W : int(H - (v / G) * W); }
};

// Weights as stored, (rows, K) row-major, in bfloat16 bit patterns: B(k, c) is p[c * K + k].
struct Bf16Rows {
    using Operand = Bf16Pair;
    const std::uint16_t* p;
    Index K;
};

// Where panel p's vectors land in C: each one's first column and valid lanes (none past the map's end).
template <int NV> struct PanelColumns {
    Index col[NV];
    int valid[NV];
};
// Every vector of the panel a whole one (valid == W): the micro-kernels' instance with whole loads
// and stores of C (load_lanes).
template <class T, int NV> bool whole_vectors(const PanelColumns<NV>& pc) {
    for (int vi = 0; vi < NV; ++vi)
        if (pc.valid[vi] != simd<T>::W) return false;
    return true;
}
template <int NV, class Cols> PanelColumns<NV> panel_columns(const Cols& cols, Index p) {
    PanelColumns<NV> pc;
    for (int vi = 0; vi < NV; ++vi) {
        const Index v = p * NV + vi;
        pc.col[vi] = v < cols.nvec() ? cols.col(v) : 0;
        pc.valid[vi] = v < cols.nvec() ? cols.valid(v) : 0;
    }
    return pc;
}

// int8 weights as stored, (rows, K) row-major: B(k, c) is p[c * K + k].
struct Int8Rows {
    using Operand = Int8Quad;
    const std::int8_t* p;
    Index K;
};

// Rows a panel holds past its kc rows of k: int8 panels' column sums.
template <class V> constexpr Index kTrailerRows = std::is_same_v<V, Int8Quad> ? kInt8TrailerRows : 0;

// The activations (A) that multiply panels of V: T, or with bfloat16 pairs their ActivationPair.
template <class V> struct activation_of {
    using type = V;
};
template <> struct activation_of<Bf16Pair> {
    using type = ActivationPair;
};
template <> struct activation_of<Int8Quad> {
    using type = ActivationQuad;
};

// B packed for the micro-kernel: K-block kb of panel p is a (kc, NV*W) row-major block of V, the
// operand type (T, or Bf16Pair: then K, KC and kc count rows of pairs; or Int8Quad: rows of quads,
// all of K in one block, followed by the trailer row, and `scale` each output column's scale).
template <class T, int NV, class V = T> struct Packed {
    static constexpr int W = simd<T>::W;
    static constexpr bool kPacksOnUse = false;
    static constexpr Index kTrailer = kTrailerRows<V>;
    using Value = V;
    using Activation = typename activation_of<V>::type;
    V* data;
    Index K, KC, npanels;
    const float* scale = nullptr;
    static Index size(Index K, Index nvec) { return (K + kTrailer) * ((nvec + NV - 1) / NV) * NV * W; }
    Index kc(Index kb) const { return K - kb * KC < KC ? K - kb * KC : KC; }
    V* block(Index kb, Index p) const {
        return data + kb * KC * npanels * NV * W + p * (kc(kb) + kTrailer) * NV * W;
    }
};

// Packs panel p's rows [k0, k0 + kc) of B into dst (kc x NV vectors); vectors past the map's end
// and lanes past a vector's valid count are zero. Weights as stored (B.rs == 1: each column of B
// a contiguous row of the weights) go in W x W blocks transposed in registers; B.cs == 1 (rows of
// B contiguous) as whole vectors; any other strides one value at a time (what the transposed
// blocks gained: benchmarks/RESULTS.md, "The weight cache").
template <class T, int NV, class Cols>
void pack_panel(T* dst, Mat<T> B, Cols cols, Index p, Index k0, Index kc) {
    constexpr int W = simd<T>::W;
    const PanelColumns<NV> pc = panel_columns<NV>(cols, p);
    for (int vi = 0; vi < NV; ++vi) {
        const int n = pc.valid[vi];
        const Index c0 = pc.col[vi];
        T* d = dst + vi * W;  // row k of this vector: d + k * NV * W
        if (n > 0 && B.rs == 1) {
            const T* src = &B.p[c0 * B.cs + k0];  // lane l's values: src + l * B.cs + k
            Index k = 0;
            if (n == W)  // the common case with every bound known, so that the block stays in registers
                for (; k + 2 * W <= kc; k += 2 * W) {
                    vec<T> r[W], q[W];
                    for (int l = 0; l < W; ++l) {
                        r[l] = load(src + l * B.cs + k);
                        q[l] = load(src + l * B.cs + k + W);
                    }
                    transpose<T>(r);
                    transpose<T>(q);
                    for (int i = 0; i < W; ++i) store(d + (k + i) * NV * W, r[i]);
                    for (int i = 0; i < W; ++i) store(d + (k + W + i) * NV * W, q[i]);
                }
            for (; k < kc; k += W) {
                const int m = kc - k < W ? int(kc - k) : W;
                vec<T> r[W];
                for (int l = 0; l < W; ++l) r[l] = l < n ? load_n(src + l * B.cs + k, m) : splat<T>(0);
                transpose<T>(r);
                for (int i = 0; i < m; ++i) store(d + (k + i) * NV * W, r[i]);
            }
        } else if (n > 0 && B.cs == 1) {
            for (Index k = 0; k < kc; ++k) store(d + k * NV * W, load_n(&B.p[(k0 + k) * B.rs + c0], n));
        } else {
            for (Index k = 0; k < kc; ++k)
                for (int l = 0; l < W; ++l) d[k * NV * W + l] = l < n ? B.at(k0 + k, c0 + l) : T(0);
        }
    }
}

// The same for bfloat16 weights: rows [j0, j0 + jc) of pairs, pair j of column c being B(2j, c) and
// B(2j + 1, c) (zero past K).
template <class T, int NV, class Cols>
void pack_panel(Bf16Pair* dst, Bf16Rows B, Cols cols, Index p, Index j0, Index jc) {
    constexpr int W = simd<T>::W;
    const PanelColumns<NV> pc = panel_columns<NV>(cols, p);
    for (int vi = 0; vi < NV; ++vi) {
        const int n = pc.valid[vi];
        const Index c0 = pc.col[vi];
        for (Index j = 0; j < jc; ++j) {
            const Index k = 2 * (j0 + j);
            Bf16Pair* d = dst + (j * NV + vi) * W;
            for (int l = 0; l < W; ++l) {
                const std::uint16_t* w = l < n ? B.p + (c0 + l) * B.K : nullptr;
                d[l].bits = !w ? 0u
                                : (k < B.K ? std::uint32_t(w[k]) : 0u) | (k + 1 < B.K ? std::uint32_t(w[k + 1]) << 16 : 0u);
            }
        }
    }
}

// The same for int8 weights: rows [j0, j0 + jc) of quads, quad j of column c being B(4j .. 4j + 3, c)
// (zero past K), then the trailer: each column's sum of all K weights (j0 == 0, jc all of them).
template <class T, int NV, class Cols>
void pack_panel(Int8Quad* dst, Int8Rows B, Cols cols, Index p, Index j0, Index jc) {
    assert(j0 == 0 && 4 * jc >= B.K && "an int8 panel holds all of k (LayerGeometry::input_kc)");
    constexpr int W = simd<T>::W;
    const PanelColumns<NV> pc = panel_columns<NV>(cols, p);
    for (int vi = 0; vi < NV; ++vi) {
        const int n = pc.valid[vi];
        const Index c0 = pc.col[vi];
        for (int l = 0; l < W; ++l) {
            const std::int8_t* w = l < n ? B.p + (c0 + l) * B.K : nullptr;
            std::int32_t sum = 0;
            for (Index j = 0; j < jc; ++j) {
                std::uint32_t bits = 0;
                for (int i = 0; i < 4; ++i) {
                    const Index k = 4 * (j0 + j) + i;
                    const std::int32_t x = w && k < B.K ? w[k] : 0;
                    bits |= std::uint32_t(std::uint8_t(x)) << (8 * i);
                    sum += x;
                }
                dst[(j * NV + vi) * W + l].bits = bits;
            }
            dst[(jc * NV + vi) * W + l].bits = std::uint32_t(sum);
        }
    }
}

// Packs panels [p0, p1) of every K block.
template <class T, int NV, class V, class Source, class Cols>
void pack_panels(const Packed<T, NV, V>& P, Source B, Cols cols, Index p0, Index p1) {
    for (Index kb = 0; kb * P.KC < P.K; ++kb)
        for (Index p = p0; p < p1; ++p) pack_panel<T, NV>(P.block(kb, p), B, cols, p, kb * P.KC, P.kc(kb));
}

// B packed as it is used: block(kb, p) packs that one panel into `buf` (a thread's own, KC x NV *
// W values) and returns it. For products that use each panel once (a single step), where a kept
// packing costs more: checking it reads the weights and its copy of them, and then the packed
// panels are read too. Here the weights are read once and the panel comes back from L1 or L2.
// Same panels as Packed's, so the same results. Source: Mat<T>, or Bf16Rows.
template <class T, int NV, class Cols, class Source = Mat<T>> struct PanelsPackedAsUsed {
    static constexpr bool kPacksOnUse = true;
    using Value = typename Source::Operand;
    using Activation = typename activation_of<Value>::type;
    Source B;
    Cols cols;
    Value* buf;
    Index K, KC, npanels;
    const float* scale = nullptr;  // as Packed's
    Index kc(Index kb) const { return K - kb * KC < KC ? K - kb * KC : KC; }
    const Value* block(Index kb, Index p) const {
        pack_panel<T, NV>(buf, B, cols, p, kb * KC, kc(kb));
        return buf;
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
