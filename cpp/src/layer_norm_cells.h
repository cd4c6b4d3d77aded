// The layer-normalised LSTM and GRU as gate-math structs (the equations: rnnfast/layer.h, CellKind).
// The driver hands them the raw products W_ih x_t and W_hh h_{t-1} (no bias folded in); a cell
// normalises each row, applies the gains and biases, and runs the plain cell's gates on the
// result.
//
// A row's norm reads every unit of the row, while in unit mode a thread owns only some units. So
// a step runs in phases, and in unit mode the team meets before each (the backward's first
// excepted: its input, dh, is per unit): in each phase every thread computes a norm's statistics
// over the whole row itself, with the same code in the same order (the same bits on any thread
// count), and writes only its own units. Forward: the LSTM's phase 0 normalises the recurrent product and runs
// the gates and c, phase 1 normalises c and makes h; the GRU has phase 0 alone. Backward: the
// LSTM's phase 0 goes back through h to LN(c), phase 1 through the cell's norm to the gates, phase
// 2 through the products' norms; the GRU's phase 0 is GruCell's backward, phase 1 the norms'.
// The input projection's norms need no phase: the driver normalises a chunk's rows whole before
// its steps (normalise_input).
//
// A row's normalised values (NormRow) are saved for the backward: LN(W_ih x_t) and LN(W_hh h_{t-1})
// (G*H each), the LSTM's LN(c_t) (H), then the reciprocal standard deviations of the three.
#pragma once
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

// A row's mean and reciprocal standard deviation 1 / sqrt(var + eps) over its n values (biased
// variance), and out = (v - mean) * rstd for a range of them. The sums run lane by lane in a fixed
// order, so a row's bits never depend on the threads.
template <class T> struct RowNorm {
    T mean, rstd;
    RowNorm(const T* v, Index n) {
        vec<T> sum = splat<T>(0), squares = splat<T>(0);
        for_units<T>(0, n, [&](Index i, int m) { sum += load_n(v + i, m); });
        mean = lane_sum<T>(sum) / T(n);
        const vec<T> mu = splat<T>(mean);
        for_units<T>(0, n, [&](Index i, int m) {
            vec<T> d = load_n(v + i, m) - mu;
            for (int l = m; l < simd<T>::W; ++l) d[l] = 0;  // lanes past the row
            squares += d * d;
        });
        rstd = T(1) / std::sqrt(lane_sum<T>(squares) / T(n) + T(kLayerNormEps));
    }
    void apply(const T* v, T* out, Index lo, Index hi) const {
        const vec<T> mu = splat<T>(mean), r = splat<T>(rstd);
        for_units<T>(lo, hi, [&](Index i, int n) { store_n(out + i, (load_n(v + i, n) - mu) * r, n); });
    }
};

// Back through out = LN(v) * gain: dv = rstd (d - mean(d) - x mean(d x)), d = dout * gain, x the
// normalised values; the two means over the whole row (in RowNorm's order), dv for a range.
template <class T> struct RowNormBackward {
    T mean, mean_dot;
    RowNormBackward(const T* dout, const T* gain, const T* x, Index n) {
        vec<T> sum = splat<T>(0), dot = splat<T>(0);
        for_units<T>(0, n, [&](Index i, int m) {  // lanes past the row load as zeros
            vec<T> d = load_n(dout + i, m) * load_n(gain + i, m);
            sum += d;
            dot += d * load_n(x + i, m);
        });
        mean = lane_sum<T>(sum) / T(n), mean_dot = lane_sum<T>(dot) / T(n);
    }
    void apply(const T* dout, const T* gain, const T* x, T rstd, T* dv, Index lo, Index hi) const {
        const vec<T> mu = splat<T>(mean), mu_dot = splat<T>(mean_dot), r = splat<T>(rstd);
        for_units<T>(lo, hi, [&](Index i, int n) {
            vec<T> d = load_n(dout + i, n) * load_n(gain + i, n);
            store_n(dv + i, r * (d - mu - load_n(x + i, n) * mu_dot), n);
        });
    }
};

// f(lo, hi) for my units [u0, u1) in each of a row's G gate blocks.
template <class F> inline void for_gate_blocks(int G, Index H, Index u0, Index u1, F&& f) {
    for (int g = 0; g < G; ++g) f(g * H + u0, g * H + u1);
}

// out = x * gain + bias (bias: nullptr for none) over [lo, hi); a loop for each case, so that where
// the instruction set has FMA x * gain + bias is one fused multiply-add on every path.
template <class T> void scale_and_shift(const T* x, const T* gain, const T* bias, T* out, Index lo, Index hi) {
    if (bias)
        for_units<T>(lo, hi, [&](Index j, int n) {
            store_n(out + j, load_n(x + j, n) * load_n(gain + j, n) + load_n(bias + j, n), n);
        });
    else
        for_units<T>(lo, hi, [&](Index j, int n) { store_n(out + j, load_n(x + j, n) * load_n(gain + j, n), n); });
}

// The input projection's row p (G*H), whole, before its step: a_ih = LN(W_ih x_t) * ln_ih_weight +
// b_ih written over it. Training saves LN(W_ih x_t) and its rstd in the row's NormRow (`saved`);
// eval (saved nullptr) normalises in place.
template <class T> void normalise_input(T* p, T* saved, const LayerNorms<T>& ln, int G, Index H) {
    const RowNorm<T> norm(p, G * H);
    T* x = saved ? NormRow<T>(saved, G, H).ih : p;
    norm.apply(p, x, 0, G * H);
    if (saved) NormRow<T>(saved, G, H).rstd[0] = norm.rstd;
    scale_and_shift(x, ln.ih_weight, ln.b_ih, p, 0, G * H);
}

// Whether the thread with units [u0, u1) writes a row's values that every thread computes (its
// NormRow's rstd): the one that has unit 0.
inline bool writes_row_values(Index u0, Index u1) { return u0 == 0 && u1 > u0; }

// a_hh = LN(W_hh h_{t-1}) * ln_hh_weight + b_hh for my units, into r.a_hh (the product's row is
// read whole by every thread: it stays as it is).
template <class T>
void normalise_recurrent(const FwdRow<T>& r, const NormRow<T>& x, int G, Index H, Index u0, Index u1) {
    const RowNorm<T> norm(r.rec, G * H);
    if (writes_row_values(u0, u1)) x.rstd[1] = norm.rstd;
    for_gate_blocks(G, H, u0, u1, [&](Index lo, Index hi) {
        norm.apply(r.rec, x.hh, lo, hi);
        scale_and_shift(x.hh, r.ln->hh_weight, r.ln->b_hh, r.a_hh, lo, hi);
    });
}

// The end of a backward step: dL/d(W_ih x) and dL/d(W_hh h) for my units from dL/da_ih and
// dL/da_hh, whose rows every thread reads whole.
template <class T>
void normalise_products_backward(const BwdRow<T>& r, const NormRow<T>& x, int G, Index H, Index u0, Index u1) {
    const LayerNorms<T>& ln = *r.ln;
    const RowNormBackward<T> ih(r.da_ih, ln.ih_weight, x.ih, G * H), hh(r.da_hh, ln.hh_weight, x.hh, G * H);
    for_gate_blocks(G, H, u0, u1, [&](Index lo, Index hi) {
        ih.apply(r.da_ih, ln.ih_weight, x.ih, x.rstd[0], r.dg_ih, lo, hi);
        hh.apply(r.da_hh, ln.hh_weight, x.hh, x.rstd[1], r.dg_hh, lo, hi);
    });
}

template <class T> struct LayerNormLstmCell {
    static constexpr int G = 4;
    static constexpr bool kRecurrentBias = false;  // the cell adds both biases itself
    static constexpr bool kLayerNorm = true;
    static constexpr int kForwardPhases = 2, kBackwardPhases = 3;

    // Phase 0: LstmCell's gates and c on a_ih and a_hh (its h is replaced in phase 1). Phase 1:
    // h = o tanh(LN(c) g + b).
    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1, int phase) {
        const LayerNorms<T>& ln = *r.ln;
        const NormRow<T> x(r.norm, G, H);
        if (phase == 0) {
            normalise_recurrent(r, x, G, H, u0, u1);
            FwdRow<T> gates = r;
            gates.rec = r.a_hh;
            LstmCell<T>::forward(gates, H, u0, u1);
            return;
        }
        const RowNorm<T> norm(r.c, H);
        if (writes_row_values(u0, u1)) x.rstd[2] = norm.rstd;
        norm.apply(r.c, x.cell, u0, u1);
        const T* o = (r.gates ? r.gates : r.a_hh) + 3 * H;  // where LstmCell put the activated gates
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> squashed = vtanh(load_n(x.cell + u, n) * load_n(ln.cell_weight + u, n) + load_n(ln.cell_bias + u, n));
            store_n(r.h + u, load_n(o + u, n) * squashed, n);
        });
    }

    // Phase 0: through h = o tanh(LN(c) g + b), the o block and d(LN(c) g + b). Phase 1: through
    // the cell's norm, then the gates and c. Phase 2: through the products' norms.
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1, int phase) {
        const LayerNorms<T>& ln = *r.ln;
        const NormRow<T> x(const_cast<T*>(r.norm), G, H);
        const vec<T> one = splat<T>(1);
        T* da = r.da_ih;  // a_ih + a_hh: one gradient for both (da_hh is the same array)
        if (phase == 0) {
            for_units<T>(u0, u1, [&](Index u, int n) {
                vec<T> o = load_n(r.gates + 3 * H + u, n), dh = load_n(r.dh + u, n);
                vec<T> s = vtanh(load_n(x.cell + u, n) * load_n(ln.cell_weight + u, n) + load_n(ln.cell_bias + u, n));
                store_n(r.dcell_norm + u, dh * o * (one - s * s), n);
                store_n(da + 3 * H + u, dh * s * o * (one - o), n);
            });
            return;
        }
        if (phase == 1) {
            T* dc_norm = r.dh_prev;  // free until the end (dh, which it may alias, was read in phase 0)
            RowNormBackward<T>(r.dcell_norm, ln.cell_weight, x.cell, H)
                .apply(r.dcell_norm, ln.cell_weight, x.cell, x.rstd[2], dc_norm, u0, u1);
            for_units<T>(u0, u1, [&](Index u, int n) {
                vec<T> i = load_n(r.gates + u, n), f = load_n(r.gates + H + u, n), g = load_n(r.gates + 2 * H + u, n);
                vec<T> dc = load_n(r.dc + u, n) + load_n(dc_norm + u, n);
                store_n(da + u, dc * g * i * (one - i), n);
                store_n(da + H + u, dc * load_n(r.c_prev + u, n) * f * (one - f), n);
                store_n(da + 2 * H + u, dc * i * (one - g * g), n);
                store_n(r.dc + u, dc * f, n);
                store_n(r.dh_prev + u, splat<T>(0), n);  // no bypass
            });
            return;
        }
        normalise_products_backward(r, x, G, H, u0, u1);  // dg_ih may overwrite the saved gates: all were read
    }
};

// The GRU's gate math is GruCell's, on a_ih and a_hh (b_hn inside a_hh, so r * a_hh_n).
template <class T> struct LayerNormGruCell {
    static constexpr int G = 3;
    static constexpr bool kRecurrentBias = false;
    static constexpr bool kLayerNorm = true;
    static constexpr int kForwardPhases = 1, kBackwardPhases = 2;

    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1, int /*phase*/) {
        normalise_recurrent(r, NormRow<T>(r.norm, G, H), G, H, u0, u1);
        FwdRow<T> gates = r;
        gates.rec = r.a_hh;
        GruCell<T>::forward(gates, H, u0, u1);
    }

    // Phase 0: GruCell's backward writes dL/da_ih and dL/da_hh (its dg_hn, the n block of dL/da_hh
    // again, lands on that block). Phase 1: back through the norms.
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1, int phase) {
        if (phase == 0) {
            BwdRow<T> gates = r;
            gates.dg_ih = r.da_ih, gates.dg_hh = r.da_hh, gates.dg_hn = r.da_hh + 2 * H;
            GruCell<T>::backward(gates, H, u0, u1);
            return;
        }
        normalise_products_backward(r, NormRow<T>(const_cast<T*>(r.norm), G, H), G, H, u0, u1);
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
