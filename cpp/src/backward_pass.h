// A layer's backward pass (BPTT) over the whole sequence, for one cell, in named phases.
//
// The time loop runs the forward's in reverse, carrying only dh (and dc): each step the cell turns
// dh into gate gradients and the recurrent product dG_hh W_hh carries dh to the step before. dx,
// dW_ih and dW_hh are whole-sequence products after the loop; the bias gradients sum each step's
// gate gradients over the batch, in the order of the time loop (inside it in unit mode, while they
// are in cache; after it in batch mode), so both modes give the same bits. With projections
// (h = W_hr r) a step first takes dh on h's units and keeps the gradient of W_hr r; after a barrier
// in unit mode (the product reads all of h's units) the cell gets dr = (that) W_hr on its units.
#pragma once
#include <cassert>

#include "layer_norm_cells.h"
#include "workspace_layout.h"
#include "zoneout.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, class Cell> class BackwardPass {
    static constexpr int G = Cell::G;
    static constexpr bool kNorm = Cell::kLayerNorm;  // the layer-normalised cells: their own dG_hh and sums
    using Geo = LayerGeometry<T, G>;
    using Schedule = LayerSchedule<T, G>;
    using Work = WorkspaceLayout<T, G>;
    static constexpr int NV = Geo::kPanelVectors, MR = Geo::kMicroRows;
    using AsUsed = PanelsPackedAsUsed<T, NV, PlainCols<T>>;

   public:
    explicit BackwardPass(const LayerBackward<T>& a)
        : a(a), s(a.s), B(s.B), H(s.H), GH(G * s.H), S(state_size(s)),
          threads(Schedule::backward_threads(s, a.threads)),
          as_used(Geo::packs_as_used(s)), wcache(as_used ? nullptr : align64(a.wcache)),
          saved(carve_saved(a.saved, s)), scratch(carve_scratch(a, threads, saved)),
          hidden_cols{H}, hidden_panels(Geo::step_panels(H)), state_cols{S}, state_panels(Geo::step_panels(S)),
          cache(wcache, GH * S),
          tag(WeightCache<T>::make_tag(G, H, S, NV, WeightCache<T>::kRecurrentTransposed)),
          fresh(!wcache || cache.tag() != tag),
          recurrent_packed{wcache ? cache.packed : scratch.recurrent_packing, GH, GH, state_panels},
          hr_packed{scratch.hr_packing, s.P, s.P, hidden_panels},
          h_prev_all(s.recurrent_dropout ? scratch.masked_states : saved.states + (s.reverse ? B * S : 0)),
          norms{a.ln_ih_weight, a.ln_hh_weight, a.ln_cell_weight, a.ln_cell_bias, nullptr, nullptr},
          norm_row(NormRow<T>::size(G, H)) {}

    void run() {
        run_team(threads, [&](const Team& team) { run_thread(team); });
        if (wcache) cache.set_tag(tag);
    }

   private:
    static Saved<T> carve_saved(T* base, const LayerShape& s) {
        Carver<T> cv{base};
        return Work::carve_saved(s, cv);
    }
    static BackwardScratch<T> carve_scratch(const LayerBackward<T>& a, int threads, const Saved<T>& saved) {
        Carver<T> cv{align64(a.scratch)};
        BackwardScratch<T> carved = Work::carve_backward(a.s, threads, a.consume_saved, cv);
        if (a.consume_saved) {  // each gate gradient replaces the saved value it was computed from
            carved.dg_ih = saved.gates;
            carved.dg_hn = kNorm ? nullptr : saved.aux;
        }
        return carved;
    }

    // h (width S) or c (width H) after k steps, in the saved sequence.
    const T* saved_h(Index k) const { return saved.states + (s.reverse ? s.T - k : k) * B * S; }
    const T* saved_c(Index k) const { return saved.cells + (s.reverse ? s.T - k : k) * B * H; }

    void run_thread(const Team& team) {
        const FlushDenormals ftz;
        const Range panels = team.split(hidden_panels);
        const Range units = Geo::units_of_panels(panels, H);
        // With projections h's units have panels of their own (without, these are the same).
        const Range my_state_panels = team.split(state_panels);
        const Range state_units = Geo::units_of_panels(my_state_panels, S);
        // B(k = g*H + j, u) = w_hh[(g*H + j) * S + u]: dh_{t-1} = dG_hh W_hh.
        T* const mine = as_used ? scratch.recurrent_packing + team.id * Geo::as_used_buffer(GH, GH, s) : nullptr;
        const AsUsed recurrent_as_used{Mat<T>{a.w_hh, S, 1}, state_cols, mine, GH, GH, state_panels};
        if (!as_used && (!wcache || !cache.refresh(a.w_hh, S, 0, GH, state_units.lo, state_units.hi, fresh)))
            pack_panels(recurrent_packed, recurrent_as_used.B, state_cols, my_state_panels.lo, my_state_panels.hi);
        // B(k = j, u) = w_hr[j * H + u]: dr = (dL/d(W_hr r)) W_hr.
        if (s.P) pack_panels(hr_packed, Mat<T>{a.w_hr, H, 1}, hidden_cols, panels.lo, panels.hi);
        const Share me = Schedule::share(team, s, panels, units, hidden_panels);
        if (me.batch) team.barrier();  // every thread reads every panel
        load_gradients(me, units);
        for (Index k = s.T - 1; k >= 0; --k) {
            const Index t = s.reverse ? s.T - 1 - k : k;
            T* dg_hh = kNorm ? scratch.dg_hh + t * B * GH
                             : G == 3 ? scratch.dg_step + (k & 1) * B * GH : scratch.dg_ih + t * B * GH;  // this step's
            step(team, me, k, dg_hh);
            if (s.P) {
                if (!me.batch) team.barrier();
                cell_step(me, k, dg_hh);
            }
            if (!me.batch) {  // while this step's gradients are in cache
                add_bias_gradients(t, units);
                team.barrier();
            }
            as_used ? carry_dh(me, dg_hh, recurrent_as_used) : carry_dh(me, dg_hh, recurrent_packed);
        }
        store_gradients(me);
        if (me.batch) {
            team.barrier();
            for (Index k = s.T - 1; k >= 0; --k) add_bias_gradients(s.reverse ? s.T - 1 - k : k, units);
        }
        for (int g = 0; g < G; ++g) {
            if (a.db_ih) add_units(a.db_ih + g * H, scratch.db_ih + g * H, units.lo, units.hi);
            if (a.db_hh) add_units(a.db_hh + g * H, scratch.db_hh + g * H, units.lo, units.hi);
        }
        team.barrier();
        weight_and_input_gradients(team);
        if constexpr (kNorm) norm_gradients(team);
    }

    // dh, dc from dh_n, dc_n (or zero) for my rows and units; my units' bias sums from zero.
    void load_gradients(const Share& me, Range units) const {
        for (Index b = me.b0; b < me.b1; ++b) {
            copy_units(scratch.dh + b * S, a.dh_n ? a.dh_n + b * S : nullptr, me.h_units.lo, me.h_units.hi);
            copy_units(scratch.dc + b * H, a.dc_n ? a.dc_n + b * H : nullptr, me.u0, me.u1);
        }
        for (int g = 0; g < G; ++g) {
            copy_units<T>(scratch.db_ih + g * H, nullptr, units.lo, units.hi);
            if (scratch.db_hh != scratch.db_ih) copy_units<T>(scratch.db_hh + g * H, nullptr, units.lo, units.hi);
        }
    }

    bool valid(Index t, Index b) const { return !a.lengths || t < a.lengths[b]; }

    // Step k (time t): dh += dy_t, then the cell's backward gives the gate gradients (and the part
    // of dh_{t-1} that bypasses W_hh), phase by phase (a layer-normalised cell's norms read whole
    // rows: in unit mode the team meets before each phase after the first); a padded step passes
    // dh and dc through with no gradient. With projections only dh's part, on my units of h: the
    // gradient of W_hr r_t (zoneout's 1 - m of dh) is kept for cell_step, and dh keeps what
    // bypasses the cell (m dh, or 0).
    void step(const Team& team, const Share& me, Index k, T* dg_hh) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        const T* hp = saved_h(k);
        const bool zoned = zones_out(a);
        for (Index b = me.b0; b < me.b1; ++b) {
            if (s.recurrent_dropout)  // dW_hh's operand, padded steps too (their zero gradients meet finite values)
                mask_units(scratch.masked_states + (t * B + b) * S, hp + b * S, a.recurrent_mask + b * S, me.h_units.lo,
                           me.h_units.hi);
            T* dh = scratch.dh + b * S;
            if (s.P) {
                T* dproj = scratch.dprojected + (t * B + b) * S;
                if (!valid(t, b)) {
                    copy_units<T>(dproj, nullptr, me.h_units.lo, me.h_units.hi);
                    continue;
                }
                add_units(dh, a.dy + (t * B + b) * a.lddy, me.h_units.lo, me.h_units.hi);
                if (zoned) {
                    split_zoned(me, t, b, dh, dproj);
                } else {
                    copy_units(dproj, dh, me.h_units.lo, me.h_units.hi);
                    copy_units<T>(dh, nullptr, me.h_units.lo, me.h_units.hi);
                }
                continue;
            }
            if (valid(t, b)) {
                add_units(dh, a.dy + (t * B + b) * a.lddy, me.h_units.lo, me.h_units.hi);
                if (zoned) split_zoned(me, t, b, dh, scratch.zone_kept + b * S);
                backward_cell(me, k, b, cell_dh(b), dg_hh, 0);
            } else {
                zero_gradients(me, t, b, dg_hh);
            }
        }
        // Only the layer-normalised cells have more phases, and never projections (the binding
        // refuses them together): the projections' rows above took the `continue`.
        assert(s.P == 0 || backward_phases<Cell>() == 1);
        for (int phase = 1; phase < backward_phases<Cell>(); ++phase) {
            if (!me.batch) team.barrier();
            for (Index b = me.b0; b < me.b1; ++b)
                if (valid(t, b)) backward_cell(me, k, b, cell_dh(b), dg_hh, phase);
        }
        for (Index b = me.b0; zoned && !s.P && b < me.b1; ++b)  // the cell's share of dh_{t-1}
            if (valid(t, b)) add_units<T>(scratch.dh + b * S, cell_dh(b), me.h_units.lo, me.h_units.hi);
    }

    // The gradient the cell gets of its output for row b, and where it writes its share of dh_{t-1}:
    // dh, or with zoneout (1 - m) dh in zone_kept.
    T* cell_dh(Index b) const { return (zones_out(a) ? scratch.zone_kept : scratch.dh) + b * S; }

    // Step k with projections, after step(): dr = (dL/d(W_hr r_t)) W_hr for my rows and units,
    // then the cell's backward on them.
    void cell_step(const Share& me, Index k, T* dg_hh) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        gemm_block<T, MR, NV, PlainCols<T>, Geo::kStepTail>(me.b0, me.b1, Mat<T>{scratch.dprojected + t * B * S, S, 1},
                                                            0, hr_packed, 0, hidden_cols, me.p0, me.p1,
                                                            scratch.dunprojected, H, Init::zero, nullptr);
        for (Index b = me.b0; b < me.b1; ++b) {
            if (valid(t, b)) backward_cell(me, k, b, scratch.dunprojected + b * H, dg_hh, 0);
            else zero_gradients(me, t, b, dg_hh);
        }
    }

    // A phase of the cell's backward for row b on my units, dh its output's gradient (overwritten
    // with the part of dh_{t-1} that bypasses W_hh).
    void backward_cell(const Share& me, Index k, Index b, T* dh, T* dg_hh, int phase) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        BwdRow<T> r{saved.gates + (t * B + b) * GH,
                    saved.aux ? saved.aux + (t * B + b) * H : nullptr,
                    saved_h(k) + b * S,
                    G == 4 ? saved_c(k) + b * H : nullptr,
                    G == 4 ? saved_c(k + 1) + b * H : nullptr,
                    dh, scratch.dc + b * H, scratch.dg_ih + (t * B + b) * GH, dg_hh + b * GH,
                    G == 3 && !kNorm ? scratch.dg_hn + (t * B + b) * H : nullptr, dh};
        if constexpr (kNorm) {
            r.ln = &norms;
            r.norm = saved.norms + (t * B + b) * norm_row;
            r.da_ih = scratch.da_ih + (t * B + b) * GH;
            r.da_hh = scratch.da_hh + (t * B + b) * GH;
            r.dcell_norm = G == 4 ? scratch.dcell_norm + (t * B + b) * H : nullptr;
        }
        backward_phase<Cell>(r, H, me.u0, me.u1, phase);
    }

    // A padded step's gate gradients: zero (dh and dc pass through).
    void zero_gradients(const Share& me, Index t, Index b, T* dg_hh) const {
        T* dgi = scratch.dg_ih + (t * B + b) * GH;
        T* dgh = dg_hh + b * GH;
        for (int g = 0; g < G; ++g) {
            copy_units<T>(dgi + g * H, nullptr, me.u0, me.u1);
            if (dgh != dgi) copy_units<T>(dgh + g * H, nullptr, me.u0, me.u1);
        }
        if (G == 3 && !kNorm) copy_units<T>(scratch.dg_hn + (t * B + b) * H, nullptr, me.u0, me.u1);
        if constexpr (kNorm) {  // the sums after the loop read them
            for (int g = 0; g < G; ++g) {
                copy_units<T>(scratch.da_ih + (t * B + b) * GH + g * H, nullptr, me.u0, me.u1);
                if (scratch.da_hh != scratch.da_ih)
                    copy_units<T>(scratch.da_hh + (t * B + b) * GH + g * H, nullptr, me.u0, me.u1);
            }
            if (G == 4) copy_units<T>(scratch.dcell_norm + (t * B + b) * H, nullptr, me.u0, me.u1);
        }
    }

    // Zoneout (h_t = m h_{t-1} + (1 - m) h~_t): h~_t gets (1 - m) dh, written to `to_new`, and
    // m dh, what goes straight to h_{t-1}, stays in dh.
    void split_zoned(const Share& me, Index t, Index b, T* dh, T* to_new) const {
        for_zoneout_units<T>(a, B, S, t, b, me.h_units.lo, me.h_units.hi, [&](Index u, T m) {
            to_new[u] = (T(1) - m) * dh[u];
            dh[u] = m * dh[u];
        });
    }

    // dh_{t-1} += dG_hh W_hh for my rows and units of h; with recurrent dropout m * (dG_hh W_hh),
    // since the product read m * h_{t-1}.
    template <class Panels> void carry_dh(const Share& me, const T* dg_hh, const Panels& panels) const {
        const bool masked = s.recurrent_dropout;
        gemm_block<T, MR, NV, PlainCols<T>, Geo::kStepTail>(me.b0, me.b1, Mat<T>{dg_hh, GH, 1}, 0, panels, 0,
                                                            state_cols, me.h_panels.lo, me.h_panels.hi,
                                                            masked ? scratch.carried : scratch.dh, S,
                                                            masked ? Init::zero : Init::load, nullptr);
        for (Index b = me.b0; masked && b < me.b1; ++b)
            for (Index u = me.h_units.lo; u < me.h_units.hi; ++u)
                scratch.dh[b * S + u] += a.recurrent_mask[b * S + u] * scratch.carried[b * S + u];
    }

    // Step t's gate gradients summed over the batch into my units' bias sums. GRU's db_hh differs
    // from db_ih only in the n block. The layer-normalised cells' biases come after the norms:
    // their gradients are those of a_ih and a_hh.
    void add_bias_gradients(Index t, Range units) const {
        for (Index b = 0; b < B; ++b) {
            const Index row = t * B + b;
            const T* dg = (kNorm ? scratch.da_ih : scratch.dg_ih) + row * GH;
            for (int g = 0; g < G; ++g) {
                add_units(scratch.db_ih + g * H, dg + g * H, units.lo, units.hi);
                if (G == 3 && g < 2) add_units(scratch.db_hh + g * H, dg + g * H, units.lo, units.hi);
            }
            if (G == 3)  // b_hn's: the n block of dL/da_hh, or dg_hn
                add_units(scratch.db_hh + 2 * H, kNorm ? scratch.da_hh + row * GH + 2 * H : scratch.dg_hn + row * H,
                          units.lo, units.hi);
        }
    }

    void store_gradients(const Share& me) const {
        for (Index b = me.b0; b < me.b1; ++b) {
            copy_units(a.dh0 + b * S, scratch.dh + b * S, me.h_units.lo, me.h_units.hi);
            if (G == 4 && a.dc0) copy_units(a.dc0 + b * H, scratch.dc + b * H, me.u0, me.u1);
        }
    }

    // After the loop, whole-sequence products: dx = dG_ih W_ih, dW_ih += dG_ih^T x and
    // dW_hh += dG_hh^T h_prev (for GRU the r and z rows from dG_ih, the n rows from dg_hn), and with
    // projections dW_hr += (dL/d(W_hr r))^T r.
    void weight_and_input_gradients(const Team& team) const {
        const Index TB = s.T * B, I = s.I;
        T* a_packing = scratch.a_packing + team.id * gemm_mc<T, Geo::kPlainRows>() * Geo::KC;
        // C (M, N) = A . B (+ C) on the plain products' tile; an A read transposed (dG^T) is packed.
        auto product = [&](Index M, Index N, Index K, Mat<T> A, Mat<T> Bm, T* C, Index ldc, bool accumulate,
                           T* apack) {
            gemm_team<T, Geo::kPlainRows, Geo::kPlainVectors>(team, M, N, K, A, Bm, C, ldc, accumulate, nullptr,
                                                              scratch.plain_packing, Geo::KC, apack);
        };
        product(TB, I, GH, Mat<T>{scratch.dg_ih, GH, 1}, Mat<T>{a.w_ih, I, 1}, a.dx, a.lddx, a.dx_accumulate, nullptr);
        product(GH, I, TB, Mat<T>{scratch.dg_ih, 1, GH}, Mat<T>{a.x, a.ldx, 1}, a.dw_ih, I, true, a_packing);
        const Index rows_from_dg_ih = G == 3 && !kNorm ? 2 * H : GH;
        product(rows_from_dg_ih, S, TB, Mat<T>{kNorm ? scratch.dg_hh : scratch.dg_ih, 1, GH}, Mat<T>{h_prev_all, S, 1},
                a.dw_hh, S, true, a_packing);
        if (s.P)
            product(s.P, H, TB, Mat<T>{scratch.dprojected, 1, s.P}, Mat<T>{saved.unprojected, H, 1}, a.dw_hr, H, true,
                    a_packing);
        if (G == 3 && !kNorm)
            product(H, S, TB, Mat<T>{scratch.dg_hn, 1, H}, Mat<T>{h_prev_all, S, 1}, a.dw_hh + rows_from_dg_ih * S, S,
                    true, a_packing);
    }

    // The layer-normalised cells' gains and the LSTM's cell bias: sums over every row and step of
    // dL/da times the normalised values (and of dL/d(LN(c) g + b) alone), in the rows' order, by
    // columns (so the same bits on any thread count).
    void norm_gradients(const Team& team) const {
        const Index TB = s.T * B;
        const T* x = saved.norms;
        column_sums_team(team, TB, GH, scratch.da_ih, GH, a.dln_ih_weight, x, norm_row);
        column_sums_team(team, TB, GH, scratch.da_hh, GH, a.dln_hh_weight, x + GH, norm_row);
        if (G == 4) {
            column_sums_team(team, TB, H, scratch.dcell_norm, H, a.dln_cell_weight, x + 2 * GH, norm_row);
            column_sums_team<T>(team, TB, H, scratch.dcell_norm, H, a.dln_cell_bias);
        }
    }

    const LayerBackward<T>& a;
    const LayerShape& s;
    const Index B, H, GH, S;  // S: h's size (state_size)
    const int threads;
    const bool as_used;
    T* const wcache;
    const Saved<T> saved;
    const BackwardScratch<T> scratch;
    const PlainCols<T> hidden_cols;
    const Index hidden_panels;
    const PlainCols<T> state_cols;  // dh_{t-1}'s columns: h's units
    const Index state_panels;
    const WeightCache<T> cache;
    const std::uint64_t tag;
    const bool fresh;
    const Packed<T, NV> recurrent_packed;
    const Packed<T, NV> hr_packed;  // W_hr, with projections
    const T* const h_prev_all;  // (T, B, S): what each step's recurrent product read, h_{t-1} (or m * h_{t-1})
    const LayerNorms<T> norms;  // the layer-normalised cells' parameters
    const Index norm_row;       // their saved values per row (NormRow)
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
