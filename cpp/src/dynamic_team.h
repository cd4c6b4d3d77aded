// How many threads a parallel region runs on while other processes share the cores.
//
// When recent regions lost more than a tenth of their threads' time off their cores (measured by
// their TeamBarrier, team_barrier.h), the cores are shared: later regions run on at most half the
// largest team of those regions (down to one thread), and after a while a window of regions may
// use twice as many again (a trial), less often while the cores stay shared. team.h's run_team
// asks here before each region and reports after it. A region's thread count never changes its
// results (team.h, sequence.h), so neither does this.
//
// Compiled once, outside the kernels' instruction-set namespaces: one state per process.
#pragma once
#include "team_barrier.h"

namespace rnnfast {

// The threads a region sized for `asked` runs on now: `asked` on a quiet machine, fewer while the
// cores are shared (and dynamic threads are on). Never more, so scratch sized for it stays enough.
int dynamic_team(int asked);
// What a region that asked for `asked` threads and ran on `threads` lost, as `barrier` measured it.
void observe_team(const TeamBarrier& barrier, int threads, int asked);

}  // namespace rnnfast
