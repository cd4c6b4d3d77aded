// rnnfast from C++: an LSTM layer forward and backward (BPTT) on made-up data, with no Python.
// Checks one weight gradient against a central finite difference and exits non-zero if they
// disagree, so ctest can run it as a test.
#include <rnnfast/rnnfast.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using rnnfast::Index;

namespace {

struct Problem {
    rnnfast::LayerShape shape{rnnfast::CellKind::lstm, /*T*/ 12, /*B*/ 3, /*I*/ 5, /*H*/ 8, /*reverse*/ false};
    std::vector<double> x, w_ih, w_hh, b_ih, b_hh, dy;
};

// Loss = sum(y * dy): runs the forward and returns it (saving for backward when `saved` is given).
double forward(const Problem& p, std::vector<double>& y, double* saved) {
    const rnnfast::LayerShape& s = p.shape;
    std::vector<double> h_n(s.B * s.H), c_n(s.B * s.H);
    std::vector<double> scratch(rnnfast::forward_scratch_size(s, saved != nullptr, sizeof(double)));
    rnnfast::LayerForward<double> a{};
    a.s = s;
    a.x = p.x.data();
    a.ldx = s.I;
    a.w_ih = p.w_ih.data();
    a.w_hh = p.w_hh.data();
    a.b_ih = p.b_ih.data();
    a.b_hh = p.b_hh.data();
    a.y = y.data();
    a.ldy = s.H;
    a.h_n = h_n.data();
    a.c_n = c_n.data();
    a.saved = saved;
    a.scratch = scratch.data();
    rnnfast::layer_forward(a);  // h0 = c0 = 0, every sequence full length
    double loss = 0;
    for (size_t i = 0; i < y.size(); ++i) loss += y[i] * p.dy[i];
    return loss;
}

}  // namespace

int main() {
    Problem p;
    const rnnfast::LayerShape& s = p.shape;
    const Index G = rnnfast::gate_count(s.cell), GH = G * s.H;
    std::mt19937 rng(42);
    std::uniform_real_distribution<double> u(-0.3, 0.3);
    auto fill = [&](std::vector<double>& v, Index n) { v.resize(n); for (auto& e : v) e = u(rng); };
    fill(p.x, s.T * s.B * s.I);
    fill(p.w_ih, GH * s.I);
    fill(p.w_hh, GH * s.H);
    fill(p.b_ih, GH);
    fill(p.b_hh, GH);
    fill(p.dy, s.T * s.B * s.H);

    // Forward in training mode: the caller owns the saved workspace between the two passes.
    std::vector<double> y(s.T * s.B * s.H), saved(rnnfast::saved_size(s));
    const double loss = forward(p, y, saved.data());

    // Backward: dx and dh0/dc0 are overwritten; the weight gradients are added into.
    const int threads = rnnfast::get_num_threads();
    std::vector<double> dx(p.x.size()), dh0(s.B * s.H), dc0(s.B * s.H);
    std::vector<double> dw_ih(p.w_ih.size()), dw_hh(p.w_hh.size()), db_ih(GH), db_hh(GH);
    // consume_saved: the gate gradients overwrite the saved gates (one backward per forward).
    std::vector<double> scratch(rnnfast::backward_scratch_size(s, sizeof(double), threads, true));
    rnnfast::LayerBackward<double> b{};
    b.s = s;
    b.x = p.x.data();
    b.ldx = s.I;
    b.w_ih = p.w_ih.data();
    b.w_hh = p.w_hh.data();
    b.saved = saved.data();
    b.consume_saved = true;
    b.dy = p.dy.data();
    b.lddy = s.H;
    b.dx = dx.data();
    b.lddx = s.I;
    b.dh0 = dh0.data();
    b.dc0 = dc0.data();
    b.dw_ih = dw_ih.data();
    b.dw_hh = dw_hh.data();
    b.db_ih = db_ih.data();
    b.db_hh = db_hh.data();
    b.scratch = scratch.data();
    b.threads = threads;
    rnnfast::layer_backward(b);

    // Check dL/dw_hh[j] for a few j against central differences.
    double worst = 0;
    for (Index j : {Index(0), GH * s.H / 3, GH * s.H - 1}) {
        const double eps = 1e-6, keep = p.w_hh[j];
        std::vector<double> yy(y.size());
        p.w_hh[j] = keep + eps;
        const double up = forward(p, yy, nullptr);
        p.w_hh[j] = keep - eps;
        const double down = forward(p, yy, nullptr);
        p.w_hh[j] = keep;
        const double numeric = (up - down) / (2 * eps);
        worst = std::fmax(worst, std::fabs(numeric - dw_hh[j]) / std::fmax(1e-3, std::fabs(numeric)));
    }
    std::printf("rnnfast %s, %d threads: LSTM T=%td B=%td I=%td H=%td, loss %.6f, dx[0] %.6f, "
                "worst relative gradient error %.2e\n",
                rnnfast::isa(), threads, s.T, s.B, s.I, s.H, loss, dx[0], worst);
    return worst < 1e-6 ? 0 : 1;
}
