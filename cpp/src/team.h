// A team: the threads of one OpenMP parallel region, each knowing its id and how to split work.
// Splits are contiguous and depend only on (count, id, n), so a thread owns whole output rows or
// columns and no two threads ever write the same value.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnnfast/rnnfast.h"
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

// The team of the enclosing parallel region (a team of one outside any, or without OpenMP).
inline Team current_team() {
    Team t;
#ifdef _OPENMP
    t.id = omp_get_thread_num();
    t.n = omp_get_num_threads();
#endif
    return t;
}

// The threads a caller asks for: `requested`, or get_num_threads() for 0; at least one.
inline int threads_asked(int requested) {
    const int n = requested > 0 ? requested : get_num_threads();
    return n < 1 ? 1 : n;
}

// How many threads a kernel uses: threads_asked(requested), or one when its `work` (values
// touched, or multiply-adds) is below `min_work`, so small that waking a second thread would cost
// more than it saves.
inline int team_size(index work, index min_work, int requested) {
    return work < min_work ? 1 : threads_asked(requested);
}

// Flushes denormals to zero on this thread while it lives, then restores the thread's previous
// floating-point mode, so the caller's state is never changed. Denormals appear only in values
// below 1e-38 (float) and would otherwise slow a step by an order of magnitude.
class FlushDenormals {
   public:
#if defined(__x86_64__) || defined(__i386__)
    FlushDenormals() : saved_(__builtin_ia32_stmxcsr()) { __builtin_ia32_ldmxcsr(saved_ | 0x8040u); }
    ~FlushDenormals() { __builtin_ia32_ldmxcsr(saved_); }

   private:
    unsigned saved_;
#else
    FlushDenormals() {}
#endif
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
