// Python glue for the layer kernels: one layer, one direction, forward and backward, on NumPy
// arrays, with a LayerWorkspace that keeps the caches and the scratch between calls.
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>
#include <optional>
#include <utility>

#include "arrays.h"
#include "bindings.h"
#include "layer_workspace.h"
#include "rnnfast/layer.h"
#include "rnnfast/runtime.h"

namespace rnnfast_python {
namespace {

// The cells the kernels know, by the names the Python registry uses.
constexpr std::pair<const char*, rnnfast::CellKind> kCells[] = {{"rnn_tanh", rnnfast::CellKind::rnn_tanh},
                                                              {"rnn_relu", rnnfast::CellKind::rnn_relu},
                                                              {"lstm", rnnfast::CellKind::lstm},
                                                              {"gru", rnnfast::CellKind::gru},
                                                              {"layernorm_lstm", rnnfast::CellKind::layernorm_lstm},
                                                              {"layernorm_gru", rnnfast::CellKind::layernorm_gru}};

// Weights of dtype uint16 are bfloat16 bit patterns, of dtype int8 int8 weights (rnnfast.quantize):
// a float32 eval forward.
rnnfast::Precision weights_precision(const py::array& w) {
    if (w.dtype().is(py::dtype::of<std::uint16_t>())) return rnnfast::Precision::bfloat16;
    if (w.dtype().is(py::dtype::of<std::int8_t>())) return rnnfast::Precision::int8;
    return rnnfast::Precision::full;
}
const char* precision_name(rnnfast::Precision p) {
    return p == rnnfast::Precision::bfloat16 ? "bfloat16 weights (uint16)" : "int8 weights";
}

rnnfast::LayerShape make_shape(int cell, Index T, Index B, Index I, Index H, bool reverse,
                               bool recurrent_dropout = false,
                               rnnfast::Precision precision = rnnfast::Precision::full, Index P = 0) {
    bool known = false;
    for (const auto& c : kCells) known = known || int(c.second) == cell;
    if (!known) throw py::value_error("cell: not a cell code the kernels know, got " + std::to_string(cell));
    if (T < 1 || B < 1 || I < 1 || H < 1) throw py::value_error("sizes must be positive");
    if (precision == rnnfast::Precision::int8 && (I > rnnfast::kInt8MaxK || H > rnnfast::kInt8MaxK))
        throw py::value_error("int8 weights: a layer's input size (x's last dimension) and hidden size must be at "
                              "most " + std::to_string(rnnfast::kInt8MaxK) + " (the int32 sums would overflow), got " +
                              std::to_string(I) + " and " + std::to_string(H));
    if (precision != rnnfast::Precision::full && recurrent_dropout)
        throw py::value_error(std::string("recurrent_mask: ") + precision_name(precision) +
                              " run eval forwards, which take no recurrent dropout");
    if (P && (rnnfast::CellKind(cell) != rnnfast::CellKind::lstm || !(P < H)))
        throw py::value_error("w_hr: projections are an LSTM's, with P < H (w_hr of shape (P, H)), got P = " +
                              std::to_string(P) + ", H = " + std::to_string(H));
    return {rnnfast::CellKind(cell), T, B, I, H, reverse, recurrent_dropout, precision, P};
}

// The layer's sizes from x (T, B, I) and w_hh (G*H, H), or with projections w_hr (P, H); recurrent
// dropout if a mask is given; the precision from w_hh's dtype.
rnnfast::LayerShape layer_shape(int cell, const py::array& x, const py::array& w_hh, bool reverse,
                                const OptionalArray& recurrent_mask, const OptionalArray& w_hr) {
    if (x.ndim() != 3) throw py::value_error("x: expected 3 dimensions (T, B, I), got " + shape_str(x));
    if (w_hh.ndim() != 2) throw py::value_error("w_hh: expected 2 dimensions, got " + shape_str(w_hh));
    if (w_hr && (w_hr->ndim() != 2 || w_hr->shape(0) < 1))
        throw py::value_error("w_hr: expected 2 dimensions (P, H) with P >= 1, got " + shape_str(*w_hr));
    return make_shape(cell, x.shape(0), x.shape(1), x.shape(2), w_hr ? w_hr->shape(1) : w_hh.shape(1), reverse,
                      recurrent_mask.has_value(), weights_precision(w_hh), w_hr ? w_hr->shape(0) : 0);
}

// The weights (w_hr with projections): of T, or a float forward's bfloat16 bit patterns, or its
// int8 weights and their rows' scales (float32, one per row).
template <class T, class Call>
void view_weights(Call& a, const py::array& w_ih, const py::array& w_hh, const OptionalArray& w_hr,
                  const OptionalArray& w_ih_scale, const OptionalArray& w_hh_scale, const OptionalArray& w_hr_scale) {
    const rnnfast::LayerShape& s = a.s;
    const Index GH = rnnfast::gate_count(s.cell) * s.H, S = rnnfast::state_size(s);
    std::vector<std::pair<const py::array*, const char*>> others{{&w_ih, "w_ih"}};
    if (s.P) others.push_back({&*w_hr, "w_hr"});
    for (const auto& [w, name] : others)
        if (weights_precision(*w) != s.precision)
            throw py::type_error(std::string(name) + ": of dtype " + std::string(py::str(w->dtype())) +
                                 " where w_hh is of dtype " + std::string(py::str(w_hh.dtype())) +
                                 "; all weights must be float, or all " +
                                 (s.precision == rnnfast::Precision::full ? precision_name(weights_precision(*w))
                                                                          : precision_name(s.precision)));
    if (w_hr_scale && !(s.P && s.precision == rnnfast::Precision::int8))
        throw py::value_error("w_hr_scale: only int8 projections (w_hr) take it");
    if constexpr (std::is_same_v<Call, rnnfast::LayerForward<float>>) {
        if (s.precision == rnnfast::Precision::bfloat16) {
            a.w_ih_bf16 = dense<std::uint16_t>(w_ih, "w_ih", {GH, s.I}, false);
            a.w_hh_bf16 = dense<std::uint16_t>(w_hh, "w_hh", {GH, S}, false);
            a.w_hr_bf16 = s.P ? dense<std::uint16_t>(*w_hr, "w_hr", {s.P, s.H}, false) : nullptr;
            return;
        }
        if (s.precision == rnnfast::Precision::int8) {
            std::string missing;
            for (const auto& [absent, name] :
                 {std::pair{!w_ih_scale, "w_ih_scale"}, std::pair{!w_hh_scale, "w_hh_scale"},
                  std::pair{s.P && !w_hr_scale, "w_hr_scale"}})
                if (absent) missing += (missing.empty() ? "" : ", ") + std::string(name);
            if (!missing.empty()) throw py::value_error(missing + ": int8 weights need their rows' scales (float32)");
            a.w_ih_i8 = dense<std::int8_t>(w_ih, "w_ih", {GH, s.I}, false);
            a.w_hh_i8 = dense<std::int8_t>(w_hh, "w_hh", {GH, S}, false);
            a.w_ih_scale = dense<float>(*w_ih_scale, "w_ih_scale", {GH}, false);
            a.w_hh_scale = dense<float>(*w_hh_scale, "w_hh_scale", {GH}, false);
            if (s.P) {
                a.w_hr_i8 = dense<std::int8_t>(*w_hr, "w_hr", {s.P, s.H}, false);
                a.w_hr_scale = dense<float>(*w_hr_scale, "w_hr_scale", {s.P}, false);
            }
            return;
        }
    }
    if (s.precision != rnnfast::Precision::full)
        throw py::type_error(std::string("w_hh: ") + precision_name(s.precision) +
                             " run float32 eval forwards only, not a backward or float64");
    a.w_ih = dense<T>(w_ih, "w_ih", {GH, s.I}, false);
    a.w_hh = dense<T>(w_hh, "w_hh", {GH, S}, false);
    a.w_hr = s.P ? dense<T>(*w_hr, "w_hr", {s.P, s.H}, false) : nullptr;
}

Index gates_times(const rnnfast::LayerShape& s, Index n) { return rnnfast::gate_count(s.cell) * n; }
bool is_lstm(const rnnfast::LayerShape& s) { return rnnfast::has_cell_state(s.cell); }

// The layer-normalised cells' gains (G*H each) and the LSTM's cell gain and bias (H), or their
// gradients (`prefix` "d", writable): required for those cells, refused for the others.
template <class T>
std::array<T*, 4> norm_arrays(const rnnfast::LayerShape& s, const std::vector<OptionalArray>& arrays,
                              const std::string& prefix, bool writable) {
    if (arrays.size() != 4)
        throw py::value_error(prefix + "norms: expected 4 entries (ln_ih_weight, ln_hh_weight, ln_cell_weight, "
                              "ln_cell_bias; None where absent), got " + std::to_string(arrays.size()));
    const bool normalised = rnnfast::layer_normalised(s.cell);
    const char* names[] = {"ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias"};
    const Index sizes[] = {gates_times(s, s.H), gates_times(s, s.H), s.H, s.H};
    std::array<T*, 4> out{};
    for (int i = 0; i < 4; ++i) {
        const std::string name = prefix + names[i];
        const bool wanted = normalised && (i < 2 || is_lstm(s));
        if (arrays[i].has_value() != wanted)
            throw py::value_error(name + (wanted ? ": this cell needs it" : ": only a layer-normalised cell takes it"));
        out[i] = wanted ? dense<T>(*arrays[i], name.c_str(), {sizes[i]}, writable) : nullptr;
    }
    return out;
}
// What a forward and a backward both read, checked and set on their call struct `a` (a.s set).
template <class T, class Call>
void view_layer_inputs(Call& a, const py::array& x, const py::array& w_ih, const py::array& w_hh,
                       const OptionalArray& w_hr, const OptionalArray& lengths, const OptionalArray& zoneout,
                       double zoneout_p, std::optional<std::uint64_t> zoneout_seed, const OptionalArray& recurrent_mask,
                       const OptionalArray& w_ih_scale = std::nullopt, const OptionalArray& w_hh_scale = std::nullopt,
                       const OptionalArray& w_hr_scale = std::nullopt) {
    const rnnfast::LayerShape& s = a.s;
    const Index S = rnnfast::state_size(s);
    const View<T> xv = view<T>(x, "x", {s.T, s.B, s.I}, false);
    a.x = xv.p, a.ldx = xv.ld;
    view_weights<T>(a, w_ih, w_hh, w_hr, w_ih_scale, w_hh_scale, w_hr_scale);
    a.lengths = lengths_ptr(lengths, s.T, s.B);
    a.zoneout = optional_in<T>(zoneout, "zoneout", {s.T, s.B, S});
    a.zoneout_p = T(zoneout_p);
    a.zoneout_draws = zoneout_seed.has_value();
    a.zoneout_seed = zoneout_seed.value_or(0);
    if (a.zoneout_draws && (zoneout || !(zoneout_p >= 0 && zoneout_p < 1)))
        throw py::value_error("zoneout_seed: draws masks with probability zoneout_p in [0, 1), without zoneout masks");
    a.recurrent_mask = optional_in<T>(recurrent_mask, "recurrent_mask", {s.B, S});
}

// Returns (h_n, c_n or None, saved or None); writes y in place.
py::tuple layer_forward(int cell, py::array x, py::array w_ih, py::array w_hh, OptionalArray b_ih, OptionalArray b_hh,
                        OptionalArray h0, OptionalArray c0, py::array y, bool reverse, OptionalArray lengths,
                        bool training, OptionalArray saved_buf, LayerWorkspace* workspace, int threads,
                        OptionalArray zoneout, double zoneout_p, std::optional<std::uint64_t> zoneout_seed,
                        OptionalArray recurrent_mask, OptionalArray w_ih_scale, OptionalArray w_hh_scale,
                        OptionalArray w_hr, std::vector<OptionalArray> norms, OptionalArray w_hr_scale) {
    const rnnfast::LayerShape s = layer_shape(cell, x, w_hh, reverse, recurrent_mask, w_hr);
    if (s.precision != rnnfast::Precision::full && training)
        throw py::value_error(std::string("training: ") + precision_name(s.precision) +
                              " are for inference; run with training=False");
    return by_dtype(x, [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        const Index GH = gates_times(s, s.H), S = rnnfast::state_size(s);
        rnnfast::LayerForward<T> a{};
        a.s = s;
        view_layer_inputs<T>(a, x, w_ih, w_hh, w_hr, lengths, zoneout, zoneout_p, zoneout_seed, recurrent_mask,
                             w_ih_scale, w_hh_scale, w_hr_scale);
        a.h0 = optional_in<T>(h0, "h0", {s.B, S});
        const std::array<T*, 4> ln = norm_arrays<T>(s, norms, "", false);
        a.ln_ih_weight = ln[0], a.ln_hh_weight = ln[1], a.ln_cell_weight = ln[2], a.ln_cell_bias = ln[3];
        a.c0 = is_lstm(s) ? optional_in<T>(c0, "c0", {s.B, s.H}) : nullptr;
        a.b_ih = optional_in<T>(b_ih, "b_ih", {GH});
        a.b_hh = optional_in<T>(b_hh, "b_hh", {GH});
        const View<T> yv = view<T>(y, "y", {s.T, s.B, S}, true);
        a.y = yv.p, a.ldy = yv.ld;
        py::array_t<T> h_n({s.B, S}), c_n = is_lstm(s) ? py::array_t<T>({s.B, s.H}) : py::array_t<T>(0);
        a.h_n = h_n.mutable_data();
        a.c_n = is_lstm(s) ? c_n.mutable_data() : nullptr;
        // The saved workspace: the caller's buffer when it has the right size (reused across calls,
        // so no fresh pages to fault in), else a new array.
        const Index saved_n = training ? rnnfast::saved_size(s) : 0;
        py::array_t<T> saved = saved_buf && training && reusable<T>(*saved_buf, saved_n) ? py::array_t<T>(*saved_buf)
                                                                                         : py::array_t<T>(saved_n);
        a.saved = training ? saved.mutable_data() : nullptr;
        a.threads = threads > 0 ? threads : rnnfast::get_num_threads();  // read once: sizes the scratch, runs the kernel
        WorkspaceLease lease(workspace);
        a.scratch = lease.get().scratch<T>(rnnfast::forward_scratch_size(s, training, sizeof(T), a.threads));
        const py::object cache = lease.get().cache<T>(false, rnnfast::weight_cache_size(s, sizeof(T), false));
        a.wcache = data_or_null<T>(cache);
        {
            py::gil_scoped_release nogil;
            rnnfast::layer_forward(a);
        }
        return py::make_tuple(h_n, is_lstm(s) ? py::object(c_n) : py::none(),
                              training ? py::object(saved) : py::none());
    });
}

// Returns (dh0, dc0 or None); writes (or adds into) dx, adds into the weight gradients.
py::tuple layer_backward(int cell, py::array x, py::array w_ih, py::array w_hh, py::array saved, py::array dy,
                         OptionalArray dh_n, OptionalArray dc_n, py::array dx, py::array dw_ih, py::array dw_hh,
                         OptionalArray db_ih, OptionalArray db_hh, bool reverse, OptionalArray lengths,
                         bool dx_accumulate, bool consume_saved, LayerWorkspace* workspace, OptionalArray scratch,
                         int threads, OptionalArray zoneout, double zoneout_p,
                         std::optional<std::uint64_t> zoneout_seed, OptionalArray recurrent_mask, OptionalArray w_hr,
                         OptionalArray dw_hr, std::vector<OptionalArray> norms, std::vector<OptionalArray> dnorms) {
    const rnnfast::LayerShape s = layer_shape(cell, x, w_hh, reverse, recurrent_mask, w_hr);
    return by_dtype(x, [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        const Index GH = gates_times(s, s.H), S = rnnfast::state_size(s);
        rnnfast::LayerBackward<T> a{};
        a.s = s;
        view_layer_inputs<T>(a, x, w_ih, w_hh, w_hr, lengths, zoneout, zoneout_p, zoneout_seed, recurrent_mask);
        if (bool(s.P) != dw_hr.has_value())
            throw py::value_error(s.P ? "dw_hr: a layer with projections (w_hr) needs dw_hr (P, H)"
                                      : "dw_hr: only a layer with projections (w_hr) takes it");
        a.dw_hr = s.P ? dense<T>(*dw_hr, "dw_hr", {s.P, s.H}, true) : nullptr;
        const std::array<T*, 4> ln = norm_arrays<T>(s, norms, "", false), dln = norm_arrays<T>(s, dnorms, "d", true);
        a.ln_ih_weight = ln[0], a.ln_hh_weight = ln[1], a.ln_cell_weight = ln[2], a.ln_cell_bias = ln[3];
        a.dln_ih_weight = dln[0], a.dln_hh_weight = dln[1], a.dln_cell_weight = dln[2], a.dln_cell_bias = dln[3];
        a.saved = dense<T>(saved, "saved", {rnnfast::saved_size(s)}, consume_saved);
        a.consume_saved = consume_saved;
        const View<T> dyv = view<T>(dy, "dy", {s.T, s.B, S}, false);
        a.dy = dyv.p, a.lddy = dyv.ld;
        a.dh_n = optional_in<T>(dh_n, "dh_n", {s.B, S});
        a.dc_n = is_lstm(s) ? optional_in<T>(dc_n, "dc_n", {s.B, s.H}) : nullptr;
        const View<T> dxv = view<T>(dx, "dx", {s.T, s.B, s.I}, true);
        a.dx = dxv.p, a.lddx = dxv.ld;
        a.dx_accumulate = dx_accumulate;
        a.dw_ih = dense<T>(dw_ih, "dw_ih", {GH, s.I}, true);
        a.dw_hh = dense<T>(dw_hh, "dw_hh", {GH, S}, true);
        a.db_ih = db_ih ? dense<T>(*db_ih, "db_ih", {GH}, true) : nullptr;
        a.db_hh = db_hh ? dense<T>(*db_hh, "db_hh", {GH}, true) : nullptr;
        py::array_t<T> dh0({s.B, S}), dc0 = is_lstm(s) ? py::array_t<T>({s.B, s.H}) : py::array_t<T>(0);
        a.dh0 = dh0.mutable_data();
        a.dc0 = is_lstm(s) ? dc0.mutable_data() : nullptr;
        a.threads = threads > 0 ? threads : rnnfast::get_num_threads();  // read once: sizes the scratch, runs the kernel
        const Index need = rnnfast::backward_scratch_size(s, sizeof(T), a.threads, consume_saved);
        WorkspaceLease lease(workspace);
        // The caller's own scratch when it has the size needed (for this thread count), else the workspace's.
        a.scratch = scratch && reusable<T>(*scratch, need) ? static_cast<T*>(scratch->mutable_data())
                                                          : lease.get().scratch<T>(need);
        const py::object cache = lease.get().cache<T>(true, rnnfast::weight_cache_size(s, sizeof(T), true));
        a.wcache = data_or_null<T>(cache);
        {
            py::gil_scoped_release nogil;
            rnnfast::layer_backward(a);
        }
        return py::make_tuple(dh0, is_lstm(s) ? py::object(dc0) : py::none());
    });
}

}  // namespace

void bind_layers(py::module_& m) {
    py::class_<LayerWorkspace>(m, "LayerWorkspace",
                               "What one layer and direction keeps between calls: packed-weight caches and scratch. "
                               "Copies and pickles start empty; a workspace busy in another thread's call is not "
                               "waited for (that call runs on a temporary one).")
        .def(py::init<>())
        .def_readwrite("forward", &LayerWorkspace::forward_cache, "The forward's weight cache (an array), or None.")
        .def_readwrite("backward", &LayerWorkspace::backward_cache, "The backward's weight cache, or None.")
        .def("__reduce__", [](py::object self) { return py::make_tuple(self.attr("__class__"), py::tuple()); });
    m.def("layer_forward", &layer_forward, py::arg("cell"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
          py::arg("b_ih"), py::arg("b_hh"), py::arg("h0"), py::arg("c0"), py::kw_only(), py::arg("y"),
          py::arg("reverse"), py::arg("lengths"), py::arg("training"), py::arg("saved") = py::none(),
          py::arg("workspace") = py::none(), py::arg("threads") = 0, py::arg("zoneout") = py::none(),
          py::arg("zoneout_p") = 0.0, py::arg("zoneout_seed") = py::none(), py::arg("recurrent_mask") = py::none(),
          py::arg("w_ih_scale") = py::none(), py::arg("w_hh_scale") = py::none(), py::arg("w_hr") = py::none(),
          py::arg("norms") = std::vector<OptionalArray>(4), py::arg("w_hr_scale") = py::none(),
          "One layer, one direction: writes y (T, B, H) in place (a view, e.g. a direction's half of a wider "
          "output) and returns (h_n, c_n or None, saved or None). `saved`, an array of saved_size values, is "
          "reused as the training workspace when it fits; `workspace` keeps caches and scratch between calls. "
          "Weights of dtype uint16 (bfloat16 bits) or int8 (with w_ih_scale, w_hh_scale: float32, one per row) "
          "run a float32 eval forward at that precision. w_hr (P, H): an LSTM with projections, whose h (h0, "
          "h_n, y, W_hh's columns) has P units (of w_hh's dtype; int8 with w_hr_scale). norms: the "
          "layer-normalised cells' [ln_ih_weight, ln_hh_weight, "
          "ln_cell_weight, ln_cell_bias] (None where the cell has none).");
    m.def("layer_backward", &layer_backward, py::arg("cell"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
          py::arg("saved"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("dw_ih"),
          py::arg("dw_hh"), py::arg("db_ih"), py::arg("db_hh"), py::kw_only(), py::arg("reverse"),
          py::arg("lengths"), py::arg("dx_accumulate") = false, py::arg("consume_saved") = false,
          py::arg("workspace") = py::none(), py::arg("scratch") = py::none(), py::arg("threads") = 0,
          py::arg("zoneout") = py::none(), py::arg("zoneout_p") = 0.0, py::arg("zoneout_seed") = py::none(),
          py::arg("recurrent_mask") = py::none(), py::arg("w_hr") = py::none(), py::arg("dw_hr") = py::none(),
          py::arg("norms") = std::vector<OptionalArray>(4), py::arg("dnorms") = std::vector<OptionalArray>(4),
          "BPTT through one layer and direction: writes (or, with dx_accumulate, adds into) dx, adds into the "
          "weight gradients (dw_hr too, with projections; dnorms, the layer-normalised cells' parameters' "
          "gradients, in norms' order), returns (dh0, dc0 or None). consume_saved: the gate "
          "gradients overwrite `saved` (less scratch; `saved` is spent). `scratch`, if given, must hold "
          "backward_scratch_size values.");
    m.def("saved_size", [](int cell, Index T, Index B, Index I, Index H, Index P) {
        return rnnfast::saved_size(make_shape(cell, T, B, I, H, false, false, rnnfast::Precision::full, P));
    }, py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P") = 0);
    m.def("backward_scratch_size", [](int cell, Index T, Index B, Index I, Index H, int elem_bytes, int threads,
                                      bool consume_saved, bool recurrent_dropout, Index P) {
        if (elem_bytes != 4 && elem_bytes != 8) throw py::value_error("elem_bytes: expected 4 or 8");
        return rnnfast::backward_scratch_size(
            make_shape(cell, T, B, I, H, false, recurrent_dropout, rnnfast::Precision::full, P), elem_bytes,
            threads > 0 ? threads : rnnfast::get_num_threads(), consume_saved);
    }, py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("elem_bytes"),
       py::arg("threads") = 0, py::arg("consume_saved") = false, py::arg("recurrent_dropout") = false,
       py::arg("P") = 0,
       "Values of backward scratch for `threads` (0: the current count), consume_saved, recurrent dropout and "
       "projections to P units (0: none).");
    py::dict cells;  // name -> (code, gates per unit)
    for (const auto& [name, kind] : kCells) cells[name] = py::make_tuple(int(kind), rnnfast::gate_count(kind));
    m.attr("cells") = cells;
}

}  // namespace rnnfast_python
