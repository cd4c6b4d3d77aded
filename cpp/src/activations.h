// Vectorised exp, sigmoid and tanh.
//
// float: a branch-free exp (Cody-Waite reduction, degree-7 polynomial, exponent-bit scaling) and a
// tanh from an expm1 of the same kind, so that it keeps its relative accuracy near zero.
// Both stay within a few ulp of the float64 result over the whole finite range and saturate to
// exactly 0, 1 or +-1 without overflow or NaN (a NaN input stays NaN).
// double: lane by lane through the C library, which is exact to the last bit we promise.
#pragma once
// No std:: templates here: this header is compiled once per ISA, and a shared weak symbol
// could hand AVX-512 code to a CPU without it.

#include "simd.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

// ---- float -------------------------------------------------------------------------------
inline vec<float> vmin(vec<float> a, vec<float> b) { return a < b ? a : b; }
inline vec<float> vmax(vec<float> a, vec<float> b) { return a > b ? a : b; }

// e^x for x clamped to [-86, 88.3] (keeps 2^n a normal number); NaN propagates.
inline vec<float> vexp(vec<float> x) {
    using V = vec<float>;
    using I = simd<float>::I;
    const V lo = splat(-86.0f), hi = splat(88.3f);
    V xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    xc = x != x ? x : xc;  // keep NaN
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    V t = xc * splat(1.44269504088896341f) + splat(magic);
    V n = t - splat(magic);
    V r = xc - n * splat(0.693145751953125f);  // ln2 split in two parts (Cody-Waite)
    r = r - n * splat(1.42860682030941723212e-6f);
    V p = splat(1.0f / 5040.0f);
    p = p * r + splat(1.0f / 720.0f);
    p = p * r + splat(1.0f / 120.0f);
    p = p * r + splat(1.0f / 24.0f);
    p = p * r + splat(1.0f / 6.0f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    I ni = (I)t - (I)splat(magic);  // the integer n, from t's mantissa bits
    I bits = (I)p + (ni << 23);
    return (V)bits;
}

// 1 / d for d >= 1 (all our denominators): the hardware estimate refined by one Newton step where
// there is one (about 2^-23 relative, and 4x cheaper than a division), else a division.
inline vec<float> vrecip(vec<float> d) {
#if RNNFAST_VBYTES == 64 && defined(__AVX512F__)
    vec<float> r = __builtin_ia32_rcp14ps512_mask(d, d, (unsigned short)0xFFFF);
    vec<float> r1 = r * (splat(2.0f) - d * r);
    return d == d ? r1 : d;
#elif RNNFAST_VBYTES == 32 && defined(__AVX__)
    vec<float> r = __builtin_ia32_rcpps256(d);
    vec<float> r1 = r * (splat(2.0f) - d * r);
    // rcp of a huge d (> 2^126) is 0: then 1/d is below float's normal range anyway.
    return d == d ? r1 : d;
#else
    return splat(1.0f) / d;
#endif
}

inline vec<float> vsigmoid(vec<float> x) { return vrecip(splat(1.0f) + vexp(-x)); }

// e^y - 1 for y in [-18, 0], accurate to a few ulp relative also near 0: with y = n ln2 + r,
// e^y - 1 = 2^n (e^r - 1) + (2^n - 1), and e^r - 1 is a polynomial with no constant term.
inline vec<float> vexpm1_neg(vec<float> y) {
    using V = vec<float>;
    using I = simd<float>::I;
    const float magic = 12582912.0f;
    V t = y * splat(1.44269504088896341f) + splat(magic);
    V n = t - splat(magic);
    V r = y - n * splat(0.693145751953125f);
    r = r - n * splat(1.42860682030941723212e-6f);
    V q = splat(1.0f / 40320.0f);  // (e^r - 1) / r - 1, then times r: degree 8 in r
    q = q * r + splat(1.0f / 5040.0f);
    q = q * r + splat(1.0f / 720.0f);
    q = q * r + splat(1.0f / 120.0f);
    q = q * r + splat(1.0f / 24.0f);
    q = q * r + splat(1.0f / 6.0f);
    q = q * r + splat(0.5f);
    V em1 = r + r * (r * q);  // e^r - 1
    I ni = (I)t - (I)splat(magic);
    V two_n = (V)((ni + 127) << 23);  // 2^n, n in [-26, 0]
    return two_n * em1 + (two_n - splat(1.0f));
}

// tanh|x| = -E / (2 + E) with E = e^{-2|x|} - 1: one path for every x, no cancellation near 0.
inline vec<float> vtanh(vec<float> x) {
    using V = vec<float>;
    V a = x < splat(0.0f) ? -x : x;
    V e = vexpm1_neg(splat(-2.0f) * vmin(a, splat(9.0f)));
    V t = -e * vrecip(splat(2.0f) + e);
    V y = x < splat(0.0f) ? -t : t;
    return x != x ? x : y;
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
inline vec<double> vmax(vec<double> a, vec<double> b) { return a > b ? a : b; }
inline vec<double> vexp(vec<double> x) {
    for (int i = 0; i < simd<double>::W; ++i) x[i] = __builtin_exp(x[i]);
    return x;
}

// max(x, 0), keeping NaN.
inline vec<float> vrelu(vec<float> x) { return x > 0.0f ? x : (x != x ? x : splat(0.0f)); }
inline vec<double> vrelu(vec<double> x) { return x > 0.0 ? x : (x != x ? x : splat(0.0)); }

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
