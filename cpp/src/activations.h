// Vectorised sigmoid and tanh.
//
// float: a branch-free exp (Cody-Waite reduction, degree-7 polynomial, exponent-bit scaling) and a
// tanh that switches to its odd Taylor series near zero, where 1 - 2/(e^2x + 1) would cancel.
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

inline vec<float> vtanh(vec<float> x) {
    using V = vec<float>;
    V a = x < splat(0.0f) ? -x : x;
    // |x| >= 0.55: 1 - 2 / (e^{2|x|} + 1), with |x| capped at 9 where tanh is 1 in float.
    V big = splat(1.0f) - splat(2.0f) * vrecip(vexp(splat(2.0f) * vmin(a, splat(9.0f))) + splat(1.0f));
    big = x < splat(0.0f) ? -big : big;
    // |x| < 0.55: odd Taylor series through x^19 (truncation error < 1e-8 relative).
    V x2 = x * x;
    V q = splat(-443861162.0f / 1856156927625.0f);
    q = q * x2 + splat(6404582.0f / 10854718875.0f);
    q = q * x2 + splat(-929569.0f / 638512875.0f);
    q = q * x2 + splat(21844.0f / 6081075.0f);
    q = q * x2 + splat(-1382.0f / 155925.0f);
    q = q * x2 + splat(62.0f / 2835.0f);
    q = q * x2 + splat(-17.0f / 315.0f);
    q = q * x2 + splat(2.0f / 15.0f);
    q = q * x2 + splat(-1.0f / 3.0f);
    V small = x + x * x2 * q;
    V y = a < splat(0.55f) ? small : big;
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

// max(x, 0), keeping NaN.
inline vec<float> vrelu(vec<float> x) { return x > 0.0f ? x : (x != x ? x : splat(0.0f)); }
inline vec<double> vrelu(vec<double> x) { return x > 0.0 ? x : (x != x ? x : splat(0.0)); }

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
