// A team: the threads of one OpenMP parallel region, each knowing its id and how to split work.
// Splits are contiguous and depend only on (count, id, n), so a thread owns whole output rows or
// columns and no two threads ever write the same value.
#pragma once
#include "simd.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

struct Range {
    index lo, hi;
};

struct Team {
    int id = 0, n = 1;
    Range split(index count) const { return {count * id / n, count * (id + 1) / n}; }
    void barrier() const {
#ifdef _OPENMP
        if (n > 1) {
#pragma omp barrier
        }
#endif
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
