// What one layer and direction keeps between kernel calls: the packed-weights caches (forward and
// backward) and a scratch buffer that every call of this layer reuses, sized by the kernels'
// *_size functions. The Python layer holds one per layer and direction and never sizes anything.
#pragma once
#include <pybind11/numpy.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "arrays.h"

namespace rnnfast_python {

class LayerWorkspace {
   public:
    explicit LayerWorkspace(bool keeps_caches = true) : keeps_caches_(keeps_caches) {}

    // The caches as float arrays (None until a call needed one). Settable, so that tests can hand
    // the kernels a spoiled or moved cache; whatever they hold is checked by the kernels.
    py::object forward_cache = py::none(), backward_cache = py::none();

    // The cache of `n` values of T for this call: the one held when it fits (its contents are
    // checked by the kernels), else a new, zeroed one (no valid tag anywhere), kept for next time.
    // n == 0 (a single step packs as it goes): no cache, and the one held stays as it is. The
    // caller keeps the returned array for the whole call (another thread may replace the attribute
    // meanwhile) and passes its data to the kernels.
    template <class T> py::object cache(bool backward, Index n) {
        if (n == 0 || !keeps_caches_) return py::none();
        py::object& held = backward ? backward_cache : forward_cache;
        if (held.is_none() || !reusable<T>(py::reinterpret_borrow<py::array>(held), n)) {
            py::array_t<T> fresh(n);
            std::fill_n(fresh.mutable_data(), n, T(0));
            held = fresh;
        }
        return held;
    }

    // At least n values of T, uninitialised (the kernels write every scratch value before reading it).
    template <class T> T* scratch(Index n) {
        const std::size_t bytes = std::size_t(n) * sizeof(T);
        if (bytes > scratch_bytes_) {
            scratch_.reset(new unsigned char[bytes]);
            scratch_bytes_ = bytes;
        }
        return reinterpret_cast<T*>(scratch_.get());
    }

    // One call at a time: a call that finds the workspace busy (the same layer run from two threads
    // at once) runs on a workspace of its own instead. Same results, only slower.
    bool try_acquire() { return !busy_.exchange(true, std::memory_order_acquire); }
    void release() { busy_.store(false, std::memory_order_release); }

   private:
    bool keeps_caches_;
    std::unique_ptr<unsigned char[]> scratch_;
    std::size_t scratch_bytes_ = 0;
    std::atomic<bool> busy_{false};
};

// The workspace a call runs on: the caller's when there is one and it is free, else a temporary one.
class WorkspaceLease {
   public:
    explicit WorkspaceLease(LayerWorkspace* held) : held_(held && held->try_acquire() ? held : nullptr) {}
    ~WorkspaceLease() {
        if (held_) held_->release();
    }
    LayerWorkspace& get() { return held_ ? *held_ : own_; }
    WorkspaceLease(const WorkspaceLease&) = delete;
    WorkspaceLease& operator=(const WorkspaceLease&) = delete;

   private:
    LayerWorkspace* held_;
    LayerWorkspace own_{false};  // scratch only: a cache made for one call would cost more than it saves
};

}  // namespace rnnfast_python
