// What a layer's forward products read of x_t, h_{t-1} and, with projections, r_t = o_t tanh(c_t)
// (ForwardPass's operands): the arrays as they are, m * h with recurrent dropout, or with
// reduced-precision weights the activations made into bfloat16 pairs or int8 quads
// (LayerShape::precision). V is the products' operand type: T, Bf16Pair or Int8Quad.
#pragma once
#include <type_traits>

#include "workspace_layout.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, int G, class V> struct ForwardOperands {
    static constexpr bool kPairs = std::is_same_v<V, Bf16Pair>, kQuads = std::is_same_v<V, Int8Quad>;
    using A = typename activation_of<V>::type;
    static A* activations(T* p) { return reinterpret_cast<A*>(p); }

    ForwardOperands(const LayerForward<T>& a, const ForwardScratch<T>& scratch, Index Kh, Index Ki, Index Kr)
        : a(a), s(a.s), scratch(scratch), B(a.s.B), S(state_size(a.s)), Kh(Kh), Ki(Ki), Kr(Kr) {}

    // What step k's recurrent product reads of row b, for units [u0, u1) of h_{t-1} = h: m * h with
    // recurrent dropout, h's bfloat16 pairs with bfloat16 weights (u0 even), else h itself (nothing
    // to write; int8's quads are made by recurrent()).
    void write(Index k, Index b, const T* h, Index u0, Index u1) const {
        if constexpr (kPairs)
            to_activation_pairs(activations(scratch.state_pairs[k & 1]) + b * Kh, h, u0, u1, S, Kh);
        else if (s.recurrent_dropout)
            mask_units(scratch.masked[k & 1] + b * S, h, a.recurrent_mask + b * S, u0, u1);
    }
    // ... and the matrix it reads, for a thread's rows: with int8 weights those rows of
    // h_{t-1} = hp quantized into the thread's own buffer.
    Mat<A> recurrent(Index k, const T* hp, const Share& me) const {
        if constexpr (kQuads) {
            return quantized_rows(hp, S, Kh, me);
        } else if constexpr (kPairs) {
            return {activations(scratch.state_pairs[k & 1]), Kh, 1};
        } else {
            return {s.recurrent_dropout ? scratch.masked[k & 1] : hp, S, 1};
        }
    }
    // With projections, what W_hr's product reads of r = o * tanh(c) (rows of H): with bfloat16
    // weights the pairs that write_projection_operand() made of row b's units [u0, u1) (u0 even) as the
    // cell wrote them; with int8 the thread's rows of r quantized now (every unit of a row written:
    // after the barrier in unit mode); else r itself.
    void write_projection_operand(Index b, const T* r, Index u0, Index u1) const {
        if constexpr (kPairs) to_activation_pairs(activations(scratch.unprojected_pairs) + b * Kr, r, u0, u1, s.H, Kr);
    }
    Mat<A> projection_operand(const T* r, const Share& me) const {
        if constexpr (kQuads) return quantized_rows(r, s.H, Kr, me);
        else if constexpr (kPairs) return {activations(scratch.unprojected_pairs), Kr, 1};
        else return {r, s.H, 1};
    }
    // The chunk's inputs as the projection reads them: x in place, or its rows made pairs or quads:
    // with own_rows by each thread for its rows of each step (only its own product uses them; on
    // AMX a tile's load of 16 rows may also read the next thread's, whose products it drops), else
    // split over the team, which then meets (the product's threads read every row).
    Mat<A> input(const Team& team, const Share& me, bool own_rows, Index t_lo, Index steps) const {
        const T* x = a.x + t_lo * B * a.ldx;
        auto each_row = [&](auto&& make) {  // make(r) for each row this thread makes; the team's split meets after
            if (own_rows) {
                for (Index k = 0; k < steps; ++k)
                    for (Index b = me.b0; b < me.b1; ++b) make(k * B + b);
            } else {
                const Range rows = team.split(steps * B);
                for (Index r = rows.lo; r < rows.hi; ++r) make(r);
                team.barrier();
            }
        };
        if constexpr (kQuads) {  // in two digits, whose products the int8 kernels add (Mat::second)
            A* const q[2] = {activations(scratch.input_quads[0]), activations(scratch.input_quads[1])};
            each_row([&](Index r) {
                scratch.input_scales[0][r] = quantize_row(q[0] + r * Ki, x + r * a.ldx, s.I, Ki, q[1] + r * Ki,
                                                          scratch.input_scales[1] + r);
            });
            return {q[0], Ki, 1, scratch.input_scales[0], q[1], scratch.input_scales[1]};
        } else if constexpr (kPairs) {
            each_row([&](Index r) {
                to_activation_pairs(activations(scratch.input_pairs) + r * Ki, x + r * a.ldx, 0, s.I, s.I, Ki);
            });
            return {activations(scratch.input_pairs), Ki, 1};
        } else {
            return {x, a.ldx, 1};
        }
    }

   private:
    // Rows [me.b0, me.b1) of `rows` (n values each) in one int8 digit, into the thread's own buffer
    // (K quads a row), with their scales.
    Mat<A> quantized_rows(const T* rows, Index n, Index K, const Share& me) const {
        T* mine = scratch.state_quads + me.id * scratch.state_quad_values;
        A* q = activations(mine);
        float* scale = reinterpret_cast<float*>(mine + scratch.state_scales_at);
        for (Index b = me.b0; b < me.b1; ++b) scale[b] = quantize_row(q + b * K, rows + b * n, n, K);
        return {q, K, 1, scale};
    }

    const LayerForward<T>& a;
    const LayerShape& s;
    const ForwardScratch<T>& scratch;
    const Index B, S;        // S: h's size
    const Index Kh, Ki, Kr;  // rows of the packed operands of W_hh, W_ih and W_hr
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
