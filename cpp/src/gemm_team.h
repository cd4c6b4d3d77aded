// The products by a team of threads: which part of C each thread computes (team_part), a product
// whose B is packed already (weights kept packed), one that packs B a k-block at a time, and column
// sums. Every thread of the team calls the last three; each ends with a barrier, after which its
// result is complete.
#pragma once
#include "gemm.h"
#include "team.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Which part of C a thread of the team computes: panels when there are enough for everyone (and
// not by_rows), else rows in whole MR blocks (so the blocks, and the last one's tail, sit on one
// grid from row 0 whatever the split). Either way a thread owns the same C tiles in every k-block.
struct Part {
    Index m0, m1, p0, p1;
};
template <int MR> Part team_part(const Team& team, Index M, Index np, bool by_rows = false) {
    if ((np >= team.n && !by_rows) || M <= MR) {
        const Range q = team.split(np);
        return {0, M, q.lo, q.hi};
    }
    const Range rb = team.split((M + MR - 1) / MR);
    return {rb.lo * MR, rb.hi * MR < M ? rb.hi * MR : M, 0, np};
}

// C (M, N) = A . B + bias row (or + 0), with B already packed whole (every k-block) in P, e.g.
// weights packed once per call or kept packed between calls. No barrier between k-blocks (a thread
// owns its tiles of C in all of them); one at the end, after which C is complete.
template <class T, int MR, int NV, class Panels = Packed<T, NV>>
void gemm_packed_team(const Team& team, Index M, Mat<typename Panels::Activation> A, const Panels& P, PlainCols<T> cols,
                      T* C, Index ldc, const T* bias) {
    static_assert(MR <= 8, "gemm_block's short blocks have fewer than 8 rows");
    if (P.K == 0) {  // nothing to sum: C is the bias row, or zero
        const Range r = team.split(M);
        for (Index m = r.lo; m < r.hi; ++m)
            for (Index n = 0; n < cols.N; ++n) C[m * ldc + n] = bias ? bias[n] : T(0);
    }
    const Part part = team_part<MR>(team, M, P.npanels);
    for (Index kb = 0; kb * P.KC < P.K; ++kb) {
        const Init init = kb > 0 ? Init::load : bias ? Init::bias : Init::zero;
        gemm_block<T, MR, NV, PlainCols<T>, Tail::grid, Panels>(part.m0, part.m1, A, kb * P.KC, P, kb, cols, part.p0,
                                                               part.p1, C, ldc, init, bias);
    }
    team.barrier();
}

// Whole product by a team of threads: C (M, N) = A . B [+ C if accumulate][+ bias row if bias].
// pack_buf holds KC * (panels * NV * W) values. Every thread of the team must call it.
template <class T, int MR, int NV, Tail tail = Tail::grid>
void gemm_team(const Team& team, Index M, Index N, Index K, Mat<T> A, Mat<T> B, T* C, Index ldc,
               bool accumulate, const T* bias, T* pack_buf, Index KC, T* apack = nullptr) {
    static_assert(MR <= 8, "gemm_block's short blocks have fewer than 8 rows");
    PlainCols<T> cols{N};
    const Index np = (cols.nvec() + NV - 1) / NV;
    if (K == 0) {  // nothing to sum: C is bias, zero, or unchanged
        if (!accumulate) {
            const Range r = team.split(M);
            for (Index m = r.lo; m < r.hi; ++m)
                for (Index n = 0; n < N; ++n) C[m * ldc + n] = bias ? bias[n] : T(0);
        }
        team.barrier();
        return;
    }
    // k-blocks of nearly one size, at most KC (the last one shorter by less than the number of
    // blocks): K = 1600 and KC = 512 make 4 of 400, not 3 of 512 and a short one of 64 with a
    // barrier, a packing and a pass over C of its own.
    const Index nkb = (K + KC - 1) / KC, kcb = (K + nkb - 1) / nkb;
    for (Index k0 = 0; k0 < K; k0 += kcb) {
        const Index kc = K - k0 < kcb ? K - k0 : kcb;
        Packed<T, NV> P{pack_buf, kc, kc, np};
        Mat<T> Bk{&B.p[k0 * B.rs], B.rs, B.cs};
        const Range q = team.split(np);
        pack_panels(P, Bk, cols, q.lo, q.hi);
        team.barrier();
        const Init init = k0 > 0 || accumulate ? Init::load : bias ? Init::bias : Init::zero;
        // A transposed operand is copied by each thread for the rows it computes: with enough rows,
        // split rows, so that no two threads copy the same ones.
        const Part part = team_part<MR>(team, M, np, apack != nullptr && M >= 4 * MR * team.n);
        gemm_block<T, MR, NV, PlainCols<T>, tail>(part.m0, part.m1, A, k0, P, 0, cols, part.p0, part.p1, C, ldc,
                                                  init, bias, apack);
        team.barrier();
    }
}

// out[c] += sum over rows r of A[r * lda + c], or with X of A[r * lda + c] * X[r * ldx + c]: columns
// split over the team, rows summed in order.
template <class T>
void column_sums_team(const Team& team, Index rows, Index ncols, const T* A, Index lda, T* out,
                      const T* X = nullptr, Index ldx = 0) {
    constexpr int W = simd<T>::W;
    const Range vr = team.split((ncols + W - 1) / W);
    for (Index v = vr.lo; v < vr.hi; ++v) {
        const Index c = v * W;
        const int n = c + W <= ncols ? W : int(ncols - c);
        vec<T> s = splat<T>(0);
        if (X)
            for (Index r = 0; r < rows; ++r) s += load_n(A + r * lda + c, n) * load_n(X + r * ldx + c, n);
        else
            for (Index r = 0; r < rows; ++r) s += load_n(A + r * lda + c, n);
        store_n(out + c, load_n(out + c, n) + s, n);
    }
    team.barrier();
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
