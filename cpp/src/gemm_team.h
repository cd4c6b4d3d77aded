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
// A tail of fewer than min_tail rows goes with the block before it, so that no thread's rows are
// only such a tail (with Tail::exact_unless_short and kExactRows: then no thread's block splits k
// unless all of M is that short).
struct Part {
    Index m0, m1, p0, p1;
};
template <int MR> Part team_part(const Team& team, Index M, Index np, bool by_rows = false, Index min_tail = 0) {
    if ((np >= team.n && !by_rows) || M <= MR) {
        const Range q = team.split(np);
        return {0, M, q.lo, q.hi};
    }
    const Index rest = M % MR, blocks = M / MR + (rest > 0 && rest >= min_tail ? 1 : 0);
    const Range rb = team.split(blocks);
    return {rb.lo * MR, rb.hi == blocks ? M : rb.hi * MR, 0, np};
}

// Rows [m0, m1) x panels [p0, p1) of C (M, N) = A . B + bias row (or + 0), with B already packed
// whole (every k-block) in P, by one thread: the k-blocks in turn, the first from the bias (or
// zero), the others adding to C. With K = 0 there is no k-block: callers fill the rows (bias_rows).
template <class T, int MR, int NV, Tail tail, class Panels>
void gemm_packed_rows(Index m0, Index m1, Mat<typename Panels::Activation> A, const Panels& P, PlainCols<T> cols,
                      Index p0, Index p1, T* C, Index ldc, const T* bias) {
    static_assert(MR <= 8, "gemm_block's short blocks have fewer than 8 rows");
    for (Index kb = 0; kb * P.KC < P.K; ++kb) {
        const Init init = kb > 0 ? Init::load : bias ? Init::bias : Init::zero;
        gemm_block<T, MR, NV, PlainCols<T>, tail, Panels>(m0, m1, A, kb * P.KC, P, kb, cols, p0, p1, C, ldc, init,
                                                         bias);
    }
}
// Rows [m0, m1) of C (N columns) set to the bias row, or zero: a product over K = 0.
template <class T> void bias_rows(Index m0, Index m1, Index N, T* C, Index ldc, const T* bias) {
    for (Index m = m0; m < m1; ++m)
        for (Index n = 0; n < N; ++n) C[m * ldc + n] = bias ? bias[n] : T(0);
}

// The same product by a team of threads, e.g. of weights packed once per call or kept packed
// between calls. No barrier between k-blocks (a thread owns its tiles of C in all of them); one at
// the end, after which C is complete.
template <class T, int MR, int NV, Tail tail = Tail::grid, class Panels = Packed<T, NV>>
void gemm_packed_team(const Team& team, Index M, Mat<typename Panels::Activation> A, const Panels& P, PlainCols<T> cols,
                      T* C, Index ldc, const T* bias) {
    if (P.K == 0) {
        const Range r = team.split(M);
        bias_rows(r.lo, r.hi, cols.N, C, ldc, bias);
    }
    const Part part = team_part<MR>(team, M, P.npanels, false, tail == Tail::grid ? 0 : kExactRows<NV>);
    gemm_packed_rows<T, MR, NV, tail>(part.m0, part.m1, A, P, cols, part.p0, part.p1, C, ldc, bias);
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
