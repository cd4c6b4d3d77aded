// A layer's forward pass over the whole sequence, for one cell, in named phases.
//
// Per call: (1) the input projection P = X W_ih^T + (b_ih + folded b_hh) for many steps in one
// product (all T in training, written straight into the saved gates; chunks of steps in eval),
// or in batch mode by each thread for its own rows, a step at a time (projects_own_rows);
// (2) the time loop in one team of threads: each step's recurrent product for the thread's rows
// and units, the cell's gate math on it while it is in cache, and (in unit mode) one barrier.
// Before both, each thread packs its panels of the weights unless the cache holds them
// (forward_weights.h).
// Entry b is active at time t while t < lengths[b]; an inactive step carries the state through
// unchanged and writes a zero output, so h_n is the state after each entry's last valid step.
// With projections a step has two parts: the cell writes r = o * tanh(c) for the thread's units,
// and (after a barrier in unit mode: each of h's units reads every unit of r) h = W_hr r for the
// thread's units of h, where zoneout, the output and the next step's operand are made.
// The layer-normalised cells: each chunk's input projections are normalised row by row before its
// steps, and a step's cell work runs in the cell's phases, in unit mode with a barrier before each
// (layer_norm_cells.h).
//
// V is the products' operand type: T, or bfloat16 pairs or int8 quads (LayerShape::precision, eval
// only), for which the weights come as bfloat16 or int8 and each product reads its activations as
// pairs or quads: x_t's made for a chunk before its projection; h_t's pairs by each thread for its
// own units as they are produced, h_{t-1}'s quads (whose scale needs the whole row) by each thread
// for the rows its product reads, at the start of the step; with projections W_hr comes the same
// way and its product reads r = o * tanh(c) as W_hh's reads h.
#pragma once
#include <type_traits>

#include "forward_operands.h"
#include "forward_weights.h"
#include "layer_norm_cells.h"
#include "zoneout.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, class Cell, class V = T> class ForwardPass {
    static constexpr int G = Cell::G;
    using Geo = LayerGeometry<T, G>;
    using Schedule = LayerSchedule<T, G>;
    using Work = WorkspaceLayout<T, G>;
    using Weights = ForwardWeights<T, G, V>;
    static constexpr int NV = Geo::kPanelVectors, MR = Geo::kMicroRows;
    // The input projection's tile: the plain products' on float weights, else the step's.
    static constexpr int kInputNV = Weights::kInputNV;
    static constexpr int kInputMR = std::is_same_v<V, T> ? Geo::kPlainRows : MR;
    // Its rows sum k in plain order wherever they sit, so that the team's split (panels, rows, or
    // each thread its own rows in batch mode, at least kBatchRows) never changes a bit; only a
    // product of fewer than kExactRows rows in all (steps x B < 4: unit mode, where a team of any
    // size makes the one call with all rows) splits k.
    static constexpr Tail kInputTail = Tail::exact_unless_short;
    static_assert(kExactRows<kInputNV> <= Schedule::kBatchRows, "a thread's rows in batch mode split no k");
    static_assert(sizeof(V) == sizeof(T), "packed operands take the scratch's values one for one");
    using Operands = ForwardOperands<T, G, V>;

   public:
    explicit ForwardPass(const LayerForward<T>& a)
        : a(a), s(a.s), B(s.B), H(s.H), GH(G * s.H), S(state_size(s)), training(a.saved != nullptr),
          scratch(carve_scratch(a, training)),
          saved(training ? carve_saved(a.saved, s) : Saved<T>{}), weights(a, scratch),
          norms{a.ln_ih_weight, a.ln_hh_weight, a.ln_cell_weight, a.ln_cell_bias, a.b_ih, a.b_hh},
          norm_row(NormRow<T>::size(G, H)),
          operands_of{a, scratch, weights.Kh, weights.Ki, weights.Kr} {
        assert(kInputNV == Geo::input_vectors(s.precision));  // the workspace was laid out for it
    }
    ForwardPass(const ForwardPass&) = delete;  // weights and operands_of refer to this one's scratch

    void run() {
        run_team(Schedule::forward_threads(s, a.threads), [&](const Team& team) { run_thread(team); });
        weights.mark_cached();
    }

   private:
    static ForwardScratch<T> carve_scratch(const LayerForward<T>& a, bool training) {
        Carver<T> cv{align64(a.scratch)};
        return Work::carve_forward(a.s, training, a.threads, cv);
    }
    static Saved<T> carve_saved(T* base, const LayerShape& s) {
        Carver<T> cv{base};
        return Work::carve_saved(s, cv);
    }

    // The state after k processed steps (h: `width` S, c: H): the saved sequence's in training,
    // else a ping-pong buffer.
    T* state_after(T* const* pingpong, T* seq, Index k, Index width) const {
        return training ? seq + (s.reverse ? s.T - k : k) * B * width : pingpong[k & 1];
    }
    T* h_after(Index k) const { return state_after(scratch.state, saved.states, k, S); }
    T* c_after(Index k) const { return G == 4 ? state_after(scratch.cell, saved.cells, k, H) : nullptr; }

    void run_thread(const Team& team) {
        const FlushDenormals ftz;
        const Range my_groups = team.split(weights.groups);
        const Range panels{my_groups.lo * Geo::kPanelsPerGroup, my_groups.hi * Geo::kPanelsPerGroup};
        const Range units = Geo::units_of_groups(my_groups, H);
        // A single step packs each panel as it goes, into this thread's buffers.
        const auto recurrent_as_used = weights.recurrent_as_used(team.id);
        const auto input_as_used = weights.input_as_used(team.id);
        weights.pack(team, panels, units);
        fold_biases(units);
        const Range state_units = s.P ? Geo::units_of_panels(team.split(weights.state_panels), S) : units;
        load_state(units, state_units);
        team.barrier();
        const Share me = Schedule::share(team, s, panels, units, weights.groups * Geo::kPanelsPerGroup);
        const bool own_rows = projects_own_rows(team, me);
        const Index chunk = Schedule::chunk_steps(s, me, training, own_rows);
        for (Index k0 = 0; k0 < s.T; k0 += chunk) {
            const Index steps = s.T - k0 < chunk ? s.T - k0 : chunk;
            const Index t_lo = s.reverse ? s.T - k0 - steps : k0;  // the chunk covers times [t_lo, t_lo + steps)
            if (k0 > 0 && me.batch && !own_rows) team.barrier();  // no one still reads the last chunk's projection
            T* inputs_projected = weights.as_used ? project_chunk(team, me, own_rows, t_lo, steps, input_as_used)
                                                  : project_chunk(team, me, own_rows, t_lo, steps, weights.input);
            normalise_inputs(team, me, t_lo, steps, inputs_projected);
            for (Index k = k0; k < k0 + steps; ++k) {
                weights.as_used ? step(team, me, k, t_lo, inputs_projected, recurrent_as_used)
                                : step(team, me, k, t_lo, inputs_projected, weights.recurrent);
                if (s.P) {
                    if (!me.batch) team.barrier();
                    project_state(me, k);
                }
                if (!me.batch) team.barrier();
            }
        }
        store_state(me);
    }

    // b_hh joins b_ih in the projection, except where the cell needs it inside the recurrent term
    // (GRU's n gate: r * (W_hn h + b_hn)). The layer-normalised cells add both after their norms.
    void fold_biases(Range units) const {
        for (int g = 0; g < G; ++g)
            for (Index u = units.lo; u < units.hi; ++u) {
                const Index j = g * H + u;
                const bool raw = Cell::kLayerNorm;
                const T bi = a.b_ih && !raw ? a.b_ih[j] : T(0), bh = a.b_hh && !raw ? a.b_hh[j] : T(0);
                const bool in_recurrent = Cell::kRecurrentBias && g == G - 1;
                scratch.bias_projection[j] = in_recurrent ? bi : bi + bh;
                scratch.bias_recurrent[j] = in_recurrent ? bh : T(0);
            }
    }

    // h0's units h_units and c0's units (without projections the same).
    void load_state(Range units, Range h_units) const {
        for (Index b = 0; b < B; ++b) {
            T* h = h_after(0) + b * S;
            copy_units(h, a.h0 ? a.h0 + b * S : nullptr, h_units.lo, h_units.hi);
            if (G == 4) copy_units(c_after(0) + b * H, a.c0 ? a.c0 + b * H : nullptr, units.lo, units.hi);
            operands_of.write(0, b, h, h_units.lo, h_units.hi);
        }
    }

    // Whether each thread projects its own rows of each step (batch mode), which only its steps
    // read: no barrier before or after, and each row is written by the core that reads it. With
    // float weights only where those rows fill the product's tile at least half in whole tiles:
    // AVX2's 6-row tile at 8 rows a thread runs two short blocks of 4, and there the team's product
    // of a chunk's rows, panels split, was faster (RESULTS.md). Pairs and quads always take their
    // own (the team would first make the chunk's and meet). A single step packs each panel as it
    // uses it: there the team splits the panels, so that no two threads pack the same one.
    bool projects_own_rows(const Team& team, const Share& me) const {
        if (!me.batch || weights.as_used) return false;
        const Index rows = B / team.n;  // (the same answer for every thread of the team)
        return !std::is_same_v<V, T> || 2 * whole_tile_rows<kInputMR, kInputNV, kInputTail>(rows) >= rows;
    }

    // The projections of `steps` steps from time t_lo, into the saved gates (training) or the
    // chunk buffer (eval); returns where they are. With int8 weights the inputs come in two digits
    // (Mat::second), each with its product (the inputs' quantization error was most of int8's:
    // RESULTS.md).
    template <class Panels>
    T* project_chunk(const Team& team, const Share& me, bool own_rows, Index t_lo, Index steps,
                     const Panels& panels) const {
        T* out = training ? saved.gates + t_lo * B * GH : scratch.projection;
        const auto x = operands_of.input(team, me, own_rows, t_lo, steps);
        if (own_rows)
            project_own_rows(me, steps, x, panels, out);
        else
            gemm_packed_team<T, kInputMR, kInputNV, kInputTail>(team, steps * B, x, panels, weights.input_cols, out, GH,
                                                                scratch.bias_projection);
        return out;
    }

    // A thread's rows [b0, b1) of each of `steps` steps, a step at a time over every panel (as the
    // recurrent product goes).
    template <class Panels>
    void project_own_rows(const Share& me, Index steps, Mat<typename Panels::Activation> x, const Panels& P,
                          T* out) const {
        for (Index k = 0; k < steps; ++k) {
            const Index m0 = k * B + me.b0, m1 = k * B + me.b1;
            if (P.K == 0) bias_rows(m0, m1, GH, out, GH, scratch.bias_projection);
            gemm_packed_rows<T, kInputMR, kInputNV, kInputTail>(m0, m1, x, P, weights.input_cols, 0, P.npanels, out, GH,
                                                                scratch.bias_projection);
        }
    }

    // The layer-normalised cells: the chunk's input projections normalised, a row at a time
    // (normalise_input; a padded row's saved norms zeroed instead: its products meet zeros in the
    // backward). In unit mode the team splits the rows and then meets; in batch mode each thread
    // takes its own rows.
    void normalise_inputs(const Team& team, const Share& me, Index t_lo, Index steps, T* projected) const {
        if constexpr (Cell::kLayerNorm) {
            const Index rows = me.b1 - me.b0;
            const Range mine = me.batch ? Range{0, steps * rows} : team.split(steps * rows);
            for (Index m = mine.lo; m < mine.hi; ++m) {
                const Index t = t_lo + m / rows, b = me.b0 + m % rows;
                T* saved_norm = training ? saved.norms + (t * B + b) * norm_row : nullptr;
                if (!a.lengths || t < a.lengths[b])
                    normalise_input(projected + ((t - t_lo) * B + b) * GH, saved_norm, norms, G, H);
                else if (saved_norm)
                    copy_units<T>(saved_norm, nullptr, 0, norm_row);
            }
            if (!me.batch) team.barrier();
        }
    }

    // Where step k's cell writes o * tanh(c) with projections (saved in training).
    T* unprojected(Index k) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        return training ? saved.unprojected + t * B * H : scratch.unprojected;
    }

    // Step k (time t): the recurrent product of my rows and panels, then the cell on each row (with
    // projections the cell's part only: project_state() makes h), phase by phase (a
    // layer-normalised cell's norms read whole rows: in unit mode the team meets before each phase).
    template <class Panels>
    void step(const Team& team, const Share& me, Index k, Index t_lo, T* inputs_projected, const Panels& panels) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        T* r = s.P ? unprojected(k) : nullptr;
        gemm_block<T, MR, NV, GateCols<T>, Geo::kStepTail>(me.b0, me.b1, operands_of.recurrent(k, h_after(k), me), 0,
                                                           panels, 0, weights.recurrent_cols, me.p0, me.p1,
                                                           scratch.recurrent, GH,
                                                           Cell::kRecurrentBias ? Init::bias : Init::zero,
                                                           scratch.bias_recurrent);
        constexpr int phases = forward_phases<Cell>();
        for (int phase = 0; phase < phases; ++phase) {
            if (Cell::kLayerNorm && !me.batch) team.barrier();
            for (Index b = me.b0; b < me.b1; ++b) {
                const bool valid = !a.lengths || t < a.lengths[b];
                const FwdRow<T> cell = row(k, t, b, inputs_projected + ((t - t_lo) * B + b) * GH);
                if (valid) {
                    forward_phase<Cell>(cell, H, me.u0, me.u1, phase);
                } else if (phase == 0) {
                    carry_padded(me, cell.c_prev, cell.c, cell.gates, cell.aux);
                    if (r) copy_units<T>(cell.h, nullptr, me.u0, me.u1);  // r: no gradient reaches W_hr
                }
                if (phase < phases - 1) continue;
                if (r) operands_of.write_projection_operand(b, r + b * H, me.u0, me.u1);
                if (!s.P) finish_row(me, k, b, valid);
            }
        }
    }

    // The cell's view of row b at step k (time t), p its input projection.
    FwdRow<T> row(Index k, Index t, Index b, T* p) const {
        const T* cp = c_after(k);
        T* cn = c_after(k + 1);
        T* r = s.P ? unprojected(k) : nullptr;
        FwdRow<T> cell{p, scratch.recurrent + b * GH, h_after(k) + b * S, cp ? cp + b * H : nullptr,
                       r ? r + b * H : h_after(k + 1) + b * S, cn ? cn + b * H : nullptr, training ? p : nullptr,
                       training && saved.aux ? saved.aux + (t * B + b) * H : nullptr};
        if constexpr (Cell::kLayerNorm) {
            cell.ln = &norms;
            cell.norm = (training ? saved.norms + t * B * norm_row : scratch.norms) + b * norm_row;
            cell.a_hh = scratch.a_hh + b * GH;
        }
        return cell;
    }

    // Step k with projections, after the cell's part: h~ = W_hr r for my rows and units of h.
    void project_state(const Share& me, Index k) const {
        gemm_block<T, MR, NV, PlainCols<T>, Geo::kStepTail>(me.b0, me.b1,
                                                            operands_of.projection_operand(unprojected(k), me), 0,
                                                            weights.hr, 0, weights.state_cols, me.h_panels.lo,
                                                            me.h_panels.hi,
                                                            h_after(k + 1), S, Init::zero, nullptr);
        const Index t = s.reverse ? s.T - 1 - k : k;
        for (Index b = me.b0; b < me.b1; ++b) finish_row(me, k, b, !a.lengths || t < a.lengths[b]);
    }

    // The end of step k for row b and my units of h: zoneout and the output, or a padded step's
    // carried state and zero output; then the next step's operand (the barrier orders it in unit mode).
    void finish_row(const Share& me, Index k, Index b, bool valid) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        const T* hp = h_after(k) + b * S;
        T* hn = h_after(k + 1) + b * S;
        T* y = a.y + (t * B + b) * a.ldy;
        if (valid) {
            if (zones_out(a)) zone_out(me, t, b, hp, hn);
            copy_units(y, hn, me.h_units.lo, me.h_units.hi);
        } else {
            copy_units(hn, hp, me.h_units.lo, me.h_units.hi);
            copy_units<T>(y, nullptr, me.h_units.lo, me.h_units.hi);
        }
        operands_of.write(k + 1, b, hn, me.h_units.lo, me.h_units.hi);
    }

    // Zoneout: each unit keeps its previous state with mask m (training) or in proportion p (eval):
    // h_t = m h_{t-1} + (1 - m) h~_t over the cell's new state h~_t. The saved gates keep h~_t's.
    void zone_out(const Share& me, Index t, Index b, const T* hp, T* hn) const {
        for_zoneout_units<T>(a, B, S, t, b, me.h_units.lo, me.h_units.hi,
                             [&](Index u, T keep) { hn[u] = keep * hp[u] + (T(1) - keep) * hn[u]; });
    }

    // Past an entry's end: the cell state carries through (h in finish_row), and the saved gates
    // (and GRU's aux) are zero, which a backward then reads as no gradient.
    void carry_padded(const Share& me, const T* cp, T* cn, T* gates, T* aux) const {
        if (cn) copy_units(cn, cp, me.u0, me.u1);
        if (gates)
            for (int g = 0; g < G; ++g) copy_units<T>(gates + g * H, nullptr, me.u0, me.u1);
        if (aux) copy_units<T>(aux, nullptr, me.u0, me.u1);
    }

    void store_state(const Share& me) const {
        for (Index b = me.b0; b < me.b1; ++b) {
            copy_units(a.h_n + b * S, h_after(s.T) + b * S, me.h_units.lo, me.h_units.hi);
            if (G == 4 && a.c_n) copy_units(a.c_n + b * H, c_after(s.T) + b * H, me.u0, me.u1);
        }
    }

    const LayerForward<T>& a;
    const LayerShape& s;
    const Index B, H, GH, S;  // S: h's size (state_size)
    const bool training;
    const ForwardScratch<T> scratch;
    const Saved<T> saved;
    const Weights weights;  // W_hh, W_ih and W_hr as the products read them
    const LayerNorms<T> norms;  // the layer-normalised cells' parameters
    const Index norm_row;       // their saved values per row (NormRow)
    const Operands operands_of;  // what the products read of x_t, h_{t-1} and o * tanh(c)
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
