// int8 operands of the products (LayerShape::precision == int8): the weights' and activations'
// quads, each row of activations quantized, and the integer multiply-add of a quad.
//
// Weights are symmetric int8, one scale per output column (a row of W_ih or W_hh), quantized by the
// caller. Activations (a row of x_t, or of h_{t-1}) are quantized here, per row:
//   m = max |a_k|,  q_k = rint(a_k * (127 / m)) in [-127, 127],  scale = m / 127
// (float32 operations, ties to even; a row of zeros gives q = 0 and scale 0). A product's integer
// sum over k, S = sum q_k w_k, is exact in int32 (|S| <= K * 127 * 127, any K below 133,000), so
// every path gives the same S; C = float(S) * (scale_row * scale_column) + bias.
//
// Both operands go in quads along k (k = 4j .. 4j + 3 in one 32-bit word, k = 4j in the low byte),
// as AVX512-VNNI's vpdpbusd takes them: a packed panel's row j holds each output column's quad of
// weights, and an activation row is a row of quads. vpdpbusd (and AMX's tiles) multiply unsigned
// bytes by signed ones, so there the activations are stored as q + 128 and each column's sum of
// weights, kept in the panel's trailer row, takes 128 * sum w back out. Without VNNI the signed
// quads multiply as |q| times sign(q) w (vpmaddubsw: no pair of such products reaches its 16-bit
// saturation, 2 * 127 * 127 < 32767), and in the portable build lane by lane.
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
typedef std::int32_t ivec_u __attribute__((vector_size(RNNFAST_VBYTES), aligned(4), may_alias));
typedef std::uint8_t byte_vec __attribute__((vector_size(RNNFAST_VBYTES / 4)));

// float -> nearest integer, ties to even, for |x| < 2^22 (as rint in the default rounding mode):
// adding and taking away 1.5 * 2^23 leaves x rounded to an integer (without -ffast-math the
// compiler keeps both).
inline vec<float> round_even(vec<float> x) {
    const vec<float> magic = splat(12582912.0f);
    return (x + magic) - magic;
}

// A row of n floats as `quads` quads (zero past n) and its scale, per the rule above. With
// `residual`, also the row's second digit there: what the first leaves, r = a * (127 / m) - q in
// [-1/2, 1/2], quantized as rint(r * 254), whose scale is the first's / 254 (returned in
// *residual_scale): a ~ q * scale + q2 * scale / 254, to about 15 bits.
inline float quantize_row(ActivationQuad* dst, const float* src, Index n, Index quads,
                          ActivationQuad* residual = nullptr, float* residual_scale = nullptr) {
    constexpr int W = simd<float>::W;
    vec<float> mv = splat(0.0f);
    Index i = 0;
    for (; i + W <= n; i += W) {
        const vec<float> a = load(src + i);
        const vec<float> ab = a < 0 ? -a : a;
        mv = ab > mv ? ab : mv;
    }
    float m = 0;
    for (int l = 0; l < W; ++l) m = mv[l] > m ? mv[l] : m;
    for (; i < n; ++i) {
        const float ab = src[i] < 0 ? -src[i] : src[i];
        m = ab > m ? ab : m;
    }
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    const std::int32_t offset = kUnsignedActivations ? 128 : 0;
    std::uint8_t* out = reinterpret_cast<std::uint8_t*>(dst);
    std::uint8_t* out2 = reinterpret_cast<std::uint8_t*>(residual);
    // Lanes [i, i + W) of a (the first `lanes` of them): q's and, with a residual, q2's bytes.
    auto digits = [&](Index i, int lanes) {
        const vec<float> scaled = load_n(src + i, lanes) * splat(inv);
        vec<float> q = round_even(scaled);
        q = q > 127.0f ? splat(127.0f) : q;
        q = q < -127.0f ? splat(-127.0f) : q;
        const byte_vec b = __builtin_convertvector(__builtin_convertvector(q, ivec) + offset, byte_vec);
        std::memcpy(out + i, &b, std::size_t(lanes));
        if (residual) {
            vec<float> q2 = round_even((scaled - q) * splat(254.0f));
            q2 = q2 > 127.0f ? splat(127.0f) : q2;
            q2 = q2 < -127.0f ? splat(-127.0f) : q2;
            const byte_vec b2 = __builtin_convertvector(__builtin_convertvector(q2, ivec) + offset, byte_vec);
            std::memcpy(out2 + i, &b2, std::size_t(lanes));
        }
    };
    for (i = 0; i + W <= n; i += W) digits(i, W);
    if (i < n) digits(i, int(n - i));
    for (i = n; i < 4 * quads; ++i) {
        out[i] = std::uint8_t(offset);
        if (residual) out2[i] = std::uint8_t(offset);
    }
    if (residual_scale) *residual_scale = m / 127.0f / 254.0f;
    return m / 127.0f;
}

inline ivec load_quads(const Int8Quad* p) { return *reinterpret_cast<const ivec_u*>(p); }

// The micro-kernel's multiply-add of quads: acc + sum over the quad's 4 k of a_k * b_k, for b a
// quad per lane and a one quad for every lane (splat once per row).
#if defined(RNNFAST_VNNI)
inline ivec quad_splat(ActivationQuad a) { return ivec{} + std::int32_t(a.bits); }
inline ivec quad_madd(ivec acc, ivec b, ivec a) {  // acc += unsigned a x signed b (in asm: see bfloat16.h's madd)
#if RNNFAST_VBYTES == 64
    __asm__("vpdpbusd %1, %2, %0" : "+v"(acc) : "v"(b), "v"(a));
#else
    __asm__("%{vex%} vpdpbusd %1, %2, %0" : "+x"(acc) : "x"(b), "x"(a));
#endif
    return acc;
}
#elif defined(__AVX512BW__) && RNNFAST_VBYTES == 64
struct QuadSplat {
    __m512i magnitude;
    __mmask64 negative;
};
inline QuadSplat quad_splat(ActivationQuad a) {
    const __m512i s = _mm512_set1_epi32(std::int32_t(a.bits));
    return {_mm512_abs_epi8(s), _mm512_movepi8_mask(s)};
}
inline ivec quad_madd(ivec acc, ivec b, const QuadSplat& a) {
    const __m512i w = _mm512_mask_sub_epi8((__m512i)b, a.negative, _mm512_setzero_si512(), (__m512i)b);
    const __m512i pairs = _mm512_maddubs_epi16(a.magnitude, w);
    return acc + (ivec)_mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
}
#elif defined(__AVX2__) && RNNFAST_VBYTES == 32
struct QuadSplat {
    __m256i magnitude, sign;
};
inline QuadSplat quad_splat(ActivationQuad a) {
    const __m256i s = _mm256_set1_epi32(std::int32_t(a.bits));
    return {_mm256_abs_epi8(s), s};
}
inline ivec quad_madd(ivec acc, ivec b, const QuadSplat& a) {
    const __m256i pairs = _mm256_maddubs_epi16(a.magnitude, _mm256_sign_epi8((__m256i)b, a.sign));
    return acc + (ivec)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#else
// Portable (and the test-only avx2_w16 build): each lane's four byte products.
struct QuadSplat {
    std::int32_t q[4];
};
inline QuadSplat quad_splat(ActivationQuad a) {
    QuadSplat s;
    for (int i = 0; i < 4; ++i) s.q[i] = std::int8_t(a.bits >> (8 * i));
    return s;
}
inline ivec quad_madd(ivec acc, ivec b, const QuadSplat& a) {
    acc += ((b << 24) >> 24) * a.q[0];
    acc += ((b << 16) >> 24) * a.q[1];
    acc += ((b << 8) >> 24) * a.q[2];
    acc += (b >> 24) * a.q[3];
    return acc;
}
#endif

// The product's row of C from an integer sum: S taken back to float, times the row's and the
// columns' scales, plus `base` (the bias, zero, or C's value). With unsigned activations S still
// holds 128 * (the column's sum of weights), which `correction` (that, or zero) takes out.
// One fused multiply-add where the build has FMA, spelled out: left to the compiler's contraction,
// the AMX and micro-kernel epilogues came out fused in one and not the other.
template <class T>
inline vec<T> dequantize(ivec s, ivec correction, float row_scale, vec<T> column_scales, vec<T> base) {
    static_assert(sizeof(T) == 4, "int8 products give float32");
    const vec<T> sum = __builtin_convertvector(s - correction, vec<T>), scale = splat<T>(row_scale) * column_scales;
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
