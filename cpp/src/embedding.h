// An embedding table on rows: y (N, E) = weight[ids] with weight (V, E); its backward adds dy's
// rows into the rows of dweight that the ids name (see EmbeddingForward / EmbeddingBackward).
//
// Forward: each thread copies whole output rows. Backward: a scatter-add, where two ids may name
// the same row, so threads cannot own output rows by their position n. Each thread owns a range of
// the table's V rows instead and walks all the ids in order, adding those that fall in its range:
// every dweight value is then summed by one thread, in id order, and the bits do not depend on the
// thread count. No atomics, no per-thread copies of the table. The balance follows how the ids
// spread over the table. Owning a slice of the E columns of every row instead, the other way to
// get the same bits, makes the threads' slices of a row sit side by side, so the cores keep taking
// each other's cache lines (slower on two threads than on one: benchmarks/RESULTS.md). Owned row
// ranges meet at one line at most.
#pragma once
#include "rnnfast/toolkit.h"
#include "team.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> struct EmbeddingDriver {
    static constexpr int W = simd<T>::W;
    using V = vec<T>;
    static constexpr Index kMinWork = 32768;  // values copied or added below which one thread does it all

    // to[0, n) = from[0, n), or to[0, n) += from[0, n).
    template <bool Add> static void row(T* to, const T* from, Index n) {
        Index e = 0;
        for (; e + 4 * W <= n; e += 4 * W) {  // four vectors in flight: a row is a few hundred bytes
            const V f0 = load(from + e), f1 = load(from + e + W), f2 = load(from + e + 2 * W),
                    f3 = load(from + e + 3 * W);
            store(to + e, Add ? load(to + e) + f0 : f0);
            store(to + e + W, Add ? load(to + e + W) + f1 : f1);
            store(to + e + 2 * W, Add ? load(to + e + 2 * W) + f2 : f2);
            store(to + e + 3 * W, Add ? load(to + e + 3 * W) + f3 : f3);
        }
        for (; e + W <= n; e += W) store(to + e, Add ? load(to + e) + load(from + e) : load(from + e));
        for (; e < n; ++e) to[e] = Add ? to[e] + from[e] : from[e];
    }

    static void forward(const EmbeddingForward<T>& a) {
        run_team(team_size(a.N * a.E, kMinWork, a.threads), [&](const Team& team) {
            const Range r = team.split(a.N);
            for (Index n = r.lo; n < r.hi; ++n) row<false>(a.y + n * a.E, a.weight + a.ids[n] * a.E, a.E);
        });
    }

    static void backward(const EmbeddingBackward<T>& a) {
        run_team(team_size(a.N * a.E, kMinWork, a.threads), [&](const Team& team) {
            const FlushDenormals ftz;
            const Range mine = team.split(a.V);
            for (Index n = 0; n < a.N; ++n) {
                const Index id = a.ids[n];
                if (id >= mine.lo && id < mine.hi && id != a.padding_idx)
                    row<true>(a.dweight + id * a.E, a.dy + n * a.E, a.E);
            }
        });
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
