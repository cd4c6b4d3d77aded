// Where a layer's values live: the saved workspace a training forward leaves for backward, the
// scratch of one forward or backward call, and the weight cache kept between calls. Each layout is
// one carve_* function, used both to size a workspace (counting) and to cut it (pointers).
//
// Saved for backward (time-indexed): gates (T, B, G*H) post-activation; states (T+1, B, S), the
// step at time t reading states[t + reverse] and writing states[t + !reverse]; for LSTM cells
// (T+1, B, H) likewise; for GRU aux (T, B, H) = W_hn h_{t-1} + b_hn; with projections
// unprojected (T, B, H), each step's o * tanh(c) (dW_hr's operand); for the layer-normalised
// cells norms (T, B, NormRow size), each row's normalised values.
#pragma once
#include "layer_norm_cells.h"
#include "layer_schedule.h"
#include "weight_cache.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Hands out pieces of one workspace (or, with a null base, only counts them).
template <class T> struct Carver {
    T* base;
    Index used = 0;
    T* take(Index n) {
        T* p = base ? base + used : nullptr;
        used += (n + 15) / 16 * 16;  // keep every piece 64-byte aligned relative to the base
        return p;
    }
};

template <class T> struct Saved {
    T *gates, *states, *cells, *aux, *unprojected, *norms;
};

// The forward's scratch. recurrent_packing, input_packing: the whole packing of W_hh and W_ih
// (untouched, no pages faulted in, with a cache); for a single step each thread's buffers for
// them instead, as_used_values apart. projection, state, cell: eval only (training writes the
// projection into the saved gates and the states into the saved sequences). masked: with recurrent
// dropout, m * h of the last step and of this one (what the recurrent products read).
// With projections: hr_packing, W_hr packed (k over H) on every call, and (eval) unprojected
// (B, H), o * tanh(c) of the step in flight. The layer-normalised cells' norms (eval): each row's
// normalised values of the step in flight (B, NormRow size); and a_hh (B, G*H), the step's
// normalised recurrent product (the raw one stays in `recurrent`: every thread reads its rows).
// With bfloat16 weights (eval): state_pairs, h of the last step and of this one as bfloat16 pairs
// (B, S/2), input_pairs, the chunk's x_t (steps * B, I/2), and with projections unprojected_pairs,
// the step's o * tanh(c) (B, H/2): what the products read.
// With int8 weights (eval): state_quads, per thread (state_quad_values apart), the rows of h_{t-1}
// that the thread's recurrent product reads, quantized (B, S/4), and from state_scales_at on their
// scales (B); with projections the same buffer then holds the rows of o * tanh(c) that W_hr's
// product reads (B, H/4); input_quads and input_scales, the chunk's x_t quantized in two digits
// (int8.h), each (steps * B, I/4) with its scales.
template <class T> struct ForwardScratch {
    T *recurrent_packing, *input_packing, *bias_projection, *bias_recurrent, *recurrent, *projection;
    T *hr_packing, *unprojected, *unprojected_pairs, *norms, *a_hh;
    T *state[2], *cell[2], *masked[2], *state_pairs[2], *input_pairs, *state_quads, *input_quads[2];
    float* input_scales[2];
    Index as_used_values, state_quad_values, state_scales_at;
};

// The backward's. Gate gradients: dg_ih (T, B, G*H) = dL/d(W_ih x_t + b_ih); for GRU, whose
// dG_hh differs from dG_ih only in the n block, that block dg_hn (T, B, H) plus the whole of
// dG_hh for the step in flight (dg_step: two (B, G*H) buffers, alternating, since the recurrent
// product of step t may still read one while a faster thread writes step t-1's into the other).
// With consume_saved they overwrite the saved gates (and GRU's aux), each value right after it was
// read, so the backward's scratch is O(B * G * H) and the saved workspace serves one backward.
// With recurrent dropout: masked_states (T, B, S), m * h_{t-1} of each step (dW_hh's operand), and
// carried (B, S), a step's dG_hh W_hh before the mask. With projections: dprojected (T, B, P), the
// gradient of each step's W_hr r_t (dW_hr's operand), dunprojected (B, H), that of r_t for the step
// in flight, and hr_packing, W_hr packed (k over P). dh and zone_kept have S units, dc H.
// The layer-normalised cells: da_ih and da_hh (T, B, G*H), the gradients of a_ih and a_hh (the
// LSTM's one array), dcell_norm (T, B, H), the LSTM's of LN(c) g + b (the gains' and biases'
// gradients are their sums after the loop), and dg_hh (T, B, G*H), each step's dL/d(W_hh h_{t-1})
// (no longer dg_ih's or GRU's dg_step and dg_hn).
template <class T> struct BackwardScratch {
    T *dg_ih, *dg_hn, *dg_step, *dh, *dc, *zone_kept, *recurrent_packing, *plain_packing, *a_packing, *db_ih, *db_hh;
    T *masked_states, *carried, *dprojected, *dunprojected, *hr_packing;
    T *da_ih, *da_hh, *dcell_norm, *dg_hh;
};

template <class T, int G> struct WorkspaceLayout {
    using Geo = LayerGeometry<T, G>;
    using Schedule = LayerSchedule<T, G>;
    static constexpr int NV = Geo::kPanelVectors;

    template <class C> static Saved<T> carve_saved(const LayerShape& s, C& cv) {
        const Index TB = s.T * s.B, BH = s.B * s.H;
        Saved<T> sv;
        sv.gates = cv.take(TB * G * s.H);
        sv.states = cv.take((s.T + 1) * s.B * state_size(s));
        sv.cells = G == 4 ? cv.take((s.T + 1) * BH) : nullptr;
        sv.aux = G == 3 ? cv.take(TB * s.H) : nullptr;
        sv.unprojected = s.P ? cv.take(TB * s.H) : nullptr;
        sv.norms = layer_normalised(s.cell) ? cv.take(TB * NormRow<T>::size(G, s.H)) : nullptr;
        return sv;
    }

    template <class C>
    static ForwardScratch<T> carve_forward(const LayerShape& s, bool training, int threads, C& cv) {
        const Index GH = G * s.H, BH = s.B * s.H, S = state_size(s), BS = s.B * S;
        const Index Kh = Geo::operand_rows(S, s), Ki = Geo::operand_rows(s.I, s);
        const Index Kr = s.P ? Geo::operand_rows(s.H, s) : 0;  // W_hr's product reads rows of H
        ForwardScratch<T> w{};
        if (Geo::packs_as_used(s)) {
            const Index recurrent_values = Geo::as_used_buffer(Kh, Kh, s);
            const Index input_values = Geo::as_used_buffer(Ki, Geo::input_kc(s), s, Geo::input_vectors(s.precision));
            w.as_used_values = recurrent_values + input_values;
            w.recurrent_packing = cv.take(Schedule::forward_threads(s, threads) * w.as_used_values);
            w.input_packing = w.recurrent_packing + recurrent_values;
        } else {
            w.recurrent_packing = cv.take(Geo::forward_packed_size(Geo::packed_rows(S, s), s.H));
            w.input_packing = cv.take(Geo::input_packed_size(Geo::packed_rows(s.I, s), s));
        }
        w.bias_projection = cv.take(GH);
        w.bias_recurrent = cv.take(GH);
        w.recurrent = cv.take(s.B * GH);
        w.a_hh = layer_normalised(s.cell) ? cv.take(s.B * GH) : nullptr;
        if (!training) {
            w.projection = cv.take(Geo::chunk_steps(s, false) * s.B * GH);
            for (int i = 0; i < 2; ++i) w.state[i] = cv.take(BS);
            for (int i = 0; i < 2; ++i) w.cell[i] = G == 4 ? cv.take(BH) : nullptr;
            w.unprojected = s.P ? cv.take(BH) : nullptr;
            w.norms = layer_normalised(s.cell) ? cv.take(s.B * NormRow<T>::size(G, s.H)) : nullptr;
        }
        w.hr_packing = s.P ? cv.take(Geo::hr_packed_size(Geo::packed_rows(s.H, s), s.P)) : nullptr;
        for (int i = 0; i < 2; ++i) w.masked[i] = s.recurrent_dropout ? cv.take(BS) : nullptr;  // last (see zone_kept)
        if (s.precision == Precision::bfloat16) {
            const Index pair = (sizeof(ActivationPair) + sizeof(T) - 1) / sizeof(T);  // values of T a pair takes
            const Index spare = kActivationRowsSpare;
            for (int i = 0; i < 2; ++i) w.state_pairs[i] = cv.take((s.B + spare) * Kh * pair);
            w.input_pairs = cv.take((Geo::chunk_steps(s, training) * s.B + spare) * Ki * pair);
            w.unprojected_pairs = s.P ? cv.take((s.B + spare) * Kr * pair) : nullptr;
        }
        if (s.precision == Precision::int8) {  // a quad takes one value; scales are floats (int8 runs on float)
            const Index rows = Geo::chunk_steps(s, training) * s.B;
            w.state_scales_at = ((s.B + kActivationRowsSpare) * (Kr > Kh ? Kr : Kh) + 15) / 16 * 16;
            w.state_quad_values = w.state_scales_at + (s.B + 15) / 16 * 16;
            w.state_quads = cv.take(Schedule::forward_threads(s, threads) * w.state_quad_values);
            for (int d = 0; d < 2; ++d) {
                w.input_quads[d] = cv.take((rows + kActivationRowsSpare) * Ki);
                w.input_scales[d] = reinterpret_cast<float*>(cv.take(rows));
            }
        }
        return w;
    }

    template <class C>
    static BackwardScratch<T> carve_backward(const LayerShape& s, int threads, bool consume, C& cv) {
        const Index GH = G * s.H, TB = s.T * s.B, S = state_size(s);
        const bool normalised = layer_normalised(s.cell);
        BackwardScratch<T> w{};
        w.dg_ih = consume ? nullptr : cv.take(TB * GH);
        w.dg_hn = G == 3 && !consume && !normalised ? cv.take(TB * s.H) : nullptr;
        w.dg_step = G == 3 && !normalised ? cv.take(2 * s.B * GH) : nullptr;
        w.dh = cv.take(s.B * S);
        w.dc = cv.take(s.B * s.H);
        w.recurrent_packing = cv.take(Geo::packs_as_used(s) ? threads * Geo::as_used_buffer(GH, GH, s)
                                                            : Geo::backward_packed_size(s.H, S));
        const Index panels_i = Geo::plain_panels(s.I), panels_h = Geo::plain_panels(s.H);
        const Index panels = panels_i > panels_h ? panels_i : panels_h;
        w.plain_packing = cv.take(Geo::KC * panels * Geo::kPlainVectors * Geo::kWidth);
        w.a_packing = cv.take(threads * gemm_mc<T, Geo::kPlainRows>() * Geo::KC);
        w.db_ih = cv.take(GH);
        w.db_hh = G == 3 ? cv.take(GH) : w.db_ih;
        w.zone_kept = cv.take(s.B * S);  // zoneout's share of dh that goes through the cell; last, so that
                                         // the buffers before it sit where they did without zoneout
        w.masked_states = s.recurrent_dropout ? cv.take(TB * S) : nullptr;
        w.carried = s.recurrent_dropout ? cv.take(s.B * S) : nullptr;
        w.dprojected = s.P ? cv.take(TB * s.P) : nullptr;
        w.dunprojected = s.P ? cv.take(s.B * s.H) : nullptr;
        w.hr_packing = s.P ? cv.take(Geo::hr_packed_size(s.P, s.H)) : nullptr;
        if (normalised) {
            w.da_ih = cv.take(TB * GH);
            w.da_hh = G == 3 ? cv.take(TB * GH) : w.da_ih;
            w.dcell_norm = G == 4 ? cv.take(TB * s.H) : nullptr;
            w.dg_hh = cv.take(TB * GH);
        }
        return w;
    }

    static Index saved_size(const LayerShape& s) {
        Carver<T> cv{nullptr};
        carve_saved(s, cv);
        return cv.used;
    }
    static Index forward_scratch(const LayerShape& s, bool training, int threads) {
        Carver<T> cv{nullptr};
        carve_forward(s, training, threads, cv);
        return cv.used + kAlignSlack;
    }
    static Index backward_scratch(const LayerShape& s, int threads, bool consume) {
        Carver<T> cv{nullptr};
        carve_backward(s, Schedule::backward_threads(s, threads), consume, cv);
        return cv.used + kAlignSlack;
    }

    // The forward's cache: W_hh's, then W_ih's (at recurrent_cache_size()); the backward's: W_hh's
    // transposed packing. A single step leaves it alone.
    static Index recurrent_cache_size(const LayerShape& s) {
        const Index S = state_size(s);
        return WeightCache<T>::size(Geo::weight_copy_values(G * s.H * S, s),
                                    Geo::forward_packed_size(Geo::packed_rows(S, s), s.H));
    }
    static Index weight_cache(const LayerShape& s, bool backward) {
        if (backward)
            return WeightCache<T>::size(G * s.H * state_size(s), Geo::backward_packed_size(s.H, state_size(s))) +
                   kAlignSlack;
        return recurrent_cache_size(s) +
               WeightCache<T>::size(Geo::weight_copy_values(G * s.H * s.I, s),
                                    Geo::input_packed_size(Geo::packed_rows(s.I, s), s)) +
               kAlignSlack;
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
