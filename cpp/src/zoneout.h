// Zoneout's mask for one row (time t, batch entry b) of a layer's forward or backward call `a`:
// the caller's mask array, masks drawn from a seed (ZoneoutDraw, rnnfast/layer.h), or the constant
// p of eval. Both passes read it through here, so that the backward sees the forward's masks.
#pragma once
#include "rnnfast/layer.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class Call> bool zones_out(const Call& a) {
    return a.zoneout || a.zoneout_draws || a.zoneout_p != decltype(a.zoneout_p)(0);
}

// Calls f(u, m) for the units u in [u0, u1) of row t * B + b, m that unit's mask value.
template <class T, class Call, class F>
inline void for_zoneout_units(const Call& a, Index B, Index H, Index t, Index b, Index u0, Index u1, F&& f) {
    if (a.zoneout) {
        const T* m = a.zoneout + (t * B + b) * H;
        for (Index u = u0; u < u1; ++u) f(u, m[u]);
    } else if (a.zoneout_draws) {
        const ZoneoutDraw draw(a.zoneout_seed, t * B + b, double(a.zoneout_p));
        for (Index u = u0; u < u1; ++u) f(u, draw.keeps(u) ? T(1) : T(0));
    } else {
        for (Index u = u0; u < u1; ++u) f(u, a.zoneout_p);
    }
}

}  // namespace RNNFAST_ISA_NS
}  // namespace rnnfast
