// A layer's forward weights as its products read them (ForwardPass's weights): W_hh, W_ih and,
// with projections, W_hr packed into panels. W_hh's and W_ih's panels live in the call's weight
// cache when it has one (weight_cache.h: each thread repacks only its own panels, and only where
// the weights differ from the cache's copy), else in the call's scratch; W_hr's are packed on
// every call. A single step (LayerGeometry::packs_as_used) packs nothing of W_hh and W_ih ahead:
// each thread packs each panel as it uses it, into its own part of the scratch. V is the products'
// operand type: T, Bf16Pair or Int8Quad, whose weights come as bfloat16 or int8
// (LayerShape::precision).
#pragma once
#include <type_traits>

#include "workspace_layout.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, int G, class V> struct ForwardWeights {
    using Geo = LayerGeometry<T, G>;
    using Work = WorkspaceLayout<T, G>;
    static constexpr int NV = Geo::kPanelVectors, W = Geo::kWidth;
    static constexpr bool kPairs = std::is_same_v<V, Bf16Pair>, kQuads = std::is_same_v<V, Int8Quad>;
    // The input projection's panel width: the plain products' on float weights, else the step's.
    static constexpr int kInputNV = std::is_same_v<V, T> ? Geo::kPlainVectors : NV;
    using Source = std::conditional_t<kPairs, Bf16Rows, std::conditional_t<kQuads, Int8Rows, Mat<T>>>;  // as stored
    using AsUsedRecurrent = PanelsPackedAsUsed<T, NV, GateCols<T>, Source>;
    using AsUsedInput = PanelsPackedAsUsed<T, kInputNV, PlainCols<T>, Source>;
    using Kind = typename WeightCache<T>::Kind;

    ForwardWeights(const LayerForward<T>& a, const ForwardScratch<T>& scratch)
        : a(a), s(a.s), H(s.H), GH(G * s.H), S(state_size(s)),
          wcache(Geo::packs_as_used(s) ? nullptr : align64(a.wcache)), scratch(scratch),
          cache(wcache, Geo::weight_copy_values(GH * S, s)),
          input_cache(wcache ? wcache + Work::recurrent_cache_size(s) : nullptr, Geo::weight_copy_values(GH * s.I, s)),
          tag(WeightCache<T>::make_tag(G, H, S, NV, kPairs ? Kind::kRecurrentBf16 : kQuads ? Kind::kRecurrentInt8
                                                                                       : Kind::kRecurrent)),
          input_tag(WeightCache<T>::make_tag(G, H, s.I, kInputNV, kPairs ? Kind::kInputBf16 : kQuads ? Kind::kInputInt8
                                                                                          : Kind::kInput)),
          fresh(!wcache || cache.tag() != tag),
          input_fresh(fresh || input_cache.tag() != input_tag),  // a fresh W_hh part: this one too
          as_used(Geo::packs_as_used(s)),
          Kh(Geo::operand_rows(S, s)), Ki(Geo::operand_rows(s.I, s)), Kr(s.P ? Geo::operand_rows(H, s) : 0),
          recurrent_cols{G, H}, groups(Geo::unit_groups(H)),
          recurrent{operands(wcache ? cache.packed : scratch.recurrent_packing), Kh, Kh,
                    groups * Geo::kPanelsPerGroup, a.w_hh_scale},
          input_cols{GH}, input_panels((input_cols.nvec() + kInputNV - 1) / kInputNV),
          input{operands(wcache ? input_cache.packed : scratch.input_packing), Ki, Geo::input_kc(s), input_panels,
                a.w_ih_scale},
          state_cols{S}, state_panels(Geo::step_panels(S)),
          hr{operands(scratch.hr_packing), Kr, Kr, state_panels, a.w_hr_scale} {}

    // Each thread packs the W_hh panels it will use, B(k, g*H + u) = w_hh[(g*H + u) * S + k], unless
    // the cache holds them packed from the same rows; likewise W_ih, B(k, j) = w_ih[j * I + k],
    // split by panels of output columns j. A single step packs nothing here. W_hr, B(k, j) =
    // w_hr[j * H + k], is packed on every call, split by panels of j (the caller's barrier follows).
    void pack(const Team& team, Range panels, Range units) const {
        bool repack = fresh && !as_used;
        with_stored(Weight::recurrent, [&](auto w) {
            for (int g = 0; wcache && g < G; ++g)
                repack = !cache.refresh(w, S, g * H + units.lo, g * H + units.hi, 0, S, fresh) || repack;
        });
        if (repack) pack_panels(recurrent, source(Weight::recurrent), recurrent_cols, panels.lo, panels.hi);
        const Range mine = team.split(input_panels);
        const Range cols = Geo::units_of(mine, kInputNV * W, GH);
        const bool same = with_stored(Weight::input, [&](auto w) {
            return wcache && input_cache.refresh(w, s.I, cols.lo, cols.hi, 0, s.I, input_fresh);
        });
        if (!as_used && !same) pack_panels(input, source(Weight::input), input_cols, mine.lo, mine.hi);
        if (s.P) {
            const Range q = team.split(state_panels);
            pack_panels(hr, source(Weight::projection), state_cols, q.lo, q.hi);
        }
    }
    // After the call: the cache holds what this call packed.
    void mark_cached() const {
        if (!wcache) return;
        cache.set_tag(tag);
        input_cache.set_tag(input_tag);
    }

    // A single step's panels, packed by thread `id` as it uses them into its part of the scratch.
    AsUsedRecurrent recurrent_as_used(int id) const {
        return {source(Weight::recurrent), recurrent_cols, operands(thread_packing(id)), Kh, Kh,
                recurrent.npanels, a.w_hh_scale};
    }
    AsUsedInput input_as_used(int id) const {
        T* const mine = as_used ? thread_packing(id) + (scratch.input_packing - scratch.recurrent_packing) : nullptr;
        return {source(Weight::input), input_cols, operands(mine), Ki, Geo::input_kc(s), input_panels, a.w_ih_scale};
    }

   private:
    static V* operands(T* p) { return reinterpret_cast<V*>(p); }
    // Thread id's part of the scratch for packing as used (W_hh's panels, then W_ih's).
    T* thread_packing(int id) const {
        return as_used ? scratch.recurrent_packing + id * scratch.as_used_values : nullptr;
    }
    // A weight matrix as stored: f(the pointer to its values of T, bfloat16 bits or int8).
    enum class Weight { input, recurrent, projection };  // W_ih, W_hh, W_hr
    template <class F> auto with_stored(Weight w, F&& f) const {
        const bool in = w == Weight::input, rec = w == Weight::recurrent;
        if constexpr (kPairs) return f(in ? a.w_ih_bf16 : rec ? a.w_hh_bf16 : a.w_hr_bf16);
        else if constexpr (kQuads) return f(in ? a.w_ih_i8 : rec ? a.w_hh_i8 : a.w_hr_i8);
        else return f(in ? a.w_ih : rec ? a.w_hh : a.w_hr);
    }
    // ... as the packings read it: its rows of I, S or H values.
    Source source(Weight which) const {
        const Index K = which == Weight::input ? s.I : which == Weight::recurrent ? S : H;
        return with_stored(which, [&](auto w) {
            if constexpr (kPairs || kQuads) return Source{w, K};
            else return Source{w, 1, K};
        });
    }

    // The members in the order they are made (each from those before it): the call's weights and
    // caches, then what the products read.
    const LayerForward<T>& a;
    const LayerShape& s;
    const Index H, GH, S;  // S: h's size (state_size)
    T* const wcache;
    const ForwardScratch<T>& scratch;
    const WeightCache<T> cache, input_cache;  // W_hh's, W_ih's
    const std::uint64_t tag, input_tag;
    const bool fresh, input_fresh;  // not filled by this build and layout: every panel is packed

   public:
    const bool as_used;  // a single step: the panels of W_hh and W_ih packed as used
    const Index Kh, Ki, Kr;  // rows of the packed operands of W_hh, W_ih and W_hr
    const GateCols<T> recurrent_cols;
    const Index groups;  // the hidden units' groups (LayerGeometry::unit_groups)
    const Packed<T, NV, V> recurrent;
    const PlainCols<T> input_cols;
    const Index input_panels;
    const Packed<T, kInputNV, V> input;
    const PlainCols<T> state_cols;  // W_hr's product's columns: h's units
    const Index state_panels;       // ... in panels
    const Packed<T, NV, V> hr;      // W_hr, with projections
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
