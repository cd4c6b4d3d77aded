// The _core extension module: the kernels for Python. Glue only: each part binds one concept
// (layer_bindings.cpp, toolkit_bindings.cpp; array checks in arrays.h); this file adds the runtime.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>

#include <string>

#include "bindings.h"
#include "rnnfast/runtime.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "rnnfast kernels (private; use the rnnfast package)";
    rnnfast_python::bind_layers(m);
    rnnfast_python::bind_toolkit(m);
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
    }, py::arg("name"));
    m.def("available_isas", [] {
        py::list out;
        for (const char* const* n = rnnfast::available_isas(); *n; ++n) out.append(*n);
        return out;
    });
    m.def("cpu_id", [] {
        const rnnfast::CpuId id = rnnfast::cpu_id();
        return py::make_tuple(std::string(id.vendor), id.family, id.model);
    });
    m.def("cpuid_family_model", [](unsigned eax) {
        unsigned family, model;
        rnnfast::cpuid_family_model(eax, &family, &model);
        return py::make_tuple(family, model);
    }, py::arg("eax"));
    m.def("isa_order", [](const std::string& vendor, unsigned family) {
        py::list out;
        for (const char* const* n = rnnfast::isa_order(vendor.c_str(), family); *n; ++n) out.append(*n);
        return out;
    }, py::arg("vendor"), py::arg("family"));
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
        "quantize_activations",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> x) {
            if (x.ndim() != 2) throw py::value_error("x: expected 2 dimensions (rows, n)");
            const rnnfast::Index rows = x.shape(0), n = x.shape(1);
            py::array_t<std::int8_t> q({rows, n}), q2({rows, n});
            py::array_t<float> scale(rows), scale2(rows);
            rnnfast::quantize_activations(x.data(), rows, n, q.mutable_data(), scale.mutable_data(), q2.mutable_data(),
                                          scale2.mutable_data());
            return py::make_tuple(q, scale, q2, scale2);
        },
        py::arg("x"), "Rows of x (float32) in int8 digits as the int8 products quantize them: (q, scale, q2, scale2).");
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
