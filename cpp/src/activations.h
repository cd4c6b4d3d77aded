// Vectorised exp, sigmoid and tanh.
//
// float: a branch-free exp (Cody-Waite reduction, a fitted degree-5 polynomial, exponent-bit
// scaling) and a tanh from an expm1 of the same kind, so that it keeps its relative accuracy near
// zero. Both stay within 3.1e-7 relative of the float64 result (every float in [-100, 100],
// tools/activation_accuracy.py: sigmoid 3.04e-7, tanh 3.01e-7 on AVX2, 2.41e-7 and 2.33e-7 on the
// portable SSE path; tests/test_kernels.py asks 1e-6) and saturate without overflow or NaN (a
// NaN input stays NaN). Each is a short chain of about 20 vector operations: the gate math
// of a step is a sizeable share of a layer's time next to products that run near the FMA peak.
// double: lane by lane through the C library, which is exact to the last bit we promise.
#pragma once
// No std:: templates here: this header is compiled once per ISA, and a shared weak symbol
// could hand AVX-512 code to a CPU without it.

#include "simd.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// ---- float -------------------------------------------------------------------------------
// a > b ? a : b and a < b ? a : b, lane by lane: b where either is NaN, as x86's maxps/minps
// compute them. Through the instruction where there is one: GCC leaves the plain form as a
// compare and a blend inside the activations.
inline vec<float> vmax(vec<float> a, vec<float> b) {
#if RNNFAST_VBYTES == 64 && defined(__AVX512F__)
    return __builtin_ia32_maxps512_mask(a, b, a, (unsigned short)0xFFFF, 4);
#elif RNNFAST_VBYTES == 32 && defined(__AVX__)
    return __builtin_ia32_maxps256(a, b);
#elif RNNFAST_VBYTES == 16 && defined(__SSE__)
    return __builtin_ia32_maxps(a, b);
#else
    return a > b ? a : b;
#endif
}
inline vec<float> vmin(vec<float> a, vec<float> b) {
#if RNNFAST_VBYTES == 64 && defined(__AVX512F__)
    return __builtin_ia32_minps512_mask(a, b, a, (unsigned short)0xFFFF, 4);
#elif RNNFAST_VBYTES == 32 && defined(__AVX__)
    return __builtin_ia32_minps256(a, b);
#elif RNNFAST_VBYTES == 16 && defined(__SSE__)
    return __builtin_ia32_minps(a, b);
#else
    return a < b ? a : b;
#endif
}

// |m| with the sign of s.
inline vec<float> vcopysign(vec<float> m, vec<float> s) {
    using I = simd<float>::I;
    const I sign = (I)splat(-0.0f);
    return (vec<float>)(((I)m & ~sign) | ((I)s & sign));
}

// e^x for x clamped to [-86, 88.3] (keeps 2^n a normal number); NaN propagates. With x = n ln2 + r,
// |r| <= ln2 / 2: e^x = 2^n p(r), p of degree 5 fitted for the least maximum relative error
// (9.5e-8 with the coefficients in float, next to float's 6e-8 rounding; with Taylor's degree 7
// instead, the sigmoid's worst case over [-100, 100] on AVX2 was 2.5e-7 against 3.0e-7 now, for
// two more operations).
inline vec<float> vexp(vec<float> x) {
    using V = vec<float>;
    using I = simd<float>::I;
    V xc = vmin(splat(88.3f), vmax(splat(-86.0f), x));  // NaN passes both
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    V t = xc * splat(1.44269504088896341f) + splat(magic);
    V n = t - splat(magic);
    V r = xc - n * splat(0.693145751953125f);  // ln2 split in two parts (Cody-Waite)
    r = r - n * splat(1.42860682030941723212e-6f);
    V p = splat(0.0082903066650033f);
    p = p * r + splat(0.041897933930158615f);
    p = p * r + splat(0.1666763573884964f);
    p = p * r + splat(0.4999915063381195f);
    p = p * r + splat(0.9999997019767761f);
    p = p * r + splat(1.0f);
    I ni = (I)t - (I)splat(magic);  // the integer n, from t's mantissa bits
    V y = (V)((I)p + (ni << 23));
    return x != x ? x : y;  // a NaN's payload bits could shift y's exponent out of NaN
}

// 1 / d for finite d >= 1 or NaN (all our denominators): the hardware estimate refined by one
// Newton step where there is one (about 2^-23 relative, and 4x cheaper than a division), else a
// division. For d > 2^126, where 1 / d is below float's normal range, AVX2's estimate is 0 and
// stays 0; AVX-512's is a denormal, which the Newton step keeps.
inline vec<float> vrecip(vec<float> d) {
#if RNNFAST_VBYTES == 64 && defined(__AVX512F__)
    vec<float> r = __builtin_ia32_rcp14ps512_mask(d, d, (unsigned short)0xFFFF);
    return r * (splat(2.0f) - d * r);
#elif RNNFAST_VBYTES == 32 && defined(__AVX__)
    vec<float> r = __builtin_ia32_rcpps256(d);
    return r * (splat(2.0f) - d * r);
#else
    return splat(1.0f) / d;
#endif
}

// 1 + e^-x <= 1 + e^88.3 (about 2.2e38): finite.
inline vec<float> vsigmoid(vec<float> x) { return vrecip(splat(1.0f) + vexp(-x)); }

// e^y - 1 for y in [-18, 0], accurate to a few ulp relative also near 0: with y = n ln2 + r,
// e^y - 1 = 2^n (e^r - 1) + (2^n - 1), and e^r - 1 = r + r^2 q(r), q of degree 4 fitted for the
// least maximum relative error of the whole (1.7e-8 with the coefficients in float). NaN
// propagates.
inline vec<float> vexpm1_neg(vec<float> y) {
    using V = vec<float>;
    using I = simd<float>::I;
    const float magic = 12582912.0f;
    V t = y * splat(1.44269504088896341f) + splat(magic);
    V n = t - splat(magic);
    V r = y - n * splat(0.693145751953125f);
    r = r - n * splat(1.42860682030941723212e-6f);
    V q = splat(0.0013882513158023357f);
    q = q * r + splat(0.008366514928638935f);
    q = q * r + splat(0.04166720062494278f);
    q = q * r + splat(0.1666654348373413f);
    q = q * r + splat(0.4999999701976776f);
    V em1 = r + r * (r * q);  // e^r - 1
    I ni = (I)t - (I)splat(magic);
    V two_n = (V)((ni + 127) << 23);  // 2^n, n in [-26, 0]
    return two_n * em1 + (two_n - splat(1.0f));
}

// tanh|x| = -E / (2 + E) with E = e^{-2|x|} - 1: one path for every x, no cancellation near 0;
// then x's sign. A NaN passes through (min keeps it, and so does every step after).
inline vec<float> vtanh(vec<float> x) {
    using V = vec<float>;
    V a = vcopysign(x, splat(0.0f));
    V e = vexpm1_neg(splat(-2.0f) * vmin(splat(9.0f), a));
    return vcopysign(-e * vrecip(splat(2.0f) + e), x);
}

// ---- double ------------------------------------------------------------------------------
inline vec<double> vsigmoid(vec<double> x) {
    for (int i = 0; i < simd<double>::W; ++i) x[i] = 1.0 / (1.0 + __builtin_exp(-x[i]));
    return x;
}
inline vec<double> vtanh(vec<double> x) {
    for (int i = 0; i < simd<double>::W; ++i) x[i] = __builtin_tanh(x[i]);
    return x;
}
inline vec<double> vmax(vec<double> a, vec<double> b) { return a > b ? a : b; }  // as the float one
inline vec<double> vexp(vec<double> x) {
    for (int i = 0; i < simd<double>::W; ++i) x[i] = __builtin_exp(x[i]);
    return x;
}

// max(x, 0), keeping NaN.
inline vec<float> vrelu(vec<float> x) { return x > 0.0f ? x : (x != x ? x : splat(0.0f)); }
inline vec<double> vrelu(vec<double> x) { return x > 0.0 ? x : (x != x ? x : splat(0.0)); }

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
