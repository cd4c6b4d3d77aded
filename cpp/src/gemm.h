// Matrix products for the sequence driver: C (M, N) = A (M, K) . B (K, N) (+ C or + bias).
//
// A is read in place through strides (a transposed operand is just other strides), B is packed
// into panels of NV vectors (NV * W columns) by KC rows, and one register-blocked micro-kernel
// does every product. Each output element is computed by exactly one thread, summing over k in a
// fixed order, so results do not depend on how many threads share the work.
//
// Column maps say which output column each packed vector holds: PlainCols for an ordinary
// product, GateCols for the recurrent weights, where vector v holds gate (v % G) of unit tile
// (v / G), so that one panel carries every gate of its hidden units.
#pragma once
#include "simd.h"
#include "team.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Register blocking of every product: MR rows x NV vectors of C per micro-kernel call (12 of 16
// vector registers on AVX2/SSE, 16 of 32 on AVX-512), B packed in k-blocks of KC: a panel of
// KC x NV vectors is 32 KiB on AVX2 and AVX-512 (16 KiB on SSE/NEON). On Zen 3 (AVX2, 32 KiB
// L1d) KC = 512 against 256 made (3200 x 512) x (512 x 2048) products 2-11% faster and layers
// with H >= 512 0.98-1.20x (medians, benchmarks/RESULTS.md); on a 16-core Xeon (AVX-512, 48 KiB
// L1d) KC = 128 or 192 was no faster than 256 for the layers. The recurrent products take all
// of k in one block (k-blocks of 256 there were slower).
constexpr int kMR = RNNFAST_VBYTES == 64 ? 8 : 6;
constexpr int kNV = 2;
constexpr index kKC = RNNFAST_VBYTES == 64 ? 256 : 512;

template <class T> struct Mat {  // element (r, c) is p[r * rs + c * cs]
    const T* p;
    index rs, cs;
    T at(index r, index c) const { return p[r * rs + c * cs]; }
};

template <class T> struct PlainCols {
    index N;
    static constexpr int W = simd<T>::W;
    index nvec() const { return (N + W - 1) / W; }
    index col(index v) const { return v * W; }
    int valid(index v) const { return v * W + W <= N ? W : int(N - v * W); }
};

template <class T> struct GateCols {
    index G, H;
    static constexpr int W = simd<T>::W;
    index tiles() const { return (H + W - 1) / W; }
    index nvec() const { return G * tiles(); }
    index col(index v) const { return (v % G) * H + (v / G) * W; }
    int valid(index v) const { return (v / G) * W + W <= H ? W : int(H - (v / G) * W); }
};

// B packed for the micro-kernel: K-block kb of panel p is a (kc, NV*W) row-major block.
template <class T, int NV> struct Packed {
    static constexpr int W = simd<T>::W;
    T* data;
    index K, KC, npanels;
    static index size(index K, index nvec) { return K * ((nvec + NV - 1) / NV) * NV * W; }
    index kc(index kb) const { return K - kb * KC < KC ? K - kb * KC : KC; }
    T* block(index kb, index p) const { return data + kb * KC * npanels * NV * W + p * kc(kb) * NV * W; }
};

// Packs panels [p0, p1) of every K block; vectors past the map's end and lanes past a vector's
// valid count are zero.
template <class T, int NV, class Cols>
void pack_panels(const Packed<T, NV>& P, Mat<T> B, Cols cols, index p0, index p1) {
    constexpr int W = simd<T>::W;
    const index nvec = cols.nvec();
    for (index kb = 0; kb * P.KC < P.K; ++kb) {
        const index kc = P.kc(kb);
        for (index p = p0; p < p1; ++p) {
            T* dst = P.block(kb, p);
            for (int vi = 0; vi < NV; ++vi) {
                const index v = p * NV + vi;
                const int n = v < nvec ? cols.valid(v) : 0;
                const index c0 = v < nvec ? cols.col(v) : 0;
                for (index k = 0; k < kc; ++k) {
                    T* d = dst + (k * NV + vi) * W;
                    for (int l = 0; l < n; ++l) d[l] = B.at(kb * P.KC + k, c0 + l);
                    for (int l = n; l < W; ++l) d[l] = T(0);
                }
            }
        }
    }
}

enum class Init { zero, load, bias };

// C rows [0, MR) x one panel over kc values of k. cols/valid give each vector's place in C.
// KS > 1 splits k into KS interleaved partial sums (added in a fixed order at the end), so that
// a kernel with few rows still has enough independent FMA chains to hide the FMA latency.
template <class T, int MR, int NV, int KS = 1>
inline void micro(index kc, const T* a, index rs, index cs, const T* b, T* c, index ldc,
                  const index* cols, const int* valid, Init init, const T* bias) {
    constexpr int W = simd<T>::W;
    vec<T> acc[KS][MR][NV];
    for (int vi = 0; vi < NV; ++vi) {
        vec<T> b0 = init == Init::bias ? load_n(bias + cols[vi], valid[vi]) : splat<T>(0);
        for (int m = 0; m < MR; ++m) {
            acc[0][m][vi] = init == Init::load ? load_n(c + m * ldc + cols[vi], valid[vi]) : b0;
            for (int s = 1; s < KS; ++s) acc[s][m][vi] = splat<T>(0);
        }
    }
    index k = 0;
    for (; k + KS <= kc; k += KS)
        for (int s = 0; s < KS; ++s) {
            vec<T> bv[NV];
            for (int vi = 0; vi < NV; ++vi) bv[vi] = load(b + ((k + s) * NV + vi) * W);
            for (int m = 0; m < MR; ++m) {
                const vec<T> am = splat(a[m * rs + (k + s) * cs]);
                for (int vi = 0; vi < NV; ++vi) acc[s][m][vi] += am * bv[vi];
            }
        }
    for (; k < kc; ++k)
        for (int m = 0; m < MR; ++m)
            for (int vi = 0; vi < NV; ++vi) acc[0][m][vi] += splat(a[m * rs + k * cs]) * load(b + (k * NV + vi) * W);
    for (int s = 1; s < KS; ++s)
        for (int m = 0; m < MR; ++m)
            for (int vi = 0; vi < NV; ++vi) acc[0][m][vi] += acc[s][m][vi];
    for (int m = 0; m < MR; ++m)
        for (int vi = 0; vi < NV; ++vi) store_n(c + m * ldc + cols[vi], acc[0][m][vi], valid[vi]);
}

// Rows [m0, m1) of C against panels [p0, p1) of one packed K block. Rows go in blocks of MC so
// that a block of A (MC x kc) stays in L2 while every panel passes over it; a panel (kc x NV*W)
// stays in L1 while the block's rows pass over it.
//
// A transposed operand (A.cs != 1: each k a far-apart row, a new page per k) is first copied into
// apack (MC x kc values, per thread) as MR-row groups, [group][k][row], read contiguously.
template <class T, int MR> constexpr index gemm_mc() { return MR * 20; }

// KSplit = false keeps every row's sum in plain k order, so a row's result does not depend on
// where in the matrix it sits (the linear layer promises that; the recurrent step prefers speed).
template <class T, int MR, int NV, class Cols, bool KSplit = true>
void gemm_block(index m0, index m1, Mat<T> A, index k0, const Packed<T, NV>& P, index kb,
                Cols cols, index p0, index p1, T* C, index ldc, Init init, const T* bias,
                T* apack = nullptr) {
    constexpr index MC = gemm_mc<T, MR>();
    const index kc = P.kc(kb), nvec = cols.nvec();
    for (index mb = m0; mb < m1; mb += MC) {
        const index me = mb + MC < m1 ? mb + MC : m1;
        if (apack) {
            for (index g = mb; g < me; g += MR) {
                const index rows = me - g < MR ? me - g : MR;
                T* dst = apack + (g - mb) * kc;
                for (index k = 0; k < kc; ++k)
                    for (index r = 0; r < rows; ++r) dst[k * MR + r] = A.at(g + r, k0 + k);
            }
        }
        for (index p = p0; p < p1; ++p) {
            index cv[NV];
            int nv[NV];
            for (int vi = 0; vi < NV; ++vi) {
                const index v = p * NV + vi;
                cv[vi] = v < nvec ? cols.col(v) : 0;
                nv[vi] = v < nvec ? cols.valid(v) : 0;
            }
            const T* b = P.block(kb, p);
            // Row m of the block: &a_of(m)[k * cs] is A(m, k0 + k).
            auto a_of = [&](index m) { return apack ? apack + (m - mb) * kc : &A.p[m * A.rs + k0 * A.cs]; };
            const index rs = apack ? 1 : A.rs, cs = apack ? MR : A.cs;
            index m = mb;
            for (; m + MR <= me; m += MR)
                micro<T, MR, NV>(kc, a_of(m), rs, cs, b, C + m * ldc, ldc, cv, nv, init, bias);
            // Remaining rows, one kernel instance per count so no row past me is read; with few
            // rows, k is split to keep at least 8 FMA chains in flight.
            const index rest = me - m;
            const T* a = a_of(m);
            T* c = C + m * ldc;
            switch (rest) {
#define RNNFAST_TAIL(R)                                                                                  \
    case R:                                                                                              \
        if (R < MR)                                                                                      \
            micro<T, (R < MR ? R : 1), NV, (!KSplit || R * NV >= 8 ? 1 : R * NV >= 4 ? 2 : 4)>(            \
                kc, a, rs, cs, b, c, ldc, cv, nv, init, bias);                                           \
        break;
                RNNFAST_TAIL(1) RNNFAST_TAIL(2) RNNFAST_TAIL(3) RNNFAST_TAIL(4) RNNFAST_TAIL(5)
                RNNFAST_TAIL(6) RNNFAST_TAIL(7)
#undef RNNFAST_TAIL
                default: break;
            }
        }
    }
}

// Which part of C a thread of the team computes: panels when there are enough for everyone (and
// not by_rows), else rows in whole MR blocks (so the blocks, and the last one's tail, sit on one
// grid from row 0 whatever the split). Either way a thread owns the same C tiles in every k-block.
struct Part {
    index m0, m1, p0, p1;
};
template <int MR> Part team_part(const Team& team, index M, index np, bool by_rows = false) {
    if ((np >= team.n && !by_rows) || M <= MR) {
        const Range q = team.split(np);
        return {0, M, q.lo, q.hi};
    }
    const Range rb = team.split((M + MR - 1) / MR);
    return {rb.lo * MR, rb.hi * MR < M ? rb.hi * MR : M, 0, np};
}

// C (M, N) = A . B + bias row (or + 0), with B already packed whole (every k-block) in P, e.g.
// weights packed once per call or kept packed between calls. No barrier between k-blocks (a
// thread owns its tiles of C in all of them); one at the end, after which C is complete.
template <class T, int MR, int NV>
void gemm_packed_team(const Team& team, index M, Mat<T> A, const Packed<T, NV>& P, PlainCols<T> cols, T* C,
                      index ldc, const T* bias) {
    static_assert(MR <= 8, "gemm_block's tail switch covers MR <= 8");
    if (P.K == 0) {  // nothing to sum: C is the bias row, or zero
        const Range r = team.split(M);
        for (index m = r.lo; m < r.hi; ++m)
            for (index n = 0; n < cols.N; ++n) C[m * ldc + n] = bias ? bias[n] : T(0);
    }
    const Part part = team_part<MR>(team, M, P.npanels);
    for (index kb = 0; kb * P.KC < P.K; ++kb) {
        const Init init = kb > 0 ? Init::load : bias ? Init::bias : Init::zero;
        gemm_block<T, MR, NV>(part.m0, part.m1, A, kb * P.KC, P, kb, cols, part.p0, part.p1, C, ldc, init, bias);
    }
    team.barrier();
}

// Whole product by a team of threads: C (M, N) = A . B [+ C if accumulate][+ bias row if bias].
// pack_buf holds KC * (panels * NV * W) values. Every thread of the team must call it.
template <class T, int MR, int NV, bool KSplit = true>
void gemm_team(const Team& team, index M, index N, index K, Mat<T> A, Mat<T> B, T* C, index ldc,
               bool accumulate, const T* bias, T* pack_buf, index KC, T* apack = nullptr) {
    static_assert(MR <= 8, "tail switch covers MR <= 8");
    PlainCols<T> cols{N};
    const index np = (cols.nvec() + NV - 1) / NV;
    if (K == 0) {  // nothing to sum: C is bias, zero, or unchanged
        if (!accumulate) {
            const Range r = team.split(M);
            for (index m = r.lo; m < r.hi; ++m)
                for (index n = 0; n < N; ++n) C[m * ldc + n] = bias ? bias[n] : T(0);
        }
        team.barrier();
        return;
    }
    for (index k0 = 0; k0 < K; k0 += KC) {
        const index kc = K - k0 < KC ? K - k0 : KC;
        Packed<T, NV> P{pack_buf, kc, kc, np};
        Mat<T> Bk{&B.p[k0 * B.rs], B.rs, B.cs};
        const Range q = team.split(np);
        pack_panels(P, Bk, cols, q.lo, q.hi);
        team.barrier();
        const Init init = k0 > 0 || accumulate ? Init::load : bias ? Init::bias : Init::zero;
        // A transposed operand is copied by each thread for the rows it computes: with enough rows,
        // split rows, so that no two threads copy the same ones.
        const Part part = team_part<MR>(team, M, np, apack != nullptr && M >= 4 * MR * team.n);
        gemm_block<T, MR, NV, PlainCols<T>, KSplit>(part.m0, part.m1, A, k0, P, 0, cols, part.p0, part.p1, C, ldc,
                                                    init, bias, apack);
        team.barrier();
    }
}

// out[c] += sum over rows r of A[r * lda + c]: columns split over the team, rows summed in order.
template <class T>
void column_sums_team(const Team& team, index rows, index ncols, const T* A, index lda, T* out) {
    constexpr int W = simd<T>::W;
    const Range vr = team.split((ncols + W - 1) / W);
    for (index v = vr.lo; v < vr.hi; ++v) {
        const index c = v * W;
        const int n = c + W <= ncols ? W : int(ncols - c);
        vec<T> s = splat<T>(0);
        for (index r = 0; r < rows; ++r) s += load_n(A + r * lda + c, n);
        store_n(out + c, load_n(out + c, n) + s, n);
    }
    team.barrier();
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
