// isa_agreement's runs: a case through the library's layer API, in full precision (a training
// forward, its backward, and two eval forwards through one weight cache) and in reduced precision.
#pragma once
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "agreement_cases.h"

namespace agreement {

// Everything one run writes.
template <class T> struct Outputs {
    std::vector<T> y, h_n, c_n, dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih, db_hh;
    std::vector<T> dln_ih, dln_hh, dln_cell_weight, dln_cell_bias;
    std::vector<T> y_eval, h_eval, c_eval, y_cached, h_cached, c_cached;  // eval, then eval from the cache
};

template <class T> std::vector<T> as(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }

// A case's arrays as T.
template <class T> struct Converted {
    std::vector<T> x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, dy, dh_n, dc_n, zoneout, recurrent_mask;
    std::vector<T> ln_ih, ln_hh, ln_cell_weight, ln_cell_bias;
    explicit Converted(const Inputs& in)
        : x(as<T>(in.x)), h0(as<T>(in.h0)), c0(as<T>(in.c0)), w_ih(as<T>(in.w_ih)), w_hh(as<T>(in.w_hh)),
          w_hr(as<T>(in.w_hr)), b_ih(as<T>(in.b_ih)), b_hh(as<T>(in.b_hh)), dy(as<T>(in.dy)), dh_n(as<T>(in.dh_n)),
          dc_n(as<T>(in.dc_n)), zoneout(as<T>(in.zoneout)), recurrent_mask(as<T>(in.recurrent_mask)),
          ln_ih(as<T>(in.ln_ih)), ln_hh(as<T>(in.ln_hh)), ln_cell_weight(as<T>(in.ln_cell_weight)),
          ln_cell_bias(as<T>(in.ln_cell_bias)) {}
};

inline rnnfast::LayerShape shape_of(const Case& c) {
    return {c.cell, c.T, c.B, c.I, c.H, c.reverse, c.recurrent_dropout, rnnfast::Precision::full, c.P};
}

// A forward: training when `saved` is given, else eval through `wcache`.
template <class T> void forward(const Case& c, const Inputs& in, const Converted<T>& v, int threads, T* y, T* h_n,
                                T* c_n, T* saved, T* wcache) {
    const rnnfast::LayerShape s = shape_of(c);
    const bool lstm = rnnfast::has_cell_state(c.cell);
    std::vector<T> scratch(rnnfast::forward_scratch_size(s, saved != nullptr, sizeof(T), threads));
    rnnfast::LayerForward<T> a{};
    a.s = s;
    a.x = v.x.data();
    a.ldx = c.I;
    a.h0 = v.h0.data();
    a.c0 = lstm ? v.c0.data() : nullptr;
    a.w_ih = v.w_ih.data();
    a.w_hh = v.w_hh.data();
    a.w_hr = v.w_hr.data();
    a.b_ih = c.bias ? v.b_ih.data() : nullptr;
    a.b_hh = c.bias ? v.b_hh.data() : nullptr;
    a.lengths = c.lengths ? in.lengths.data() : nullptr;
    a.y = y;
    a.ldy = c.S();
    a.h_n = h_n;
    a.c_n = lstm ? c_n : nullptr;
    a.saved = saved;
    a.scratch = scratch.data();
    a.wcache = wcache;
    a.threads = threads;
    a.zoneout = c.zoneout && saved ? v.zoneout.data() : nullptr;  // masks in training, p in eval
    a.zoneout_p = (c.zoneout && !saved) || c.zoneout_draws ? T(0.3) : T(0);
    a.zoneout_draws = c.zoneout_draws && saved;
    a.zoneout_seed = 0x0123456789abcdefULL;
    a.recurrent_mask = c.recurrent_dropout ? v.recurrent_mask.data() : nullptr;
    a.ln_ih_weight = v.ln_ih.data(), a.ln_hh_weight = v.ln_hh.data();  // read by the layer-normalised cells only
    a.ln_cell_weight = v.ln_cell_weight.data(), a.ln_cell_bias = v.ln_cell_bias.data();
    rnnfast::layer_forward(a);
}

// The backward of the training forward that filled `saved`, into o's gradients.
template <class T> void backward(const Case& c, const Inputs& in, const Converted<T>& v, int threads, T* saved,
                                 Outputs<T>& o) {
    const rnnfast::LayerShape s = shape_of(c);
    const bool lstm = rnnfast::has_cell_state(c.cell);
    const Index G = rnnfast::gate_count(c.cell), GH = G * c.H;
    o.dx.resize(v.x.size());
    o.dh0.resize(c.B * c.S());
    o.dc0.resize(c.B * c.H);
    o.dw_ih.assign(v.w_ih.size(), T(0));
    o.dw_hh.assign(v.w_hh.size(), T(0));
    o.dw_hr.assign(v.w_hr.size(), T(0));
    for (auto* g : {&o.dln_ih, &o.dln_hh, &o.db_ih, &o.db_hh}) g->assign(GH, T(0));
    for (auto* g : {&o.dln_cell_weight, &o.dln_cell_bias}) g->assign(c.H, T(0));
    std::vector<T> scratch(rnnfast::backward_scratch_size(s, sizeof(T), threads, true));
    rnnfast::LayerBackward<T> b{};
    b.s = s;
    b.x = v.x.data();
    b.ldx = c.I;
    b.w_ih = v.w_ih.data();
    b.w_hh = v.w_hh.data();
    b.w_hr = v.w_hr.data();
    b.lengths = c.lengths ? in.lengths.data() : nullptr;
    b.saved = saved;
    b.consume_saved = true;
    b.dy = v.dy.data();
    b.lddy = c.S();
    b.dh_n = v.dh_n.data();
    b.dc_n = lstm ? v.dc_n.data() : nullptr;
    b.dx = o.dx.data();
    b.lddx = c.I;
    b.dh0 = o.dh0.data();
    b.dc0 = lstm ? o.dc0.data() : nullptr;
    b.dw_ih = o.dw_ih.data();
    b.dw_hh = o.dw_hh.data();
    b.dw_hr = o.dw_hr.data();
    b.db_ih = c.bias ? o.db_ih.data() : nullptr;
    b.db_hh = c.bias ? o.db_hh.data() : nullptr;
    b.scratch = scratch.data();
    b.threads = threads;
    b.zoneout = c.zoneout ? v.zoneout.data() : nullptr;
    b.zoneout_p = c.zoneout_draws ? T(0.3) : T(0);
    b.zoneout_draws = c.zoneout_draws;
    b.zoneout_seed = 0x0123456789abcdefULL;
    b.recurrent_mask = c.recurrent_dropout ? v.recurrent_mask.data() : nullptr;
    b.ln_ih_weight = v.ln_ih.data(), b.ln_hh_weight = v.ln_hh.data(), b.ln_cell_weight = v.ln_cell_weight.data();
    b.ln_cell_bias = v.ln_cell_bias.data();
    b.dln_ih_weight = o.dln_ih.data(), b.dln_hh_weight = o.dln_hh.data();
    b.dln_cell_weight = o.dln_cell_weight.data(), b.dln_cell_bias = o.dln_cell_bias.data();
    rnnfast::layer_backward(b);
}

// A training forward and its backward, then eval twice through one cache (the first call fills
// it, the second reads it).
template <class T> Outputs<T> run(const Case& c, const Inputs& in, int threads) {
    const Converted<T> v(in);
    const Index BH = c.B * c.H, BS = c.B * c.S();
    Outputs<T> o;
    for (auto* y : {&o.y, &o.y_eval, &o.y_cached}) y->resize(c.T * BS);
    for (auto* h : {&o.h_n, &o.h_eval, &o.h_cached}) h->resize(BS);
    for (auto* s : {&o.c_n, &o.c_eval, &o.c_cached}) s->resize(BH);
    T* const none = nullptr;
    std::vector<T> saved(rnnfast::saved_size(shape_of(c)));
    forward(c, in, v, threads, o.y.data(), o.h_n.data(), o.c_n.data(), saved.data(), none);
    backward(c, in, v, threads, saved.data(), o);
    std::vector<T> wcache(rnnfast::weight_cache_size(shape_of(c), sizeof(T), false), T(0));
    forward(c, in, v, threads, o.y_eval.data(), o.h_eval.data(), o.c_eval.data(), none, wcache.data());
    forward(c, in, v, threads, o.y_cached.data(), o.h_cached.data(), o.c_cached.data(), none, wcache.data());
    if (!rnnfast::has_cell_state(c.cell))
        for (auto* s : {&o.c_n, &o.dc0, &o.c_eval, &o.c_cached}) s->clear();
    return o;
}

// The arrays of a run, named, in one order.
template <class T> std::vector<std::pair<const char*, const std::vector<T>*>> arrays(const Outputs<T>& o) {
    return {{"y", &o.y},         {"h_n", &o.h_n},     {"c_n", &o.c_n},     {"dx", &o.dx},
            {"dh0", &o.dh0},     {"dc0", &o.dc0},     {"dw_ih", &o.dw_ih}, {"dw_hh", &o.dw_hh},
            {"db_ih", &o.db_ih}, {"db_hh", &o.db_hh}, {"dw_hr", &o.dw_hr}, {"dln_ih", &o.dln_ih},
            {"dln_hh", &o.dln_hh}, {"dln_cell_weight", &o.dln_cell_weight}, {"dln_cell_bias", &o.dln_cell_bias}, {"y_eval", &o.y_eval}, {"h_eval", &o.h_eval},
            {"c_eval", &o.c_eval}, {"y_cached", &o.y_cached}, {"h_cached", &o.h_cached},
            {"c_cached", &o.c_cached}};
}

// bfloat16 bits of a float, to nearest even (finite values).
inline std::uint16_t to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return std::uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// A (rows, cols) weight matrix as int8 values, each row symmetric with its own scale (layer.h).
inline void to_int8(const std::vector<double>& w, Index cols, std::vector<std::int8_t>& q, std::vector<float>& scale) {
    for (size_t r = 0; r * cols < w.size(); ++r) {
        float m = 0;
        for (Index k = 0; k < cols; ++k) m = std::fmax(m, std::fabs(float(w[r * cols + k])));
        const float inv = m > 0 ? 127.0f / m : 0.0f;
        for (Index k = 0; k < cols; ++k) q.push_back(std::int8_t(std::nearbyint(float(w[r * cols + k]) * inv)));
        scale.push_back(m / 127.0f);
    }
}

// An eval forward with reduced-precision weights (bfloat16 or int8): y, then h_n (and c_n) appended.
inline std::vector<float> run_reduced(const Case& c, const Inputs& in, int threads, rnnfast::Precision precision) {
    rnnfast::LayerShape s{c.cell, c.T, c.B, c.I, c.H, c.reverse};
    s.precision = precision;
    s.P = c.P;
    const bool lstm = rnnfast::has_cell_state(c.cell);
    const Index BS = c.B * c.S();
    const Converted<float> v(in);  // its float weights unread: the layer reads the reduced ones below
    std::vector<std::uint16_t> w_ih, w_hh, w_hr;
    for (double w : in.w_ih) w_ih.push_back(to_bf16(float(w)));
    for (double w : in.w_hh) w_hh.push_back(to_bf16(float(w)));
    for (double w : in.w_hr) w_hr.push_back(to_bf16(float(w)));
    std::vector<std::int8_t> q_ih, q_hh, q_hr;
    std::vector<float> s_ih, s_hh, s_hr;
    to_int8(in.w_ih, c.I, q_ih, s_ih);
    to_int8(in.w_hh, c.S(), q_hh, s_hh);
    to_int8(in.w_hr, c.H, q_hr, s_hr);
    std::vector<float> out((c.T + 1) * BS + c.B * c.H);
    std::vector<float> scratch(rnnfast::forward_scratch_size(s, false, 4, threads));
    std::vector<float> cache(rnnfast::weight_cache_size(s, 4, false));
    rnnfast::LayerForward<float> a{};
    a.s = s;
    a.x = v.x.data();
    a.ldx = c.I;
    a.h0 = v.h0.data();
    a.c0 = lstm ? v.c0.data() : nullptr;
    a.w_ih_bf16 = w_ih.data();
    a.w_hh_bf16 = w_hh.data();
    a.w_ih_i8 = q_ih.data();
    a.w_hh_i8 = q_hh.data();
    a.w_ih_scale = s_ih.data();
    a.w_hh_scale = s_hh.data();
    a.w_hr_bf16 = w_hr.data();
    a.w_hr_i8 = q_hr.data();
    a.w_hr_scale = s_hr.data();
    a.ln_ih_weight = v.ln_ih.data(), a.ln_hh_weight = v.ln_hh.data();  // read by the layer-normalised cells only
    a.ln_cell_weight = v.ln_cell_weight.data(), a.ln_cell_bias = v.ln_cell_bias.data();
    a.b_ih = c.bias ? v.b_ih.data() : nullptr;
    a.b_hh = c.bias ? v.b_hh.data() : nullptr;
    a.lengths = c.lengths ? in.lengths.data() : nullptr;
    a.y = out.data();
    a.ldy = c.S();
    a.h_n = out.data() + c.T * BS;
    a.c_n = lstm ? out.data() + (c.T + 1) * BS : nullptr;
    a.scratch = scratch.data();
    a.wcache = cache.empty() ? nullptr : cache.data();
    a.threads = threads;
    rnnfast::layer_forward(a);
    return out;
}

}  // namespace agreement
