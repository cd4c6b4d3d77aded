// A linear layer applied to rows: y (N, O) = x (N, F) W^T + b, with W (O, F) in PyTorch's layout.
// Backward: dx = dy W (overwritten), dW += dy^T x, db += the column sums of dy. A row's result does
// not depend on its place among the N rows (Tail::exact). Each is one team product on the same
// micro-kernel as the recurrent layers, so a training loop's output head runs on rnnfast's threads
// instead of waking a BLAS library's (whose spinning threads would compete with the recurrent
// kernels for the cores).
#pragma once
#include "gemm_team.h"
#include "rnnfast/toolkit.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> struct LinearDriver {
    static constexpr int W = simd<T>::W;
    static Index panels(Index n) { return (PlainCols<T>{n}.nvec() + kPlainNV - 1) / kPlainNV; }
    static int threads(Index N, Index F, Index O, int requested) { return team_size(N * F * O, 65536, requested); }
    static Index scratch(Index N, Index F, Index O, int requested) {
        const Index np = panels(O) > panels(F) ? panels(O) : panels(F);
        return kKC * np * kPlainNV * W + threads(N, F, O, requested) * gemm_mc<T, kPlainMR>() * kKC + kAlignSlack;
    }

    static void forward(const LinearForward<T>& a) {
        const int nth = threads(a.N, a.F, a.O, a.threads);
        T* const scratch = align64(a.scratch);
        run_team(nth, [&](const Team& team) {
            const FlushDenormals ftz;
            gemm_team<T, kPlainMR, kPlainNV, Tail::exact>(team, a.N, a.O, a.F, Mat<T>{a.x, a.F, 1},
                                                          Mat<T>{a.w, 1, a.F}, a.y, a.O, false, a.b, scratch, kKC);
        });
    }

    static void backward(const LinearBackward<T>& a) {
        const int nth = threads(a.N, a.F, a.O, a.threads);
        const Index np = panels(a.O) > panels(a.F) ? panels(a.O) : panels(a.F);
        T* const scratch = align64(a.scratch);
        T* apack_all = scratch + kKC * np * kPlainNV * W;
        run_team(nth, [&](const Team& tm) {
            const FlushDenormals ftz;
            if (a.dx)
                gemm_team<T, kPlainMR, kPlainNV, Tail::exact>(tm, a.N, a.F, a.O, Mat<T>{a.dy, a.O, 1},
                                                              Mat<T>{a.w, a.F, 1}, a.dx, a.F, false, nullptr, scratch,
                                                              kKC);
            T* apack = apack_all + tm.id * gemm_mc<T, kPlainMR>() * kKC;  // dy^T is read transposed: pack it
            gemm_team<T, kPlainMR, kPlainNV, Tail::exact>(tm, a.O, a.F, a.N, Mat<T>{a.dy, 1, a.O}, Mat<T>{a.x, a.F, 1},
                                                          a.dw, a.F, true, nullptr, scratch, kKC, apack);
            if (a.db) column_sums_team(tm, a.N, a.O, a.dy, a.O, a.db);
        });
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
