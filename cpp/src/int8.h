// int8 operands of the products (LayerShape::precision == int8): the weights' and activations'
// quads, each row of activations quantized, and the integer multiply-add of a quad.
//
// Weights are int8 in [-128, 127] (rnnfast quantizes them symmetric, in [-127, 127]), one scale per
// output column (a row of W_ih or W_hh), quantized by the caller. Activations (a row of x_t, or of
// h_{t-1}) are quantized here, per row:
//   m = max |a_k|,  q_k = rint(a_k * (127 / m)) in [-127, 127],  scale = m / 127
// (float32 operations, ties to even; a row whose m is below 2^-100, zeros included, gives q = 0 and
// scale 0). A product's integer sum over k, S = sum q_k w_k, is exact in int32 (|S| <= K * 127 *
// 128: K up to kInt8MaxK, layer.h), so every path gives the same S; C = float(S) * (scale_row * scale_column)
// + bias.
//
// Both operands go in quads along k (k = 4j .. 4j + 3 in one 32-bit word, k = 4j in the low byte),
// as AVX512-VNNI's vpdpbusd takes them: a packed panel's row j holds each output column's quad of
// weights, and an activation row is a row of quads. vpdpbusd (and AMX's tiles) multiply unsigned
// bytes by signed ones, so there the activations are stored as q + 128 and each column's sum of
// weights, kept in the panel's trailer row, takes 128 * sum w back out. Without VNNI the signed
// quads multiply as |w| times sign(w) q (vpmaddubsw: no pair of such products reaches its 16-bit
// saturation, 2 * 128 * 127 < 32767), and in the portable build lane by lane.
#pragma once
#include <cstdint>

#include "simd.h"
#if defined(__AVX512VNNI__) && RNNFAST_VBYTES == 64
#define RNNFAST_VNNI 1
#elif defined(__AVXVNNI__) && RNNFAST_VBYTES == 32
#define RNNFAST_VNNI 1  // AVX-VNNI (Intel from Alder Lake on): vpdpbusd on ymm, VEX-encoded
#endif
#if defined(__AMX_INT8__) && defined(__AMX_TILE__) && defined(RNNFAST_VNNI)
#define RNNFAST_AMX_INT8 1  // the int8 products on AMX tiles (amx.h)
#endif
#if defined(__x86_64__) && (defined(__AVX2__) || defined(__AVX512F__) || defined(__FMA__))
#include <immintrin.h>
#endif

namespace rnnfast {
namespace RNNFAST_ISA_NS {

struct Int8Quad {  // four int8 weights, k = 4j in the low byte
    std::uint32_t bits;
};
struct ActivationQuad {  // four quantized activations: q + 128 (unsigned) with VNNI or AMX, else q
    std::uint32_t bits;
};

#ifdef RNNFAST_VNNI
constexpr bool kUnsignedActivations = true;  // (every AMX build has VNNI too)
#else
constexpr bool kUnsignedActivations = false;
#endif
// The rows an int8 panel holds past its quads: each column's sum of weights (int32).
constexpr Index kInt8TrailerRows = 1;

typedef std::int32_t ivec __attribute__((vector_size(RNNFAST_VBYTES)));
typedef std::uint32_t uvec __attribute__((vector_size(RNNFAST_VBYTES)));  // lanes where wrapping is defined
typedef std::int32_t ivec_u __attribute__((vector_size(RNNFAST_VBYTES), aligned(4), may_alias));
typedef std::uint8_t byte_vec __attribute__((vector_size(RNNFAST_VBYTES / 4)));

// float -> nearest integer, ties to even, for |x| < 2^22 (as rint in the default rounding mode):
// adding and taking away 1.5 * 2^23 leaves x rounded to an integer (without -ffast-math the
// compiler keeps both). x must be a float already: see settled.
inline vec<float> round_even(vec<float> x) {
    const vec<float> magic = splat(12582912.0f);
    return (x + magic) - magic;
}

// v as a float32 value the compiler can no longer contract into a following add: with FMA and
// -ffp-contract=fast, a * inv + magic (or a * inv - q) would become one fused multiply-add that
// skips the product's rounding, and the digits would differ from the reference's now and then.
inline vec<float> settled(vec<float> v) {
#if defined(__x86_64__) && (RNNFAST_VBYTES < 64 || defined(__AVX512F__)) && (RNNFAST_VBYTES < 32 || defined(__AVX__))
    __asm__("" : "+v"(v));
#elif defined(__aarch64__) && RNNFAST_VBYTES == 16
    __asm__("" : "+w"(v));
#else
    __asm__("" : "+m"(v));
#endif
    return v;
}

// Rows whose largest magnitude is below this count as zero (q = 0, scale 0): 127 / m stays finite,
// and denormals (which a DAZ mode would read as zero) give the same digits either way.
constexpr float kSmallestRowMax = 0x1p-100f;

// A row of n floats as `quads` quads (zero past n) and its scale, per the rules above. With
// `residual`, also the row's second digit there: what the first leaves, r = a * (127 / m) - q in
// [-1/2, 1/2], quantized as rint(r * 254), whose scale is the first's / 254 (returned in
// *residual_scale): a ~ q * scale + q2 * scale / 254, to about 15 bits.
inline float quantize_row(ActivationQuad* dst, const float* src, Index n, Index quads,
                          ActivationQuad* residual = nullptr, float* residual_scale = nullptr) {
    constexpr int W = simd<float>::W;
    vec<float> largest = splat(0.0f);
    Index i = 0;
    for (; i + W <= n; i += W) {
        const vec<float> a = load(src + i);
        const vec<float> ab = a < 0 ? -a : a;
        largest = ab > largest ? ab : largest;
    }
    float m = 0;
    for (int l = 0; l < W; ++l) m = largest[l] > m ? largest[l] : m;
    for (; i < n; ++i) {
        const float ab = src[i] < 0 ? -src[i] : src[i];
        m = ab > m ? ab : m;
    }
    if (!(m >= kSmallestRowMax)) m = 0;
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    const std::int32_t offset = kUnsignedActivations ? 128 : 0;
    std::uint8_t* first = reinterpret_cast<std::uint8_t*>(dst);
    std::uint8_t* second = reinterpret_cast<std::uint8_t*>(residual);
    // Lanes [i, i + W) of a (the first `lanes` of them): q's and, with a residual, q2's bytes.
    auto digits = [&](Index i, int lanes) {
        const vec<float> scaled = settled(load_n(src + i, lanes) * splat(inv));
        vec<float> q = round_even(scaled);
        q = q > 127.0f ? splat(127.0f) : q;
        q = q < -127.0f ? splat(-127.0f) : q;
        const byte_vec first_bytes = __builtin_convertvector(__builtin_convertvector(q, ivec) + offset, byte_vec);
        std::memcpy(first + i, &first_bytes, std::size_t(lanes));
        if (residual) {
            vec<float> q2 = round_even(settled((scaled - q) * splat(254.0f)));
            q2 = q2 > 127.0f ? splat(127.0f) : q2;
            q2 = q2 < -127.0f ? splat(-127.0f) : q2;
            const byte_vec second_bytes = __builtin_convertvector(__builtin_convertvector(q2, ivec) + offset, byte_vec);
            std::memcpy(second + i, &second_bytes, std::size_t(lanes));
        }
    };
    for (i = 0; i + W <= n; i += W) digits(i, W);
    if (i < n) digits(i, int(n - i));
    for (i = n; i < 4 * quads; ++i) {
        first[i] = std::uint8_t(offset);
        if (residual) second[i] = std::uint8_t(offset);
    }
    if (residual_scale) *residual_scale = m / 127.0f / 254.0f;
    return m / 127.0f;
}

inline ivec load_quads(const Int8Quad* p) { return *reinterpret_cast<const ivec_u*>(p); }

// The micro-kernel's multiply-add of quads: acc + sum over the quad's 4 k of a_k * w_k, for w a quad
// of weights per lane (quad_weights, once per vector of them) and a one quad of activations for
// every lane (quad_splat, once per row). Every path is exact for weights in [-128, 127].
#if defined(RNNFAST_VNNI)
inline ivec quad_weights(ivec w) { return w; }
inline ivec quad_splat(ActivationQuad a) { return ivec{} + std::int32_t(a.bits); }
inline ivec quad_madd(ivec acc, ivec w, ivec a) {  // acc += unsigned a x signed w (in asm: see bfloat16.h's madd)
#if RNNFAST_VBYTES == 64
    __asm__("vpdpbusd %1, %2, %0" : "+v"(acc) : "v"(w), "v"(a));
#else
    __asm__("%{vex%} vpdpbusd %1, %2, %0" : "+x"(acc) : "x"(w), "x"(a));
#endif
    return acc;
}
// Without VNNI, vpmaddubsw multiplies unsigned bytes by signed ones: |w| (a weight of -128 gives
// 128, as an unsigned byte) by a with w's sign. A pair of such products is at most 2 * 128 * 127 =
// 32512: below the 16-bit saturation, so the sums are exact.
#elif defined(__AVX512BW__) && RNNFAST_VBYTES == 64
struct QuadWeights {
    __m512i magnitude;
    __mmask64 negative;
};
inline QuadWeights quad_weights(ivec w) { return {_mm512_abs_epi8((__m512i)w), _mm512_movepi8_mask((__m512i)w)}; }
inline __m512i quad_splat(ActivationQuad a) { return _mm512_set1_epi32(std::int32_t(a.bits)); }
inline ivec quad_madd(ivec acc, const QuadWeights& w, __m512i a) {
    const __m512i signed_a = _mm512_mask_sub_epi8(a, w.negative, _mm512_setzero_si512(), a);
    return acc + (ivec)_mm512_madd_epi16(_mm512_maddubs_epi16(w.magnitude, signed_a), _mm512_set1_epi16(1));
}
#elif defined(__AVX2__) && RNNFAST_VBYTES == 32
struct QuadWeights {
    __m256i magnitude, sign;
};
inline QuadWeights quad_weights(ivec w) { return {_mm256_abs_epi8((__m256i)w), (__m256i)w}; }
inline __m256i quad_splat(ActivationQuad a) { return _mm256_set1_epi32(std::int32_t(a.bits)); }
inline ivec quad_madd(ivec acc, const QuadWeights& w, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(w.magnitude, _mm256_sign_epi8(a, w.sign));
    return acc + (ivec)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#else
// Portable (and the test-only avx2_w16 build): each lane's four bytes, sign-extended, times the
// row's four activations. (Shifts on unsigned lanes: shifting a negative int left is undefined.)
struct QuadWeights {
    ivec byte[4];
};
inline QuadWeights quad_weights(ivec w) {
    QuadWeights bytes;
    for (int i = 0; i < 4; ++i) bytes.byte[i] = ivec((uvec)w << (24 - 8 * i)) >> 24;
    return bytes;
}
struct QuadSplat {
    std::int32_t q[4];
};
inline QuadSplat quad_splat(ActivationQuad a) {
    QuadSplat s;
    for (int i = 0; i < 4; ++i) s.q[i] = std::int8_t(a.bits >> (8 * i));
    return s;
}
inline ivec quad_madd(ivec acc, const QuadWeights& w, const QuadSplat& a) {
    for (int i = 0; i < 4; ++i) acc += w.byte[i] * a.q[i];
    return acc;
}
#endif

// 128 times each column's sum of weights (the panel's trailer row): what the unsigned activations'
// offset adds to the sums. It fits int32 (down to -2^31 for K = 131,072 weights of -128); the
// multiply is on unsigned lanes only because that is where overflow is defined, should it happen.
inline ivec offset_sums(const Int8Quad* trailer) { return ivec((uvec)load_quads(trailer) * 128u); }

// The product's row of C from an integer sum: S taken back to float, times the row's and the
// columns' scales, plus `base` (the bias, zero, or C's value). With unsigned activations S still
// holds 128 * (the column's sum of weights), which `correction` (that, or zero) takes out.
// One fused multiply-add where the build has FMA, spelled out: left to the compiler's contraction,
// the AMX and micro-kernel epilogues came out fused in one and not the other.
template <class T>
inline vec<T> dequantize(ivec s, ivec correction, float row_scale, vec<T> column_scales, vec<T> base) {
    static_assert(sizeof(T) == 4, "int8 products give float32");
    // With unsigned activations the sums s themselves (of (q + 128) w, up to 255 * 128 * K) wrap
    // around in int32 for K over 65,793; s - correction is exact modulo 2^32 and fits int32, so
    // the difference is taken on unsigned lanes, where wrapping is defined.
    const ivec exact = ivec((uvec)s - (uvec)correction);
    const vec<T> sum = __builtin_convertvector(exact, vec<T>), scale = splat<T>(row_scale) * column_scales;
#if defined(__AVX512F__) && RNNFAST_VBYTES == 64
    return (vec<T>)_mm512_fmadd_ps((__m512)sum, (__m512)scale, (__m512)base);
#elif defined(__FMA__) && RNNFAST_VBYTES == 32
    return (vec<T>)_mm256_fmadd_ps((__m256)sum, (__m256)scale, (__m256)base);
#else
    return sum * scale + base;
#endif
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
