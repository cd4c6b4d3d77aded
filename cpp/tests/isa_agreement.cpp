// Every kernel path this CPU runs, against the portable one: a test of the C++ library alone, with
// no Python, so that it also runs where the Python suite cannot (an emulated CPU, a cross build).
//
// For each instruction set in available_isas(), in float and double, on 1, 2 and 3 threads: a
// training forward and its backward (every output and gradient), and an eval forward twice through
// one weight cache, for each cell on shapes that take the kernels' different roads (a single step
// of one row and of a batch large enough for batch mode; B = 1, whose products split k; unit and
// batch mode; odd H; reverse; per-entry lengths; no bias; eval's input projection in chunks; LSTM
// projections; the layer-normalised cells). The oracle is the portable path in double on one
// thread (the Python suite checks that path against the NumPy reference). Checks:
//  - agreement with the oracle, as max |a - oracle| / max |oracle| per array: float 1e-4 (the
//    layer-normalised cells 5e-4), double 1e-11 (a wrong lane or a dropped block is off by O(1));
//  - the same bits on 2 and 3 threads as on 1, and from the cached eval forward as from the first;
//  - eval forwards with bfloat16 weights (float only) within 2e-3 of the portable path's (states
//    feed back, and a float32 ulp apart can round to the other bfloat16), and with int8 weights
//    within 5e-3 (the integer sums are exact everywhere; a state a float32 ulp apart can quantize a
//    step apart; the layer-normalised cells within 2e-2 on each entry's first 4 steps), the same
//    bits on 2 and 3 threads as on 1;
//  - sigmoid and tanh through activation() within 1e-6 relative of double on a grid of [-100, 100]
//    and at special values (NaN stays NaN; +-inf and +-1e30 saturate, to within 1e-6; tanh keeps
//    the sign of zero).
// Usage: isa_agreement [ISA ...] (default: every path in available_isas()). Prints one line per
// instruction set, and exits non-zero if any check failed or a path named cannot be set.
#include <rnnfast/rnnfast.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "agreement_cases.h"
#include "agreement_runs.h"

using namespace agreement;

namespace {

struct Tally {
    int failures = 0;
    double worst = 0;
    void fail(const std::string& what) {
        if (++failures <= 20) std::printf("  FAIL %s\n", what.c_str());
    }
};

// Agreement of one run with the oracle, and (for threads > 1) bits equal to the 1-thread run.
template <class T> void compare(const Case& c, const Outputs<double>& oracle, const Outputs<T>& got,
                                const Outputs<T>* one_thread, int threads, Tally& t) {
    // The layer-normalised cells divide by rows' standard deviations, which scales float32's
    // rounding up; a wrong lane is still off by O(1).
    const double tol = sizeof(T) == 4 ? (rnnfast::layer_normalised(c.cell) ? 5e-4 : 1e-4) : 1e-11;
    const auto want = arrays(oracle), have = arrays(got);
    for (size_t i = 0; i < want.size(); ++i) {
        const std::vector<double>& w = *want[i].second;
        const std::vector<T>& h = *have[i].second;
        double scale = 0, err = 0;
        for (size_t j = 0; j < w.size(); ++j) {
            scale = std::fmax(scale, std::fabs(w[j]));
            const double d = std::fabs(double(h[j]) - w[j]);
            err = d == d ? std::fmax(err, d) : std::numeric_limits<double>::infinity();
        }
        const double rel = err / (scale > 0 ? scale : 1.0);
        t.worst = std::fmax(t.worst, rel);
        if (!(rel <= tol))
            t.fail(describe(c) + " " + (sizeof(T) == 4 ? "float" : "double") + " threads=" +
                   std::to_string(threads) + " " + want[i].first + ": relative error " + std::to_string(rel));
    }
    auto same_bits = [](const std::vector<T>& a, const std::vector<T>& b) {
        return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
    };
    // The eval forward from the cache it filled gives its own bits (the eval forward need not give
    // the training forward's: past 512 rows it projects the input in chunks).
    if (!same_bits(got.y_cached, got.y_eval) || !same_bits(got.h_cached, got.h_eval) ||
        !same_bits(got.c_cached, got.c_eval))
        t.fail(describe(c) + " threads=" + std::to_string(threads) + ": the cached eval forward differs");
    if (one_thread) {
        const auto ref = arrays(*one_thread);
        for (size_t i = 0; i < ref.size(); ++i)
            if (!same_bits(*ref[i].second, *have[i].second))
                t.fail(describe(c) + " " + (sizeof(T) == 4 ? "float" : "double") + " " + ref[i].first +
                       ": bits differ between 1 and " + std::to_string(threads) + " threads");
    }
}

template <class T> void check_case(const Case& c, const Inputs& in, const Outputs<double>& oracle, Tally& t) {
    Outputs<T> first;
    for (int threads : {1, 2, 3}) {
        Outputs<T> got = run<T>(c, in, threads);
        compare(c, oracle, got, threads == 1 ? nullptr : &first, threads, t);
        if (threads == 1) first = std::move(got);
    }
}

// Whether the reduced-precision check compares entry j of run_reduced's output (y, then the final
// states): everything, except for the layer-normalised cells, where one rounding flip grows step
// by step on any path (benchmarks/RESULTS.md, Zen 4 section): there the outputs of each
// entry's first kEarlySteps steps in its own direction (a wrong lane is off by O(1) at once; a flip
// in them stays within the tolerance), and its padded steps.
constexpr Index kEarlySteps = 4;
bool early_or_padded(const Case& c, const Inputs& in, size_t j) {
    if (!rnnfast::layer_normalised(c.cell)) return true;
    const Index S = c.S(), BS = c.B * S;
    if (Index(j) >= c.T * BS) return false;  // the final states: after every step
    const Index t = Index(j) / BS, b = Index(j) % BS / S;
    const Index length = c.lengths ? Index(in.lengths[b]) : c.T;
    return t >= length || (c.reverse ? length - 1 - t : t) < kEarlySteps;
}

void check_reduced(const Case& c, const Inputs& in, const std::vector<float>& oracle, rnnfast::Precision precision,
                   Tally& t) {
    const bool int8 = precision == rnnfast::Precision::int8;
    const std::string what = int8 ? " int8" : " bfloat16";
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
        const std::vector<float> got = run_reduced(c, in, threads, precision);
        double scale = 0, err = 0;
        for (size_t j = 0; j < got.size(); ++j) {
            if (!early_or_padded(c, in, j)) continue;
            scale = std::fmax(scale, std::fabs(double(oracle[j])));
            const double d = std::fabs(double(got[j]) - oracle[j]);
            err = d == d ? std::fmax(err, d) : std::numeric_limits<double>::infinity();
        }
        const double rel = err / (scale > 0 ? scale : 1.0);
        t.worst = std::fmax(t.worst, rel);
        // The layer-normalised cells carry a rounding flip (a state an ulp apart rounding to the other
        // bfloat16 or int8 step) on to whole rows and, the LSTM being chaotic at this initialisation,
        // grow it over the long cases (docs/precision.md), so they are compared on each entry's first
        // kEarlySteps steps only (early_or_padded); tests/test_quantized_variants.py holds each step
        // from the kernels' own state to float32 rounding.
        const double tolerance = rnnfast::layer_normalised(c.cell) ? 2e-2 : int8 ? 5e-3 : 2e-3;
        if (!(rel <= tolerance))
            t.fail(describe(c) + what + " threads=" + std::to_string(threads) + ": relative error " + std::to_string(rel));
        if (threads == 1) first = got;
        else if (std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) != 0)
            t.fail(describe(c) + what + ": bits differ between 1 and " + std::to_string(threads) + " threads");
    }
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

void check_activations(Tally& t) {
    std::vector<float> in;
    for (int i = -200000; i <= 200000; ++i) in.push_back(float(i) * 5e-4f);  // [-100, 100]
    for (float v = 1e-30f; v < 1.0f; v *= 1.7f) in.push_back(v), in.push_back(-v);  // tiny magnitudes
    std::vector<float> out(in.size());
    for (int f = 0; f < 2; ++f) {
        rnnfast::activation(f, in.data(), out.data(), Index(in.size()));
        for (size_t i = 0; i < in.size(); ++i) {
            const double want = f == 0 ? sigmoid(in[i]) : std::tanh(double(in[i]));
            // Sigmoids below 1e-37 are past float's normal range: only their saturation counts.
            if (f == 0 && want < 1e-37) {
                if (!(out[i] >= 0 && out[i] < 1e-37f)) t.fail("sigmoid(" + std::to_string(in[i]) + ") is not tiny");
                continue;
            }
            const double rel = std::fabs(out[i] - want) / std::fabs(want);
            t.worst = std::fmax(t.worst, rel);
            if (!(std::fabs(out[i] - want) <= 1e-6 * std::fabs(want) + 1e-45))
                t.fail(std::string(f == 0 ? "sigmoid(" : "tanh(") + std::to_string(in[i]) + ") = " +
                       std::to_string(out[i]) + ", relative error " + std::to_string(rel));
        }
        const float inf = std::numeric_limits<float>::infinity();
        const float special[] = {std::numeric_limits<float>::quiet_NaN(), inf, -inf, 1e30f, -1e30f,
                                 std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
        const float want[2][7] = {{0, 1, 0, 1, 0, 1, 0}, {0, 1, -1, 1, -1, 1, -1}};
        float got[7];
        rnnfast::activation(f, special, got, 7);
        if (got[0] == got[0]) t.fail(std::string(f == 0 ? "sigmoid" : "tanh") + "(NaN) is not NaN");
        for (int i = 1; i < 7; ++i)  // within 1e-6 of the limit: 0 (below 1e-37), 1 or -1
            if (!(want[f][i] == 0 ? got[i] >= 0 && got[i] < 1e-37f : std::fabs(got[i] - want[f][i]) <= 1e-6f))
                t.fail(std::string(f == 0 ? "sigmoid(" : "tanh(") + std::to_string(special[i]) + ") = " +
                       std::to_string(got[i]) + ", not " + std::to_string(want[f][i]));
    }
    const float zeros[2] = {0.0f, -0.0f};
    float z[2];
    rnnfast::activation(1, zeros, z, 2);
    if (std::signbit(z[0]) || !std::signbit(z[1])) t.fail("tanh(+-0) loses the sign of zero");
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<Case> cases = all_cases();
    const char* const* isas = rnnfast::available_isas();
    std::vector<std::string> names;
    for (const char* const* p = isas; *p; ++p) names.push_back(*p);
    std::printf("picked at load: %s; available:", rnnfast::isa());
    for (const std::string& n : names) std::printf(" %s", n.c_str());
    std::printf("\n");
    if (argc > 1) names.assign(argv + 1, argv + argc);  // only the paths named

    // The oracle: the portable path, double, one thread.
    if (!rnnfast::set_isa("scalar")) {
        std::printf("no scalar path\n");
        return 1;
    }
    std::vector<Inputs> inputs;
    std::vector<Outputs<double>> oracles;
    std::vector<std::vector<float>> bf16_oracles, int8_oracles;  // the cases without the regularisers
    for (size_t i = 0; i < cases.size(); ++i) {
        inputs.push_back(make_inputs(cases[i], unsigned(1000 + i)));
        oracles.push_back(run<double>(cases[i], inputs.back(), 1));
        const Case& c = cases[i];
        const bool plain = !(c.zoneout || c.recurrent_dropout || c.zoneout_draws);
        bf16_oracles.push_back(plain ? run_reduced(c, inputs.back(), 1, rnnfast::Precision::bfloat16)
                                     : std::vector<float>());
        int8_oracles.push_back(plain ? run_reduced(c, inputs.back(), 1, rnnfast::Precision::int8) : std::vector<float>());
    }

    int failed = 0;
    for (const std::string& name : names) {
        if (!rnnfast::set_isa(name.c_str())) {
            std::printf("%s: listed but cannot be set\n", name.c_str());
            failed = 1;
            continue;
        }
        Tally t;
        Tally b, q;
        for (size_t i = 0; i < cases.size(); ++i) {
            check_case<float>(cases[i], inputs[i], oracles[i], t);
            check_case<double>(cases[i], inputs[i], oracles[i], t);
            if (bf16_oracles[i].empty()) continue;
            check_reduced(cases[i], inputs[i], bf16_oracles[i], rnnfast::Precision::bfloat16, b);
            check_reduced(cases[i], inputs[i], int8_oracles[i], rnnfast::Precision::int8, q);
        }
        Tally a;
        check_activations(a);
        std::printf("%s: %zu cases x float, double x 1, 2, 3 threads: %d failures (worst relative error %.2e); "
                    "bfloat16: %d failures (worst %.2e); int8: %d failures (worst %.2e); activations: %d failures "
                    "(worst %.2e)\n",
                    name.c_str(), cases.size(), t.failures, t.worst, b.failures, b.worst, q.failures, q.worst,
                    a.failures, a.worst);
        if (t.failures || b.failures || q.failures || a.failures) failed = 1;
    }
    return failed;
}
