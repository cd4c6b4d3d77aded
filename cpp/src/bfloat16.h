// bfloat16 operands of the products (LayerShape::precision == bfloat16): rounding, pairs, and the
// multiply-add of a pair.
//
// A bfloat16 is the upper 16 bits of a float32. The products take their operands in pairs along k
// (k = 2j and 2j + 1 in one 32-bit word, the even one in the low half), as AVX512-BF16's vdpbf16ps
// does: a packed panel's row j holds, per output column, the pair of weights for k = 2j, 2j + 1,
// and an activation row is a row of pairs. A product of two bfloat16 values is exact in float32,
// so both ways here sum the same exact terms in the same order, the odd one first (vdpbf16ps's
// order), and give the same bits: the instruction where the CPU has it (the avx512_bf16 build),
// else the pair widened to float32 as it is loaded (half the weight bytes of float32 all the same).
// AMX tiles (amx.h) sum differently.
#pragma once
#include <cstring>

#include "simd.h"
#if defined(__AVX512BF16__) && RNNFAST_VBYTES == 64
#define RNNFAST_BF16_DOT 1
#endif
#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && RNNFAST_VBYTES == 64
#define RNNFAST_AMX 1  // the products on AMX tiles (amx.h)
#endif

namespace rnnfast {
namespace RNNFAST_ISA_NS {

struct Bf16Pair {
    std::uint32_t bits;
};

// AMX takes whole tiles: packed k in multiples of 16 pairs, and rows of activations read 16 at a
// time (amx.h). Elsewhere no padding.
#ifdef RNNFAST_AMX
constexpr Index kPairRowsAlign = 16, kActivationRowsSpare = 15;
#else
constexpr Index kPairRowsAlign = 1, kActivationRowsSpare = 0;
#endif

// float32 -> bfloat16 bits, rounded to nearest even; a NaN stays a (quiet) NaN.
inline std::uint32_t bf16_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
inline float bf16_float(std::uint32_t bits) {  // the low 16 bits as a bfloat16, widened
    const std::uint32_t u = bits << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline Bf16Pair bf16_pair(float even, float odd) { return {bf16_bits(even) | bf16_bits(odd) << 16}; }

typedef std::uint32_t pair_vec __attribute__((vector_size(RNNFAST_VBYTES)));  // W pairs, one per output column
typedef std::uint32_t pair_vec_u __attribute__((vector_size(RNNFAST_VBYTES), aligned(4), may_alias));
inline pair_vec load_pairs(const Bf16Pair* p) { return *reinterpret_cast<const pair_vec_u*>(p); }

// The activations' pairs as the micro-kernel reads them, each broadcast to every lane. With
// vdpbf16ps one 32-bit word (broadcast from memory); otherwise the two values widened to float32
// (each broadcast from memory straight into its FMA: a word split in registers would take two
// shuffles per row and pair, on the ports the FMAs need).
#ifdef RNNFAST_BF16_DOT
using ActivationPair = Bf16Pair;
inline ActivationPair activation_pair(float even, float odd) { return bf16_pair(even, odd); }
#else
struct ActivationPair {
    float even, odd;
};
inline ActivationPair activation_pair(float even, float odd) {
    return {bf16_float(bf16_bits(even)), bf16_float(bf16_bits(odd))};
}
#endif

// W floats rounded to bfloat16 as ActivationPairs (W / 2 of them), as bf16_bits does one.
typedef std::uint32_t bits_vec __attribute__((vector_size(RNNFAST_VBYTES)));
typedef std::uint32_t bits_vec_u __attribute__((vector_size(RNNFAST_VBYTES), aligned(4), may_alias));
inline void round_to_pairs(ActivationPair* dst, const float* src) {
    const bits_vec u = *reinterpret_cast<const bits_vec_u*>(src);
    const bits_vec nan = (u & 0x7fffffffu) > 0x7f800000u;  // all ones where NaN
    const bits_vec high = (((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & ~nan) | (((u >> 16) | 0x40u) & nan);
#ifdef RNNFAST_BF16_DOT
    typedef std::uint16_t halves __attribute__((vector_size(RNNFAST_VBYTES / 2)));
    typedef std::uint16_t halves_u __attribute__((vector_size(RNNFAST_VBYTES / 2), aligned(2), may_alias));
    *reinterpret_cast<halves_u*>(dst) = __builtin_convertvector(high, halves);  // the W upper halves in order
#else
    *reinterpret_cast<bits_vec_u*>(dst) = high << 16;  // {even, odd} floats: the values in order
#endif
}

// A row of n floats as ceil(n / 2) pairs (a last odd value paired with zero), from index u0 on
// (u0 even) up to u1; the call that ends the row (u1 == n) zeroes its pairs from there to `pairs`.
inline void to_activation_pairs(ActivationPair* dst, const float* src, Index u0, Index u1, Index n, Index pairs) {
    constexpr int W = simd<float>::W;
    Index u = u0;
    for (; u + W <= u1; u += W) round_to_pairs(dst + u / 2, src + u);
    for (; u < u1; u += 2) dst[u / 2] = activation_pair(src[u], u + 1 < n ? src[u + 1] : 0.0f);
    for (Index j = (n + 1) / 2; u1 == n && j < pairs; ++j) dst[j] = activation_pair(0.0f, 0.0f);
}

// The micro-kernel's multiply-add on pairs (gemm.h's micro): b's pairs per lane, a's one pair for
// every lane (splat once per row): acc + a.odd * b.odd + a.even * b.even, the odd term first.
inline pair_vec load_operand(const Bf16Pair* b) { return load_pairs(b); }
#ifdef RNNFAST_BF16_DOT
inline pair_vec operand_splat(ActivationPair a) { return a.bits - pair_vec{}; }
// In asm: through the intrinsic's may_alias vector types GCC 12 keeps the accumulators in memory.
inline vec<float> madd(vec<float> acc, pair_vec b, pair_vec a) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(b), "v"(a));
    return acc;
}
#else
struct PairSplat {
    vec<float> odd, even;
};
inline PairSplat operand_splat(ActivationPair a) { return {splat(a.odd), splat(a.even)}; }
inline vec<float> madd(vec<float> acc, pair_vec b, PairSplat a) {
    acc += a.odd * (vec<float>)(b & 0xffff0000u);
    acc += a.even * (vec<float>)(b << 16);
    return acc;
}
#endif

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
