// How a layer's work is cut for one cell (G gates) and instruction set: W_hh's panels, the hidden
// units each group of panels covers, the plain products' panels and the input projection's chunks
// of steps. Shared by the workspace layout, the schedule and the two passes.
#pragma once
#include "rnnfast/layer.h"
#include "gemm_team.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, int G> struct LayerGeometry {
    static constexpr int kWidth = simd<T>::W;                        // values per vector
    static constexpr int kPanelVectors = kNV;                        // vectors per panel of the step's products
    static constexpr int kMicroRows = kMR;                           // rows per micro-kernel call (the step's)
    static constexpr Tail kStepTail = Tail::exact_unless_short;     // the recurrent products' (see Share)
    // The recurrent product hands out unit tiles (kWidth hidden units, all G gates) in groups whose
    // G * kTilesPerGroup vectors fill whole panels, so each thread owns every gate of its units.
    static constexpr int kTilesPerGroup = G % 2 == 0 ? 1 : 2;
    static constexpr int kPanelsPerGroup = G * kTilesPerGroup / kPanelVectors;
    static constexpr Index KC = kKC;                                 // k-block of the plain products

    static Index unit_groups(Index H) { return (GateCols<T>{G, H}.tiles() + kTilesPerGroup - 1) / kTilesPerGroup; }
    static constexpr int kPlainVectors = kPlainNV;                   // the plain products' tile (gemm.h)
    static constexpr int kPlainRows = kPlainMR;
    // Panels over N columns: of the step's products (W_hh^T's and W_hr's), or the plain products'.
    static Index step_panels(Index N) { return (PlainCols<T>{N}.nvec() + kPanelVectors - 1) / kPanelVectors; }
    static Index plain_panels(Index N) { return (PlainCols<T>{N}.nvec() + kPlainVectors - 1) / kPlainVectors; }
    // The input projection's panel width: the plain products' on full-precision weights, the
    // step's on reduced-precision ones (their kernels take 2 vectors per panel). ForwardPass picks
    // the same by its operand type (reduced precision runs on float only: sequence.h).
    static constexpr int input_vectors(Precision p) { return p == Precision::full ? kPlainVectors : kPanelVectors; }

    // The hidden units [lo, hi) that `items` cover, each item spanning `units_per_item` of them
    // (a group of W_hh's forward panels, or a panel of the backward's step product over H).
    static Range units_of(Range items, Index units_per_item, Index H) {
        const Index lo = items.lo * units_per_item, hi = items.hi * units_per_item;
        return {lo < H ? lo : H, hi < H ? hi : H};
    }
    static Range units_of_groups(Range groups, Index H) { return units_of(groups, kTilesPerGroup * kWidth, H); }
    static Range units_of_panels(Range panels, Index H) { return units_of(panels, kPanelVectors * kWidth, H); }

    // Steps per input projection: all of them in training (written straight into the saved
    // gates); in eval about 512 rows per product, the chunk's projections reused while in cache.
    static Index chunk_steps(const LayerShape& s, bool training) {
        if (training) return s.T;
        const Index c = (512 + s.B - 1) / s.B;
        return c < s.T ? c : s.T;
    }

    // A single step (single_step(): a cell's call, or a layer's at T = 1) uses each panel of the
    // weights once (gemm_block takes all of a thread's rows past a panel at once): it packs each
    // panel as it goes (PanelsPackedAsUsed) into a thread's own buffer, with no cache, and so reads
    // the weights once. Through a cache they would be read three times (compared with its copy,
    // then read packed), and a cache holds two more copies of them.
    static bool packs_as_used(const LayerShape& s) { return single_step(s); }
    // A thread's buffer for one panel packed as used: kc_max rows of k (at most K), and the trailer.
    static Index as_used_buffer(Index K, Index kc_max, const LayerShape& s, int nv = kPanelVectors) {
        return ((K < kc_max ? K : kc_max) + trailer_rows(s)) * nv * kWidth;
    }

    // Rows of a packed operand over K values of k: K; with bfloat16 weights K / 2 rows of pairs,
    // with int8 weights K / 4 rows of quads (rounded up, and to whole AMX tiles where the products
    // run on them); a pair or a quad takes a value's bytes (reduced precision runs on float only).
    static Index operand_rows(Index K, const LayerShape& s) {
        const Index per_row = s.precision == Precision::bfloat16 ? 2 : s.precision == Precision::int8 ? 4 : 1;
        if (per_row == 1) return K;
        return ((K + per_row - 1) / per_row + kPairRowsAlign - 1) / kPairRowsAlign * kPairRowsAlign;
    }
    // Rows of a packed panel past its k: int8's column sums (int8.h).
    static Index trailer_rows(const LayerShape& s) { return s.precision == Precision::int8 ? kInt8TrailerRows : 0; }
    // A packing's rows per panel, for its size.
    static Index packed_rows(Index K, const LayerShape& s) { return operand_rows(K, s) + trailer_rows(s); }
    // The input projection's k-block: KC; with int8 all of k, whose integer sum is dequantized once.
    static Index input_kc(const LayerShape& s) { return s.precision == Precision::int8 ? operand_rows(s.I, s) : KC; }
    // A weight copy of n values (bfloat16: 16-bit ones; int8: bytes), in values of T.
    static Index weight_copy_values(Index n, const LayerShape& s) {
        return s.precision == Precision::bfloat16 ? (n + 1) / 2 : s.precision == Precision::int8 ? (n + 3) / 4 : n;
    }

    static Index forward_packed_size(Index K, Index H) {
        return Packed<T, kPanelVectors>::size(K, unit_groups(H) * kPanelsPerGroup * kPanelVectors);
    }
    // W_hh transposed for the backward: k over its G*H rows, columns the S of h.
    static Index backward_packed_size(Index H, Index S) {
        return Packed<T, kPanelVectors>::size(G * H, PlainCols<T>{S}.nvec());
    }
    // W_hr (P, H) for the forward's projection (k over H, P columns) or the backward's (k over P,
    // H columns): packed on every call, for its K rows of k (the forward's packed_rows(H): pairs or
    // quads at reduced precision) and N columns.
    static Index hr_packed_size(Index K, Index N) { return Packed<T, kPanelVectors>::size(K, PlainCols<T>{N}.nvec()); }
    static Index input_packed_size(Index K, const LayerShape& s) {  // K: packed_rows, the trailer's included
        const Index nvec = PlainCols<T>{G * s.H}.nvec();
        return input_vectors(s.precision) == kPlainVectors ? Packed<T, kPlainVectors>::size(K, nvec)
                                                           : Packed<T, kPanelVectors>::size(K, nvec);
    }
};

template <class T> inline void copy_units(T* dst, const T* src, Index u0, Index u1) {
    for (Index u = u0; u < u1; ++u) dst[u] = src ? src[u] : T(0);
}
template <class T> inline void add_units(T* dst, const T* src, Index u0, Index u1) {
    for (Index u = u0; u < u1; ++u) dst[u] += src[u];
}
template <class T> inline void mask_units(T* dst, const T* src, const T* mask, Index u0, Index u1) {
    for (Index u = u0; u < u1; ++u) dst[u] = src[u] * mask[u];
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
