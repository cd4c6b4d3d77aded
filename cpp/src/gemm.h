// Matrix products for the sequence driver: C (M, N) = A (M, K) . B (K, N) (+ C or + bias).
//
// A is read in place through strides (a transposed operand is just other strides), B is packed
// into panels of NV vectors (NV * W columns) by KC rows, and one register-blocked micro-kernel
// does every product. Each output element is computed by exactly one thread, summing over k in a
// fixed order, so results do not depend on how many threads share the work. B's packings and
// column maps are in packing.h; the products by a team of threads in gemm_team.h.
#pragma once
#include <cassert>
#include <cstring>
#include <type_traits>

#include "packing.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// Register blocking: MR rows x NV vectors of C per micro-kernel call (12 of 16 vector registers on
// AVX2/SSE, 16 of 32 on AVX-512): kMR x kNV below for the recurrent step and, by default, the plain
// products. Cache blocking of the plain products (the recurrent ones take all of k in one block): B
// is packed in k-blocks of at most KC rows, so a panel is KC x NV vectors, and rows of A go in
// chunks of MC (= MR * kMCBlocks) against each panel. On AVX2 a panel (KC = 512: 32 KiB) stays in
// L1 while a chunk of A streams from L2. On AVX-512 a panel of the same size holds half the k (KC =
// 256) and C, read and written once per k-block, is then what limits large products; there a panel
// of KC = 1024 (128 KiB) lives in L2 instead, and C is passed over a quarter as often. Both are
// build options (RNNFAST_KC, RNNFAST_MC_BLOCKS, set per ISA by CMake) so that tools/sweep.py can
// compare builds side by side; the defaults and their measurements are in benchmarks/RESULTS.md.
#ifndef RNNFAST_KC
#define RNNFAST_KC (RNNFAST_VBYTES == 64 ? 1024 : 512)
#endif
#ifndef RNNFAST_MC_BLOCKS
#define RNNFAST_MC_BLOCKS 20
#endif
constexpr int kMR = RNNFAST_VBYTES == 64 ? 8 : 6;
constexpr int kNV = 2;
// The plain products on float and double panels (the input projection, the backward's dx and
// weight gradients, Linear) may take another tile than the recurrent step, whose unit groups (G
// gates of whole vector tiles) must fill its panels: build options RNNFAST_PLAIN_MR and
// RNNFAST_PLAIN_NV, for tools/sweep.py. The default is the step's tile (the wider tiles tried
// and why they lost: benchmarks/RESULTS.md). Reduced-precision panels always take the step's
// (AMX's tiles take 2 vectors).
#ifndef RNNFAST_PLAIN_MR
#define RNNFAST_PLAIN_MR kMR
#endif
#ifndef RNNFAST_PLAIN_NV
#define RNNFAST_PLAIN_NV kNV
#endif
constexpr int kPlainMR = RNNFAST_PLAIN_MR;
constexpr int kPlainNV = RNNFAST_PLAIN_NV;
// The last kEmbeddedRows rows of a full kMR-row tile on float or double operands (the recurrent
// step's, and the plain products' when theirs has kMR rows) may take their value of A as a
// broadcast memory operand of each FMA (on AVX-512 {1to16} or {1to8}: a load apiece, no broadcast
// instruction) instead of one broadcast into a register shared by the row's NV FMAs: fewer
// broadcast instructions for cores whose broadcasts take an arithmetic pipe's cycle besides the
// load (as llvm-mca models Zen 4), more loads. The same sums, so the same bits. None by default;
// build option RNNFAST_AVX512_EMBEDDED_ROWS, for tools/sweep.py; why: benchmarks/RESULTS.md.
#ifndef RNNFAST_EMBEDDED_ROWS
#define RNNFAST_EMBEDDED_ROWS 0
#endif
constexpr int kEmbeddedRows = RNNFAST_EMBEDDED_ROWS;
constexpr Index kKC = RNNFAST_KC;
constexpr Index kMCBlocks = RNNFAST_MC_BLOCKS;
static_assert(kKC > 0 && kMCBlocks > 0 && kPlainMR > 0 && kPlainNV > 0, "blocking options must be positive");
static_assert(kEmbeddedRows >= 0 && kEmbeddedRows <= kMR, "embedded rows: 0 to the tile's rows");

enum class Init { zero, load, bias };

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
#include "amx.h"        // the bfloat16 and int8 products on AMX tiles, which take Init too
#include "int8_gemm.h"  // the int8 products elsewhere
namespace rnnfast {
namespace RNNFAST_ISA_NS {

// C rows [0, MR) x one panel over kc values of k. cols/valid give each vector's place in C.
// KS > 1 splits k into KS interleaved partial sums (added in a fixed order at the end), so that
// a kernel with few rows still has enough independent FMA chains to hide the FMA latency.
// VA, VB: the operands' types, T, or with bfloat16 weights (bfloat16.h) ActivationPair and
// Bf16Pair: then kc counts pairs, and each multiply-add takes a pair. Always inlined: with
// gemm_block's many instances GCC otherwise calls some out of line, and a step at B = 1 is one
// short call per panel.
template <class T> inline vec<T> load_operand(const T* b) { return load(b); }
template <class T> inline vec<T> operand_splat(T a) { return splat(a); }
template <class Vec> inline Vec madd(Vec acc, Vec b, Vec a) { return acc + a * b; }

// The k loop takes each row of the panel in kOperandPhases<VB> phases, every row of A in each:
// one (the operands as above) but for bfloat16 pairs widened to float32, which go odd values
// first, then even (the odd term first in every accumulator, as madd adds a pair): with one half
// widened at a time AVX2's 6 x 2 tile has its 12 accumulators, 2 widened vectors, the mask and a
// broadcast in its 16 registers, where with both halves at once GCC kept an accumulator in memory.
template <class VB> constexpr int kOperandPhases = 1;
template <int Phase, class VB> inline auto load_operand_phase(const VB* b) { return load_operand(b); }
template <int Phase, class VA> inline auto operand_splat_phase(VA a) { return operand_splat(a); }
#ifndef RNNFAST_BF16_DOT
template <> constexpr int kOperandPhases<Bf16Pair> = 2;
template <int Phase> inline vec<float> load_operand_phase(const Bf16Pair* b) {
    const pair_vec p = load_pairs(b);
    return (vec<float>)(Phase == 0 ? p & 0xffff0000u : p << 16);
}
template <int Phase> inline vec<float> operand_splat_phase(ActivationPair a) {
    return splat(Phase == 0 ? a.odd : a.even);
}
#endif

// WholeVectors: every vector of the panel a whole one, C and the bias read and written with whole
// loads and stores, so that the accumulators stay in registers (load_lanes).
template <class T, int MR, int NV, int KS = 1, class VA = T, class VB = T, bool WholeVectors = false>
__attribute__((always_inline)) inline void micro(Index kc, const VA* a, Index rs, Index cs, const VB* b,
                                                 T* c, Index ldc, const Index* cols, const int* valid,
                                                 Init init, const T* bias) {
    constexpr int W = simd<T>::W;
    vec<T> acc[KS][MR][NV];
    for (int vi = 0; vi < NV; ++vi) {
        vec<T> b0 = init == Init::bias ? load_lanes<WholeVectors>(bias + cols[vi], valid[vi]) : splat<T>(0);
        for (int m = 0; m < MR; ++m) {
            acc[0][m][vi] = init == Init::load ? load_lanes<WholeVectors>(c + m * ldc + cols[vi], valid[vi]) : b0;
            for (int s = 1; s < KS; ++s) acc[s][m][vi] = splat<T>(0);
        }
    }
    Index k = 0;
    // Rows from MR - E take A's value once per FMA (kEmbeddedRows above), each load at an offset
    // of vi * zero, which the compiler cannot see is 0, so that it neither merges the loads nor
    // broadcasts the value once into a register. Without such rows, the plain loop alone: with the
    // other loop's branch beside it, never taken, GCC compiled the short blocks' loops otherwise.
    constexpr int E = std::is_same_v<VA, T> && std::is_same_v<VB, T> && MR == kMR ? kEmbeddedRows : 0;
    if constexpr (E == 0) {
        for (; k + KS <= kc; k += KS)
            for (int s = 0; s < KS; ++s) {
                auto phase = [&](auto phase_tag) __attribute__((always_inline)) {
                    constexpr int P = decltype(phase_tag)::value;
                    decltype(load_operand_phase<P>(b)) bv[NV];
                    for (int vi = 0; vi < NV; ++vi) bv[vi] = load_operand_phase<P>(b + ((k + s) * NV + vi) * W);
                    for (int m = 0; m < MR; ++m) {
                        const auto am = operand_splat_phase<P>(a[m * rs + (k + s) * cs]);
                        for (int vi = 0; vi < NV; ++vi) acc[s][m][vi] = madd(acc[s][m][vi], bv[vi], am);
                    }
                };
                phase(std::integral_constant<int, 0>{});
                if constexpr (kOperandPhases<VB> == 2) phase(std::integral_constant<int, 1>{});
            }
    } else {
        volatile Index opaque = 0;
        const Index zero = opaque;
        for (; k + KS <= kc; k += KS)
            for (int s = 0; s < KS; ++s) {
                decltype(load_operand(b)) bv[NV];
                for (int vi = 0; vi < NV; ++vi) bv[vi] = load_operand(b + ((k + s) * NV + vi) * W);
                for (int m = 0; m < MR; ++m) {
                    const VA* am = &a[m * rs + (k + s) * cs];
                    if (m < MR - E) {
                        const auto splat_am = operand_splat(*am);
                        for (int vi = 0; vi < NV; ++vi) acc[s][m][vi] = madd(acc[s][m][vi], bv[vi], splat_am);
                    } else {
                        for (int vi = 0; vi < NV; ++vi)
                            acc[s][m][vi] = madd(acc[s][m][vi], bv[vi], operand_splat(am[vi * zero]));
                    }
                }
            }
    }
    for (; k < kc; ++k)
        for (int m = 0; m < MR; ++m)
            for (int vi = 0; vi < NV; ++vi)
                acc[0][m][vi] = madd(acc[0][m][vi], load_operand(b + (k * NV + vi) * W), operand_splat(a[m * rs + k * cs]));
    for (int s = 1; s < KS; ++s)
        for (int m = 0; m < MR; ++m)
            for (int vi = 0; vi < NV; ++vi) acc[0][m][vi] += acc[s][m][vi];
    for (int m = 0; m < MR; ++m)
        for (int vi = 0; vi < NV; ++vi) store_lanes<WholeVectors>(c + m * ldc + cols[vi], acc[0][m][vi], valid[vi]);
}

// Rows [m0, m1) of C against panels [p0, p1) of one packed K block on the micro-kernel (A: T, or
// with bfloat16 panels activation pairs). Rows go in blocks of MC so
// that a block of A (MC x kc) stays in L2 while every panel passes over it; a panel (kc x NV*W)
// stays in L1 while the block's rows pass over it. Panels packed as they are used
// (Panels::kPacksOnUse) go over all rows in one block instead: in blocks, each block would pack
// every panel again.
//
// A transposed operand (A.cs != 1: each k a far-apart row, a new page per k) is first copied into
// apack (MC x kc values, per thread) as groups of a micro-kernel's rows, [group][k][row], read
// contiguously. Not with panels packed as they are used (their rows have no bound).
template <class T, int MR> constexpr Index gemm_mc() { return MR * kMCBlocks; }

// What a product does with the rows after its last whole block of MR (FMA chains: rows x NV; a
// core needs about 8 in flight to hide the FMA latency).
//  grid:  they go in one short block, whose k is split into 2 or 4 interleaved partial sums
//         (added in a fixed order at the end) when it has fewer than 8 chains. A row's bits then
//         depend on the block it lands in, so callers cut rows on one grid from row 0.
//  exact: k always in plain order, so a row's bits never depend on where it sits; a short block
//         with fewer than 8 chains is merged with the whole block before it and the two cut in
//         halves (4 + 3 rows instead of 6 + 1, for MR = 6 and 7 rows).
//  exact_unless_short: as exact, except that a call with too few rows for 8 chains (one short
//         block, nothing to merge with) splits k: a row's bits depend only on its call's row
//         count when that is below 8 / NV.
enum class Tail { grid, exact, exact_unless_short };

// The fewest rows whose block keeps 8 FMA chains (rows x NV) and so sums k in plain order under
// exact_unless_short; callers that split rows between threads (the sequence driver's batch mode)
// give each thread at least this many, so a row's bits do not depend on the thread count.
template <int NV> constexpr Index kExactRows = (8 + NV - 1) / NV;

// The rows of a block of `rows` that micro_block runs in whole tiles of MR rows: with an exact tail
// a rest of fewer than kExactRows rows merges with the last whole tile into two short blocks.
template <int MR, int NV, Tail tail> constexpr Index whole_tile_rows(Index rows) {
    const Index rest = rows % MR, body = rows - rest;
    return tail != Tail::grid && body > 0 && rest > 0 && rest < kExactRows<NV> ? body - MR : body;
}

// Rows [mb, whole + rows0 + rows1) of A over k0 .. k0 + kc into apack as groups of MR rows from mb
// (then the short blocks' rows0 and rows1 from `whole`), each group [k][row]. A transposed operand
// (rs = 1) goes k outermost: each k is a far-apart row of memory, often a new page, read once for
// the whole chunk instead of once per group, and a group's MR values are one copy of adjacent memory.
template <int MR, class VA>
void pack_row_groups(Mat<VA> A, Index k0, Index kc, Index mb, Index whole, Index rows0, Index rows1, VA* apack) {
    auto groups = [&](auto&& copy) __attribute__((always_inline)) {
        for (Index g = mb; g < whole; g += MR) copy(g, MR);
        if (rows0) copy(whole, rows0);
        if (rows1) copy(whole + rows0, rows1);
    };
    if (A.rs != 1) {
        groups([&](Index g, Index rows) __attribute__((always_inline)) {
            VA* dst = apack + (g - mb) * kc;
            for (Index k = 0; k < kc; ++k)
                for (Index r = 0; r < rows; ++r) dst[k * rows + r] = A.at(g + r, k0 + k);
        });
        return;
    }
    for (Index k = 0; k < kc; ++k) {
        const VA* src = A.p + (k0 + k) * A.cs;  // A(m, k0 + k) is src[m]
        groups([&](Index g, Index rows) __attribute__((always_inline)) {
            VA* dst = apack + (g - mb) * kc + k * rows;
            if (rows == MR)
                std::memcpy(dst, src + g, MR * sizeof(VA));
            else
                for (Index r = 0; r < rows; ++r) dst[r] = src[g + r];
        });
    }
}

template <class T, int MR, int NV, class Cols, Tail tail = Tail::grid, class Panels = Packed<T, NV>>
void micro_block(Index m0, Index m1, Mat<typename Panels::Activation> A, Index k0, const Panels& P, Index kb,
                 Cols cols, Index p0, Index p1, T* C, Index ldc, Init init, const T* bias,
                 typename Panels::Activation* apack = nullptr) {
    using V = typename Panels::Value;
    using VA = typename Panels::Activation;
    assert(!A.second);  // two digits are int8's (int8_block)
    const Index MC = Panels::kPacksOnUse ? m1 - m0 : gemm_mc<T, MR>();
    assert(!Panels::kPacksOnUse || !apack);
    const Index kc = P.kc(kb);
    static_assert(tail == Tail::grid || kExactRows<NV> < MR,
                  "exact tails need MR > 8 / NV: the halves of a merged block must be short blocks");
    const Index rest = (m1 - m0) % MR;
    const Index body = m0 + whole_tile_rows<MR, NV, tail>(m1 - m0);  // the whole blocks end here, the short start
    const Index half = body < m1 - rest ? (MR + rest + 1) / 2 : 0;    // rows of a merged short block's first half
    const bool split_k = tail == Tail::grid || (tail == Tail::exact_unless_short && m1 - m0 < kExactRows<NV>);
    // Chunks of at most MC rows; one that would end inside the short blocks ends before them, so
    // the last chunk holds them all.
    for (Index mb = m0, me; mb < m1; mb = me) {
        me = m1 - mb <= MC ? m1 : mb + MC < body ? mb + MC : body;
        const Index whole = me < body ? me : body;  // whole blocks of MR in [mb, whole)
        // The short blocks' row counts (none, one, or two halves), in the last chunk.
        const Index rows0 = me < m1 ? 0 : half ? half : m1 - whole;
        const Index rows1 = me < m1 ? 0 : half ? m1 - whole - half : 0;
        // &a_of(m)[k * cs_of(rows)] is A(m, k0 + k) (in apack, a block's rows side by side per k).
        auto a_of = [&](Index m) { return apack ? apack + (m - mb) * kc : &A.p[m * A.rs + k0 * A.cs]; };
        auto cs_of = [&](Index rows) { return apack ? rows : A.cs; };
        const Index rs = apack ? 1 : A.rs;
        if (apack) pack_row_groups<MR>(A, k0, kc, mb, whole, rows0, rows1, apack);
        for (Index p = p0; p < p1; ++p) {
            const PanelColumns<NV> pc = panel_columns<NV>(cols, p);
            const Index* cv = pc.col;
            const int* nv = pc.valid;
            const V* b = P.block(kb, p);
            const bool whole_panel = whole_vectors<T>(pc);
            for (Index m = mb; m < whole; m += MR) {
                T* c = C + m * ldc;
                if (whole_panel)
                    micro<T, MR, NV, 1, VA, V, true>(kc, a_of(m), rs, cs_of(MR), b, c, ldc, cv, nv, init, bias);
                else
                    micro<T, MR, NV>(kc, a_of(m), rs, cs_of(MR), b, c, ldc, cv, nv, init, bias);
            }
            // A short block: one kernel instance per row count, so no row past it is read (inlined,
            // like micro).
            auto short_block = [&](Index m, Index rows) __attribute__((always_inline)) {
                const VA* a = a_of(m);
                const Index cs = cs_of(rows);
                T* c = C + m * ldc;
                switch (rows) {
#define RNNFAST_ROWS(R)                                                                                          \
    case R:                                                                                                      \
        if (R < MR && R < kExactRows<NV> && split_k)                                                             \
            micro<T, (R < MR ? R : 1), NV, (R * NV >= 4 ? 2 : 4)>(kc, a, rs, cs, b, c, ldc, cv, nv, init, bias); \
        else if (R < MR)                                                                                         \
            micro<T, (R < MR ? R : 1), NV>(kc, a, rs, cs, b, c, ldc, cv, nv, init, bias);                        \
        break;
                    RNNFAST_ROWS(1) RNNFAST_ROWS(2) RNNFAST_ROWS(3) RNNFAST_ROWS(4) RNNFAST_ROWS(5)
                    RNNFAST_ROWS(6) RNNFAST_ROWS(7)
#undef RNNFAST_ROWS
                    default: break;
                }
            };
            if (rows0) short_block(whole, rows0);
            if (rows1) short_block(whole + rows0, rows1);
        }
    }
}

// The product of rows [m0, m1) and panels [p0, p1) on the path for the panels' operands: the
// micro-kernel (float, double, bfloat16 pairs), AMX tiles, or the int8 kernel.
template <class T, int MR, int NV, class Cols, Tail tail = Tail::grid, class Panels = Packed<T, NV>>
void gemm_block(Index m0, Index m1, Mat<typename Panels::Activation> A, Index k0, const Panels& P, Index kb,
                Cols cols, Index p0, Index p1, T* C, Index ldc, Init init, const T* bias,
                typename Panels::Activation* apack = nullptr) {
    using V = typename Panels::Value;
#ifdef RNNFAST_AMX
    if constexpr (std::is_same_v<V, Bf16Pair>)
        return amx_block<T, NV>(m0, m1, A, k0, P, kb, cols, p0, p1, C, ldc, init, bias);
#endif
#ifdef RNNFAST_AMX_INT8
    // The inputs' second digit (Mat::second) in a pass of its own over the block, as int8_block did
    // before it went tile by tile: this path was not measured since (no AMX CPU at hand).
    if constexpr (std::is_same_v<V, Int8Quad>) {
        amx_block<T, NV>(m0, m1, A, k0, P, kb, cols, p0, p1, C, ldc, init, bias);
        if (A.second)
            amx_block<T, NV>(m0, m1, Mat<ActivationQuad>{A.second, A.rs, A.cs, A.second_scale}, k0, P, kb, cols, p0,
                             p1, C, ldc, Init::load, nullptr);
        return;
    }
#endif
    if constexpr (std::is_same_v<V, Int8Quad>)
        int8_block<T, NV>(m0, m1, A, P, cols, p0, p1, C, ldc, init, bias);
    else
        micro_block<T, MR, NV, Cols, tail, Panels>(m0, m1, A, k0, P, kb, cols, p0, p1, C, ldc, init, bias, apack);
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
