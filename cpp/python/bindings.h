// The parts of the _core module, each binding one concept (bindings.cpp assembles them).
#pragma once
#include <pybind11/pybind11.h>

namespace rnnfast_python {
void bind_layers(pybind11::module_& m);   // layer_bindings.cpp
void bind_toolkit(pybind11::module_& m);  // toolkit_bindings.cpp
}  // namespace rnnfast_python
