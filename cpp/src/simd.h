// Portable SIMD for one instruction set.
//
// This header is compiled once per ISA (see kernels_isa.cpp): RNNFAST_VBYTES is the vector size in
// bytes (16 for the portable SSE2/NEON build, 32 for AVX2, 64 for AVX-512) and the namespace
// RNNFAST_ISA_NS keeps the copies apart. GCC/Clang vector extensions turn `a * b + acc` into the
// widest FMA the TU's flags allow, so one source serves every ISA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#ifndef RNNFAST_VBYTES
#error "RNNFAST_VBYTES must be defined by the build (16, 32 or 64)"
#endif

namespace rnnfast {
namespace RNNFAST_ISA_NS {

using Index = std::ptrdiff_t;

template <class T> struct simd;

template <> struct simd<float> {
    static constexpr int W = RNNFAST_VBYTES / 4;
    typedef float V __attribute__((vector_size(RNNFAST_VBYTES)));
    typedef float U __attribute__((vector_size(RNNFAST_VBYTES), aligned(4), may_alias));
    typedef std::int32_t I __attribute__((vector_size(RNNFAST_VBYTES)));
};
template <> struct simd<double> {
    static constexpr int W = RNNFAST_VBYTES / 8;
    typedef double V __attribute__((vector_size(RNNFAST_VBYTES)));
    typedef double U __attribute__((vector_size(RNNFAST_VBYTES), aligned(8), may_alias));
    typedef std::int64_t I __attribute__((vector_size(RNNFAST_VBYTES)));
};

template <class T> using vec = typename simd<T>::V;

// Broadcast. (Not `vec<T>{} + s`: without -ffast-math, 0 + s is a real add, since 0 + -0 = +0;
// s - 0 is exactly s for every s, so it folds to a plain broadcast.)
template <class T> inline vec<T> splat(T s) { return s - vec<T>{}; }

// The buffers the kernels carve up (scratch, packed-weight caches) are used from their first
// 64-byte boundary on: a caller's buffer may start anywhere (NumPy's and malloc's large arrays
// start 16 bytes past a cache line), and a packed panel that does not start on a line makes every
// AVX-512 load of it span two lines (half of the AVX2 loads). Each such buffer is sized
// kAlignSlack values larger (what the alignment gained is in benchmarks/RESULTS.md, "aligned
// buffers").
constexpr Index kAlignSlack = 16;  // values: 64 bytes of float, 128 of double
template <class T> inline T* align64(T* p) {
    return reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(p) + 63) & ~std::uintptr_t(63));
}

template <class T> inline vec<T> load(const T* p) {
    return *reinterpret_cast<const typename simd<T>::U*>(p);
}
template <class T> inline void store(T* p, vec<T> v) {
    *reinterpret_cast<typename simd<T>::U*>(p) = v;
}
// Partial load/store of the first n (0 < n <= W) lanes; the other lanes read as zero.
template <class T> inline vec<T> load_n(const T* p, int n) {
    if (n == simd<T>::W) return load(p);
    vec<T> v = splat<T>(0);
    for (int i = 0; i < n; ++i) v[i] = p[i];
    return v;
}
template <class T> inline void store_n(T* p, vec<T> v, int n) {
    if (n == simd<T>::W) return store(p, v);
    for (int i = 0; i < n; ++i) p[i] = v[i];
}
// The same, with whole vectors (n == W) known at compile time: where a function also holds the
// partial ones (lane by lane through memory), GCC otherwise keeps the values it loads and stores
// in memory too, a micro-kernel's accumulators among them.
template <bool Whole, class T> inline vec<T> load_lanes(const T* p, int n) {
    if constexpr (Whole) return load(p);
    else return load_n(p, n);
}
template <bool Whole, class T> inline void store_lanes(T* p, vec<T> v, int n) {
    if constexpr (Whole) store(p, v);
    else store_n(p, v, n);
}

// Transposes a W x W block held as W vectors (r[i] is row i) in place: log2(W) stages, each
// swapping the off-diagonal d x d blocks of every 2d x 2d block, i.e. element (i, l) of a row i
// whose bit d is clear and a lane l whose bit d is set with element (i + d, l - d). Each stage is
// one two-vector shuffle per output vector (AVX2, 8 floats: 32 instructions for the three
// stages), constant masks folded by the compiler. Lane l of the new r[i] comes from lane
// stage_lo(l) of (r[i], r[i + D]) side by side, of the new r[i + D] from stage_hi(l).
template <int W, int D> constexpr int stage_lo(int l) { return (l & D) ? W + l - D : l; }
template <int W, int D> constexpr int stage_hi(int l) { return (l & D) ? W + l : l + D; }
template <class T, int D, std::size_t... L> inline void transpose_stage(vec<T>* r, std::index_sequence<L...>) {
    constexpr int W = simd<T>::W;
    for (int i = 0; i < W; ++i)
        if (!(i & D)) {
            const vec<T> a = r[i], b = r[i + D];
#if defined(__clang__)  // GCC has __builtin_shufflevector only from GCC 12 on
            r[i] = __builtin_shufflevector(a, b, stage_lo<W, D>(L)...);
            r[i + D] = __builtin_shufflevector(a, b, stage_hi<W, D>(L)...);
#else
            r[i] = __builtin_shuffle(a, b, typename simd<T>::I{stage_lo<W, D>(L)...});
            r[i + D] = __builtin_shuffle(a, b, typename simd<T>::I{stage_hi<W, D>(L)...});
#endif
        }
}
template <class T, int D> inline void transpose_stage(vec<T>* r) {
    transpose_stage<T, D>(r, std::make_index_sequence<simd<T>::W>());
}
template <class T> inline void transpose(vec<T>* r) {
    constexpr int W = simd<T>::W;
    transpose_stage<T, 1>(r);
    if constexpr (W > 2) transpose_stage<T, 2>(r);
    if constexpr (W > 4) transpose_stage<T, 4>(r);
    if constexpr (W > 8) transpose_stage<T, 8>(r);
    static_assert(W <= 16, "transpose: at most 16 lanes");
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
