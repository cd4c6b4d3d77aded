// Team sizes on a machine other processes share (dynamic_team.h).
#include "dynamic_team.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "rnnfast/runtime.h"

namespace rnnfast {
namespace {

// The cores are shared when the regions of a window lost more than kLostShare of their thread
// time. A window holds at least kWindow of thread time (regions' time summed over their threads:
// several short regions, or one long one): long enough that a moment in which the machine itself
// pauses a core (a virtual machine's host) is not taken for a competitor.
constexpr double kLostShare = 0.10;
constexpr std::int64_t kWindow = 100'000'000;
// After moving to fewer threads, a window tries twice as many again (a trial) kFirstTrial later.
// Each trial that finds the cores still shared doubles that wait, up to kLastTrial; and then the
// wait is also at least kTrialCost times the trial's window (up to kLongestWait), because a trial
// with a barrier per step can take many times as long as the same work on fewer threads. A trial
// that passes keeps the larger team and tries the next size after the same wait.
constexpr std::int64_t kFirstTrial = 20'000'000, kLastTrial = 400'000'000;
constexpr std::int64_t kTrialCost = 48, kLongestWait = 1'000'000'000;

struct State {
    bool dynamic;
    int cap = 0;         // regions run on at most cap threads; 0: no cap
    bool trial = false;  // this window may run on 2 * cap
    std::int64_t trial_at = 0, trial_wait = kFirstTrial;
    // The window so far: when it began, time lost, thread time, the largest team it ran on and
    // the largest a region asked for.
    std::int64_t window_at = 0, lost = 0, thread_time = 0;
    int largest = 0, largest_asked = 0;
    long long shrinks = 0;

    int limit() const { return trial ? 2 * cap : cap; }
    void new_window(std::int64_t now) {
        window_at = now;
        lost = thread_time = 0;
        largest = largest_asked = 0;
    }
};

bool initially_dynamic() {
    const char* env = std::getenv("RNNFAST_DYNAMIC_THREADS");
    return !(env && std::strcmp(env, "0") == 0);
}

std::mutex state_mutex;
State state{initially_dynamic()};

}  // namespace

int dynamic_team(int asked) {
    if (asked < 2) return asked;
    std::lock_guard<std::mutex> lock(state_mutex);
    State& st = state;
    if (!st.dynamic || st.cap == 0) return asked;
    if (!st.trial && now_nanos() >= st.trial_at) {
        st.trial = true;
        st.new_window(now_nanos());
    }
    return asked < st.limit() ? asked : st.limit();
}

void observe_team(const TeamBarrier& barrier, int threads, int asked) {
    if (threads < 2) return;  // nothing waited, nothing to learn
    std::lock_guard<std::mutex> lock(state_mutex);
    State& st = state;
    if (!st.dynamic) return;
    const std::int64_t now = now_nanos();
    if (st.thread_time == 0) st.window_at = now - barrier.thread_nanos() / threads;
    st.lost += barrier.lost_nanos();
    st.thread_time += barrier.thread_nanos();
    st.largest = threads > st.largest ? threads : st.largest;
    st.largest_asked = asked > st.largest_asked ? asked : st.largest_asked;
    if (st.thread_time < kWindow) return;

    const bool lost = double(st.lost) > kLostShare * double(st.thread_time);
    const std::int64_t window = now - st.window_at;
    const int largest = st.largest, largest_asked = st.largest_asked;
    st.new_window(now);
    auto next_trial = [&](std::int64_t wait, std::int64_t at_least) {
        st.trial_wait = wait < kLastTrial ? wait : kLastTrial;
        at_least = at_least < kLongestWait ? at_least : kLongestWait;
        st.trial_at = now + (st.trial_wait > at_least ? st.trial_wait : at_least);
    };
    if (st.trial) {
        st.trial = false;
        if (lost) {
            next_trial(2 * st.trial_wait, kTrialCost * window);
        } else {  // the larger teams lost nothing: keep them, and try the next size later
            st.cap = 2 * st.cap >= largest_asked ? 0 : 2 * st.cap;
            next_trial(st.trial_wait, 0);
        }
    } else if (lost) {
        st.cap = largest / 2 > 1 ? largest / 2 : 1;
        ++st.shrinks;
        next_trial(kFirstTrial, 0);
    }
}

void set_dynamic_threads(bool on) {
    std::lock_guard<std::mutex> lock(state_mutex);
    const long long shrinks = state.shrinks;
    state = State{on};  // no cap, no window or trial under way
    state.shrinks = shrinks;
}
bool get_dynamic_threads() {
    std::lock_guard<std::mutex> lock(state_mutex);
    return state.dynamic;
}
long long dynamic_thread_shrinks() {
    std::lock_guard<std::mutex> lock(state_mutex);
    return state.shrinks;
}

}  // namespace rnnfast
