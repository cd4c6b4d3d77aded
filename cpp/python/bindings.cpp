// Python glue for the kernels: argument checks, allocation, GIL release, exception mapping.
// The Python layer (python/rnnfast) validates user input first; the checks here only make sure no
// call, however wrong, can reach the kernels with memory they must not touch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rnnfast/rnnfast.h"

namespace py = pybind11;
using rnnfast::Index;

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// A (rows..., n) view whose last axis is contiguous and whose rows are evenly strided:
// returns the pointer and the row stride in elements.
template <class T> struct View {
    T* p = nullptr;
    Index ld = 0;
};

template <class T>
View<T> view(const py::array& a, const char* name, std::vector<Index> shape, bool writable) {
    if (!py::isinstance<py::array_t<T>>(a) || a.dtype().kind() != 'f' || a.itemsize() != sizeof(T))
        throw py::type_error(std::string(name) + ": expected dtype float" + std::to_string(8 * sizeof(T)) +
                             ", got " + std::string(py::str(a.dtype())));
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) {
        std::string want = "(";
        for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
        throw py::value_error(std::string(name) + ": expected shape " + want + (shape.size() == 1 ? ",)" : ")") +
                              ", got " + shape_str(a));
    }
    if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
    const int nd = int(shape.size());
    const Index e = sizeof(T);
    View<T> v;
    v.p = static_cast<T*>(const_cast<void*>(a.data()));
    v.ld = shape[nd - 1];
    // NumPy's C-contiguity ignores the strides of size-1 axes (they may be anything): such an
    // array is plain rows of the last axis's length.
    if (a.flags() & py::array::c_style || a.size() == 0) return v;
    // The leading axes flatten into rows r at p + r * ld. Each axis of more than one entry must step
    // by ld times the rows of the axes after it; size-1 axes may have any stride here too (a
    // direction's half of a (T, 1, 2H) gradient has a stray one on its batch axis).
    bool layout = a.strides(nd - 1) == e || shape[nd - 1] <= 1;
    Index ld = -1, rows_after = 1;
    for (int i = nd - 2; i >= 0 && layout; --i) {
        if (shape[i] > 1) {
            const Index step = a.strides(i) / e;
            if (ld < 0 && step % rows_after == 0) ld = step / rows_after;
            layout = a.strides(i) % e == 0 && ld >= shape[nd - 1] && step == ld * rows_after;
        }
        rows_after *= shape[i];
    }
    if (ld < 0) ld = shape[nd - 1];  // a single row
    if (!layout)
        throw py::value_error(std::string(name) + ": expected rows with a contiguous last axis and even strides");
    v.ld = ld;
    return v;
}

// Rows stored back to back (ld == row length): weights, states and everything else the kernels
// Index without a row stride of their own.
template <class T> T* dense(const py::array& a, const char* name, std::vector<Index> shape, bool writable) {
    View<T> v = view<T>(a, name, shape, writable);
    if (v.ld != shape.back()) throw py::value_error(std::string(name) + ": expected a C-contiguous array");
    return v.p;
}

template <class T>
const T* optional_in(const std::optional<py::array>& a, const char* name, std::vector<Index> shape) {
    if (!a) return nullptr;
    return dense<T>(*a, name, shape, false);
}

rnnfast::LayerShape make_shape(int cell, Index T, Index B, Index I, Index H, bool reverse) {
    if (cell < 0 || cell > 3) throw py::value_error("cell: expected 0..3, got " + std::to_string(cell));
    if (T < 1 || B < 1 || I < 1 || H < 1) throw py::value_error("sizes must be positive");
    return {rnnfast::CellKind(cell), T, B, I, H, reverse};
}

// The layer's sizes from x (T, B, I) and w_hh (G*H, H).
rnnfast::LayerShape layer_shape(int cell, const py::array& x, const py::array& w_hh, bool reverse) {
    if (x.ndim() != 3) throw py::value_error("x: expected 3 dimensions (T, B, I), got " + shape_str(x));
    if (w_hh.ndim() != 2) throw py::value_error("w_hh: expected 2 dimensions, got " + shape_str(w_hh));
    return make_shape(cell, x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1), reverse);
}

const std::int64_t* lengths_ptr(const std::optional<py::array>& lengths, Index T, Index B) {
    if (!lengths) return nullptr;
    // Read in place (a converted copy would die with this function, leaving the pointer dangling).
    const py::array& a = *lengths;
    if (!py::isinstance<py::array_t<std::int64_t>>(a) || a.dtype().kind() != 'i' || a.itemsize() != 8 ||
        a.ndim() != 1 || a.shape(0) != B || !(a.flags() & py::array::c_style))
        throw py::value_error("lengths: expected a contiguous int64 array of shape (" + std::to_string(B) + ",)");
    const std::int64_t* p = static_cast<const std::int64_t*>(a.data());
    for (Index b = 0; b < B; ++b)
        if (p[b] < 1 || p[b] > T)
            throw py::value_error("lengths: values must lie in [1, " + std::to_string(T) + "], got " + std::to_string(p[b]));
    return p;
}

// A caller-provided workspace we may write: contiguous, writable, of dtype T and n values.
template <class T> bool reusable(const py::array& a, Index n) {
    return py::isinstance<py::array_t<T>>(a) && a.dtype().kind() == 'f' && a.itemsize() == sizeof(T) &&
           a.ndim() == 1 && a.shape(0) == n && a.writeable() && (a.flags() & py::array::c_style);
}

// The packed-weights cache: none when the caller passes None (the kernels pack into scratch) or
// the call packs as it goes (a single step: the caller's buffer is returned untouched); the
// caller's when it has the right size (its content is checked by the kernels); else a new one,
// returned for the caller to pass next time.
template <class T> py::object weight_cache(const rnnfast::LayerShape& s, const std::optional<py::array>& buf,
                                           bool backward, T** data) {
    *data = nullptr;
    if (!buf) return py::none();
    if (rnnfast::single_step(s)) return *buf;  // uses none: the caller's (for its other calls) goes back as it came
    const Index n = rnnfast::weight_cache_size(s, sizeof(T), backward);
    py::array_t<T> cache = reusable<T>(*buf, n) ? py::array_t<T>(*buf) : py::array_t<T>(n);
    if (cache.ptr() != buf->ptr()) std::fill_n(cache.mutable_data(), n, T(0));  // new: no valid tag anywhere
    *data = cache.mutable_data();
    return std::move(cache);
}

// y_out: (T, B, H) view written in place (a slice of a bidirectional output may be passed).
template <class T>
py::tuple forward(int cell, py::array x, std::optional<py::array> h0, std::optional<py::array> c0, py::array w_ih,
                  py::array w_hh, std::optional<py::array> b_ih, std::optional<py::array> b_hh, bool reverse,
                  std::optional<py::array> lengths, bool training, py::array y_out,
                  std::optional<py::array> saved_buf, std::optional<py::array> wcache_buf, int threads) {
    const rnnfast::LayerShape s = layer_shape(cell, x, w_hh, reverse);
    const Index nT = s.T, B = s.B, I = s.I, H = s.H, GH = rnnfast::gate_count(s.cell) * H;
    const bool lstm = s.cell == rnnfast::CellKind::lstm;
    rnnfast::LayerForward<T> a{};
    a.s = s;
    View<T> xv = view<T>(x, "x", {nT, B, I}, false);
    a.x = xv.p;
    a.ldx = xv.ld;
    a.h0 = optional_in<T>(h0, "h0", {B, H});
    a.c0 = lstm ? optional_in<T>(c0, "c0", {B, H}) : nullptr;
    a.w_ih = dense<T>(w_ih, "w_ih", {GH, I}, false);
    a.w_hh = dense<T>(w_hh, "w_hh", {GH, H}, false);
    a.b_ih = optional_in<T>(b_ih, "b_ih", {GH});
    a.b_hh = optional_in<T>(b_hh, "b_hh", {GH});
    a.lengths = lengths_ptr(lengths, nT, B);
    View<T> yv = view<T>(y_out, "y", {nT, B, H}, true);
    a.y = yv.p;
    a.ldy = yv.ld;
    py::array_t<T> h_n({B, H}), c_n = lstm ? py::array_t<T>({B, H}) : py::array_t<T>(0);
    // The saved workspace: the caller's buffer when it has the right size (reused across calls, so
    // no fresh pages to fault in), else a new array.
    py::array_t<T> saved = saved_buf && training && reusable<T>(*saved_buf, rnnfast::saved_size(s))
                               ? py::array_t<T>(*saved_buf)
                               : py::array_t<T>(training ? rnnfast::saved_size(s) : 0);
    a.h_n = h_n.mutable_data();
    a.c_n = lstm ? c_n.mutable_data() : nullptr;
    a.saved = training ? saved.mutable_data() : nullptr;
    // Uninitialised on purpose: the kernels write every scratch value before reading it.
    a.threads = threads > 0 ? threads : rnnfast::get_num_threads();  // read once: sizes the scratch, runs the kernel
    std::unique_ptr<T[]> scratch(new T[rnnfast::forward_scratch_size(s, training, sizeof(T), a.threads)]);
    a.scratch = scratch.get();
    py::object wcache = weight_cache<T>(s, wcache_buf, false, &a.wcache);
    {
        py::gil_scoped_release nogil;
        rnnfast::layer_forward(a);
    }
    return py::make_tuple(h_n, lstm ? py::object(c_n) : py::none(), training ? py::object(saved) : py::none(),
                          wcache);
}

template <class T>
py::tuple backward(int cell, py::array x, py::array w_ih, py::array w_hh, std::optional<py::array> lengths,
                   bool reverse, py::array saved, py::array dy, std::optional<py::array> dh_n,
                   std::optional<py::array> dc_n, py::array dx, bool dx_accumulate, py::array dw_ih, py::array dw_hh,
                   std::optional<py::array> db_ih, std::optional<py::array> db_hh,
                   std::optional<py::array> scratch_buf, std::optional<py::array> wcache_buf, int threads,
                   bool consume_saved) {
    const rnnfast::LayerShape s = layer_shape(cell, x, w_hh, reverse);
    const Index nT = s.T, B = s.B, I = s.I, H = s.H, GH = rnnfast::gate_count(s.cell) * H;
    const bool lstm = s.cell == rnnfast::CellKind::lstm;
    rnnfast::LayerBackward<T> a{};
    a.s = s;
    View<T> xv = view<T>(x, "x", {nT, B, I}, false);
    a.x = xv.p;
    a.ldx = xv.ld;
    a.w_ih = dense<T>(w_ih, "w_ih", {GH, I}, false);
    a.w_hh = dense<T>(w_hh, "w_hh", {GH, H}, false);
    a.lengths = lengths_ptr(lengths, nT, B);
    a.saved = dense<T>(saved, "saved", {rnnfast::saved_size(s)}, consume_saved);
    a.consume_saved = consume_saved;
    View<T> dyv = view<T>(dy, "dy", {nT, B, H}, false);
    a.dy = dyv.p;
    a.lddy = dyv.ld;
    a.dh_n = optional_in<T>(dh_n, "dh_n", {B, H});
    a.dc_n = lstm ? optional_in<T>(dc_n, "dc_n", {B, H}) : nullptr;
    View<T> dxv = view<T>(dx, "dx", {nT, B, I}, true);
    a.dx = dxv.p;
    a.lddx = dxv.ld;
    a.dx_accumulate = dx_accumulate;
    a.dw_ih = dense<T>(dw_ih, "dw_ih", {GH, I}, true);
    a.dw_hh = dense<T>(dw_hh, "dw_hh", {GH, H}, true);
    a.db_ih = db_ih ? dense<T>(*db_ih, "db_ih", {GH}, true) : nullptr;
    a.db_hh = db_hh ? dense<T>(*db_hh, "db_hh", {GH}, true) : nullptr;
    py::array_t<T> dh0({B, H}), dc0 = lstm ? py::array_t<T>({B, H}) : py::array_t<T>(0);
    a.dh0 = dh0.mutable_data();
    a.dc0 = lstm ? dc0.mutable_data() : nullptr;
    a.threads = threads > 0 ? threads : rnnfast::get_num_threads();  // read once: sizes the scratch, runs the kernel
    const Index need = rnnfast::backward_scratch_size(s, sizeof(T), a.threads, consume_saved);
    std::unique_ptr<T[]> scratch;
    if (scratch_buf && reusable<T>(*scratch_buf, need)) {
        a.scratch = static_cast<T*>(scratch_buf->mutable_data());
    } else {
        scratch.reset(new T[need]);
        a.scratch = scratch.get();
    }
    py::object wcache = weight_cache<T>(s, wcache_buf, true, &a.wcache);
    {
        py::gil_scoped_release nogil;
        rnnfast::layer_backward(a);
    }
    return py::make_tuple(dh0, lstm ? py::object(dc0) : py::none(), wcache);
}


template <class T> void linear_forward(py::array x, py::array w, std::optional<py::array> b, py::array y) {
    if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("linear: expected x (N, F) and w (O, F)");
    rnnfast::LinearForward<T> a{};
    a.N = x.shape(0), a.F = x.shape(1), a.O = w.shape(0);
    a.x = dense<T>(x, "x", {a.N, a.F}, false);
    a.w = dense<T>(w, "w", {a.O, a.F}, false);
    a.b = b ? dense<T>(*b, "b", {a.O}, false) : nullptr;
    a.y = dense<T>(y, "y", {a.N, a.O}, true);
    a.threads = rnnfast::get_num_threads();
    std::unique_ptr<T[]> scratch(new T[rnnfast::linear_scratch_size(a.N, a.F, a.O, sizeof(T), a.threads)]);
    a.scratch = scratch.get();
    py::gil_scoped_release nogil;
    rnnfast::linear_forward(a);
}

template <class T>
void linear_backward(py::array x, py::array w, py::array dy, std::optional<py::array> dx, py::array dw,
                     std::optional<py::array> db) {
    if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("linear: expected x (N, F) and w (O, F)");
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
}

// A contiguous int64 (n,) array, as the embedding and loss kernels read ids and targets.
const std::int64_t* int64_in(const py::array& a, const char* name, Index n) {
    if (a.dtype().kind() != 'i' || a.itemsize() != 8 || a.ndim() != 1 || a.shape(0) != n ||
        !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": expected a contiguous int64 array of shape (" + std::to_string(n) +
                              ",), got dtype " + std::string(py::str(a.dtype())) + " shape " + shape_str(a));
    return static_cast<const std::int64_t*>(a.data());
}

// Every id in [0, n) (or equal to `except`), checked before a kernel writes anything: an id out of
// range would read or write outside the table.
void check_ids(const std::int64_t* ids, Index count, Index n, const char* name, std::optional<std::int64_t> except = {}) {
    for (Index i = 0; i < count; ++i)
        if (ids[i] != except && (ids[i] < 0 || ids[i] >= n))
            throw py::index_error(std::string(name) + ": ids must lie in [0, " + std::to_string(n) + "), got " +
                                  std::to_string(ids[i]));
}

template <class T> void embedding_forward(py::array weight, py::array ids, py::array y) {
    if (weight.ndim() != 2 || ids.ndim() != 1) throw py::value_error("embedding: expected weight (V, E) and ids (N,)");
    rnnfast::EmbeddingForward<T> a{};
    a.N = ids.shape(0), a.V = weight.shape(0), a.E = weight.shape(1);
    a.weight = dense<T>(weight, "weight", {a.V, a.E}, false);
    a.ids = int64_in(ids, "ids", a.N);
    check_ids(a.ids, a.N, a.V, "ids");
    a.y = dense<T>(y, "y", {a.N, a.E}, true);
    a.threads = rnnfast::get_num_threads();
    py::gil_scoped_release nogil;
    rnnfast::embedding_forward(a);
}

template <class T> void embedding_backward(py::array ids, py::array dy, py::array dweight, std::int64_t padding_idx) {
    if (dweight.ndim() != 2 || ids.ndim() != 1)
        throw py::value_error("embedding: expected dweight (V, E) and ids (N,)");
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
}

template <class T>
py::tuple cross_entropy(py::array z, py::array targets, std::int64_t ignore_index, std::optional<py::array> row_weight,
                        const std::string& reduction) {
    if (z.ndim() != 2 || z.shape(1) < 1)
        throw py::value_error("cross_entropy: expected logits (N, C) with C >= 1, got " + shape_str(z));
    rnnfast::CrossEntropy<T> a{};
    a.N = z.shape(0), a.C = z.shape(1);
    a.z = dense<T>(z, "logits", {a.N, a.C}, false);
    a.targets = int64_in(targets, "targets", a.N);
    check_ids(a.targets, a.N, a.C, "targets", ignore_index);
    a.ignore_index = ignore_index;
    a.row_weight = row_weight ? dense<T>(*row_weight, "row_weight", {a.N}, false) : nullptr;
    if (reduction == "none") a.reduction = rnnfast::Reduction::none;
    else if (reduction == "sum") a.reduction = rnnfast::Reduction::sum;
    else if (reduction == "mean") a.reduction = rnnfast::Reduction::mean;
    else throw py::value_error("reduction: expected 'none', 'sum' or 'mean', got '" + reduction + "'");
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
}

bool is_f64(const py::array& x) { return x.dtype().kind() == 'f' && x.itemsize() == 8; }

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "rnnfast kernels (private; use the rnnfast package)";
    m.def(
        "layer_forward",
        [](int cell, py::array x, std::optional<py::array> h0, std::optional<py::array> c0, py::array w_ih,
           py::array w_hh, std::optional<py::array> b_ih, std::optional<py::array> b_hh, bool reverse,
           std::optional<py::array> lengths, bool training, py::array y, std::optional<py::array> saved,
           std::optional<py::array> wcache, int threads) {
            auto f = is_f64(x) ? forward<double> : forward<float>;
            return f(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, lengths, training, y, saved, wcache, threads);
        },
        py::arg("cell"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih"), py::arg("b_hh"), py::arg("reverse"), py::arg("lengths"), py::arg("training"), py::arg("y"),
        py::arg("saved") = py::none(), py::arg("wcache") = py::none(), py::arg("threads") = 0,
        "One layer, one direction. Writes y in place; returns (h_n, c_n or None, saved or None, wcache). `saved`, "
        "if a float array of saved_size values, is reused as the training workspace; `wcache`, if of the right "
        "size, as the packed-weights cache (returned either way, for the next call; a single step, T = 1, "
        "uses none and returns the one it was given as it came).");
    m.def(
        "layer_backward",
        [](int cell, py::array x, py::array w_ih, py::array w_hh, std::optional<py::array> lengths, bool reverse,
           py::array saved, py::array dy, std::optional<py::array> dh_n, std::optional<py::array> dc_n, py::array dx,
           bool dx_accumulate, py::array dw_ih, py::array dw_hh, std::optional<py::array> db_ih,
           std::optional<py::array> db_hh, std::optional<py::array> scratch, std::optional<py::array> wcache,
           int threads, bool consume_saved) {
            auto f = is_f64(x) ? backward<double> : backward<float>;
            return f(cell, x, w_ih, w_hh, lengths, reverse, saved, dy, dh_n, dc_n, dx, dx_accumulate, dw_ih, dw_hh,
                     db_ih, db_hh, scratch, wcache, threads, consume_saved);
        },
        py::arg("cell"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("lengths"), py::arg("reverse"),
        py::arg("saved"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dx_accumulate"),
        py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"), py::arg("db_hh"), py::arg("scratch") = py::none(),
        py::arg("wcache") = py::none(), py::arg("threads") = 0, py::arg("consume_saved") = false,
        "BPTT through one layer and direction. Writes (or adds into) dx, adds into the weight gradients; "
        "returns (dh0, dc0 or None, wcache): `wcache` as in layer_forward, for the backward's packing. "
        "consume_saved: the gate gradients overwrite `saved` (less scratch; `saved` is spent).");
    m.def(
        "linear_forward",
        [](py::array x, py::array w, std::optional<py::array> b, py::array y) {
            (is_f64(x) ? linear_forward<double> : linear_forward<float>)(x, w, b, y);
        },
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), "y (N, O) = x (N, F) w^T + b, written into y.");
    m.def(
        "linear_backward",
        [](py::array x, py::array w, py::array dy, std::optional<py::array> dx, py::array dw,
           std::optional<py::array> db) {
            (is_f64(x) ? linear_backward<double> : linear_backward<float>)(x, w, dy, dx, dw, db);
        },
        py::arg("x"), py::arg("w"), py::arg("dy"), py::arg("dx"), py::arg("dw"), py::arg("db"),
        "dx = dy w (overwritten, if given); dw += dy^T x; db += sum of dy's rows (if given).");
    m.def(
        "embedding_forward",
        [](py::array weight, py::array ids, py::array y) {
            (is_f64(weight) ? embedding_forward<double> : embedding_forward<float>)(weight, ids, y);
        },
        py::arg("weight"), py::arg("ids"), py::arg("y"), "y (N, E) = weight[ids], written into y; ids int64 (N,).");
    m.def(
        "embedding_backward",
        [](py::array ids, py::array dy, py::array dweight, std::int64_t padding_idx) {
            (is_f64(dweight) ? embedding_backward<double> : embedding_backward<float>)(ids, dy, dweight, padding_idx);
        },
        py::arg("ids"), py::arg("dy"), py::arg("dweight"), py::arg("padding_idx"),
        "dweight[ids[n]] += dy[n] in the order of n, except where ids[n] == padding_idx (-1: none).");
    m.def(
        "cross_entropy",
        [](py::array z, py::array targets, std::int64_t ignore_index, std::optional<py::array> row_weight,
           const std::string& reduction) {
            return (is_f64(z) ? cross_entropy<double> : cross_entropy<float>)(z, targets, ignore_index, row_weight,
                                                                             reduction);
        },
        py::arg("logits"), py::arg("targets"), py::arg("ignore_index"), py::arg("row_weight"), py::arg("reduction"),
        "Softmax cross-entropy of logits (N, C) with int64 targets (N,): returns (reduced loss, per-row loss (N,), "
        "dlogits (N, C)).");
    m.def("saved_size", [](int cell, Index T, Index B, Index I, Index H) {
        return rnnfast::saved_size(make_shape(cell, T, B, I, H, false));
    });
    m.def("backward_scratch_size", [](int cell, Index T, Index B, Index I, Index H, int elem_bytes, int threads,
                                      bool consume_saved) {
        if (elem_bytes != 4 && elem_bytes != 8) throw py::value_error("elem_bytes: expected 4 or 8");
        return rnnfast::backward_scratch_size(make_shape(cell, T, B, I, H, false), elem_bytes,
                                              threads > 0 ? threads : rnnfast::get_num_threads(), consume_saved);
    }, py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("elem_bytes"),
       py::arg("threads") = 0, py::arg("consume_saved") = false,
       "Values of backward scratch for `threads` (0: the current count) and consume_saved; a `scratch` of this "
       "size is reused.");
    m.def("set_num_threads", &rnnfast::set_num_threads, py::arg("n"));
    m.def("get_num_threads", &rnnfast::get_num_threads);
    m.def("set_dynamic_threads", &rnnfast::set_dynamic_threads, py::arg("on"));
    m.def("get_dynamic_threads", &rnnfast::get_dynamic_threads);
    m.def("dynamic_thread_shrinks", &rnnfast::dynamic_thread_shrinks);
    m.def("isa", &rnnfast::isa);
    m.def("set_isa", [](const std::string& name) {
        if (rnnfast::set_isa(name.c_str())) return;
        std::string have;
        for (const char* const* n = rnnfast::available_isas(); *n; ++n)
            have += std::string(have.empty() ? "" : ", ") + *n;
        throw py::value_error("isa: '" + name + "' is not available here (this CPU or this build lacks it); " +
                              "available: " + have);
    });
    m.def("available_isas", [] {
        py::list out;
        for (const char* const* n = rnnfast::available_isas(); *n; ++n) out.append(*n);
        return out;
    });
    m.def(
        "activation",
        [](int f, py::array_t<float, py::array::c_style | py::array::forcecast> x) {
            if (f != 0 && f != 1) throw py::value_error("f: expected 0 (sigmoid) or 1 (tanh)");
            py::array_t<float> out(x.size());
            rnnfast::activation(f, x.data(), out.mutable_data(), x.size());
            return out;
        },
        py::arg("f"), py::arg("x"), "The kernels' vectorised sigmoid (f=0) or tanh (f=1), float32.");
    m.def(
        "fma_peak_gflops",
        [](int threads) {
            py::gil_scoped_release nogil;
            return rnnfast::fma_peak_gflops(threads);
        },
        py::arg("threads"), "Measured float32 FMA peak of the active ISA on `threads` threads, GFLOP/s.");
#ifdef _OPENMP
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
}
