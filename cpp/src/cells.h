// The recurrent cells as small gate-math structs: one time step, one batch row, a range of hidden
// units [u0, u1). The sequence driver (sequence.h) owns the time loop, the matrix products and the
// threads; a cell only says how G pre-activations become a new state and how gradients flow back.
//
// Rows are gate-major, as in PyTorch: a row of G*H values holds gate g of unit u at g*H + u.
// Gate orders: LSTM (i, f, g, o), GRU (r, z, n). Derivatives are written from saved outputs
// (sigma' = s(1 - s), tanh' = 1 - t^2), so backward recomputes no gate. A backward step reads all
// it needs of a vector of units before it writes any output for them, so gradients may overwrite
// the saved values they come from.
#pragma once
#include "activations.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// The layer-normalised cells' parameters (layer_norm_cells.h): the gains of the two products' norms
// (G*H), the LSTM's gain and bias of LN(c) (H), and the products' biases, which these cells add
// after the gains (nullptr: none).
template <class T> struct LayerNorms {
    const T *ih_weight, *hh_weight, *cell_weight, *cell_bias, *b_ih, *b_hh;
};

template <class T> struct FwdRow {
    T* p;             // (G*H) input projection, biases folded in (the layer-normalised cells': a_ih,
                      // normalised by the driver before the step)
    T* rec;           // (G*H) recurrent product W_hh h_{t-1} (GRU: + b_hn in the n block); scratch,
                      // which the plain cells may overwrite (the layer-normalised ones only read it)
    const T* h_prev;  // (H)
    const T* c_prev;  // (H) LSTM only
    T* h;             // (H) new hidden state
    T* c;             // (H) new cell state, LSTM only
    T* gates;         // (G*H) saved post-activation gates, or nullptr in eval; may alias p
    T* aux;           // (H) GRU: saved W_hn h_{t-1} + b_hn; nullptr in eval
    // The layer-normalised cells only: their parameters, where the row's normalised values go
    // (saved in training, the row's scratch in eval; layer_norm_cells.h's NormRow), and where a_hh
    // goes (G*H; rec, which every thread of a team reads whole, stays the raw product).
    const LayerNorms<T>* ln = nullptr;
    T* norm = nullptr;
    T* a_hh = nullptr;
};

template <class T> struct BwdRow {
    const T* gates;   // (G*H) saved post-activation gates (RNN: h_t itself); dg_ih may alias it
    const T* aux;     // (H) GRU: saved W_hn h_{t-1} + b_hn
    const T* h_prev;  // (H)
    const T* c_prev;  // (H) LSTM
    const T* c;       // (H) LSTM: c_t
    const T* dh;      // (H) dL/dh_t, all paths summed
    T* dc;            // (H) LSTM: in dL/dc_t (from later steps), out dL/dc_{t-1}
    T* dg_ih;         // (G*H) out: dL/d(W_ih x_t + b_ih)
    T* dg_hh;         // (G*H) out: dL/d(W_hh h_{t-1} + b_hh); equals dg_ih except for GRU
    T* dg_hn;         // (H) GRU: out: dg_hh's n block again (kept for dW_hh); may alias aux
    T* dh_prev;       // (H) out: the part of dL/dh_{t-1} that bypasses W_hh
    // The layer-normalised cells only: their parameters and the forward's normalised values; out:
    // dL/da_ih and dL/da_hh (G*H each, the gains' and biases' gradients come from them; the same
    // array for the LSTM) and the LSTM's dL/d(LN(c) * ln_cell_weight + ln_cell_bias) (H).
    const LayerNorms<T>* ln = nullptr;
    const T* norm = nullptr;
    T* da_ih = nullptr;
    T* da_hh = nullptr;
    T* dcell_norm = nullptr;
};

// Inline everything a cell's step calls (the unit loop's lambda, the activations), so constants
// stay in registers across the loop.
#define RNNFAST_FLATTEN __attribute__((flatten))

// Calls f(u, n) for each vector of units in [u0, u1); n < W only for the last one. The full
// vectors get n as a constant, so their loop body has no partial-load branches.
template <class T, class F> inline void for_units(Index u0, Index u1, F&& f) {
    constexpr int W = simd<T>::W;
    Index u = u0;
    for (; u + W <= u1; u += W) f(u, W);
    if (u < u1) f(u, int(u1 - u));
}

template <class T, bool Relu> struct RnnCell {
    static constexpr int G = 1;
    static constexpr bool kRecurrentBias = false;  // b_hh folds into the projection
    static constexpr bool kLayerNorm = false;

    static vec<T> act(vec<T> x) { return Relu ? vrelu(x) : vtanh(x); }

    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1) {
        (void)H;
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> h = act(load_n(r.p + u, n) + load_n(r.rec + u, n));
            store_n(r.h + u, h, n);
            if (r.gates) store_n(r.gates + u, h, n);
        });
    }
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1) {
        (void)H;
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> h = load_n(r.gates + u, n), dh = load_n(r.dh + u, n);
            vec<T> d = Relu ? (h > splat<T>(0) ? dh : splat<T>(0)) : dh * (splat<T>(1) - h * h);
            store_n(r.dg_ih + u, d, n);
            store_n(r.dh_prev + u, splat<T>(0), n);
        });
    }
};

template <class T> struct LstmCell {
    static constexpr int G = 4;
    static constexpr bool kRecurrentBias = false;
    static constexpr bool kLayerNorm = false;

    // Two passes: the gates, then the cell. In one pass a vector of units is a chain of two
    // activations (a gate, then tanh of the new cell), too long for the core to overlap with the
    // next vector's; each pass alone has chains of one.
    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1) {
        T* a = r.gates ? r.gates : r.rec;  // the activated gates: saved, or over the product
        for_units<T>(u0, u1, [&](Index u, int n) {
            store_n(a + u, vsigmoid(load_n(r.p + u, n) + load_n(r.rec + u, n)), n);
            store_n(a + H + u, vsigmoid(load_n(r.p + H + u, n) + load_n(r.rec + H + u, n)), n);
            store_n(a + 2 * H + u, vtanh(load_n(r.p + 2 * H + u, n) + load_n(r.rec + 2 * H + u, n)), n);
            store_n(a + 3 * H + u, vsigmoid(load_n(r.p + 3 * H + u, n) + load_n(r.rec + 3 * H + u, n)), n);
        });
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> c = load_n(a + H + u, n) * load_n(r.c_prev + u, n) + load_n(a + u, n) * load_n(a + 2 * H + u, n);
            store_n(r.c + u, c, n);
            store_n(r.h + u, load_n(a + 3 * H + u, n) * vtanh(c), n);
        });
    }
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1) {
        const vec<T> one = splat<T>(1);
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> i = load_n(r.gates + u, n), f = load_n(r.gates + H + u, n);
            vec<T> g = load_n(r.gates + 2 * H + u, n), o = load_n(r.gates + 3 * H + u, n);
            vec<T> tc = vtanh(load_n(r.c + u, n));
            vec<T> dh = load_n(r.dh + u, n);
            vec<T> dc = load_n(r.dc + u, n) + dh * o * (one - tc * tc);
            store_n(r.dg_ih + u, dc * g * i * (one - i), n);
            store_n(r.dg_ih + H + u, dc * load_n(r.c_prev + u, n) * f * (one - f), n);
            store_n(r.dg_ih + 2 * H + u, dc * i * (one - g * g), n);
            store_n(r.dg_ih + 3 * H + u, dh * tc * o * (one - o), n);
            store_n(r.dc + u, dc * f, n);
            store_n(r.dh_prev + u, splat<T>(0), n);
        });
    }
};

template <class T> struct GruCell {
    static constexpr int G = 3;
    static constexpr bool kRecurrentBias = true;  // b_hn stays inside r * (W_hn h + b_hn)
    static constexpr bool kLayerNorm = false;

    // Two passes, as in LstmCell: r and z, then n (which needs r) and the new state.
    RNNFAST_FLATTEN static void forward(const FwdRow<T>& r, Index H, Index u0, Index u1) {
        T* a = r.gates ? r.gates : r.rec;  // r and z activated: saved, or over the product
        for_units<T>(u0, u1, [&](Index u, int n) {
            store_n(a + u, vsigmoid(load_n(r.p + u, n) + load_n(r.rec + u, n)), n);
            store_n(a + H + u, vsigmoid(load_n(r.p + H + u, n) + load_n(r.rec + H + u, n)), n);
        });
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> hn = load_n(r.rec + 2 * H + u, n);
            vec<T> nn = vtanh(load_n(r.p + 2 * H + u, n) + load_n(a + u, n) * hn);
            vec<T> hp = load_n(r.h_prev + u, n);
            store_n(r.h + u, nn + load_n(a + H + u, n) * (hp - nn), n);
            if (r.gates) {
                store_n(r.gates + 2 * H + u, nn, n);
                store_n(r.aux + u, hn, n);
            }
        });
    }
    RNNFAST_FLATTEN static void backward(const BwdRow<T>& r, Index H, Index u0, Index u1) {
        const vec<T> one = splat<T>(1);
        for_units<T>(u0, u1, [&](Index u, int n) {
            vec<T> rg = load_n(r.gates + u, n), z = load_n(r.gates + H + u, n);
            vec<T> nn = load_n(r.gates + 2 * H + u, n), hn = load_n(r.aux + u, n);
            vec<T> dh = load_n(r.dh + u, n), hp = load_n(r.h_prev + u, n);
            vec<T> dpn = dh * (one - z) * (one - nn * nn);  // d/d(pre-activation of n)
            vec<T> dr = dpn * hn * rg * (one - rg);
            vec<T> dz = dh * (hp - nn) * z * (one - z);
            store_n(r.dg_ih + u, dr, n);
            store_n(r.dg_ih + H + u, dz, n);
            store_n(r.dg_ih + 2 * H + u, dpn, n);
            store_n(r.dg_hh + u, dr, n);
            store_n(r.dg_hh + H + u, dz, n);
            store_n(r.dg_hh + 2 * H + u, dpn * rg, n);
            store_n(r.dg_hn + u, dpn * rg, n);
            store_n(r.dh_prev + u, dh * z, n);
        });
    }
};

// A step's phases for any cell, and a phase of a row: the plain cells have one; the
// layer-normalised cells (layer_norm_cells.h) split a step where a norm needs a whole row.
template <class Cell> constexpr int forward_phases() {
    if constexpr (Cell::kLayerNorm) return Cell::kForwardPhases;
    else return 1;
}
template <class Cell> constexpr int backward_phases() {
    if constexpr (Cell::kLayerNorm) return Cell::kBackwardPhases;
    else return 1;
}
template <class Cell, class T> void forward_phase(const FwdRow<T>& r, Index H, Index u0, Index u1, int phase) {
    if constexpr (Cell::kLayerNorm) Cell::forward(r, H, u0, u1, phase);
    else Cell::forward(r, H, u0, u1);
}
template <class Cell, class T> void backward_phase(const BwdRow<T>& r, Index H, Index u0, Index u1, int phase) {
    if constexpr (Cell::kLayerNorm) Cell::backward(r, H, u0, u1, phase);
    else Cell::backward(r, H, u0, u1);
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
