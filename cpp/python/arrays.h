// NumPy arrays as the kernels read them: checked views (dtype, shape, strides, writability) that
// turn into pointers and row strides, and int64 id arrays checked against their range. Every check
// here guards memory: no call, however wrong, reaches the kernels with memory they must not touch.
// The Python layer validates user input first, with messages in the user's terms.
#pragma once
#include <type_traits>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rnnfast/layer.h"

namespace rnnfast_python {

namespace py = pybind11;
using rnnfast::Index;
using OptionalArray = std::optional<py::array>;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string strides_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.strides(i));
    return s + (a.ndim() == 1 ? ",) bytes" : ") bytes");
}

// A (rows..., n) view whose last axis is contiguous and whose rows are evenly strided:
// the pointer and the row stride in elements.
template <class T> struct View {
    T* p = nullptr;
    Index ld = 0;
};

// T: float, double, std::uint16_t (bfloat16 weights as bit patterns) or std::int8_t (int8 weights).
template <class T>
View<T> view(const py::array& a, const char* name, std::vector<Index> shape, bool writable) {
    const char kind = std::is_floating_point_v<T> ? 'f' : std::is_signed_v<T> ? 'i' : 'u';
    if (!py::isinstance<py::array_t<T>>(a) || a.dtype().kind() != kind || a.itemsize() != sizeof(T))
        throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
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
        throw py::value_error(std::string(name) + ": expected rows with a contiguous last axis and even strides, got shape " +
                              shape_str(a) + " with strides " + strides_str(a));
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

inline const std::int64_t* lengths_ptr(const std::optional<py::array>& lengths, Index T, Index B) {
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

// A contiguous int64 (n,) array, as the embedding and loss kernels read ids and targets.
inline const std::int64_t* int64_in(const py::array& a, const char* name, Index n) {
    if (a.dtype().kind() != 'i' || a.itemsize() != 8 || a.ndim() != 1 || a.shape(0) != n ||
        !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": expected a contiguous int64 array of shape (" + std::to_string(n) +
                              ",), got dtype " + std::string(py::str(a.dtype())) + " shape " + shape_str(a));
    return static_cast<const std::int64_t*>(a.data());
}

// Every id in [0, n) (or equal to `except`), checked before a kernel writes anything: an id out of
// range would read or write outside the table.
inline void check_ids(const std::int64_t* ids, Index count, Index n, const char* name, std::optional<std::int64_t> except = {}) {
    for (Index i = 0; i < count; ++i)
        if (ids[i] != except && (ids[i] < 0 || ids[i] >= n))
            throw py::index_error(std::string(name) + ": ids must lie in [0, " + std::to_string(n) + "), got " +
                                  std::to_string(ids[i]));
}

// The data of a float array the binding made or checked, or nullptr for None.
template <class T> T* data_or_null(const py::object& a) {
    return a.is_none() ? nullptr : static_cast<T*>(py::reinterpret_borrow<py::array>(a).mutable_data());
}

inline bool is_f64(const py::array& x) { return x.dtype().kind() == 'f' && x.itemsize() == 8; }

// f(T{}) for the scalar type of `x`: float64, or else float32 (the views then check the dtype).
template <class F> auto by_dtype(const py::array& x, F&& f) { return is_f64(x) ? f(double{}) : f(float{}); }

}  // namespace rnnfast_python
