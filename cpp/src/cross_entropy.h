// Softmax cross-entropy on rows, loss and gradient together (see CrossEntropy in rnnfast.h).
//
// A row n with weight w (0 where its target is ignore_index) and scale s (the reduction's factor):
//     m = max_c z[c],   S = sum_c e^(z[c] - m),   loss[n] = w (log S - (z[t] - m))
//     dz[c] = w s (e^(z[c] - m) / S - [c == t])
// The shift by m keeps every exponent <= 0: large logits neither overflow nor lose the small
// probabilities. Each thread owns whole rows (its loss values and dz rows) and a row's arithmetic
// does not depend on where it sits, so the bits are the same for any thread count; the total is
// then summed in row order on one thread. The sums inside a row follow the vector width, so
// instruction sets may differ in the last bits.
#pragma once
#include "activations.h"
#include "rnnfast/toolkit.h"
#include "team.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> struct CrossEntropyDriver {
    static constexpr int W = simd<T>::W;
    using V = vec<T>;

    static T log(T x) { return sizeof(T) == 4 ? T(__builtin_logf(float(x))) : T(__builtin_log(double(x))); }

    static T weight(const CrossEntropy<T>& a, Index n) {
        if (a.targets[n] == a.ignore_index) return T(0);
        return a.row_weight ? a.row_weight[n] : T(1);
    }

    static T exp1(T x) { return vexp(splat(x))[0]; }  // one value, as the vector path computes it

    // A row shorter than a vector: lane by lane.
    static T short_row(const T* z, Index C, Index t, T g, T* dz) {
        T m = z[0], S = 0;
        for (Index c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
        for (Index c = 0; c < C; ++c) S += dz[c] = exp1(z[c] - m);
        const T f = T(1) / S * g;
        for (Index c = 0; c < C; ++c) dz[c] *= f;
        dz[t] -= g;
        return log(S) - (z[t] - m);
    }

    // One row: dz = g (softmax(z) - onehot(t)); returns log S - (z[t] - m), i.e. -log softmax(z)[t].
    // Whole vectors cover [0, full); when C is not a multiple of W, one more vector at [C - W, C)
    // covers the rest, its first W - C % W lanes recomputed (max and e^x give the same values
    // again) and left out of the sum and the scaling. No partial loads, no lane-by-lane tail.
    static T row(const T* z, Index C, Index t, T g, T* dz) {
        if (C < W) return short_row(z, C, t, g, dz);
        const Index full = C - C % W, last = C - W;
        V lane;
        for (int i = 0; i < W; ++i) lane[i] = T(i);
        const auto fresh = lane >= splat(T(full - last));  // the last vector's lanes not seen before

        V vm = load(z);
        for (Index c = W; c < full; c += W) vm = vmax(vm, load(z + c));
        if (full < C) vm = vmax(vm, load(z + last));
        T m = vm[0];
        for (int i = 1; i < W; ++i) m = vm[i] > m ? vm[i] : m;

        const V shift = splat(m);
        V vs = splat(T(0));
        for (Index c = 0; c < full; c += W) {
            const V e = vexp(load(z + c) - shift);
            store(dz + c, e);
            vs += e;
        }
        if (full < C) {
            const V e = vexp(load(z + last) - shift);
            store(dz + last, e);
            vs += fresh ? e : splat(T(0));
        }
        T S = 0;
        for (int i = 0; i < W; ++i) S += vs[i];

        const V f = splat(T(1) / S) * splat(g);
        for (Index c = 0; c < full; c += W) store(dz + c, load(dz + c) * f);
        if (full < C) {
            const V d = load(dz + last);
            store(dz + last, fresh ? d * f : d);
        }
        dz[t] -= g;
        return log(S) - (z[t] - m);
    }

    static double run(const CrossEntropy<T>& a) {
        double total_weight = 0;
        for (Index n = 0; n < a.N; ++n) total_weight += double(weight(a, n));
        double scale = 1;
        if (a.reduction == Reduction::mean) scale = total_weight > 0 ? 1 / total_weight : 0;
        run_team(team_size(a.N * a.C, 16384, a.threads), [&](const Team& team) {
            const FlushDenormals ftz;
            const Range r = team.split(a.N);
            for (Index n = r.lo; n < r.hi; ++n) {
                const T w = weight(a, n);
                const Index t = a.targets[n] == a.ignore_index ? 0 : a.targets[n];  // w = 0 there: dz is zero
                a.loss[n] = w * row(a.z + n * a.C, a.C, t, w * T(scale), a.dz + n * a.C);
            }
        });
        double sum = 0;
        for (Index n = 0; n < a.N; ++n) sum += double(a.loss[n]);
        return sum * scale;
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
