// The scheduling policy of a layer's time loop: how many threads a call uses, and what each owns.
//
// Unit mode: every thread has every batch row, a slice of hidden units and their panels of W_hh
// (which stay in its cache for the whole sequence), and the team meets at one barrier per step
// (the layer-normalised cells: one more per phase of their step, layer_norm_cells.h).
// Batch mode: each thread has an even slice of rows, every unit and every panel, and no barrier in
// the steps; each thread then reads all of W_hh every step, which pays while that costs less than
// unit mode's barriers (up to kBatchWeightBytes, below). Each thread also projects the inputs of
// its own rows, in short chunks (chunk_steps), where those rows fill the product's tile
// (ForwardPass::projects_own_rows); else the team projects each chunk and meets around it. The
// measurements behind every constant here are in benchmarks/RESULTS.md ("The schedule's
// constants"). The recurrent products sum k in plain order in every micro-kernel block
// (kStepTail; only a product of fewer than kExactRows rows splits k: B < 4 in unit mode, where
// every thread has all rows), so neither the mode nor the thread count ever changes a result.
#pragma once
#include "layer_geometry.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// What a thread owns in the time loop: rows [b0, b1), hidden units [u0, u1), W_hh panels [p0, p1),
// and h's units with their panels of the products that write h (the projection forward, dh_{t-1}
// backward): with projections P units of h and their own split, else u and p again.
struct Share {
    bool batch;
    Index b0, b1, u0, u1, p0, p1;
    int id;  // the thread's place in its team
    Range h_units, h_panels;
};

template <class T, int G> struct LayerSchedule {
    using Geo = LayerGeometry<T, G>;

    // Threads: one where the work is too small to share. Unit mode: a step's recurrent product of
    // fewer than kTinyStep multiply-adds (the barrier would cost more than the step saves). Batch
    // mode: a call of fewer than kTinyCall (only starting the team costs). A single step also
    // packs its G*H*(I+H) weights, each value counted as kPackCost multiply-adds (transposing a
    // value costs about half a cycle, a multiply-add a sixteenth), and shares from kTinySingleStep.
    static constexpr Index kTinyStep = 12288;
    static constexpr Index kTinyCall = 32768;
    static constexpr Index kPackCost = 8;
    static constexpr Index kTinySingleStep = 262144;
    // The layer-normalised cells' unit mode meets two or three times a step, and every thread reads
    // every row of the products whole: they split units only from kTinyNormRow multiply-adds of
    // W_hh per row (the LSTM from H = 128), else run on one thread.
    static constexpr Index kTinyNormRow = 65536;

    // Batch mode needs kBatchRows rows per thread at least: with fewer, a thread's product would
    // split k (kStepTail) and its rows' bits would depend on the thread count. Weights of more than
    // kBatchWeightBytes a step (W_hh, and W_hr with projections, in the bytes the products read:
    // bfloat16's or int8's copy) stay in unit mode at every B. Teams of more than two threads, all
    // streaming them from a shared L3, wait for kManyThreadRows rows unless they fit the smallest
    // current L2 (kL2Bytes). A single step has no barriers in a loop to save, and in batch mode
    // every thread packs every panel: it goes to batch mode from kSingleStepBatchRows rows a thread.
    static constexpr Index kBatchRows = kExactRows<Geo::kPanelVectors>;
    static constexpr Index kManyThreadRows = 24;
    static constexpr Index kL2Bytes = Index(256) << 10;
    static constexpr Index kBatchWeightBytes = Index(2) << 20;
    static constexpr Index kSingleStepBatchRows = 64;

    static bool batch_mode(const LayerShape& s, int threads) {
        const Index w = Geo::weight_copy_values(G * s.H * state_size(s) + s.P * s.H, s) * Index(sizeof(T));
        if (threads < 2) return false;
        const Index rows = s.B / threads;
        if (layer_normalised(s.cell)) return rows >= kBatchRows;  // no barriers for the row norms
        if (Geo::packs_as_used(s)) return rows >= kSingleStepBatchRows;
        if (w > kBatchWeightBytes) return false;
        return rows >= (threads == 2 || w <= kL2Bytes ? kBatchRows : kManyThreadRows);
    }

    // Steps per chunk of the input projection (ForwardPass::project_chunk): all T in training (into
    // the saved gates), else LayerGeometry::chunk_steps; where each thread projects its own rows
    // (batch mode, `own_rows`) with no barrier, fewer: at most kL2Bytes of a thread's projections
    // (at least a step), which its steps then read from its L2. Where the team projects, each
    // chunk costs the team's barriers, and shorter ones lost.
    static Index chunk_steps(const LayerShape& s, const Share& me, bool training, bool own_rows) {
        const Index steps = Geo::chunk_steps(s, training);
        if (training || !own_rows) return steps;
        const Index step_bytes = (me.b1 - me.b0) * G * s.H * Index(sizeof(T));
        assert(step_bytes > 0);  // batch mode gives each thread kBatchRows rows at least
        const Index fit = kL2Bytes / step_bytes;
        return fit < 1 ? 1 : fit < steps ? fit : steps;
    }

    // The mode is judged at the number of threads asked for, and the team judges it again from its
    // actual size (share()): with fewer threads, unit mode may become batch mode. In unit mode no
    // more threads than `panels` (the units' groups of panels).
    static int threads_for(const LayerShape& s, Index panels, int requested) {
        const int asked = threads_asked(requested);
        const Index step = s.B * s.H * (G * state_size(s) + s.P);  // a step's recurrent multiply-adds
        const bool batch = batch_mode(s, asked);
        const Index single_step_work = s.H * (G * (s.I + state_size(s)) + s.P) * (s.B + kPackCost);
        const int n = Geo::packs_as_used(s) ? team_size(single_step_work, kTinySingleStep, asked)
                                            : team_size(batch ? s.T * step : step, batch ? kTinyCall : kTinyStep, asked);
        if (layer_normalised(s.cell) && !batch_mode(s, n) && G * s.H * state_size(s) < kTinyNormRow) return 1;
        return !batch_mode(s, n) && n > panels ? int(panels) : n;
    }
    // In unit mode no more threads than the panels of h's units either (with projections).
    static int forward_threads(const LayerShape& s, int requested) {
        const Index groups = Geo::unit_groups(s.H), state = Geo::step_panels(state_size(s));
        return threads_for(s, s.P && state < groups ? state : groups, requested);
    }
    static int backward_threads(const LayerShape& s, int requested) {
        return threads_for(s, Geo::step_panels(state_size(s)), requested);
    }

    // `panels`: the W_hh panels of this thread in unit mode, `units` their hidden units.
    static Share share(const Team& team, const LayerShape& s, Range panels, Range units, Index all_panels) {
        const Index state_panels = Geo::step_panels(state_size(s));
        if (!batch_mode(s, team.n)) {
            const Range q = s.P ? team.split(state_panels) : panels;
            const Range v = s.P ? Geo::units_of_panels(q, s.P) : units;
            return {false, 0, s.B, units.lo, units.hi, panels.lo, panels.hi, team.id, v, q};
        }
        const Range rows = team.split(s.B);  // B = 64 on 2 threads: 32 rows each, not 30 and 34
        return {true, rows.lo, rows.hi, 0, s.H, 0, all_panels, team.id, {0, state_size(s)},
                {0, s.P ? state_panels : all_panels}};
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
