// How a team's threads wait for each other, and what a parallel region lost while they waited.
//
// With one thread per core, a barrier finishes only when every thread has reached it. On a quiet
// machine the last one arrives within microseconds, and spinning is the fastest way to wait. When
// another process wants the same cores the scheduler takes threads away for whole time slices
// (milliseconds): a spinning thread then burns the time its own partner needs (the scheduler
// shares the cores between processes first, then between a process's threads), and a per-step
// barrier turns every time slice lost by one thread into a stall of all. So a TeamBarrier spins
// for at most kSpinNanos, then sleeps until the last thread arrives.
//
// It also measures, for its region, the time the threads spent off their cores while they had
// work: started late, descheduled, or woken here but not yet back on a core. The rest of a
// thread's time is its CPU time; asleep while another thread still worked is uneven work, not
// lost. dynamic_team.h decides team sizes from it.
//
// Libgomp's own waits (its idle threads between regions, its join) spin far longer than a time
// slice by default; python/rnnfast/__init__.py shortens them when it loads the extension.
//
// Compiled once, outside the kernels' instruction-set namespaces (every member is defined in
// team_barrier.cpp, so no kernel file emits a copy built with its instruction set's flags).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace rnnfast {

std::int64_t now_nanos();         // a steady clock
std::int64_t thread_cpu_nanos();  // CPU time of the calling thread (now_nanos() where unknown)

class TeamBarrier {
   public:
    static constexpr std::int64_t kSpinNanos = 200000;
    TeamBarrier();
    ~TeamBarrier();
    TeamBarrier(const TeamBarrier&) = delete;
    TeamBarrier& operator=(const TeamBarrier&) = delete;

    // Returns when all `n` threads of the team have called it (each with the same n).
    void wait(int n);
    // The end of a team's work, once a region: thread 0 returns once the other n - 1 have called
    // it; they return at once (and so reach the runtime's join barrier while still on their cores).
    void gather(int id, int n);
    // Once per thread, as it leaves the region that started at `region_start`: it `entered` the
    // team's work at that time, with thread_cpu_nanos() then `cpu_at_entry`.
    void account(std::int64_t region_start, std::int64_t entered, std::int64_t cpu_at_entry);

    // Summed over the threads, once every thread has accounted: their time in the region, and
    // how much of it they were off their cores while they had work.
    std::int64_t thread_nanos() const;
    std::int64_t lost_nanos() const;

   private:
    std::atomic<int> arrived_{0}, gathered_{0}, sleepers_{0};
    std::atomic<unsigned> generation_{0};
    std::atomic<std::int64_t> released_at_{0}, gathered_at_{0};  // when the last wake of each kind came
    std::atomic<std::int64_t> asleep_{0}, woken_late_{0}, off_core_{0}, span_{0};
    std::mutex mutex_;
    std::condition_variable wake_;

    template <class Done> void block_until(Done done, const std::atomic<std::int64_t>& released_at);
    void wake(std::atomic<std::int64_t>& released_at);
};

}  // namespace rnnfast
