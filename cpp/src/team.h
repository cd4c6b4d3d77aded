// A team: the threads of one OpenMP parallel region, each knowing its id and how to split work.
// Splits are contiguous and depend only on (count, id, n), so a thread owns whole output rows or
// columns and no two threads ever write the same value.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnnfast/runtime.h"
#include "simd.h"
#include "dynamic_team.h"
#include "team_barrier.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

struct Range {
    Index lo, hi;
};

struct Team {
    int id = 0, n = 1;
    TeamBarrier* bar = nullptr;  // shared by the team; none for a team of one
    Range split(Index count) const { return {count * id / n, count * (id + 1) / n}; }
    void barrier() const {
        if (n > 1) bar->wait(n);
    }
};

// Runs body(team) on each thread of a team of at most `asked` threads (dynamic_team: fewer while
// other processes take the cores), then reports what the team lost to dynamic_team. A team of one
// runs on the caller's thread, without a parallel region. The body must not return early on some
// threads only: the others would wait for them at the next barrier for ever.
template <class Body> void run_team(int asked, Body&& body) {
    const int want = dynamic_team(asked);
    if (want < 2) {
        body(Team{});
        return;
    }
    TeamBarrier bar;
    int threads = 1;
    const std::int64_t start = now_nanos();
#ifdef _OPENMP
#pragma omp parallel num_threads(want)
    {
        const std::int64_t entered = now_nanos(), cpu = thread_cpu_nanos();
        const Team team{omp_get_thread_num(), omp_get_num_threads(), &bar};
        if (team.id == 0) threads = team.n;
        body(team);
        // Thread 0 waits here for the others, which go on to the runtime's join barrier while
        // still on their cores: that barrier's waiting (a long spin) is not ours to set.
        bar.gather(team.id, team.n);
        bar.account(start, entered, cpu);
    }
#else
    (void)start;
    body(Team{});
#endif
    observe_team(bar, threads, asked);
}

// The threads a caller asks for: `requested`, or get_num_threads() for 0; at least one.
inline int threads_asked(int requested) {
    const int n = requested > 0 ? requested : get_num_threads();
    return n < 1 ? 1 : n;
}

// How many threads a kernel uses: threads_asked(requested), or one when its `work` (values
// touched, or multiply-adds) is below `min_work`, so small that waking a second thread would cost
// more than it saves.
inline int team_size(Index work, Index min_work, int requested) {
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
