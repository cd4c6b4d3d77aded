// The layer-normalised LSTM and GRU as gate-math structs (the equations: rnnfast/layer.h, CellKind).
// The driver hands them the raw products W_ih x_t and W_hh h_{t-1} (no bias folded in); a cell
// normalises each row, applies the gains and biases, and runs the plain cell's gates on the
// result. A row's norm reads every unit of the row, so these cells always get whole rows
// (u0 = 0, u1 = H: the schedule splits rows between threads, never units).
//
// A row's normalised values (NormRow) are saved for the backward: LN(W_ih x_t) and LN(W_hh h_{t-1})
// (G*H each), the LSTM's LN(c_t) (H), then the reciprocal standard deviations of the three.
#pragma once
#include <cassert>
#include <cmath>

#include "cells.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

constexpr double kLayerNormEps = 1e-5;

// Where a row's saved values sit in its NormRow.
template <class T> struct NormRow {
    static Index size(int G, Index H) { return 2 * G * H + (G == 4 ? H : 0) + 3; }
    T *ih, *hh, *cell, *rstd;  // rstd[0] ih's, [1] hh's, [2] the cell's
    NormRow(T* row, int G, Index H) : ih(row), hh(row + G * H), cell(row + 2 * G * H), rstd(cell + (G == 4 ? H : 0)) {}
};

// The sum of a vector's lanes, in lane order.
template <class T> inline T lane_sum(vec<T> v) {
    T sum = 0;
    for (int l = 0; l < simd<T>::W; ++l) sum += v[l];
    return sum;
}

// out = (v - mean(v)) / sqrt(var(v) + eps) over n values (biased variance); returns the reciprocal
// standard deviation. The sums run lane by lane in a fixed order, so a row's bits never depend on
// the threads.
template <class T> T normalise(const T* v, T* out, Index n) {
    vec<T> sum = splat<T>(0), squares = splat<T>(0);
    for_units<T>(0, n, [&](Index i, int m) { sum += load_n(v + i, m); });
    const vec<T> mean = splat<T>(lane_sum<T>(sum) / T(n));
    for_units<T>(0, n, [&](Index i, int m) {
        vec<T> d = load_n(v + i, m) - mean;
        for (int l = m; l < simd<T>::W; ++l) d[l] = 0;  // lanes past the row
        squares += d * d;
    });
    const T rstd = T(1) / std::sqrt(lane_sum<T>(squares) / T(n) + T(kLayerNormEps));
    for_units<T>(0, n, [&](Index i, int m) { store_n(out + i, (load_n(v + i, m) - mean) * splat<T>(rstd), m); });
    return rstd;
}

// Back through out = normalise(v) * gain: dv = rstd (d - mean(d) - x mean(d x)), d = dout * gain,
// x the normalised values.
template <class T> void normalise_backward(const T* dout, const T* gain, const T* x, T rstd, T* dv, Index n) {
    vec<T> sum = splat<T>(0), dot = splat<T>(0);
    for_units<T>(0, n, [&](Index i, int m) {  // lanes past the row load as zeros
        vec<T> d = load_n(dout + i, m) * load_n(gain + i, m);
        sum += d;
        dot += d * load_n(x + i, m);
    });
    const vec<T> mean = splat<T>(lane_sum<T>(sum) / T(n)), mean_dot = splat<T>(lane_sum<T>(dot) / T(n));
    for_units<T>(0, n, [&](Index i, int m) {
        vec<T> d = load_n(dout + i, m) * load_n(gain + i, m);
        store_n(dv + i, splat<T>(rstd) * (d - mean - load_n(x + i, m) * mean_dot), m);
    });
}

// The start of a forward step: each product's row normalised (the normalised values and their
// reciprocal standard deviations saved in x), then a_ih = LN(W_ih x) * gain + b_ih written over
// the projection's row and a_hh = LN(W_hh h) * gain + b_hh over the product's: the plain cell's
// inputs, with the biases in them.
template <class T> void normalise_products(const FwdRow<T>& r, const NormRow<T>& x, Index GH) {
    const LayerNorms<T>& ln = *r.ln;
    x.rstd[0] = normalise(r.p, x.ih, GH);
    x.rstd[1] = normalise(r.rec, x.hh, GH);
    for_units<T>(0, GH, [&](Index j, int n) {
        vec<T> ih = load_n(x.ih + j, n) * load_n(ln.ih_weight + j, n);
        vec<T> hh = load_n(x.hh + j, n) * load_n(ln.hh_weight + j, n);
        store_n(r.p + j, ln.b_ih ? ih + load_n(ln.b_ih + j, n) : ih, n);
        store_n(r.rec + j, ln.b_hh ? hh + load_n(ln.b_hh + j, n) : hh, n);
    });
}

// The end of a backward step: dL/d(W_ih x) and dL/d(W_hh h) from dL/da_ih and dL/da_hh.
template <class T> void normalise_products_backward(const BwdRow<T>& r, const NormRow<T>& x, Index GH) {
    normalise_backward(r.da_ih, r.ln->ih_weight, x.ih, x.rstd[0], r.dg_ih, GH);
    normalise_backward(r.da_hh, r.ln->hh_weight, x.hh, x.rstd[1], r.dg_hh, GH);
}

template <class T> struct LayerNormLstmCell {
    static constexpr int G = 4;
    static constexpr bool kRecurrentBias = false;  // the cell adds both biases itself
    static constexpr bool kLayerNorm = true;

    // LstmCell's gates and c on a_ih and a_hh; then h = o tanh(LN(c) g + b) replaces its o tanh(c).
    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1) {
        assert(u0 == 0 && u1 == H);
        const LayerNorms<T>& ln = *r.ln;
        const NormRow<T> x(r.norm, G, H);
        normalise_products(r, x, G * H);
        LstmCell<T>::forward(r, H, u0, u1);
        x.rstd[2] = normalise(r.c, x.cell, H);
        const T* o = (r.gates ? r.gates : r.rec) + 3 * H;  // where LstmCell put the activated gates
        for_units<T>(0, H, [&](Index u, int n) {
            vec<T> squashed = vtanh(load_n(x.cell + u, n) * load_n(ln.cell_weight + u, n) + load_n(ln.cell_bias + u, n));
            store_n(r.h + u, load_n(o + u, n) * squashed, n);
        });
    }

    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1) {
        assert(u0 == 0 && u1 == H);
        (void)u0, (void)u1;
        const LayerNorms<T>& ln = *r.ln;
        const NormRow<T> x(const_cast<T*>(r.norm), G, H);
        const vec<T> one = splat<T>(1);
        T* da = r.da_ih;  // a_ih + a_hh: one gradient for both (da_hh is the same array)
        // Through h = o tanh(LN(c) g + b): the o block, and d(LN(c) g + b) for the cell's norm.
        for_units<T>(0, H, [&](Index u, int n) {
            vec<T> o = load_n(r.gates + 3 * H + u, n), dh = load_n(r.dh + u, n);
            vec<T> s = vtanh(load_n(x.cell + u, n) * load_n(ln.cell_weight + u, n) + load_n(ln.cell_bias + u, n));
            store_n(r.dcell_norm + u, dh * o * (one - s * s), n);
            store_n(da + 3 * H + u, dh * s * o * (one - o), n);
        });
        T* dc_norm = r.dh_prev;  // free until the end (dh, which it may alias, was read above)
        normalise_backward(r.dcell_norm, ln.cell_weight, x.cell, x.rstd[2], dc_norm, H);
        for_units<T>(0, H, [&](Index u, int n) {
            vec<T> i = load_n(r.gates + u, n), f = load_n(r.gates + H + u, n), g = load_n(r.gates + 2 * H + u, n);
            vec<T> dc = load_n(r.dc + u, n) + load_n(dc_norm + u, n);
            store_n(da + u, dc * g * i * (one - i), n);
            store_n(da + H + u, dc * load_n(r.c_prev + u, n) * f * (one - f), n);
            store_n(da + 2 * H + u, dc * i * (one - g * g), n);
            store_n(r.dc + u, dc * f, n);
            store_n(r.dh_prev + u, splat<T>(0), n);  // no bypass
        });
        normalise_products_backward(r, x, G * H);  // dg_ih may overwrite the saved gates: all were read
    }
};

// The GRU's gate math is GruCell's, on a_ih and a_hh (b_hn inside a_hh, so r * a_hh_n).
template <class T> struct LayerNormGruCell {
    static constexpr int G = 3;
    static constexpr bool kRecurrentBias = false;
    static constexpr bool kLayerNorm = true;

    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1) {
        assert(u0 == 0 && u1 == H);
        normalise_products(r, NormRow<T>(r.norm, G, H), G * H);
        GruCell<T>::forward(r, H, u0, u1);
    }

    // GruCell's backward writes dL/da_ih and dL/da_hh (its dg_hn, the n block of dL/da_hh again,
    // lands on that block); then back through the norms.
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1) {
        assert(u0 == 0 && u1 == H);
        BwdRow<T> gates = r;
        gates.dg_ih = r.da_ih, gates.dg_hh = r.da_hh, gates.dg_hn = r.da_hh + 2 * H;
        GruCell<T>::backward(gates, H, u0, u1);
        normalise_products_backward(r, NormRow<T>(const_cast<T*>(r.norm), G, H), G * H);
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
