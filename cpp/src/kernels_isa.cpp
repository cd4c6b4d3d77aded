// The kernels for one instruction set. CMake compiles this file once per ISA with its flags,
// RNNFAST_VBYTES (vector bytes), RNNFAST_ISA_NS (a namespace that keeps the copies apart) and
// RNNFAST_TABLE (the table's name).
#include "dispatch.h"
#include "sequence.h"

namespace rnnfast {
namespace RNNFAST_ISA_NS {

template <class T, class F> void with_cell(CellKind c, F&& f) {
    switch (c) {
        case CellKind::rnn_tanh: f(Driver<T, RnnCell<T, false>>{}); break;
        case CellKind::rnn_relu: f(Driver<T, RnnCell<T, true>>{}); break;
        case CellKind::lstm: f(Driver<T, LstmCell<T>>{}); break;
        case CellKind::gru: f(Driver<T, GruCell<T>>{}); break;
    }
}

template <class T> void forward(const LayerForward<T>& a) {
    with_cell<T>(a.s.cell, [&](auto d) { d.forward(a); });
}
template <class T> void backward(const LayerBackward<T>& a) {
    with_cell<T>(a.s.cell, [&](auto d) { d.backward(a); });
}
template <class T> index forward_scratch(const LayerShape& s, bool training) {
    index n = 0;
    with_cell<T>(s.cell, [&](auto d) { n = d.forward_scratch(s, training); });
    return n;
}
template <class T> index backward_scratch(const LayerShape& s) {
    index n = 0;
    with_cell<T>(s.cell, [&](auto d) { n = d.backward_scratch(s); });
    return n;
}

void activation(int f, const float* in, float* out, index n) {
    constexpr int W = simd<float>::W;
    for (index i = 0; i < n; i += W) {
        const int m = n - i < W ? int(n - i) : W;
        vec<float> v = load_n(in + i, m);
        store_n(out + i, f == 0 ? vsigmoid(v) : vtanh(v), m);
    }
}

}  // namespace RNNFAST_ISA_NS

extern const KernelTable RNNFAST_TABLE;
const KernelTable RNNFAST_TABLE = {
    RNNFAST_ISA_NAME,
    RNNFAST_ISA_NS::forward<float>,
    RNNFAST_ISA_NS::forward<double>,
    RNNFAST_ISA_NS::backward<float>,
    RNNFAST_ISA_NS::backward<double>,
    RNNFAST_ISA_NS::forward_scratch<float>,
    RNNFAST_ISA_NS::forward_scratch<double>,
    RNNFAST_ISA_NS::backward_scratch<float>,
    RNNFAST_ISA_NS::backward_scratch<double>,
    RNNFAST_ISA_NS::activation,
};

}  // namespace rnnfast
