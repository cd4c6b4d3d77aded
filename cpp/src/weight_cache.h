// Packed weights kept between calls.
//
// Packing a weight matrix into the micro-kernel's panels costs a pass over it on every call, a
// visible share of a short call at small batches (benchmarks/RESULTS.md, "weight cache"). A cache
// keeps the packed panels and a plain copy of the weights they were packed from:
//
//   [tag: 16 values][copy of the weights (rows, cols), rounded up to 16 values][packed panels]
//
// from the buffer's first 64-byte boundary on (align64; the sizes include kAlignSlack). A cache
// copied to a buffer that sits differently against a boundary is read shifted: its tag is then
// wrong and it is refilled.
//
// A forward's cache holds two of these, W_hh's then W_ih's; a backward's one (W_hh transposed).
// On every call each thread compares the part of the weights its panels are made of with the copy
// (memcmp over contiguous rows, or row pieces: streaming reads, where packing transposes) and
// repacks its own panels only where they differ. So any change to the weights is seen, in-place updates included,
// with no version counter for the caller to keep, and a thread count that differs from the last
// call's is fine: a panel's contents depend on its own rows only. The tag says which build and
// layout (the ISA's name, vector width, panel width, G, H, I for W_ih, element size, which weights)
// filled the cache; any other tag (a new, zeroed or foreign cache, or one an ISA switch left behind:
// AMX's int8 and bfloat16 panels are laid out for its tiles) makes every thread pack.
//
// A single step (T = 1) has no use for a cache (see LayerGeometry::packs_as_used): it reads the weights once
// and packs each panel as it goes.
//
// Not for concurrent calls: two calls sharing one cache at the same time race on it.
#pragma once
#include <cstring>

#include "simd.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T> struct WeightCache {
    static constexpr Index kHead = 16;  // values before the copy: the tag, 64-byte aligned after
    static Index round16(Index n) { return (n + 15) / 16 * 16; }
    static Index size(Index copy_n, Index packed_n) { return kHead + round16(copy_n) + packed_n; }

    T* head;
    T* copy;
    T* packed;

    // A null base is no cache (every pointer null).
    WeightCache(T* base, Index copy_n)
        : head(base), copy(base ? base + kHead : nullptr), packed(base ? base + kHead + round16(copy_n) : nullptr) {}

    std::uint64_t tag() const {
        std::uint64_t t;
        std::memcpy(&t, head, sizeof t);
        return t;
    }
    void set_tag(std::uint64_t t) const { std::memcpy(head, &t, sizeof t); }

    // Which weights, which layout; the _bf16 kinds hold bfloat16 weights packed in pairs, the _int8
    // kinds int8 weights in quads.
    enum Kind {
        kRecurrent = 0, kRecurrentTransposed = 1, kInput = 2, kRecurrentBf16 = 3, kInputBf16 = 4,
        kRecurrentInt8 = 5, kInputInt8 = 6
    };
    // A weight matrix of G*H rows and `cols` columns (H for W_hh, I for W_ih).
    static std::uint64_t make_tag(int G, Index H, Index cols, int NV, Kind kind) {
        std::uint64_t t = 0x726e6e6661737400ull;  // "rnnfast\0"
        t ^= std::uint64_t(RNNFAST_VBYTES) << 1 ^ std::uint64_t(NV) << 8 ^ std::uint64_t(G) << 12 ^
             std::uint64_t(sizeof(T)) << 16 ^ std::uint64_t(kind) << 20 ^ std::uint64_t(cols) << 24 ^
             std::uint64_t(H) << 44;
        for (const char* c = RNNFAST_ISA_NAME; *c; ++c) t = (t ^ std::uint8_t(*c)) * 0x100000001b3ull;  // FNV-1a
        return t;
    }

    // Rows [r0, r1) x columns [c0, c1) of w (rows of length ld, the copy alike; U: T, or the 16 bits
    // of bfloat16 weights): true when the copy holds exactly these bytes; otherwise (or when `force`)
    // copies them and returns false.
    template <class U>
    bool refresh(const U* w, Index ld, Index r0, Index r1, Index c0, Index c1, bool force) const {
        U* const mine = reinterpret_cast<U*>(copy);
        const std::size_t bytes = std::size_t(c1 - c0) * sizeof(U);
        bool same = !force;
        for (Index r = r0; same && r < r1; ++r) same = std::memcmp(mine + r * ld + c0, w + r * ld + c0, bytes) == 0;
        if (!same)
            for (Index r = r0; r < r1; ++r) std::memcpy(mine + r * ld + c0, w + r * ld + c0, bytes);
        return same;
    }
};

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
