// A team's barrier and what its region lost (team_barrier.h).
#include "team_barrier.h"

#include <chrono>
#include <ctime>

namespace rnnfast {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

}  // namespace

std::int64_t now_nanos() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t thread_cpu_nanos() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0) return std::int64_t(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
#endif
    return now_nanos();
}

TeamBarrier::TeamBarrier() = default;
TeamBarrier::~TeamBarrier() = default;

// Spins for kSpinNanos, then sleeps until done(); whoever makes done() true calls wake() after,
// which stores the time in released_at when someone sleeps. A sleeper woken otherwise (spuriously,
// as the change came) may read an older time there and count its whole sleep as late: rare, and
// only the measurement errs.
template <class Done> void TeamBarrier::block_until(Done done, const std::atomic<std::int64_t>& released_at) {
    // The clock is read from the 64th pause on: a partner that arrives within a few pauses (the
    // common case, once a step) costs no clock read.
    std::int64_t start = 0;
    for (unsigned i = 1;; ++i) {
        if (done()) return;
        cpu_relax();
        if (i % 64 == 0) {
            const std::int64_t now = now_nanos();
            if (start == 0) start = now;
            if (now - start > kSpinNanos) break;
        }
    }
    const std::int64_t asleep = now_nanos();
    {
        std::unique_lock<std::mutex> lock(mutex_);
        // A sleeper counts itself before it checks done() (both seq_cst), and a waker changes what
        // done() reads before it reads the count: either the sleeper sees the change and does not
        // sleep, or the waker sees the sleeper and wakes it.
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, done);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    const std::int64_t woke = now_nanos(), released = released_at.load(std::memory_order_relaxed);
    asleep_.fetch_add(woke - asleep, std::memory_order_relaxed);
    woken_late_.fetch_add(woke - (released > asleep ? released : asleep), std::memory_order_relaxed);
}

void TeamBarrier::wake(std::atomic<std::int64_t>& released_at) {
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        released_at.store(now_nanos(), std::memory_order_relaxed);  // read by the sleepers it wakes
        std::lock_guard<std::mutex> lock(mutex_);
        wake_.notify_all();
    }
}

void TeamBarrier::wait(int n) {
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n - 1) {  // the last one: release
        arrived_.store(0, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_seq_cst);
        wake(released_at_);
        return;
    }
    block_until([&] { return generation_.load(std::memory_order_seq_cst) != gen; }, released_at_);
}

void TeamBarrier::gather(int id, int n) {
    if (id != 0) {
        gathered_.fetch_add(1, std::memory_order_seq_cst);
        wake(gathered_at_);
        return;
    }
    block_until([&] { return gathered_.load(std::memory_order_seq_cst) == n - 1; }, gathered_at_);
}

void TeamBarrier::account(std::int64_t region_start, std::int64_t entered, std::int64_t cpu_at_entry) {
    const std::int64_t end = now_nanos(), cpu = thread_cpu_nanos() - cpu_at_entry;
    // A start later than a spin's length: the thread was asleep between regions (woken then at
    // the cost of a wake-up, a short wait) or waited for a core (a long one).
    const std::int64_t late = entered - region_start - kSpinNanos;
    off_core_.fetch_add((late > 0 ? late : 0) + (end - entered) - cpu, std::memory_order_relaxed);
    span_.fetch_add(end - region_start, std::memory_order_relaxed);
}

std::int64_t TeamBarrier::thread_nanos() const { return span_.load(std::memory_order_relaxed); }

std::int64_t TeamBarrier::lost_nanos() const {
    const std::int64_t off = off_core_.load(std::memory_order_relaxed) - asleep_.load(std::memory_order_relaxed) +
                             woken_late_.load(std::memory_order_relaxed);
    return off > 0 ? off : 0;
}

}  // namespace rnnfast
