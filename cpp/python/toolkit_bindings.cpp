// Python glue for the training toolkit's kernels: linear, embedding, cross-entropy. Each binding
// checks its arrays (arrays.h), then runs the kernel for the arrays' scalar type without the GIL.
#include <pybind11/stl.h>

#include <memory>

#include "arrays.h"
#include "bindings.h"
#include "rnnfast/runtime.h"
#include "rnnfast/toolkit.h"

namespace rnnfast_python {
namespace {

void linear_forward(py::array x, py::array w, OptionalArray b, py::array y) {
    if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("linear: expected x (N, F) and w (O, F)");
    by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        rnnfast::LinearForward<T> a{};
        a.N = x.shape(0), a.F = x.shape(1), a.O = w.shape(0);
        a.x = dense<T>(x, "x", {a.N, a.F}, false);
        a.w = dense<T>(w, "w", {a.O, a.F}, false);
        a.b = optional_in<T>(b, "b", {a.O});
        a.y = dense<T>(y, "y", {a.N, a.O}, true);
        a.threads = rnnfast::get_num_threads();
        std::unique_ptr<T[]> scratch(new T[rnnfast::linear_scratch_size(a.N, a.F, a.O, sizeof(T), a.threads)]);
        a.scratch = scratch.get();
        py::gil_scoped_release nogil;
        rnnfast::linear_forward(a);
    });
}

void linear_backward(py::array x, py::array w, py::array dy, OptionalArray dx, py::array dw, OptionalArray db) {
    if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("linear: expected x (N, F) and w (O, F)");
    by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        rnnfast::LinearBackward<T> a{};
        a.N = x.shape(0), a.F = x.shape(1), a.O = w.shape(0);
        a.x = dense<T>(x, "x", {a.N, a.F}, false);
        a.w = dense<T>(w, "w", {a.O, a.F}, false);
        a.dy = dense<T>(dy, "dy", {a.N, a.O}, false);
        a.dx = dx ? dense<T>(*dx, "dx", {a.N, a.F}, true) : nullptr;
        a.dw = dense<T>(dw, "dw", {a.O, a.F}, true);
        a.db = db ? dense<T>(*db, "db", {a.O}, true) : nullptr;
        a.threads = rnnfast::get_num_threads();
        std::unique_ptr<T[]> scratch(new T[rnnfast::linear_scratch_size(a.N, a.F, a.O, sizeof(T), a.threads)]);
        a.scratch = scratch.get();
        py::gil_scoped_release nogil;
        rnnfast::linear_backward(a);
    });
}

void embedding_forward(py::array weight, py::array ids, py::array y) {
    if (weight.ndim() != 2 || ids.ndim() != 1) throw py::value_error("embedding: expected weight (V, E) and ids (N,)");
    by_dtype(weight, [&](auto tag) {
        using T = decltype(tag);
        rnnfast::EmbeddingForward<T> a{};
        a.N = ids.shape(0), a.V = weight.shape(0), a.E = weight.shape(1);
        a.weight = dense<T>(weight, "weight", {a.V, a.E}, false);
        a.ids = int64_in(ids, "ids", a.N);
        check_ids(a.ids, a.N, a.V, "ids");
        a.y = dense<T>(y, "y", {a.N, a.E}, true);
        a.threads = rnnfast::get_num_threads();
        py::gil_scoped_release nogil;
        rnnfast::embedding_forward(a);
    });
}

void embedding_backward(py::array ids, py::array dy, py::array dweight, std::int64_t padding_idx) {
    if (dweight.ndim() != 2 || ids.ndim() != 1) throw py::value_error("embedding: expected dweight (V, E) and ids (N,)");
    by_dtype(dweight, [&](auto tag) {
        using T = decltype(tag);
        rnnfast::EmbeddingBackward<T> a{};
        a.N = ids.shape(0), a.V = dweight.shape(0), a.E = dweight.shape(1);
        a.ids = int64_in(ids, "ids", a.N);
        check_ids(a.ids, a.N, a.V, "ids");
        if (padding_idx < -1 || padding_idx >= a.V)
            throw py::value_error("padding_idx: expected -1 (none) or a row in [0, " + std::to_string(a.V) + "), got " +
                                  std::to_string(padding_idx));
        a.padding_idx = padding_idx;
        a.dy = dense<T>(dy, "dy", {a.N, a.E}, false);
        a.dweight = dense<T>(dweight, "dweight", {a.V, a.E}, true);
        a.threads = rnnfast::get_num_threads();
        py::gil_scoped_release nogil;
        rnnfast::embedding_backward(a);
    });
}

rnnfast::Reduction reduction_of(const std::string& name) {
    if (name == "none") return rnnfast::Reduction::none;
    if (name == "sum") return rnnfast::Reduction::sum;
    if (name == "mean") return rnnfast::Reduction::mean;
    throw py::value_error("reduction: expected 'none', 'sum' or 'mean', got '" + name + "'");
}

py::tuple cross_entropy(py::array z, py::array targets, std::int64_t ignore_index, OptionalArray row_weight,
                        const std::string& reduction) {
    if (z.ndim() != 2 || z.shape(1) < 1)
        throw py::value_error("cross_entropy: expected logits (N, C) with C >= 1, got " + shape_str(z));
    return by_dtype(z, [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        rnnfast::CrossEntropy<T> a{};
        a.N = z.shape(0), a.C = z.shape(1);
        a.z = dense<T>(z, "logits", {a.N, a.C}, false);
        a.targets = int64_in(targets, "targets", a.N);
        check_ids(a.targets, a.N, a.C, "targets", ignore_index);
        a.ignore_index = ignore_index;
        a.row_weight = optional_in<T>(row_weight, "row_weight", {a.N});
        a.reduction = reduction_of(reduction);
        py::array_t<T> loss(a.N), dz({a.N, a.C});
        a.loss = loss.mutable_data();
        a.dz = dz.mutable_data();
        a.threads = rnnfast::get_num_threads();
        double total;
        {
            py::gil_scoped_release nogil;
            total = rnnfast::cross_entropy(a);
        }
        return py::make_tuple(total, loss, dz);
    });
}

}  // namespace

void bind_toolkit(py::module_& m) {
    m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"),
          "y (N, O) = x (N, F) w^T + b, written into y.");
    m.def("linear_backward", &linear_backward, py::arg("x"), py::arg("w"), py::arg("dy"), py::arg("dx"),
          py::arg("dw"), py::arg("db"), "dx = dy w (overwritten, if given); dw += dy^T x; db += sum of dy's rows (if given).");
    m.def("embedding_forward", &embedding_forward, py::arg("weight"), py::arg("ids"), py::arg("y"),
          "y (N, E) = weight[ids], written into y; ids int64 (N,).");
    m.def("embedding_backward", &embedding_backward, py::arg("ids"), py::arg("dy"), py::arg("dweight"),
          py::arg("padding_idx"), "dweight[ids[n]] += dy[n] in the order of n, except where ids[n] == padding_idx (-1: none).");
    m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("targets"), py::arg("ignore_index"),
          py::arg("row_weight"), py::arg("reduction"),
          "Softmax cross-entropy of logits (N, C) with int64 targets (N,): returns (reduced loss, per-row loss (N,), "
          "dlogits (N, C)).");
}

}  // namespace rnnfast_python
