// The sequence driver: one template runs any cell over a whole sequence, forward or backward in
// time, with or without per-entry lengths, for training (saving what backward needs) or eval.
//
// Forward, per layer call:
//   1. the input projection P = X W_ih^T + (b_ih + folded b_hh) for many steps in one product
//      (all T in training, written straight into the saved-gates buffer; chunks of steps in eval);
//   2. a time loop in ONE parallel region: each thread owns a slice of hidden units, computes the
//      recurrent product for all G gates of its units from its own packed panels of W_hh (which
//      stay in its cache for the whole sequence), applies the cell's gate math to them while
//      they are in cache, and meets the others at one barrier per step (unit mode); or, with
//      enough batch rows per thread for W_hh's size (batch_mode()), each thread runs its own rows
//      through every unit with no barrier at all (batch mode), which also keeps a loaded machine
//      from stalling the team at every step.
// Backward runs the same loop in reverse, carrying only dh (and dc); dx, dW_ih and dW_hh are
// whole-sequence products after the loop, the bias gradients sums over each step's gate gradients
// (inside the loop in unit mode, while they are in cache; after it in batch mode).
//
// Variable lengths: entry b is active at time t when t < lengths[b]. An inactive step carries the
// state through unchanged and writes a zero output, so h_n is the state after the last valid step
// and the reverse direction starts at each entry's own last valid step from h0.
//
// Saved for backward (time-indexed): gates (T, B, G*H) post-activation; states (T+1, B, H) where
// the step at time t reads states[t + reverse] and writes states[t + !reverse]; for LSTM cells
// (T+1, B, H) likewise; for GRU aux (T, B, H) = W_hn h_{t-1} + b_hn. That is T*B*(G+2)*H values at
// most (LSTM), T*B*(G+2)*H for GRU and 2*T*B*H for RNN, plus one B*H row for the initial state.
// A backward with consume_saved writes the gate gradients over the saved gates (and GRU's aux), so
// that its own workspace does not grow with T (see BwdWork); without, it holds them apart.
#pragma once
#include "rnnfast/rnnfast.h"
#include "cells.h"
#include "gemm.h"
#include "weight_cache.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Hands out pieces of one workspace (or, with a null base, only counts them).
template <class T> struct Carver {
    T* base;
    index used = 0;
    T* take(index n) {
        T* p = base ? base + used : nullptr;
        used += (n + 15) / 16 * 16;  // keep every piece 64-byte aligned relative to the base
        return p;
    }
};

template <class T> struct Saved {
    T *gates, *states, *cells, *aux;
};

template <class T, class Cell> struct Driver {
    static constexpr int G = Cell::G;
    static constexpr int W = simd<T>::W;
    static constexpr int NVP = kNV;                     // vectors per panel (W_hh and plain products)
    static constexpr int MRP = kMR;                     // rows per micro-kernel call
    static constexpr Tail kStepTail = Tail::exact_unless_short;  // the recurrent products' (see Share)
    // The recurrent product hands out unit tiles (W hidden units, all G gates) in groups whose
    // G * TPG vectors fill whole panels, so each thread owns every gate of its units.
    static constexpr int TPG = G % 2 == 0 ? 1 : 2;      // unit tiles per group
    static constexpr int PPG = G * TPG / NVP;           // panels per group
    static constexpr index KC = kKC;                    // k-block of the plain products

    template <class C> static Saved<T> carve_saved(const LayerShape& s, C& cv) {
        const index TB = s.T * s.B, BH = s.B * s.H;
        Saved<T> sv;
        sv.gates = cv.take(TB * G * s.H);
        sv.states = cv.take((s.T + 1) * BH);
        sv.cells = G == 4 ? cv.take((s.T + 1) * BH) : nullptr;
        sv.aux = G == 3 ? cv.take(TB * s.H) : nullptr;
        return sv;
    }

    static index saved_size(const LayerShape& s) {
        Carver<T> cv{nullptr};
        carve_saved(s, cv);
        return cv.used;
    }

    static index rec_groups(index H) { return (GateCols<T>{G, H}.tiles() + TPG - 1) / TPG; }
    static index plain_panels(index N) { return (PlainCols<T>{N}.nvec() + NVP - 1) / NVP; }
    static index chunk_steps(const LayerShape& s, bool training) {
        if (training) return s.T;
        const index c = (512 + s.B - 1) / s.B;  // about 512 rows per projection product
        return c < s.T ? c : s.T;
    }

    static index fwd_packed_size(index H) { return Packed<T, NVP>::size(H, rec_groups(H) * PPG * NVP); }
    static index bwd_packed_size(index H) { return Packed<T, NVP>::size(G * H, PlainCols<T>{H}.nvec()); }
    static index input_packed_size(index I, index H) { return Packed<T, NVP>::size(I, PlainCols<T>{G * H}.nvec()); }
    // The forward's cache: W_hh's, then W_ih's (at this offset); the backward's: W_hh's. A single
    // step (jit_panels()) leaves it alone.
    static index rec_cache_size(index H) { return WeightCache<T>::size(G * H * H, fwd_packed_size(H)); }
    static index weight_cache(const LayerShape& s, bool backward) {
        if (backward) return WeightCache<T>::size(G * s.H * s.H, bwd_packed_size(s.H)) + kAlignSlack;
        return rec_cache_size(s.H) + WeightCache<T>::size(G * s.H * s.I, input_packed_size(s.I, s.H)) + kAlignSlack;
    }

    // A single step (single_step(): a cell's call, or a layer's at T = 1) uses each panel of the
    // weights once (gemm_block takes all of a thread's rows past a panel at once): it packs each
    // panel as it goes (JitPanels) into a thread's own buffer, with no cache, and so reads the
    // weights once (in batch mode once per thread, see batch_mode()). Through a cache they are
    // read three times (compared with its copy, then read packed), and a cache holds two more
    // copies of them. The buffers (jit_buf values a thread per matrix) take the place of the whole
    // packing in the scratch, sized for the call's threads, so a step's scratch is small (heap
    // pages, reused from call to call). Left in that place, with the rest of the packing's room
    // unused, fresh pages each call made steps at H = 256 and 512, B = 1, 4-5% slower.
    static bool jit_panels(const LayerShape& s) { return single_step(s); }
    static index jit_buf(index K, index kc_max) {
        return JitPanels<T, NVP, PlainCols<T>>::buf_size(K < kc_max ? K : kc_max);
    }
    static int forward_threads(const LayerShape& s, int requested) {
        return threads_for(s, rec_groups(s.H), requested);
    }

    // wpack, ipack: the whole packing of W_hh and W_ih (untouched, no pages faulted in, with a
    // cache); for a single step each thread's buffers for them instead, jit_bufs values apart.
    struct FwdWork {
        T *wpack, *ipack, *bias_p, *bias_r, *rec, *P, *S[2], *C[2];
        index jit_bufs;
    };
    template <class C> static FwdWork carve_fwd(const LayerShape& s, bool training, int threads, C& cv) {
        const index GH = G * s.H, BH = s.B * s.H;
        FwdWork w{};
        if (jit_panels(s)) {
            const index jw = jit_buf(s.H, s.H);
            w.jit_bufs = jw + jit_buf(s.I, KC);
            w.wpack = cv.take(forward_threads(s, threads) * w.jit_bufs);
            w.ipack = w.wpack + jw;
        } else {
            w.wpack = cv.take(fwd_packed_size(s.H));
            w.ipack = cv.take(input_packed_size(s.I, s.H));
        }
        w.bias_p = cv.take(GH);
        w.bias_r = cv.take(GH);
        w.rec = cv.take(s.B * GH);
        if (!training) {
            w.P = cv.take(chunk_steps(s, false) * s.B * GH);
            for (int i = 0; i < 2; ++i) w.S[i] = cv.take(BH);
            for (int i = 0; i < 2; ++i) w.C[i] = G == 4 ? cv.take(BH) : nullptr;
        }
        return w;
    }
    static index forward_scratch(const LayerShape& s, bool training, int threads) {
        Carver<T> cv{nullptr};
        carve_fwd(s, training, threads, cv);
        return cv.used + kAlignSlack;
    }

    // The backward's gate gradients: dG_ih (T, B, G*H) = dL/d(W_ih x_t + b_ih), and for GRU, whose
    // dG_hh differs from dG_ih only in the n block, that block (T, B, H) plus the whole of dG_hh
    // for the step in flight (two (B, G*H) buffers, alternating: the recurrent product of step t
    // may still read one while a faster thread writes step t-1's into the other). With
    // consume_saved they overwrite the saved gates (and GRU's aux), each value right after it was
    // read, and the backward's workspace is O(B * G * H): the saved workspace then serves one
    // backward only. Both ways compute the same values in the same order.
    struct BwdWork {
        T *dg_ih, *dg_hn, *dg_step, *dh, *dc, *wpack, *packbuf, *apack, *db_ih, *db_hh;
    };
    template <class C> static BwdWork carve_bwd(const LayerShape& s, int threads, bool consume, C& cv) {
        const index GH = G * s.H, TB = s.T * s.B;
        BwdWork w{};
        w.dg_ih = consume ? nullptr : cv.take(TB * GH);
        w.dg_hn = G == 3 && !consume ? cv.take(TB * s.H) : nullptr;
        w.dg_step = G == 3 ? cv.take(2 * s.B * GH) : nullptr;
        w.dh = cv.take(s.B * s.H);
        w.dc = cv.take(s.B * s.H);
        w.wpack = cv.take(jit_panels(s) ? threads * jit_buf(GH, GH) : bwd_packed_size(s.H));  // see FwdWork
        const index np = plain_panels(s.I) > plain_panels(s.H) ? plain_panels(s.I) : plain_panels(s.H);
        w.packbuf = cv.take(KC * np * NVP * W);
        w.apack = cv.take(threads * gemm_mc<T, MRP>() * KC);
        w.db_ih = cv.take(GH);
        w.db_hh = G == 3 ? cv.take(GH) : w.db_ih;
        return w;
    }
    static index backward_scratch(const LayerShape& s, int threads, bool consume) {
        Carver<T> cv{nullptr};
        carve_bwd(s, backward_threads(s, threads), consume, cv);
        return cv.used + kAlignSlack;
    }
    static int backward_threads(const LayerShape& s, int requested) {
        return threads_for(s, plain_panels(s.H), requested);
    }

    // Threads for a problem: one where the work is too small to share. In unit mode that is a
    // step's recurrent product of fewer than kTinyStep multiply-adds, where the barrier would cost
    // more than the step saves; in batch mode (no barrier in the loop) a call of fewer than
    // kTinyCall, where only starting the team costs. In unit mode no more threads than `panels`
    // (the units' groups of panels). The mode is judged at the number of threads asked for, and
    // the team decides it again from its actual size (share()): with fewer threads, unit mode may
    // become batch mode. Either way the results are the same bits; only the speed differs.
    // Measured on 2 Zen 3 cores, one thread's time over two's (eval and training), T = 50: unit
    // mode (B = 1, 4; H = 32 to 96) 0.69-0.96 below 9216 multiply-adds a step, 0.87-1.11 at 9216,
    // 0.98-1.25 from 12288 on; batch mode (B = 8 to 32, H = 16 to 96) 1.07-1.94 everywhere (and
    // 0.87-1.79 at T = 100, H = 20 to 40, one reading below 1.2). A single step (jit_panels(); in
    // unit mode below kJitBatchRows rows a thread) also packs its G*H*(I+H) weights, each value
    // counted as kJitPack multiply-adds (an estimate: the transposes take about half a cycle a
    // value on AVX2, a multiply-add 1/16 of one), besides its B*G*H*(I+H) of products: below
    // kTinyJitStep of that work (fitted on the grid that follows) it runs on one thread. RNN, LSTM
    // and GRU at H = 32 to 128, B = 1, 4, 16, T = 1, I = H: one thread over two 0.76-1.06 below
    // (median 0.90) and 0.87-1.56 from it on (median 1.20) in eval, 0.75-1.26 (0.85) and
    // 0.83-1.46 (1.22) for forward and backward.
    static constexpr index kTinyStep = 12288;
    static constexpr index kTinyCall = 32768;
    static constexpr index kJitPack = 8;
    static constexpr index kTinyJitStep = 262144;
    static int threads_for(const LayerShape& s, index panels, int requested = 0) {
        const int asked = threads_asked(requested);
        const index step = s.B * G * s.H * s.H;  // a step's recurrent multiply-adds
        const bool batch = batch_mode(s, asked);
        const index jit_work = G * s.H * (s.I + s.H) * (s.B + kJitPack);
        const int n = jit_panels(s) ? team_size(jit_work, kTinyJitStep, asked)
                                    : team_size(batch ? s.T * step : step, batch ? kTinyCall : kTinyStep, asked);
        return !batch_mode(s, n) && n > panels ? int(panels) : n;
    }

    // What a thread owns in the time loop. Unit mode: every batch row, a slice of hidden units and
    // their panels of W_hh (which stay in its cache), one barrier per step. Batch mode (when
    // batch_mode()): an even slice of rows, every unit and panel, no barrier in the loop (each
    // thread reads all of W_hh every step, which pays only while that stays near the core).
    // The recurrent products sum k in plain order in every micro-kernel block (kStepTail; only a
    // product of fewer than kExactRows rows splits k: B < 4, in unit mode, where every thread has
    // all rows), so the mode and the thread count never change a result.
    struct Share {
        bool batch;
        index b0, b1, u0, u1, p0, p1;
    };
    // Batch mode needs at least kBatchRows rows per thread: with fewer, a thread's product would
    // split k (kStepTail) and its rows' bits would depend on the thread count. Beyond that, each
    // thread reads all of W_hh every step, against one barrier per step in unit mode. Measured on a
    // 2-core Zen 3 (512 KiB L2 per core), quiet, batch mode from 4 rows per thread instead of 24,
    // old time / new time, medians of 6 rounds of `benchmarks/ab_builds.py`: W_hh of 64-256 KiB
    // (RNN H = 128, 256; LSTM H = 64) at B = 8 to 16 1.04-1.26; 512 KiB (LSTM H = 181) at B = 16
    // 1.03-1.07; 768 KiB and 1 MiB (GRU, LSTM at H = 256) at B = 8 to 32 0.99-1.04, eval and
    // training. With W_hh of 4-12 MiB (H = 512, 1024) batch mode read 0.97-1.01 at B = 16 to 64, so
    // that stays in unit mode at every B. In a team of more than two threads every thread streaming
    // W_hh from L3 each step would compete for its bandwidth (not measured: this machine has two
    // cores), so there batch mode from 4 rows is kept to W_hh of at most 256 KiB (the smallest L2
    // of current x86 cores), and larger ones wait for kManyThreadRows rows, as before. The rule is
    // per team: a bidirectional layer on 4 threads runs two teams of 2. On a loaded machine unit
    // mode's per-step barrier waits for descheduled threads: there batch mode was 3-16x faster.
    // A single step (jit_panels()) has no barriers in a loop to save, and in batch mode every
    // thread packs every panel: it goes to batch mode only from kJitBatchRows rows a thread, where
    // that packing is a small part of the work. T = 1, eval, 2 threads, medians of 3 alternated
    // rounds, unit time / batch time: from 64 rows a thread 1.01-1.04 (LSTM H = 256 at B = 128
    // to 512, H = 512 at B = 256, RNN H = 512 at B = 256, GRU H = 256 at B = 128); from 16 or 8
    // rows 0.88-1.08, mostly below 1 (H = 256 and 512, B = 16 to 64).
    static constexpr index kBatchRows = kExactRows<NVP>;           // rows per thread, at least
    static constexpr index kManyThreadRows = 24;                   // above 2 threads and kL2Bytes
    static constexpr index kL2Bytes = index(256) << 10;            // W_hh of at most one L2
    static constexpr index kBatchWeightBytes = index(1) << 20;    // W_hh's size, at most
    static constexpr index kJitBatchRows = 64;                     // a single step's, at least
    static bool batch_mode(const LayerShape& s, int threads) {
        const index w = G * s.H * s.H * index(sizeof(T));
        if (threads < 2) return false;
        const index rows = s.B / threads;
        if (jit_panels(s)) return rows >= kJitBatchRows;
        if (w > kBatchWeightBytes) return false;
        return rows >= (threads == 2 || w <= kL2Bytes ? kBatchRows : kManyThreadRows);
    }
    static Share share(const Team& team, const LayerShape& s, Range panels, index u0, index u1, index all_panels) {
        if (!batch_mode(s, team.n)) return {false, 0, s.B, u0, u1, panels.lo, panels.hi};
        const Range rb = team.split(s.B);  // B = 64 on 2 threads: 32 rows each, not 30 and 34
        return {true, rb.lo, rb.hi, 0, s.H, 0, all_panels};
    }

    static void copy_units(T* dst, const T* src, index u0, index u1) {
        for (index u = u0; u < u1; ++u) dst[u] = src ? src[u] : T(0);
    }
    static void add_units(T* dst, const T* src, index u0, index u1) {
        for (index u = u0; u < u1; ++u) dst[u] += src[u];
    }

    static void forward(const LayerForward<T>& a) {
        const LayerShape& s = a.s;
        const index nT = s.T, B = s.B, I = s.I, H = s.H, GH = G * H, BH = B * H;
        const bool training = a.saved != nullptr;
        const bool jit = jit_panels(s);
        Carver<T> wc{align64(a.scratch)};
        T* const wcache = jit ? nullptr : align64(a.wcache);
        const FwdWork w = carve_fwd(s, training, a.threads, wc);
        Carver<T> sc{a.saved};
        const Saved<T> sv = training ? carve_saved(s, sc) : Saved<T>{};
        const GateCols<T> rcols{G, H};
        const index ngroups = rec_groups(H);
        const WeightCache<T> cache(wcache, GH * H);
        const std::uint64_t tag = WeightCache<T>::make_tag(G, H, H, NVP, WeightCache<T>::kRecurrent);
        const bool fresh = !wcache || cache.tag() != tag;
        const Packed<T, NVP> WP{wcache ? cache.packed : w.wpack, H, H, ngroups * PPG};
        // W_ih packed whole for the input projection (every chunk of steps uses it).
        const PlainCols<T> pcols{GH};
        const index npi = plain_panels(GH);
        const WeightCache<T> icache(wcache ? wcache + rec_cache_size(H) : nullptr, GH * I);
        const std::uint64_t itag = WeightCache<T>::make_tag(G, H, I, NVP, WeightCache<T>::kInput);
        const bool ifresh = fresh || icache.tag() != itag;  // a fresh W_hh part: this one too
        const Packed<T, NVP> IP{wcache ? icache.packed : w.ipack, I, KC, npi};
        const index Tc = chunk_steps(s, training);
        // State after k processed steps.
        auto state = [&](T* const* pingpong, T* seq, index k) -> T* {
            return training ? seq + (s.reverse ? nT - k : k) * BH : pingpong[k & 1];
        };

        run_team(forward_threads(s, a.threads), [&](const Team& team) {
            const FlushDenormals ftz;
            const Range gr = team.split(ngroups);
            const Range pr{gr.lo * PPG, gr.hi * PPG};  // my panels of W_hh
            const index u0 = gr.lo * TPG * W < H ? gr.lo * TPG * W : H;  // my hidden units
            const index u1 = gr.hi * TPG * W < H ? gr.hi * TPG * W : H;

            // Each thread packs the W_hh panels it will use, B(k, g*H + u) = w_hh[(g*H + u) * H + k],
            // unless the cache holds them packed from the same rows; a single step packs each
            // panel as it goes, into the thread's jit buffer.
            const Mat<T> Bhh{a.w_hh, 1, H}, Bih{a.w_ih, 1, I};
            const index mine = team.id * w.jit_bufs;  // my jit buffers (a single step)
            const JitPanels<T, NVP, GateCols<T>> JW{Bhh, rcols, jit ? w.wpack + mine : nullptr, H, H, WP.npanels};
            const JitPanels<T, NVP, PlainCols<T>> JI{Bih, pcols, jit ? w.ipack + mine : nullptr, I, KC, npi};
            bool repack = fresh && !jit;
            for (int g = 0; wcache && g < G; ++g)
                repack = !cache.refresh(a.w_hh, H, g * H + u0, g * H + u1, 0, H, fresh) || repack;
            if (repack) pack_panels(WP, Bhh, rcols, pr.lo, pr.hi);
            // Likewise W_ih, B(k, j) = w_ih[j * I + k], split by panels of output columns j.
            const Range iq = team.split(npi);
            const index j0 = iq.lo * NVP * W < GH ? iq.lo * NVP * W : GH;
            const index j1 = iq.hi * NVP * W < GH ? iq.hi * NVP * W : GH;
            if (!jit && (!wcache || !icache.refresh(a.w_ih, I, j0, j1, 0, I, ifresh)))
                pack_panels(IP, Bih, pcols, iq.lo, iq.hi);
            for (int g = 0; g < G; ++g)
                for (index u = u0; u < u1; ++u) {
                    const index j = g * H + u;
                    const T bi = a.b_ih ? a.b_ih[j] : T(0), bh = a.b_hh ? a.b_hh[j] : T(0);
                    const bool in_rec = Cell::kRecurrentBias && g == G - 1;
                    w.bias_p[j] = in_rec ? bi : bi + bh;
                    w.bias_r[j] = in_rec ? bh : T(0);
                }
            for (index b = 0; b < B; ++b) {
                copy_units(state(w.S, sv.states, 0) + b * H, a.h0 ? a.h0 + b * H : nullptr, u0, u1);
                if (G == 4) copy_units(state(w.C, sv.cells, 0) + b * H, a.c0 ? a.c0 + b * H : nullptr, u0, u1);
            }
            team.barrier();
            const Share me = share(team, s, pr, u0, u1, ngroups * PPG);

            for (index k0 = 0; k0 < nT; k0 += Tc) {
                const index tc = nT - k0 < Tc ? nT - k0 : Tc;
                const index tlo = s.reverse ? nT - k0 - tc : k0;  // chunk covers times [tlo, tlo + tc)
                T* P = training ? sv.gates + tlo * B * GH : w.P;
                if (k0 > 0 && me.batch) team.barrier();  // no one still reads the last chunk's P
                auto project = [&](const auto& panels) {
                    gemm_packed_team<T, MRP, NVP>(team, tc * B, Mat<T>{a.x + tlo * B * a.ldx, a.ldx, 1}, panels,
                                                  pcols, P, GH, w.bias_p);
                };
                jit ? project(JI) : project(IP);
                for (index k = k0; k < k0 + tc; ++k) {
                    const index t = s.reverse ? nT - 1 - k : k;
                    const T* hp = state(w.S, sv.states, k);
                    T* hn = state(w.S, sv.states, k + 1);
                    const T* cp = G == 4 ? state(w.C, sv.cells, k) : nullptr;
                    T* cn = G == 4 ? state(w.C, sv.cells, k + 1) : nullptr;
                    auto recur = [&](const auto& panels) {
                        gemm_block<T, MRP, NVP, GateCols<T>, kStepTail>(
                            me.b0, me.b1, Mat<T>{hp, H, 1}, 0, panels, 0, rcols, me.p0, me.p1, w.rec, GH,
                            Cell::kRecurrentBias ? Init::bias : Init::zero, w.bias_r);
                    };
                    jit ? recur(JW) : recur(WP);
                    for (index b = me.b0; b < me.b1; ++b) {
                        T* p = P + ((t - tlo) * B + b) * GH;
                        T* y = a.y + (t * B + b) * a.ldy;
                        if (!a.lengths || t < a.lengths[b]) {
                            FwdRow<T> r{p, w.rec + b * GH, hp + b * H, cp ? cp + b * H : nullptr,
                                        hn + b * H, cn ? cn + b * H : nullptr, training ? p : nullptr,
                                        training && sv.aux ? sv.aux + (t * B + b) * H : nullptr};
                            Cell::forward(r, H, me.u0, me.u1);
                            copy_units(y, hn + b * H, me.u0, me.u1);
                        } else {  // past this entry's end: carry the state, output zero
                            copy_units(hn + b * H, hp + b * H, me.u0, me.u1);
                            if (cn) copy_units(cn + b * H, cp + b * H, me.u0, me.u1);
                            copy_units(y, nullptr, me.u0, me.u1);
                            if (training) {
                                for (int g = 0; g < G; ++g) copy_units(p + g * H, nullptr, me.u0, me.u1);
                                if (sv.aux) copy_units(sv.aux + (t * B + b) * H, nullptr, me.u0, me.u1);
                            }
                        }
                    }
                    if (!me.batch) team.barrier();
                }
            }
            for (index b = me.b0; b < me.b1; ++b) {
                copy_units(a.h_n + b * H, state(w.S, sv.states, nT) + b * H, me.u0, me.u1);
                if (G == 4 && a.c_n) copy_units(a.c_n + b * H, state(w.C, sv.cells, nT) + b * H, me.u0, me.u1);
            }
        });
        if (wcache) {
            cache.set_tag(tag);
            icache.set_tag(itag);
        }
    }

    static void backward(const LayerBackward<T>& a) {
        const LayerShape& s = a.s;
        const index nT = s.T, B = s.B, I = s.I, H = s.H, GH = G * H, BH = B * H, TB = nT * B;
        const int nth = backward_threads(s, a.threads);
        const bool jit = jit_panels(s);
        Carver<T> wc{align64(a.scratch)};
        T* const wcache = jit ? nullptr : align64(a.wcache);
        BwdWork w = carve_bwd(s, nth, a.consume_saved, wc);
        Carver<T> sc{a.saved};
        const Saved<T> sv = carve_saved(s, sc);
        if (a.consume_saved) {  // each gate gradient replaces the saved value it was computed from
            w.dg_ih = sv.gates;
            w.dg_hn = sv.aux;
        }
        const PlainCols<T> hcols{H};
        const index npb = plain_panels(H);
        const WeightCache<T> cache(wcache, GH * H);
        const std::uint64_t tag = WeightCache<T>::make_tag(G, H, H, NVP, WeightCache<T>::kRecurrentTransposed);
        const bool fresh = !wcache || cache.tag() != tag;
        const Packed<T, NVP> WP{wcache ? cache.packed : w.wpack, GH, GH, npb};
        auto state = [&](T* seq, index k) { return seq + (s.reverse ? nT - k : k) * BH; };
        const T* hprev_all = sv.states + (s.reverse ? BH : 0);  // (T, B, H): h_{t-1} of each step

        run_team(nth, [&](const Team& team) {
            const FlushDenormals ftz;
            const Range pr = team.split(npb);
            const index u0 = pr.lo * NVP * W < H ? pr.lo * NVP * W : H;
            const index u1 = pr.hi * NVP * W < H ? pr.hi * NVP * W : H;
            // B(k = g*H + j, u) = w_hh[(g*H + j) * H + u]: dh_{t-1} = dG_hh W_hh; from the cache when
            // it holds my columns packed from the same values; packed as it goes for a single step.
            T* const jb = jit ? w.wpack + team.id * jit_buf(GH, GH) : nullptr;  // my jit buffer (a single step)
            const JitPanels<T, NVP, PlainCols<T>> JW{Mat<T>{a.w_hh, H, 1}, hcols, jb, GH, GH, npb};
            if (!jit && (!wcache || !cache.refresh(a.w_hh, H, 0, GH, u0, u1, fresh)))
                pack_panels(WP, JW.B, hcols, pr.lo, pr.hi);
            const Share me = share(team, s, pr, u0, u1, npb);
            if (me.batch) team.barrier();  // every thread reads every panel
            for (index b = me.b0; b < me.b1; ++b) {
                copy_units(w.dh + b * H, a.dh_n ? a.dh_n + b * H : nullptr, me.u0, me.u1);
                copy_units(w.dc + b * H, a.dc_n ? a.dc_n + b * H : nullptr, me.u0, me.u1);
            }
            for (int g = 0; g < G; ++g) {
                copy_units(w.db_ih + g * H, nullptr, u0, u1);
                if (w.db_hh != w.db_ih) copy_units(w.db_hh + g * H, nullptr, u0, u1);
            }
            // Bias gradients: step t's gate gradients summed over the batch, for units [u0, u1), in
            // the order of the time loop (so both modes give the same bits). GRU's db_hh differs
            // from db_ih only in the n block.
            auto add_bias_grads = [&](index t) {
                for (index b = 0; b < B; ++b) {
                    for (int g = 0; g < G; ++g) {
                        add_units(w.db_ih + g * H, w.dg_ih + (t * B + b) * GH + g * H, u0, u1);
                        if (G == 3 && g < 2) add_units(w.db_hh + g * H, w.dg_ih + (t * B + b) * GH + g * H, u0, u1);
                    }
                    if (G == 3) add_units(w.db_hh + 2 * H, w.dg_hn + (t * B + b) * H, u0, u1);
                }
            };
            for (index k = nT - 1; k >= 0; --k) {
                const index t = s.reverse ? nT - 1 - k : k;
                const T* hp = state(sv.states, k);
                T* dg_hh = G == 3 ? w.dg_step + (k & 1) * B * GH : w.dg_ih + t * B * GH;  // this step's
                for (index b = me.b0; b < me.b1; ++b) {
                    T* dgi = w.dg_ih + (t * B + b) * GH;
                    T* dgh = dg_hh + b * GH;
                    T* dgn = G == 3 ? w.dg_hn + (t * B + b) * H : nullptr;
                    T* dh = w.dh + b * H;
                    if (!a.lengths || t < a.lengths[b]) {
                        const T* dy = a.dy + (t * B + b) * a.lddy;
                        for (index u = me.u0; u < me.u1; ++u) dh[u] += dy[u];
                        BwdRow<T> r{sv.gates + (t * B + b) * GH,
                                    sv.aux ? sv.aux + (t * B + b) * H : nullptr,
                                    hp + b * H,
                                    G == 4 ? state(sv.cells, k) + b * H : nullptr,
                                    G == 4 ? state(sv.cells, k + 1) + b * H : nullptr,
                                    dh, w.dc + b * H, dgi, dgh, dgn, dh};
                        Cell::backward(r, H, me.u0, me.u1);
                    } else {  // padded step: dh and dc pass through, no gate gradient
                        for (int g = 0; g < G; ++g) {
                            copy_units(dgi + g * H, nullptr, me.u0, me.u1);
                            if (dgh != dgi) copy_units(dgh + g * H, nullptr, me.u0, me.u1);
                        }
                        if (dgn) copy_units(dgn, nullptr, me.u0, me.u1);
                    }
                }
                if (!me.batch) {  // while this step's gradients are in cache
                    add_bias_grads(t);
                    team.barrier();
                }
                auto recur = [&](const auto& panels) {
                    gemm_block<T, MRP, NVP, PlainCols<T>, kStepTail>(me.b0, me.b1, Mat<T>{dg_hh, GH, 1}, 0, panels, 0,
                                                                     hcols, me.p0, me.p1, w.dh, H, Init::load, nullptr);
                };
                jit ? recur(JW) : recur(WP);
            }
            for (index b = me.b0; b < me.b1; ++b) {
                copy_units(a.dh0 + b * H, w.dh + b * H, me.u0, me.u1);
                if (G == 4 && a.dc0) copy_units(a.dc0 + b * H, w.dc + b * H, me.u0, me.u1);
            }
            if (me.batch) {
                team.barrier();
                for (index k = nT - 1; k >= 0; --k) add_bias_grads(s.reverse ? nT - 1 - k : k);
            }
            for (int g = 0; g < G; ++g) {
                if (a.db_ih) add_units(a.db_ih + g * H, w.db_ih + g * H, u0, u1);
                if (a.db_hh) add_units(a.db_hh + g * H, w.db_hh + g * H, u0, u1);
            }
            team.barrier();
            gemm_team<T, MRP, NVP>(team, TB, I, GH, Mat<T>{w.dg_ih, GH, 1}, Mat<T>{a.w_ih, I, 1}, a.dx,
                                   a.lddx, a.dx_accumulate, nullptr, w.packbuf, KC);
            T* apack = w.apack + team.id * gemm_mc<T, MRP>() * KC;  // dG^T is read transposed: pack it
            gemm_team<T, MRP, NVP>(team, GH, I, TB, Mat<T>{w.dg_ih, 1, GH}, Mat<T>{a.x, a.ldx, 1}, a.dw_ih,
                                   I, true, nullptr, w.packbuf, KC, apack);
            // dW_hh = dG_hh^T h_prev; for GRU the r and z rows from dG_ih, the n rows from dg_hn.
            const index GHr = G == 3 ? 2 * H : GH;
            gemm_team<T, MRP, NVP>(team, GHr, H, TB, Mat<T>{w.dg_ih, 1, GH}, Mat<T>{hprev_all, H, 1}, a.dw_hh,
                                   H, true, nullptr, w.packbuf, KC, apack);
            if (G == 3)
                gemm_team<T, MRP, NVP>(team, H, H, TB, Mat<T>{w.dg_hn, 1, H}, Mat<T>{hprev_all, H, 1},
                                       a.dw_hh + GHr * H, H, true, nullptr, w.packbuf, KC, apack);
        });
        if (wcache) cache.set_tag(tag);
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
