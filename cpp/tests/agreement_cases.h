// isa_agreement's cases: the shapes and settings each kernel path runs, and their inputs.
#pragma once
#include <rnnfast/rnnfast.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace agreement {

using rnnfast::Index;

struct Case {
    rnnfast::CellKind cell;
    Index T, B, I, H;
    bool reverse, lengths, bias;
    bool zoneout = false;  // training with zoneout masks, eval with p = 0.3
    bool recurrent_dropout = false;  // a (B, S) mask on h_{t-1} in every recurrent product (eval's too)
    bool zoneout_draws = false;  // training with zoneout masks drawn in the kernels (p = 0.3), eval with p
    Index P = 0;  // LSTM projections: h of P units (w_hr (P, H)); 0: none
    Index S() const { return P ? P : H; }  // h's size
};

// The arrays one case reads, in double (converted for float runs).
struct Inputs {
    std::vector<double> x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, dy, dh_n, dc_n, zoneout, recurrent_mask;
    std::vector<double> ln_ih, ln_hh, ln_cell_weight, ln_cell_bias;  // the layer-normalised cells
    std::vector<std::int64_t> lengths;
};

inline Inputs make_inputs(const Case& c, unsigned seed) {
    const Index G = rnnfast::gate_count(c.cell), GH = G * c.H, S = c.S();
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto fill = [&](std::vector<double>& v, Index n, double scale) {
        v.resize(n);
        for (auto& e : v) e = scale * u(rng);
    };
    Inputs in;
    const double k = 1.0 / std::sqrt(double(c.H));  // torch.nn's init range
    fill(in.x, c.T * c.B * c.I, 1.0);
    fill(in.h0, c.B * S, 0.5);
    fill(in.c0, c.B * c.H, 0.5);
    fill(in.w_ih, GH * c.I, k);
    fill(in.w_hh, GH * S, k);
    fill(in.w_hr, c.P * c.H, k);
    fill(in.b_ih, GH, k);
    fill(in.b_hh, GH, k);
    fill(in.ln_ih, GH, 0.3);
    fill(in.ln_hh, GH, 0.3);
    fill(in.ln_cell_weight, c.H, 0.3);
    fill(in.ln_cell_bias, c.H, 0.3);
    for (auto* g : {&in.ln_ih, &in.ln_hh, &in.ln_cell_weight})
        for (double& v : *g) v += 1.0;  // gains about 1
    fill(in.dy, c.T * c.B * S, 1.0);
    fill(in.dh_n, c.B * S, 1.0);
    fill(in.dc_n, c.B * c.H, 1.0);
    if (c.lengths)
        for (Index b = 0; b < c.B; ++b) in.lengths.push_back(1 + std::int64_t(rng() % std::uint32_t(c.T)));
    if (c.zoneout)
        for (Index i = 0; i < c.T * c.B * S; ++i) in.zoneout.push_back(rng() % 3 == 0 ? 1.0 : 0.0);
    if (c.recurrent_dropout)  // p = 1/3: kept units scaled by 1.5
        for (Index i = 0; i < c.B * S; ++i) in.recurrent_mask.push_back(rng() % 3 == 0 ? 0.0 : 1.5);
    return in;
}

inline const char* cell_name(rnnfast::CellKind c) {
    switch (c) {
        case rnnfast::CellKind::rnn_tanh: return "rnn_tanh";
        case rnnfast::CellKind::rnn_relu: return "rnn_relu";
        case rnnfast::CellKind::lstm: return "lstm";
        case rnnfast::CellKind::layernorm_lstm: return "layernorm_lstm";
        case rnnfast::CellKind::layernorm_gru: return "layernorm_gru";
        default: return "gru";
    }
}

inline std::string describe(const Case& c) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s T=%td B=%td I=%td H=%td P=%td%s%s%s%s%s%s", cell_name(c.cell), c.T, c.B, c.I,
                  c.H, c.P,
                  c.reverse ? " reverse" : "", c.lengths ? " lengths" : "", c.bias ? "" : " no-bias",
                  c.zoneout ? " zoneout" : "", c.recurrent_dropout ? " recurrent-dropout" : "",
                  c.zoneout_draws ? " zoneout-drawn" : "");
    return buf;
}

// Every case: each cell on the roads the kernels take, then LSTM projections.
inline std::vector<Case> all_cases() {
    using K = rnnfast::CellKind;
    std::vector<Case> cases;
    for (K cell : {K::rnn_tanh, K::rnn_relu, K::lstm, K::gru, K::layernorm_lstm, K::layernorm_gru}) {
        cases.push_back({cell, 1, 1, 3, 5, false, false, true});      // a single step of one row
        cases.push_back({cell, 1, 200, 9, 37, false, false, true});   // a single step in batch mode
        cases.push_back({cell, 6, 1, 7, 37, true, false, true});      // B = 1: the products split k
        cases.push_back({cell, 5, 13, 11, 37, false, true, true});    // batch mode on 2 and 3 threads
        cases.push_back({cell, 4, 9, 16, 64, true, true, false});     // no bias
        cases.push_back({cell, 3, 3, 20, 100, false, false, true});   // unit mode, B below 4
        cases.push_back({cell, 3, 7, 33, 130, false, true, true});    // unit mode, odd tiles
        cases.push_back({cell, 60, 13, 5, 20, true, true, true});     // eval projects in 2 chunks
        cases.push_back({cell, 600, 1, 4, 9, true, false, true});     // likewise, at B = 1
        cases.push_back({cell, 5, 13, 11, 37, true, true, true, true});  // zoneout, batch mode on 2 threads
        cases.push_back({cell, 4, 3, 20, 100, false, true, true, true});  // zoneout, unit mode
        cases.push_back({cell, 5, 13, 11, 37, true, true, true, false, true});  // recurrent dropout, batch mode
        cases.push_back({cell, 4, 3, 20, 100, false, true, true, true, true});  // with zoneout, unit mode
        cases.push_back({cell, 1, 5, 9, 37, false, false, true, false, true});  // a single step
        cases.push_back({cell, 60, 13, 5, 20, true, true, true, false, true});  // eval in 2 chunks
        cases.push_back({cell, 5, 13, 11, 37, true, true, true, false, false, true});  // zoneout drawn, batch mode
        cases.push_back({cell, 4, 3, 20, 100, false, true, true, false, true, true});  // drawn, unit mode
        if (rnnfast::layer_normalised(cell)) {  // their unit mode (from G*H*H = 65536 multiply-adds a row)
            cases.push_back({cell, 5, 1, 7, 160, true, false, true});                // B = 1
            cases.push_back({cell, 4, 3, 20, 150, false, true, true, true});      // zoneout, odd tiles
            cases.push_back({cell, 4, 3, 20, 150, false, true, true, false, true});  // recurrent dropout
            cases.push_back({cell, 80, 7, 4, 160, true, true, true});           // eval in 2 chunks (74 steps)
        }
    }
    // LSTM projections (h of P units): the roads above, and the regularisers on h.
    auto projected = [](Case c, Index P) {
        c.P = P;
        return c;
    };
    cases.push_back(projected({K::lstm, 1, 1, 3, 5, false, false, true}, 2));      // a single step
    cases.push_back(projected({K::lstm, 1, 200, 9, 37, false, false, true}, 11));  // a single step, batch mode
    cases.push_back(projected({K::lstm, 6, 1, 7, 37, true, false, true}, 20));     // B = 1
    cases.push_back(projected({K::lstm, 5, 13, 11, 37, false, true, true}, 9));    // batch mode
    cases.push_back(projected({K::lstm, 4, 9, 16, 64, true, true, false}, 33));    // no bias
    cases.push_back(projected({K::lstm, 3, 7, 33, 130, false, true, true}, 70));   // unit mode, odd tiles
    cases.push_back(projected({K::lstm, 60, 13, 5, 20, true, true, true}, 7));     // eval in 2 chunks
    cases.push_back(projected({K::lstm, 4, 3, 20, 100, false, true, true, true}, 45));  // zoneout, unit mode
    cases.push_back(projected({K::lstm, 5, 13, 11, 37, true, true, true, false, true}, 17));  // recurrent dropout
    cases.push_back(projected({K::lstm, 4, 3, 20, 100, false, true, true, false, true, true}, 45));  // drawn
    return cases;
}

}  // namespace agreement
