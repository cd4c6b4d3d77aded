// The sequence driver: one template runs any cell over a whole sequence, forward or backward in
// time, with or without per-entry lengths, for training (saving what backward needs) or eval.
// Its parts, each in a file named after it:
//   layer_geometry.h   how W_hh's panels map to hidden units; chunks of steps; packing as used
//   layer_schedule.h   threads per call, unit mode or batch mode, what each thread owns
//   workspace_layout.h the saved workspace, the calls' scratch and the weight cache: layouts, sizes
//   forward_pass.h     the forward: fold biases, load state, project a chunk, step, store
//   forward_weights.h  the forward's weights packed into panels (weight cache, or as used)
//   backward_pass.h    BPTT: pack, load gradients, step, carry dh, bias sums, weight products
// The cells' gate math is cells.h (the layer-normalised cells' layer_norm_cells.h); the products
// gemm.h and gemm_team.h; zoneout's masks zoneout.h.
#pragma once
#include "backward_pass.h"
#include "forward_pass.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, class Cell> struct Driver {
    using Work = WorkspaceLayout<T, Cell::G>;
    static void forward(const LayerForward<T>& a) {
        if constexpr (std::is_same_v<T, float>)
            if (a.s.precision == Precision::bfloat16) return ForwardPass<T, Cell, Bf16Pair>(a).run();
        if constexpr (std::is_same_v<T, float>)
            if (a.s.precision == Precision::int8) return ForwardPass<T, Cell, Int8Quad>(a).run();
        ForwardPass<T, Cell>(a).run();
    }
    static void backward(const LayerBackward<T>& a) { BackwardPass<T, Cell>(a).run(); }
    static Index saved_size(const LayerShape& s) { return Work::saved_size(s); }
    static Index forward_scratch(const LayerShape& s, bool training, int threads) {
        return Work::forward_scratch(s, training, threads);
    }
    static Index backward_scratch(const LayerShape& s, int threads, bool consume) {
        return Work::backward_scratch(s, threads, consume);
    }
    static Index weight_cache(const LayerShape& s, bool backward) { return Work::weight_cache(s, backward); }
};

// Calls f(Driver<T, the cell>{}) for a cell kind known only at run time.
template <class T, class F> void with_cell(CellKind c, F&& f) {
    switch (c) {
        case CellKind::rnn_tanh: f(Driver<T, RnnCell<T, false>>{}); break;
        case CellKind::rnn_relu: f(Driver<T, RnnCell<T, true>>{}); break;
        case CellKind::lstm: f(Driver<T, LstmCell<T>>{}); break;
        case CellKind::gru: f(Driver<T, GruCell<T>>{}); break;
        case CellKind::layernorm_lstm: f(Driver<T, LayerNormLstmCell<T>>{}); break;
        case CellKind::layernorm_gru: f(Driver<T, LayerNormGruCell<T>>{}); break;
    }
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
