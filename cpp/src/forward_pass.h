// A layer's forward pass over the whole sequence, for one cell, in named phases.
//
// Per call: (1) the input projection P = X W_ih^T + (b_ih + folded b_hh) for many steps in one
// product (all T in training, written straight into the saved gates; chunks of steps in eval);
// (2) the time loop in one team of threads: each step's recurrent product for the thread's rows
// and units, the cell's gate math on it while it is in cache, and (in unit mode) one barrier.
// Entry b is active at time t while t < lengths[b]; an inactive step carries the state through
// unchanged and writes a zero output, so h_n is the state after each entry's last valid step.
#pragma once
#include "cells.h"
#include "workspace_layout.h"
#include "zoneout.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, class Cell> class ForwardPass {
    static constexpr int G = Cell::G;
    using Geo = LayerGeometry<T, G>;
    using Schedule = LayerSchedule<T, G>;
    using Work = WorkspaceLayout<T, G>;
    static constexpr int NV = Geo::kPanelVectors, MR = Geo::kMicroRows, W = Geo::kWidth;
    using AsUsedRecurrent = PanelsPackedAsUsed<T, NV, GateCols<T>>;
    using AsUsedInput = PanelsPackedAsUsed<T, NV, PlainCols<T>>;

   public:
    explicit ForwardPass(const LayerForward<T>& a)
        : a(a), s(a.s), B(s.B), H(s.H), GH(G * s.H), training(a.saved != nullptr),
          as_used(Geo::packs_as_used(s)),
          wcache(as_used ? nullptr : align64(a.wcache)),
          scratch(carve_scratch(a, training)),
          saved(training ? carve_saved(a.saved, s) : Saved<T>{}),
          recurrent_cols{G, H}, groups(Geo::unit_groups(H)),
          cache(wcache, GH * H),
          tag(WeightCache<T>::make_tag(G, H, H, NV, WeightCache<T>::kRecurrent)),
          fresh(!wcache || cache.tag() != tag),
          recurrent_packed{wcache ? cache.packed : scratch.recurrent_packing, H, H, groups * Geo::kPanelsPerGroup},
          input_cols{GH}, input_panels(Geo::plain_panels(GH)),
          input_cache(wcache ? wcache + Work::recurrent_cache_size(H) : nullptr, GH * s.I),
          input_tag(WeightCache<T>::make_tag(G, H, s.I, NV, WeightCache<T>::kInput)),
          input_fresh(fresh || input_cache.tag() != input_tag),  // a fresh W_hh part: this one too
          input_packed{wcache ? input_cache.packed : scratch.input_packing, s.I, Geo::KC, input_panels},
          chunk(Geo::chunk_steps(s, training)) {}

    void run() {
        run_team(Schedule::forward_threads(s, a.threads), [&](const Team& team) { run_thread(team); });
        if (wcache) {
            cache.set_tag(tag);
            input_cache.set_tag(input_tag);
        }
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

    // The state after k processed steps: the saved sequence's in training, else a ping-pong buffer.
    T* state_after(T* const* pingpong, T* seq, Index k) const {
        return training ? seq + (s.reverse ? s.T - k : k) * B * H : pingpong[k & 1];
    }

    void run_thread(const Team& team) {
        const FlushDenormals ftz;
        const Range my_groups = team.split(groups);
        const Range panels{my_groups.lo * Geo::kPanelsPerGroup, my_groups.hi * Geo::kPanelsPerGroup};
        const Range units = Geo::units_of_groups(my_groups, H);
        // A single step packs each panel as it goes, into this thread's buffers.
        T* const mine = as_used ? scratch.recurrent_packing + team.id * scratch.as_used_values : nullptr;
        const AsUsedRecurrent recurrent_as_used{Mat<T>{a.w_hh, 1, H}, recurrent_cols, mine, H, H,
                                                recurrent_packed.npanels};
        const AsUsedInput input_as_used{Mat<T>{a.w_ih, 1, s.I}, input_cols,
                                        as_used ? mine + (scratch.input_packing - scratch.recurrent_packing) : nullptr, s.I,
                                        Geo::KC, input_panels};
        pack_weights(team, panels, units);
        fold_biases(units);
        load_state(units);
        team.barrier();
        const Share me = Schedule::share(team, s, panels, units, groups * Geo::kPanelsPerGroup);
        for (Index k0 = 0; k0 < s.T; k0 += chunk) {
            const Index steps = s.T - k0 < chunk ? s.T - k0 : chunk;
            const Index t_lo = s.reverse ? s.T - k0 - steps : k0;  // the chunk covers times [t_lo, t_lo + steps)
            if (k0 > 0 && me.batch) team.barrier();  // no one still reads the last chunk's projection
            T* P = as_used ? project_chunk(team, t_lo, steps, input_as_used)
                           : project_chunk(team, t_lo, steps, input_packed);
            for (Index k = k0; k < k0 + steps; ++k) {
                as_used ? step(me, k, t_lo, P, recurrent_as_used) : step(me, k, t_lo, P, recurrent_packed);
                if (!me.batch) team.barrier();
            }
        }
        store_state(me);
    }

    // Each thread packs the W_hh panels it will use, B(k, g*H + u) = w_hh[(g*H + u) * H + k], unless
    // the cache holds them packed from the same rows; likewise W_ih, B(k, j) = w_ih[j * I + k],
    // split by panels of output columns j. A single step packs nothing here.
    void pack_weights(const Team& team, Range panels, Range units) const {
        bool repack = fresh && !as_used;
        for (int g = 0; wcache && g < G; ++g)
            repack = !cache.refresh(a.w_hh, H, g * H + units.lo, g * H + units.hi, 0, H, fresh) || repack;
        if (repack) pack_panels(recurrent_packed, Mat<T>{a.w_hh, 1, H}, recurrent_cols, panels.lo, panels.hi);
        const Range mine = team.split(input_panels);
        const Range cols = Geo::units_of(mine, NV * W, GH);
        if (!as_used && (!wcache || !input_cache.refresh(a.w_ih, s.I, cols.lo, cols.hi, 0, s.I, input_fresh)))
            pack_panels(input_packed, Mat<T>{a.w_ih, 1, s.I}, input_cols, mine.lo, mine.hi);
    }

    // b_hh joins b_ih in the projection, except where the cell needs it inside the recurrent term
    // (GRU's n gate: r * (W_hn h + b_hn)).
    void fold_biases(Range units) const {
        for (int g = 0; g < G; ++g)
            for (Index u = units.lo; u < units.hi; ++u) {
                const Index j = g * H + u;
                const T bi = a.b_ih ? a.b_ih[j] : T(0), bh = a.b_hh ? a.b_hh[j] : T(0);
                const bool in_recurrent = Cell::kRecurrentBias && g == G - 1;
                scratch.bias_projection[j] = in_recurrent ? bi : bi + bh;
                scratch.bias_recurrent[j] = in_recurrent ? bh : T(0);
            }
    }

    void load_state(Range units) const {
        for (Index b = 0; b < B; ++b) {
            T* h = state_after(scratch.state, saved.states, 0) + b * H;
            copy_units(h, a.h0 ? a.h0 + b * H : nullptr, units.lo, units.hi);
            if (G == 4)
                copy_units(state_after(scratch.cell, saved.cells, 0) + b * H, a.c0 ? a.c0 + b * H : nullptr, units.lo,
                           units.hi);
            if (s.recurrent_dropout) mask_units(scratch.masked[0] + b * H, h, a.recurrent_mask + b * H, units.lo, units.hi);
        }
    }

    // The projections of `steps` steps from time t_lo, into the saved gates (training) or the
    // chunk buffer (eval); returns where they are.
    template <class Panels> T* project_chunk(const Team& team, Index t_lo, Index steps, const Panels& panels) const {
        T* P = training ? saved.gates + t_lo * B * GH : scratch.projection;
        gemm_packed_team<T, MR, NV>(team, steps * B, Mat<T>{a.x + t_lo * B * a.ldx, a.ldx, 1}, panels, input_cols, P,
                                    GH, scratch.bias_projection);
        return P;
    }

    // Step k (time t): the recurrent product of my rows and panels, then the cell on each row.
    template <class Panels> void step(const Share& me, Index k, Index t_lo, T* P, const Panels& panels) const {
        const Index t = s.reverse ? s.T - 1 - k : k;
        const T* hp = state_after(scratch.state, saved.states, k);
        T* hn = state_after(scratch.state, saved.states, k + 1);
        const T* cp = G == 4 ? state_after(scratch.cell, saved.cells, k) : nullptr;
        T* cn = G == 4 ? state_after(scratch.cell, saved.cells, k + 1) : nullptr;
        const T* recurrent_in = s.recurrent_dropout ? scratch.masked[k & 1] : hp;  // m * h_{t-1}, or h_{t-1}
        gemm_block<T, MR, NV, GateCols<T>, Geo::kStepTail>(me.b0, me.b1, Mat<T>{recurrent_in, H, 1}, 0, panels, 0,
                                                           recurrent_cols, me.p0, me.p1, scratch.recurrent, GH,
                                                           Cell::kRecurrentBias ? Init::bias : Init::zero,
                                                           scratch.bias_recurrent);
        for (Index b = me.b0; b < me.b1; ++b) {
            T* p = P + ((t - t_lo) * B + b) * GH;
            T* y = a.y + (t * B + b) * a.ldy;
            T* aux = training && saved.aux ? saved.aux + (t * B + b) * H : nullptr;
            if (!a.lengths || t < a.lengths[b]) {
                FwdRow<T> r{p, scratch.recurrent + b * GH, hp + b * H, cp ? cp + b * H : nullptr, hn + b * H,
                            cn ? cn + b * H : nullptr, training ? p : nullptr, aux};
                Cell::forward(r, H, me.u0, me.u1);
                if (zones_out(a)) zone_out(me, t, b, hp + b * H, hn + b * H);
                copy_units(y, hn + b * H, me.u0, me.u1);
            } else {
                carry_padded(me, hp + b * H, hn + b * H, cp ? cp + b * H : nullptr, cn ? cn + b * H : nullptr, y,
                             training ? p : nullptr, aux);
            }
            if (s.recurrent_dropout)  // what the next step's product reads (the barrier orders it in unit mode)
                mask_units(scratch.masked[(k + 1) & 1] + b * H, hn + b * H, a.recurrent_mask + b * H, me.u0, me.u1);
        }
    }

    // Zoneout: each unit keeps its previous state with mask m (training) or in proportion p (eval):
    // h_t = m h_{t-1} + (1 - m) h~_t over the cell's new state h~_t. The saved gates keep h~_t's.
    void zone_out(const Share& me, Index t, Index b, const T* hp, T* hn) const {
        for_zoneout_units<T>(a, B, H, t, b, me.u0, me.u1,
                             [&](Index u, T keep) { hn[u] = keep * hp[u] + (T(1) - keep) * hn[u]; });
    }

    // Past an entry's end: the state carries through, the output is zero, and so are the saved
    // gates (and GRU's aux), which a backward then reads as no gradient.
    void carry_padded(const Share& me, const T* hp, T* hn, const T* cp, T* cn, T* y, T* gates, T* aux) const {
        copy_units(hn, hp, me.u0, me.u1);
        if (cn) copy_units(cn, cp, me.u0, me.u1);
        copy_units<T>(y, nullptr, me.u0, me.u1);
        if (gates)
            for (int g = 0; g < G; ++g) copy_units<T>(gates + g * H, nullptr, me.u0, me.u1);
        if (aux) copy_units<T>(aux, nullptr, me.u0, me.u1);
    }

    void store_state(const Share& me) const {
        for (Index b = me.b0; b < me.b1; ++b) {
            copy_units(a.h_n + b * H, state_after(scratch.state, saved.states, s.T) + b * H, me.u0, me.u1);
            if (G == 4 && a.c_n) copy_units(a.c_n + b * H, state_after(scratch.cell, saved.cells, s.T) + b * H, me.u0, me.u1);
        }
    }

    const LayerForward<T>& a;
    const LayerShape& s;
    const Index B, H, GH;
    const bool training, as_used;
    T* const wcache;
    const ForwardScratch<T> scratch;
    const Saved<T> saved;
    const GateCols<T> recurrent_cols;
    const Index groups;
    const WeightCache<T> cache;
    const std::uint64_t tag;
    const bool fresh;
    const Packed<T, NV> recurrent_packed;
    const PlainCols<T> input_cols;
    const Index input_panels;
    const WeightCache<T> input_cache;
    const std::uint64_t input_tag;
    const bool input_fresh;
    const Packed<T, NV> input_packed;
    const Index chunk;
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
